// One delivery, start to end: build, save, upload, submit, follow, judge. The action and the CLI
// are thin shells over this function.
import { randomBytes } from 'node:crypto';
import { jobAccounting } from './accounting.js';
import { displayPath, isUnderTmp } from './clusterpath.js';
import { buildImage } from './docker.js';
import { type DeliveryError, InputError, JobFailedError, JobInterruptedError, PreflightError, RemoteCommandError } from './errors.js';
import { type GpuReport, describeGpu, gpuVerdict, parseGpuReport } from './gpu.js';
import { mib } from './format.js';
import { JOB_PHASES } from './jobscript.js';
import { evaluatePreflight, parsePreflight, preflightFailureMessage, preflightScript, preflightThen, wantsOf } from './preflight.js';
import { type Reporter, inGroup } from './reporter.js';
import { applyAccounting } from './sacct.js';
import type { Settings } from './settings.js';
import { type Verdict, isFinalState, judgeJob } from './slurm.js';
import { Session } from './session.js';
import { type ImageSource, type SavedImage, archiveSource, engineSource } from './source.js';
import { JOB_FILES, hexOf, newRunId, remotePaths } from './layout.js';
import type { Remote } from './remote.js';
import { PREPARE_REFUSED, type PrepareParams, type StoreReport, gcScript, imageBlobs, parsePrepare, planTransfer, prepareScript } from './store.js';
import { assembly, cancelJob, readSmokeFile, renderSubmission, submitJob } from './submit.js';
import { Timings } from './timings.js';
import { sendBlobs } from './transfer.js';
import { type FollowOptions, followJob } from './watch.js';

export interface DeliveryHooks extends FollowOptions {
  /** Called before the job is submitted, with the directory that identifies it (the post step's way to it if the id is never learnt). */
  onJobPrepared?: (job: { jobDir: string }) => void | Promise<void>;
  /** Called as soon as the job id is known (the action saves it for the post step). */
  onJobSubmitted?: (job: { jobId: string; jobDir: string }) => void | Promise<void>;
  /** Called once the job is known to have ended. */
  onJobEnded?: () => void | Promise<void>;
}

export interface DeliveryResult {
  ok: boolean;
  image: string;
  imageDigest: string;
  jobId: string;
  jobState: string;
  exitCode: number | null;
  sifPath: string;
  /** The .sif of an unchanged image was reused: no transfer, no build. */
  sifReused: boolean;
  /** Where the tested .sif was published; null if it was not. */
  publishedPath: string | null;
  node: string;
  remoteDir: string;
  timings: { phase: string; seconds: number }[];
  outputTail: string[];
  bytesSent: number;
  bytesTotal: number;
  /** Times the SSH connection dropped and was re-established. */
  reconnects: number;
  /** SSH connections made and remote operations run (each one command, a blob's maybe several). */
  remoteCalls: { connections: number; commands: number };
  /** The node's GPUs and driver, outside and inside the container, and the image's CUDA; null without GPUs. */
  gpu: GpuReport | null;
  message: string;
  /** Set when the job ran but did not pass; the shells fail with it after setting outputs. */
  error: DeliveryError | null;
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new JobInterruptedError('The delivery was cancelled before a job was submitted; nothing was left running.');
}

type PrepareWhat = Pick<PrepareParams, 'imageHex' | 'blobHexes' | 'sifOnly' | 'reuse' | 'run'>;

function renderPrepare(s: Settings, params: PrepareWhat): string {
  return prepareScript({
    ...params,
    remoteDir: s.remoteDir,
    tmpdir: s.tmpdir,
    group: s.group,
    publishDir: s.publish?.dir ?? null,
    publishMode: s.publish?.mode ?? null,
    publishGroup: s.publish?.group ?? null,
    existingSif: s.sif,
  });
}

/** Run a script that ends with prepare: its stdout; a refused remote-dir is an InputError naming it. */
async function runPrepare(r: Remote, what: string, script: string): Promise<string> {
  const out = await r.exec(script);
  if (out.code === PREPARE_REFUSED) throw new InputError('remote-dir', out.stderr.toString('utf8').trim());
  if (out.code !== 0) throw new RemoteCommandError(what, out.code, out.stderr.toString('utf8'));
  return out.stdout.toString('utf8');
}

/** The inputs were checked as written; a link or a `..` above the home may still lead into /tmp. */
function checkResolved(report: StoreReport): StoreReport {
  for (const [input, path] of [['tmpdir', report.tmpdir], ['remote-dir', report.root]] as const) {
    if (isUnderTmp(path)) throw new InputError(input, `is ${path} on the cluster, which is under /tmp: node-local /tmp is small and not shared; give a folder elsewhere`);
  }
  return report;
}

function prepare(session: Session, s: Settings, params: PrepareWhat): Promise<StoreReport> {
  return session.retry('Preparing the store', async (r) => checkResolved(parsePrepare(await runPrepare(r, `Preparing ${displayPath(s.remoteDir)} on the cluster`, renderPrepare(s, params)))));
}

/**
 * The first round trip: preflight (the inputs against what the cluster offers), then the store's
 * first look. A failed check stops the delivery here: nothing saved, sent or submitted.
 */
function preflightAndPrepare(session: Session, s: Settings, params: PrepareWhat, imageBytes: number | null, reporter: Reporter) {
  return session.retry('Preflight', async (r) => {
    const out = await runPrepare(r, `Checking the inputs against the cluster and preparing ${displayPath(s.remoteDir)}`, preflightThen(preflightScript(s), renderPrepare(s, params)));
    const facts = parsePreflight(out);
    if (!facts) throw new Error(`unexpected reply from the cluster's preflight: ${JSON.stringify(out.slice(0, 300))}`);
    let report: StoreReport | null = null;
    let unprepared: unknown = null;
    try {
      report = parsePrepare(out);
    } catch (e) {
      unprepared = e;
    }
    // An intact .sif needs no room for the image.
    const checks = evaluatePreflight(facts, wantsOf(s, report?.sifReusable ? null : imageBytes));
    const failed = preflightFailureMessage(checks);
    if (failed) throw new PreflightError(failed, 'Nothing was saved, sent or submitted. `riviera-singularity doctor` shows every check.');
    for (const c of checks.filter((c) => c.status === 'warn')) reporter.warning(`Preflight '${c.input}': ${c.detail} ${c.fix}`);
    reporter.info(`Preflight: ${checks.filter((c) => c.status === 'pass').length} of ${checks.length} checks passed (${s.partition}, ${s.gpus} GPU(s), ${s.time ?? 'default time'}).`);
    if (!report) throw unprepared;
    return { report: checkResolved(report), accounting: facts.accounting };
  });
}

/**
 * Get the image to the cluster: first ask whether it has an intact .sif of this image (then the
 * image is not even saved), else save it, learn which blobs the store lacks, and send those.
 */
async function upload(session: Session, s: Settings, source: ImageSource | null, run: string, reporter: Reporter, timings: Timings) {
  const none = { sent: 0, raw: 0, rawTotal: 0 };
  const digest = source?.digest ?? null;
  const { report: first, accounting } = await timings.time('upload', () =>
    preflightAndPrepare(session, s, { imageHex: digest && hexOf(digest), blobHexes: [], sifOnly: true, reuse: !s.forceRebuild, run }, source?.size ?? null, reporter),
  );
  if (!digest) {
    reporter.info(`Testing the existing ${first.existingSif}: nothing to build or send.`);
    return { report: first, image: null, stats: none, accounting };
  }
  if (first.sifReusable) {
    reporter.info('The cluster has an intact .sif of this image: nothing to save or send.');
    return { report: first, image: null, stats: none, accounting };
  }
  const image = await source!.load();
  try {
    return await timings.time('upload', async () => {
      const blobs = imageBlobs(image.archive);
      // The first round trip already found no reusable .sif: do not hash it again.
      const report = await prepare(session, s, { imageHex: hexOf(digest), blobHexes: blobs.map((b) => hexOf(b.digest)), reuse: false, run });
      for (const bad of report.bad) reporter.warning(`Blob ${bad.slice(0, 12)} on the cluster failed its digest check; it was removed and is sent again.`);
      const plan = planTransfer(image.archive, report);
      const planned = plan.reduce((a, j) => a + j.blob.size - j.offset, 0);
      reporter.info(
        `The cluster has ${blobs.length - plan.length} of ${blobs.length} blobs; sending ${plan.length} (${mib(planned)}${report.zstd ? '' : ', gzip: no zstd on the cluster'}).`,
      );
      return { report, image, stats: await sendBlobs(session, report.root, image.tar, plan, report.zstd, reporter), accounting };
    });
  } catch (e) {
    await image.cleanup();
    throw e;
  }
}

/** The delivery's verdict on a followed job: a cancel or timeout only counts if Slurm did not see the job end first. */
export function verdictOf(s: Pick<Settings, 'timeoutSeconds'>, follow: Pick<Awaited<ReturnType<typeof followJob>>, 'state' | 'cancelled' | 'timedOut'>): Verdict {
  // scancel found the job already ended: its real verdict stands.
  const ended = follow.state.state !== null && isFinalState(follow.state.state) && follow.state.state !== 'CANCELLED';
  if ((follow.cancelled || follow.timedOut) && ended) return judgeJob(follow.state.state, follow.state.status);
  if (follow.cancelled) {
    return { ok: false, state: 'CANCELLED', exitCode: follow.state.status?.code ?? null, interrupted: true, message: 'The delivery was cancelled; the job was cancelled with it.' };
  }
  if (follow.timedOut) {
    return {
      ok: false,
      state: 'TIMEOUT',
      exitCode: null,
      interrupted: true,
      message: `No result within the timeout (${s.timeoutSeconds} s); the job was cancelled. Raise the 'timeout' input, or check the queue with squeue.`,
    };
  }
  return judgeJob(follow.state.state, follow.state.status);
}

export async function deliver(s: Settings, reporter: Reporter, hooks: DeliveryHooks = {}): Promise<DeliveryResult> {
  const timings = new Timings();
  const smoke = await readSmokeFile(s);
  if (s.build) await inGroup(reporter, `Build ${s.image}`, () => timings.time('build', () => buildImage(s, reporter)));
  checkAbort(hooks.signal);
  const source = s.sif ? null : s.archive ? await archiveSource(s.archive, reporter) : await engineSource(s, reporter, timings);
  const digest = source?.digest ?? null;
  const session = new Session(s, reporter);
  let image: SavedImage | null = null;
  try {
    await inGroup(reporter, `Connect to ${s.username}@${s.host}:${s.port}`, async () => {
      await timings.time('connect', () => session.remote());
      reporter.info('Connected; host key matches known-hosts.');
    });
    // The run is named first: from the first round trip on, it holds what its job will use.
    const run = newRunId();
    const up = await inGroup(reporter, 'Upload', () => upload(session, s, source, run, reporter, timings));
    const { report, stats } = up;
    image = up.image;
    checkAbort(hooks.signal);

    const paths = remotePaths(report, s.image, digest ? hexOf(digest) : null, run, s.publish);
    // No saved image: the .sif on the cluster is tested as it is (reused, or given with `sif`).
    const reuse = !image;
    await hooks.onJobPrepared?.({ jobDir: paths.jobDir });
    // Random per delivery: the job's phase markers carry it, so its own output cannot forge one.
    const phaseToken = randomBytes(12).toString('hex');
    const jobId = await inGroup(reporter, 'Submit job', async () => {
      const sub = renderSubmission(s, paths, image ? assembly(image.archive, digest!, paths) : null, smoke?.name ?? null, phaseToken);
      const id = await session.retry('Submitting', (r) => submitJob(r, s, paths, sub, smoke)).catch(async (e: unknown) => {
        // sbatch may have run before the failure: leave no job behind.
        await session.retry('Cancelling', (r) => cancelJob(r, { jobDir: paths.jobDir }, s.loginModules)).catch(() => undefined);
        throw e;
      });
      reporter.info(`Submitted job ${id} to partition ${s.partition}; output in ${paths.jobDir}/${JOB_FILES.output}`);
      return id;
    });
    await hooks.onJobSubmitted?.({ jobId, jobDir: paths.jobDir });

    const follow = await followJob(session, s, jobId, paths.jobDir, reporter, { ...hooks, phaseToken, heartbeat: true }, timings).catch(async (e: unknown) => {
      // Never give up on a job without cancelling it first.
      const cancelled = await session.retry('Cancelling', (r) => cancelJob(r, { jobId }, s.loginModules)).then(
        () => `job ${jobId} was cancelled.`,
        (c: Error) => `job ${jobId} could not be cancelled (${c.message.split('\n')[0]}): cancel it by hand, scancel ${jobId}.`,
      );
      reporter.warning(`Following the job failed; ${cancelled}`);
      throw e;
    });
    await hooks.onJobEnded?.();
    const gc = await session
      .retry('Garbage collection', (r) => r.run('Garbage collection', gcScript({ root: paths.root, keepImages: s.keepImages, maxAgeDays: s.maxAgeDays, loginModules: s.loginModules })))
      .catch((e: Error) => `gc failed: ${e.message}`);
    reporter.debug(gc.trim());

    const gpu = parseGpuReport(follow.out.gpu);
    if (gpu) {
      reporter.info(describeGpu(gpu));
      if (gpu.compat.kind === 'minor' || gpu.compat.kind === 'unknown') reporter.warning(gpu.compat.message);
    }
    // Where the cluster has accounting, it has the last word on how the job ended (e.g. an OOM kill).
    const ended = !follow.cancelled && !follow.timedOut;
    const acct = up.accounting && ended ? await jobAccounting(session, s.loginModules, jobId, reporter) : null;
    const verdict = applyAccounting(gpuVerdict(verdictOf(s, follow), follow.state.status, gpu), acct);
    return {
      ok: verdict.ok,
      image: s.image,
      imageDigest: digest ?? '',
      jobId,
      jobState: verdict.state,
      exitCode: verdict.exitCode,
      sifPath: paths.sif,
      sifReused: reuse,
      publishedPath: verdict.ok ? paths.published : null,
      node: follow.state.node,
      remoteDir: paths.root,
      timings: timings.list(['build', 'connect', 'save', 'upload', 'sbatch-wait', ...JOB_PHASES]),
      outputTail: follow.out.tail,
      bytesSent: stats.sent,
      // The saved tar's size; when nothing had to be saved, the engine's size of the image.
      bytesTotal: image?.size ?? source?.size ?? 0,
      reconnects: session.reconnects,
      remoteCalls: { ...session.calls },
      gpu,
      message: verdict.ok ? 'The smoke test passed.' : verdict.message,
      error: verdict.ok ? null : verdict.interrupted ? new JobInterruptedError(verdict.message) : new JobFailedError(verdict.message),
    };
  } finally {
    session.close();
    await image?.cleanup();
  }
}


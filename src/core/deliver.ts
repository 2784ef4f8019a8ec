// One delivery, start to end: build, save, upload, submit, follow, judge. The action and the CLI
// are thin shells over this function.
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { type ImageArchive, legacyManifest, readImageArchive } from './archive.js';
import { buildImage, inspectImage, saveImage } from './docker.js';
import { type DeliveryError, InputError, JobFailedError, JobInterruptedError, RemoteCommandError } from './errors.js';
import { OutputStream, applyPoll, initialFollowState, loadModulesScript, parsePoll, pollScript } from './follow.js';
import { JOB_PHASES, renderJobScript, sbatchArgv } from './jobscript.js';
import { shJoin, shq } from './quote.js';
import { type Reporter, inGroup } from './reporter.js';
import type { Settings } from './settings.js';
import { type Verdict, parseSbatchOutput, judgeJob } from './slurm.js';
import { Session } from './session.js';
import type { Remote } from './ssh.js';
import { type PrepareParams, STORE, type StoreReport, gcScript, hexOf, imageBlobs, parsePrepare, planTransfer, prepareScript } from './store.js';
import { sendBlobs } from './transfer.js';
import { Timings } from './timings.js';

export interface DeliveryHooks {
  /** Called as soon as the job id is known (the action saves it for the post step). */
  onJobSubmitted?: (job: { jobId: string; jobDir: string }) => void | Promise<void>;
  /** Called once the job is known to have ended. */
  onJobEnded?: () => void | Promise<void>;
  /** Aborting cancels the job if there is one, and stops the delivery. */
  signal?: AbortSignal;
  /** Milliseconds between polls of the job (default 2000). */
  pollMs?: number;
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
  message: string;
  /** Set when the job ran but did not pass; the shells fail with it after setting outputs. */
  error: DeliveryError | null;
}

/** `org/name:tag` → `org_name_tag`: a file name for the image. */
export function imageFileName(image: string): string {
  return image.replace(/[^A-Za-z0-9._-]+/g, '_');
}

function runId(): string {
  const t = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${t}-${randomBytes(3).toString('hex')}`;
}

const MAX_SMOKE_BYTES = 256 * 1024;

/** The smoke-test script to copy to the cluster (null for smoke-command); a clear error if it is missing. */
export async function readSmokeFile(settings: Settings): Promise<{ name: string; data: Buffer } | null> {
  if (settings.smoke.kind !== 'script') return null;
  const path = settings.smoke.path;
  const st = await stat(path).catch(() => null);
  if (!st?.isFile()) throw new InputError('smoke-test', `file '${path}' not found (paths are relative to the workspace; for the CLI, the current directory)`);
  if (st.size > MAX_SMOKE_BYTES) throw new InputError('smoke-test', `file '${path}' is over 256 KiB: put large files in the image or a bind`);
  return { name: basename(path), data: await readFile(path) };
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new JobInterruptedError('The delivery was cancelled before a job was submitted; nothing was left running.');
}

/** Remote paths of one delivery, all absolute. */
export interface RemotePaths {
  root: string;
  tmpdir: string;
  sif: string;
  /** Stable per-image link to the newest .sif; null when testing an existing .sif. */
  sifLink: string | null;
  jobDir: string;
  publishDir: string | null;
  /** Where the .sif is published if the smoke test passes. */
  published: string | null;
}

function remotePaths(s: Settings, digest: string | null, report: StoreReport): RemotePaths {
  const root = report.root;
  return {
    root,
    tmpdir: report.tmpdir,
    sif: digest ? `${root}/sif/${hexOf(digest)}.sif` : report.existingSif!,
    sifLink: digest ? `${root}/images/${imageFileName(s.image)}.sif` : null,
    jobDir: `${root}/jobs/${runId()}`,
    publishDir: report.publishDir,
    published: s.publish && report.publishDir ? `${report.publishDir}/${s.publish.name}_${s.publish.version}.sif` : null,
  };
}

/** The docker-archive members, legacy layout, as the job assembles them from the store. */
function assembly(archive: ImageArchive, digest: string, paths: RemotePaths): { id: string; members: { name: string; blob: string }[]; manifest: string } {
  const blob = (d: string) => `${paths.root}/${STORE}/blobs/sha256/${hexOf(d)}`;
  const config = `${hexOf(archive.config.digest)}.json`;
  const layers = archive.layers.map((l) => `${hexOf(l.digest)}/layer.tar`);
  const members = [{ name: config, blob: blob(archive.config.digest) }];
  archive.layers.forEach((l, i) => {
    if (!members.some((m) => m.name === layers[i])) members.push({ name: layers[i], blob: blob(l.digest) });
  });
  return { id: digest, members, manifest: legacyManifest(archive, { config, layers }, archive.repoTags) };
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export interface Submission {
  script: string;
  /** manifest.json of the archive the job assembles; null when it tests an existing .sif. */
  manifest: string | null;
  sbatch: string[];
}

/** The job script, manifest and sbatch command of a delivery. Pure: also what --dry-run prints. */
export function renderSubmission(
  s: Settings,
  paths: RemotePaths,
  image: { id: string; members: { name: string; blob: string }[]; manifest: string } | null,
  reuseSif: boolean,
  smokeFile: string | null,
): Submission {
  const script = renderJobScript({
    modules: s.modules,
    tmpdir: paths.tmpdir,
    assemble: image ? { store: `${paths.root}/${STORE}`, manifest: `${paths.jobDir}/manifest.json`, members: image.members } : null,
    sif: paths.sif,
    sifLink: paths.sifLink,
    reuseSif,
    smoke: s.smoke,
    smokeFile,
    binds: s.binds,
    gpus: s.gpus,
    statusFile: `${paths.jobDir}/status`,
    runtime: s.runtime,
    publish:
      s.publish && paths.publishDir
        ? {
            ...s.publish,
            dir: paths.publishDir,
            record: {
              image: s.image,
              digest: image?.id ?? null,
              repository: s.publish.provenance.repository,
              commit: s.publish.provenance.commit,
              tag: s.publish.provenance.tag,
            },
          }
        : null,
  });
  const sbatch = sbatchArgv({
    jobName: s.jobName,
    partition: s.partition,
    gpus: s.gpus,
    time: s.time,
    jobDir: paths.jobDir,
    extra: s.sbatchArgs,
    script: `${paths.jobDir}/job.sh`,
  });
  return { script, manifest: image?.manifest ?? null, sbatch };
}

/**
 * Write the job's files and submit it, in one round trip. sbatch's answer is also kept in the job
 * directory, so a retry after a dropped connection finds the job instead of submitting it twice.
 */
async function submitJob(remote: Remote, s: Settings, paths: RemotePaths, sub: Submission, smoke: { name: string; data: Buffer } | null) {
  const write = (name: string, data: Buffer) => `printf %s ${shq(data.toString('base64'))} | base64 -d > ${shq(name)}`;
  const out = await remote
    .run(
      'Submitting the job',
      `${s.group ? 'umask 027' : 'umask 077'}; set -e
mkdir -p -- ${shq(paths.jobDir)}; cd -- ${shq(paths.jobDir)}
if [ -s submitted ]; then cat submitted; exit 0; fi
${write('job.sh', Buffer.from(sub.script))}
${sub.manifest ? write('manifest.json', Buffer.from(sub.manifest)) : ':'}
${smoke ? write(smoke.name, smoke.data) : ':'}
${loadModulesScript(s.loginModules)}out=$(${shJoin(sub.sbatch)})
# jobs/job-ID finds the job's directory again (status, logs).
ln -sfn ${shq(paths.jobDir)} ${shq(`${paths.root}/jobs/job-`)}"\${out%%;*}"
printf '%s\\n' "$out" > submitted
echo "$out"`,
    )
    .catch((e) => {
      if (e instanceof RemoteCommandError) {
        throw new RemoteCommandError('sbatch', e.code, e.stderr, 'Check the partition, gpus, time and sbatch-args inputs against `sinfo -s` on the cluster.');
      }
      throw e;
    });
  return parseSbatchOutput(out);
}

export async function cancelJob(remote: Remote, jobId: string, loginModules: string[]): Promise<void> {
  await remote.run(`scancel ${jobId}`, `${loadModulesScript(loginModules)}scancel ${shq(jobId)}`);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** The image as saved locally: its archive index and the tar to read blobs from. */
interface SavedImage {
  archive: ImageArchive;
  tar: string;
  size: number;
  cleanup: () => Promise<void>;
}

async function save(s: Settings, digest: string, expectedBytes: number, reporter: Reporter, timings: Timings): Promise<SavedImage> {
  const saved = await inGroup(reporter, `Save ${s.image}`, () => timings.time('save', () => saveImage(s.image, expectedBytes, reporter)));
  try {
    const archive = await readImageArchive(saved.path);
    const size = (await stat(saved.path)).size;
    reporter.info(`Saved ${s.image} (${digest}): ${archive.layout} layout, ${archive.layers.length} layer(s), ${mib(size)}`);
    return { archive, tar: saved.path, size, cleanup: saved.cleanup };
  } catch (e) {
    await saved.cleanup();
    throw e;
  }
}

/** Where the image comes from: the local engine (saved only when the cluster needs its blobs), or a saved tar. */
interface ImageSource {
  digest: string;
  /** Size of the image (the tar's, or the engine's estimate before it is saved). */
  size: number;
  load(): Promise<SavedImage>;
}

async function engineSource(s: Settings, reporter: Reporter, timings: Timings): Promise<ImageSource> {
  const { id, size } = await inspectImage(s.image, reporter);
  return { digest: id, size, load: () => save(s, id, size, reporter, timings) };
}

/** A tar saved elsewhere (`docker save`, buildx `type=docker`/`type=oci`): read its index, never delete it. */
async function archiveSource(path: string, reporter: Reporter): Promise<ImageSource> {
  const size = (await stat(path).catch(() => null))?.size;
  if (size === undefined) throw new InputError('archive', `file '${path}' not found (paths are relative to the workspace; for the CLI, the current directory)`);
  let archive: ImageArchive;
  try {
    archive = await readImageArchive(path);
  } catch (e) {
    throw new InputError('archive', e instanceof Error ? e.message : String(e), 'Pass a tar written by `docker save -o FILE IMAGE` (or an OCI layout tar) holding one image.');
  }
  reporter.info(`Read ${path} (${archive.imageId}): ${archive.layout} layout, ${archive.layers.length} layer(s), ${mib(size)}`);
  const loaded: SavedImage = { archive, tar: path, size, cleanup: async () => undefined };
  return { digest: archive.imageId, size, load: async () => loaded };
}

function prepare(session: Session, s: Settings, params: Pick<PrepareParams, 'imageHex' | 'blobHexes' | 'sifOnly'>): Promise<StoreReport> {
  return session.retry('Preparing the store', async (r) =>
    parsePrepare(
      await r.run(
        `Preparing ${s.remoteDir} on the cluster`,
        prepareScript({ ...params, remoteDir: s.remoteDir, tmpdir: s.tmpdir, group: s.group, reuse: !s.forceRebuild, publishDir: s.publish?.dir ?? null, existingSif: s.sif }),
      ),
    ),
  );
}

/**
 * Get the image to the cluster: first ask whether it has an intact .sif of this image (then the
 * image is not even saved), else save it, learn which blobs the store lacks, and send those.
 */
async function upload(session: Session, s: Settings, source: ImageSource | null, reporter: Reporter, timings: Timings) {
  const none = { sent: 0, raw: 0, rawTotal: 0 };
  const digest = source?.digest ?? null;
  const first = await timings.time('upload', () => prepare(session, s, { imageHex: digest && hexOf(digest), blobHexes: [], sifOnly: true }));
  if (!digest) {
    reporter.info(`Testing the existing ${first.existingSif}: nothing to build or send.`);
    return { report: first, image: null, stats: none };
  }
  if (first.sifReusable) {
    reporter.info('The cluster has an intact .sif of this image: nothing to save or send.');
    return { report: first, image: null, stats: none };
  }
  const image = await source!.load();
  try {
    return await timings.time('upload', async () => {
      const blobs = imageBlobs(image.archive);
      const report = await prepare(session, s, { imageHex: hexOf(digest), blobHexes: blobs.map((b) => hexOf(b.digest)) });
      for (const bad of report.bad) reporter.warning(`Blob ${bad.slice(0, 12)} on the cluster failed its digest check; it was removed and is sent again.`);
      const plan = planTransfer(image.archive, report);
      const planned = plan.reduce((a, j) => a + j.blob.size - j.offset, 0);
      reporter.info(
        report.sifReusable
          ? 'The cluster has an intact .sif of this image: nothing to send.'
          : `The cluster has ${blobs.length - plan.length} of ${blobs.length} blobs; sending ${plan.length} (${mib(planned)}${report.zstd ? '' : ', gzip: no zstd on the cluster'}).`,
      );
      return { report, image, stats: await sendBlobs(session, report.root, image.tar, plan, report.zstd, reporter) };
    });
  } catch (e) {
    await image.cleanup();
    throw e;
  }
}

function verdictOf(s: Settings, follow: Awaited<ReturnType<typeof followJob>>): Verdict {
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
      await session.remote();
      reporter.info('Connected; host key matches known-hosts.');
    });
    const up = await inGroup(reporter, 'Upload', () => upload(session, s, source, reporter, timings));
    const { report, stats } = up;
    image = up.image;
    checkAbort(hooks.signal);

    const paths = remotePaths(s, digest, report);
    const reuse = report.sifReusable || !image;
    const jobId = await inGroup(reporter, 'Submit job', async () => {
      const sub = renderSubmission(s, paths, image ? assembly(image.archive, digest!, paths) : null, reuse, smoke?.name ?? null);
      const id = await session.retry('Submitting', (r) => submitJob(r, s, paths, sub, smoke));
      reporter.info(`Submitted job ${id} to partition ${s.partition}; output in ${paths.jobDir}/job.out`);
      return id;
    });
    await hooks.onJobSubmitted?.({ jobId, jobDir: paths.jobDir });

    const follow = await followJob(session, s, jobId, paths.jobDir, reporter, hooks, timings);
    await hooks.onJobEnded?.();
    const gc = await session
      .retry('Garbage collection', (r) => r.run('Garbage collection', gcScript({ root: paths.root, keepImages: s.keepImages, maxAgeDays: s.maxAgeDays })))
      .catch((e: Error) => `gc failed: ${e.message}`);
    reporter.debug(gc.trim());

    const verdict = verdictOf(s, follow);
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
      timings: timings.list(['build', 'save', 'upload', 'sbatch-wait', ...JOB_PHASES]),
      outputTail: follow.out.tail,
      bytesSent: stats.sent,
      // The saved tar's size; when nothing had to be saved, the engine's size of the image.
      bytesTotal: image?.size ?? source?.size ?? 0,
      reconnects: session.reconnects,
      message: verdict.ok ? 'The smoke test passed.' : verdict.message,
      error: verdict.ok ? null : verdict.interrupted ? new JobInterruptedError(verdict.message) : new JobFailedError(verdict.message),
    };
  } finally {
    session.close();
    await image?.cleanup();
  }
}

/** Follow a job to its end, streaming its output; used by deliveries and by `logs --follow`. */
export async function followJob(
  session: Session,
  s: Pick<Settings, 'loginModules' | 'timeoutSeconds'>,
  jobId: string,
  jobDir: string,
  reporter: Reporter,
  hooks: DeliveryHooks,
  timings?: Timings,
) {
  const state = initialFollowState();
  const out = new OutputStream(reporter);
  const submitted = Date.now();
  const deadline = submitted + s.timeoutSeconds * 1000;
  let cancelled = false;
  let timedOut = false;
  let polls = 0;
  for (;;) {
    if ((hooks.signal?.aborted && !cancelled) || (Date.now() > deadline && !timedOut)) {
      cancelled = !!hooks.signal?.aborted;
      timedOut = !cancelled;
      reporter.warning(`${cancelled ? 'Cancelled' : 'Timed out'}: cancelling job ${jobId}.`);
      await session.retry('Cancelling', (r) => cancelJob(r, jobId, s.loginModules));
    }
    const r = await session.retry('Following the job', (remote) => remote.exec(pollScript(jobId, jobDir, state.offset, s.loginModules)));
    if (r.code !== 0) throw new RemoteCommandError('Following the job', r.code, r.stderr.toString());
    const done = applyPoll(state, parsePoll(r.stdout), out, reporter, jobId);
    if (done) break;
    // Poll quickly at first (short jobs end in seconds), then every pollMs.
    await sleep(Math.min(hooks.pollMs ?? 2000, 250 * 2 ** Math.floor(polls++ / 2)), cancelled ? undefined : hooks.signal);
  }
  out.end();
  reporter.endGroup();
  // The job's phases are timed by its own clock; the rest of the job's wall time, as seen from here,
  // is the wait in the queue (plus up to one poll interval).
  const phases = out.phases;
  const inJob = phases.reduce((a, p) => a + p.seconds, 0);
  timings?.add('sbatch-wait', Math.max(0, (Date.now() - submitted) / 1000 - inJob));
  for (const p of phases) timings?.add(p.phase, p.seconds);
  return { state, out, cancelled, timedOut };
}

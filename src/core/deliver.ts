// One delivery, start to end: build, save, upload, submit, follow, judge. The action and the CLI
// are thin shells over this function.
import { randomBytes } from 'node:crypto';
import { jobAccounting } from './accounting.js';
import { buildImage } from './docker.js';
import { type DeliveryError, JobFailedError, JobInterruptedError } from './errors.js';
import { type GpuReport, describeGpu, gpuVerdict, parseGpuReport } from './gpu.js';
import { JOB_PHASES } from './jobscript.js';
import { type Reporter, inGroup } from './reporter.js';
import { applyAccounting } from './sacct.js';
import type { Settings } from './settings.js';
import { type Verdict, isFinalState, judgeJob } from './slurm.js';
import { Session } from './session.js';
import { type SavedImage, archiveSource, engineSource } from './source.js';
import { JOB_FILES, hexOf, holdPath, newRunId, remotePaths } from './layout.js';
import { gcScript } from './store.js';
import { type JobRef, assembly, cancelJob, readSmokeFile, renderSubmission, submitJob } from './submit.js';
import { Timings } from './timings.js';
import { SaveAhead, upload } from './upload.js';
import { type FollowOptions, followJob } from './follow.js';

export interface DeliveryHooks extends FollowOptions {
  /** Called before the first round trip, which takes the run's hold on the image: the post step's way to release it if main is killed before a job exists. */
  onRunNamed?: (run: { hold: string }) => void | Promise<void>;
  /** Called before the job is submitted, with the directory that identifies it (the post step's way to it if the id is never learnt). */
  onJobPrepared?: (job: { jobDir: string }) => void | Promise<void>;
  /** Called as soon as the job id is known (the action saves it for the post step). */
  onJobSubmitted?: (job: { jobId: string; jobDir: string }) => void | Promise<void>;
  /** Called once the job is known to have ended, or the delivery ended without one and released its hold: nothing is left for the post step. */
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
  /** CPUs the job had for the .sif build (--cpus-per-task); null when it built nothing. */
  buildCpus: number | null;
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

/** The delivery's verdict on a followed job: a cancel or timeout only counts if Slurm did not see the job end first. */
export function verdictOf(
  s: Pick<Settings, 'timeoutSeconds'>,
  follow: Pick<Awaited<ReturnType<typeof followJob>>, 'state' | 'cancelled' | 'timedOut'>,
): Verdict {
  // scancel found the job already ended: its real verdict stands.
  const ended = follow.state.state !== null && isFinalState(follow.state.state) && follow.state.state !== 'CANCELLED';
  if ((follow.cancelled || follow.timedOut) && ended) return judgeJob(follow.state.state, follow.state.status);
  if (follow.cancelled) {
    return {
      ok: false,
      state: 'CANCELLED',
      exitCode: follow.state.status?.code ?? null,
      interrupted: true,
      message: 'The delivery was cancelled; the job was cancelled with it.',
    };
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
  const source = s.sif ? null : s.archive ? await archiveSource(s.archive, reporter) : await engineSource(s, reporter);
  const digest = source?.digest ?? null;
  const session = new Session(s, reporter);
  let image: SavedImage | null = null;
  // The save starts at once: the engine takes as long before its first byte as connecting does.
  const ahead = source ? new SaveAhead(source) : null;
  // While no job exists: what ending the delivery must undo (a job a cut-off sbatch made, else the run's hold).
  let unsubmitted: JobRef | null = null;
  try {
    await inGroup(reporter, `Connect to ${s.username}@${s.host}:${s.port}`, async () => {
      await timings.time('connect', () => session.remote());
      reporter.info('Connected; host key matches known-hosts.');
    });
    // The run is named first: from the first round trip on, it holds what its job will use.
    const run = newRunId();
    const hold = `${s.remoteDir}/${holdPath(run)}`;
    unsubmitted = { jobDir: null, hold };
    await hooks.onRunNamed?.({ hold });
    const up = await inGroup(reporter, 'Upload', () => upload(session, s, source, ahead, run, reporter, timings));
    const { report, stats } = up;
    image = up.image;
    checkAbort(hooks.signal);

    const paths = remotePaths(report, s.image, digest ? hexOf(digest) : null, run, s.publish);
    // No saved image: the .sif on the cluster is tested as it is (reused, or given with `sif`).
    const reuse = !image;
    unsubmitted = { jobDir: paths.jobDir, hold: paths.hold };
    await hooks.onJobPrepared?.({ jobDir: paths.jobDir });
    // Random per delivery: the job's marker lines carry it, so its own output cannot forge one.
    const markerToken = randomBytes(12).toString('hex');
    const { jobId, cpus } = await inGroup(reporter, 'Submit job', async () => {
      const sub = renderSubmission(s, paths, image ? assembly(image.archive, digest!, paths) : null, smoke?.name ?? null, markerToken);
      const gc = gcScript({ root: paths.root, keepImages: s.keepImages, maxAgeDays: s.maxAgeDays, loginModules: s.loginModules });
      // Garbage collection in the same round trip: the run's hold (its job now listed) keeps its image.
      const done = await session.retry('Submitting', (r) => submitJob(r, s, paths, sub, smoke, gc));
      for (const note of done.notes) reporter.info(note);
      if (done.then.length > 0) reporter.debug(done.then.join('\n'));
      reporter.info(`Submitted job ${done.jobId} to partition ${s.partition}; output in ${paths.jobDir}/${JOB_FILES.output}`);
      return done;
    });
    unsubmitted = null;
    await hooks.onJobSubmitted?.({ jobId, jobDir: paths.jobDir });

    const follow = await followJob(session, s, jobId, paths.jobDir, reporter, { ...hooks, markerToken, heartbeat: true }, timings).catch(async (e: unknown) => {
      // Never give up on a job without cancelling it first.
      const cancelled = await session
        .retry('Cancelling', (r) => cancelJob(r, { jobId }, s.loginModules))
        .then(
          () => `job ${jobId} was cancelled.`,
          (c: Error) => `job ${jobId} could not be cancelled (${c.message.split('\n')[0]}): cancel it by hand, scancel ${jobId}.`,
        );
      reporter.warning(`Following the job failed; ${cancelled}`);
      throw e;
    });
    await hooks.onJobEnded?.();

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
      buildCpus: reuse ? null : cpus,
      remoteCalls: { ...session.calls },
      gpu,
      message: verdict.ok ? 'The smoke test passed.' : verdict.message,
      error: verdict.ok ? null : verdict.interrupted ? new JobInterruptedError(verdict.message) : new JobFailedError(verdict.message),
    };
  } catch (e) {
    await ahead?.stop();
    if (unsubmitted) await leaveNothing(session, s, unsubmitted, reporter, hooks);
    throw e;
  } finally {
    session.close();
    await image?.cleanup();
  }
}

/**
 * A delivery that failed or was cancelled before its job existed: cancel the job sbatch may have
 * made before a failure cut it off, else release the run's hold, so that garbage collection may take
 * the image's blobs now rather than after a day. A delivery killed outright (SIGKILL, a runner lost
 * without its post step) releases nothing: its hold lasts the day store-gc.sh gives it.
 */
async function leaveNothing(session: Session, s: Settings, ref: JobRef, reporter: Reporter, hooks: DeliveryHooks): Promise<void> {
  try {
    const cancelled = await session.retry('Cancelling', (r) => cancelJob(r, ref, s.loginModules));
    if (cancelled) reporter.warning(`Cancelled job ${cancelled}, which a submission cut off had left.`);
    else await hooks.onJobEnded?.();
  } catch (e) {
    reporter.warning(
      `Could not release the run's hold on the cluster (${e instanceof Error ? e.message.split('\n')[0] : String(e)}); garbage collection keeps the image's blobs for a day.`,
    );
  }
}

// One delivery, start to end: build, save, upload, submit, follow, judge. The action and the CLI
// are thin shells over this function.
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { type ImageArchive, readImageArchive } from './archive.js';
import { buildImage, imageId, saveImage } from './docker.js';
import { type DeliveryError, InputError, JobFailedError, JobInterruptedError, RemoteCommandError } from './errors.js';
import { OutputStream, applyPoll, initialFollowState, loadModulesScript, parsePoll, pollScript } from './follow.js';
import { renderJobScript, sbatchArgv } from './jobscript.js';
import { shJoin, shq } from './quote.js';
import { type Reporter, inGroup } from './reporter.js';
import type { Settings } from './settings.js';
import { parseSbatchOutput, judgeJob } from './slurm.js';
import { Remote } from './ssh.js';
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
  node: string;
  remoteDir: string;
  timings: { phase: string; seconds: number }[];
  outputTail: string[];
  bytesSent: number;
  bytesTotal: number;
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

function hex(digest: string): string {
  return digest.replace(/^sha256:/, '');
}

const MAX_SMOKE_BYTES = 256 * 1024;

async function readSmokeFile(settings: Settings): Promise<{ name: string; data: Buffer } | null> {
  if (settings.smoke.kind !== 'script') return null;
  const path = settings.smoke.path;
  const st = await stat(path).catch(() => null);
  if (!st?.isFile()) throw new InputError('smoke-test', `file '${path}' not found (paths are relative to the workspace)`);
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
  archive: string;
  sif: string;
  sifLink: string;
  jobDir: string;
}

async function prepareRemote(remote: Remote, s: Settings, archive: ImageArchive): Promise<RemotePaths> {
  // umask 077: the delivery's files are the user's alone.
  const out = await remote.run(
    `Creating ${s.remoteDir}`,
    `umask 077; set -e
mkdir -p -- ${shq(s.remoteDir)} ${shq(s.tmpdir)}
cd -- ${shq(s.remoteDir)}; mkdir -p archives sif images jobs; pwd -P
cd; cd -- ${shq(s.tmpdir)}; pwd -P`,
  );
  const [root, tmpdir] = out.trim().split('\n');
  return {
    root,
    tmpdir,
    archive: `${root}/archives/${hex(archive.imageId)}.tar`,
    sif: `${root}/sif/${hex(archive.imageId)}.sif`,
    sifLink: `${root}/images/${imageFileName(s.image)}.sif`,
    jobDir: `${root}/jobs/${runId()}`,
  };
}

/** Upload the archive under a temporary name and rename it into place once complete. */
async function uploadArchive(remote: Remote, local: string, target: string, reporter: Reporter): Promise<number> {
  const size = (await stat(local)).size;
  const have = await remote.exec(`stat -c %s -- ${shq(target)} 2>/dev/null`);
  if (have.code === 0 && Number(have.stdout.toString().trim()) === size) {
    reporter.info(`The cluster already has this archive (${target}); nothing to send.`);
    return 0;
  }
  const partial = `${target}.partial.${randomBytes(4).toString('hex')}`;
  let last = 0;
  const started = Date.now();
  try {
    await remote.putFile(local, partial, (sent, total) => {
      const now = Date.now();
      if (now - last >= 3000 || sent === total) {
        last = now;
        const rate = sent / Math.max(0.001, (now - started) / 1000);
        reporter.info(`Uploaded ${mib(sent)} of ${mib(total)} (${mib(rate)}/s)`);
      }
    });
    await remote.run('Moving the archive into place', `mv -f -- ${shq(partial)} ${shq(target)}`);
  } catch (e) {
    await remote.exec(`rm -f -- ${shq(partial)}`).catch(() => undefined);
    throw e;
  }
  return size;
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/** Write the job's files and submit it, in one round trip. */
async function submitJob(remote: Remote, s: Settings, paths: RemotePaths, smoke: { name: string; data: Buffer } | null) {
  const script = renderJobScript({
    modules: s.modules,
    tmpdir: paths.tmpdir,
    archive: paths.archive,
    sif: paths.sif,
    sifLink: paths.sifLink,
    reuseSif: false,
    smoke: s.smoke,
    smokeFile: smoke?.name ?? null,
    binds: s.binds,
    gpus: s.gpus,
    statusFile: `${paths.jobDir}/status`,
  });
  const write = (name: string, data: Buffer) => `printf %s ${shq(data.toString('base64'))} | base64 -d > ${shq(name)}`;
  const argv = sbatchArgv({
    jobName: s.jobName,
    partition: s.partition,
    gpus: s.gpus,
    time: s.time,
    jobDir: paths.jobDir,
    extra: s.sbatchArgs,
    script: `${paths.jobDir}/job.sh`,
  });
  const out = await remote
    .run(
      'Submitting the job',
      `umask 077; set -e
mkdir -p -- ${shq(paths.jobDir)}; cd -- ${shq(paths.jobDir)}
${write('job.sh', Buffer.from(script))}
${smoke ? write(smoke.name, smoke.data) : ':'}
${loadModulesScript(s.loginModules)}${shJoin(argv)}`,
    )
    .catch((e) => {
      if (e instanceof RemoteCommandError) {
        throw new RemoteCommandError('sbatch', e.code, e.stderr, 'Check the partition, gpus, time and sbatch-args inputs against `sinfo -s` on the cluster.');
      }
      throw e;
    });
  return { jobId: parseSbatchOutput(out), script };
}

export async function cancelJob(remote: Remote, jobId: string, loginModules: string[]): Promise<void> {
  await remote.run(`scancel ${jobId}`, `${loadModulesScript(loginModules)}scancel ${shq(jobId)}`);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

export async function deliver(s: Settings, reporter: Reporter, hooks: DeliveryHooks = {}): Promise<DeliveryResult> {
  const timings = new Timings();
  const smoke = await readSmokeFile(s);

  if (s.build) {
    await inGroup(reporter, `Build ${s.image}`, () => timings.time('build', () => buildImage(s, reporter)));
  }
  checkAbort(hooks.signal);
  const digest = await imageId(s.image, reporter);
  const saved = await inGroup(reporter, `Save ${s.image}`, () => timings.time('save', () => saveImage(s.image, reporter)));
  let remote: Remote | undefined;
  try {
    const archive = await readImageArchive(saved.path);
    reporter.info(`Saved ${s.image} (${digest}): ${archive.layout} layout, ${archive.layers.length} layer(s), ${mib((await stat(saved.path)).size)}`);
    checkAbort(hooks.signal);

    remote = await inGroup(reporter, `Connect to ${s.username}@${s.host}:${s.port}`, async () => {
      const r = await Remote.connect(s);
      reporter.info('Connected; host key matches known-hosts.');
      return r;
    });
    const paths = await prepareRemote(remote, s, archive);
    const bytesTotal = (await stat(saved.path)).size;
    const bytesSent = await inGroup(reporter, 'Upload', () => timings.time('upload', () => uploadArchive(remote!, saved.path, paths.archive, reporter)));
    checkAbort(hooks.signal);

    const { jobId } = await inGroup(reporter, 'Submit job', async () => {
      const r = await submitJob(remote!, s, paths, smoke);
      reporter.info(`Submitted job ${r.jobId} to partition ${s.partition}; output in ${paths.jobDir}/job.out`);
      return r;
    });
    await hooks.onJobSubmitted?.({ jobId, jobDir: paths.jobDir });

    const follow = await followJob(remote, s, jobId, paths.jobDir, reporter, hooks, timings);
    await hooks.onJobEnded?.();

    const verdict = follow.cancelled
      ? { ok: false as const, state: 'CANCELLED', exitCode: follow.state.status?.code ?? null, interrupted: true, message: 'The delivery was cancelled; the job was cancelled with it.' }
      : follow.timedOut
        ? { ok: false as const, state: 'TIMEOUT', exitCode: null, interrupted: true, message: `No result within the timeout (${s.timeoutSeconds} s); the job was cancelled. Raise the 'timeout' input, or check the queue with squeue.` }
        : judgeJob(follow.state.state, follow.state.status);
    const error = verdict.ok ? null : verdict.interrupted ? new JobInterruptedError(verdict.message) : new JobFailedError(verdict.message);
    return {
      ok: verdict.ok,
      image: s.image,
      imageDigest: digest,
      jobId,
      jobState: verdict.state,
      exitCode: verdict.exitCode,
      sifPath: paths.sif,
      node: follow.state.node,
      remoteDir: paths.root,
      timings: timings.list(),
      outputTail: follow.out.tail,
      bytesSent,
      bytesTotal,
      message: verdict.ok ? 'The smoke test passed.' : verdict.message,
      error,
    };
  } finally {
    remote?.close();
    await saved.cleanup();
  }
}

async function followJob(remote: Remote, s: Settings, jobId: string, jobDir: string, reporter: Reporter, hooks: DeliveryHooks, timings: Timings) {
  const state = initialFollowState();
  const out = new OutputStream(reporter);
  const submitted = Date.now();
  const deadline = submitted + s.timeoutSeconds * 1000;
  let cancelled = false;
  let timedOut = false;
  for (;;) {
    if ((hooks.signal?.aborted && !cancelled) || (Date.now() > deadline && !timedOut)) {
      cancelled = !!hooks.signal?.aborted;
      timedOut = !cancelled;
      reporter.warning(`${cancelled ? 'Cancelled' : 'Timed out'}: cancelling job ${jobId}.`);
      await cancelJob(remote, jobId, s.loginModules);
    }
    const r = await remote.exec(pollScript(jobId, jobDir, state.offset, s.loginModules));
    if (r.code !== 0) throw new RemoteCommandError('Following the job', r.code, r.stderr.toString());
    const done = applyPoll(state, parsePoll(r.stdout), out, reporter, jobId);
    if (done) break;
    await sleep(hooks.pollMs ?? 2000, cancelled ? undefined : hooks.signal);
  }
  out.end();
  reporter.endGroup();
  // The job's phases are timed by its own clock; the rest of the job's wall time, as seen from here,
  // is the wait in the queue (plus up to one poll interval).
  const phases = out.phases;
  const inJob = phases.reduce((a, p) => a + p.seconds, 0);
  timings.add('sbatch-wait', Math.max(0, (Date.now() - submitted) / 1000 - inJob));
  for (const p of phases) timings.add(p.phase, p.seconds);
  return { state, out, cancelled, timedOut };
}

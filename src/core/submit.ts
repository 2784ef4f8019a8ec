// Writing a delivery's job to the cluster and submitting it (and cancelling it): the job script,
// the archive's manifest and the sbatch command, rendered purely, then one round trip
// (cluster/submit.sh, cluster/cancel.sh).
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { basename } from 'node:path';
import { type ImageArchive, legacyManifest } from './archive.js';
import { absoluteBind } from './clusterpath.js';
import { InputError, RemoteCommandError } from './errors.js';
import { renderScript } from './cluster/scripts.js';
import { renderJobScript, sbatchArgv } from './jobscript.js';
import { JOB_FILES, JOB_LINK_PREFIX, type RemotePaths, STORE_LOCK, blobPath, hexOf, publishLockPath } from './layout.js';
import type { Settings } from './settings.js';
import { parseSbatchOutput } from './slurm.js';
import type { Remote } from './remote.js';
import { workspaceFile } from './workspace.js';

const MAX_SMOKE_BYTES = 256 * 1024;

/** The smoke-test script to copy to the cluster (null for smoke-command); a clear error if it is missing. */
export async function readSmokeFile(settings: Settings): Promise<{ name: string; data: Buffer } | null> {
  if (settings.smoke.kind !== 'script') return null;
  const path = settings.smoke.path;
  const file = await workspaceFile('smoke-test', path);
  if (file.size > MAX_SMOKE_BYTES) throw new InputError('smoke-test', `file '${path}' is over 256 KiB: put large files in the image or a bind`);
  return { name: basename(path), data: await readFile(file.path) };
}

/** The docker-archive members, legacy layout, as the job assembles them from the store. */
export function assembly(
  archive: ImageArchive,
  digest: string,
  paths: RemotePaths,
): { id: string; members: { name: string; blob: string }[]; manifest: string } {
  const blob = (d: string) => `${paths.root}/${blobPath(hexOf(d))}`;
  const config = `${hexOf(archive.config.digest)}.json`;
  const layers = archive.layers.map((l) => `${hexOf(l.digest)}/layer.tar`);
  const members = [{ name: config, blob: blob(archive.config.digest) }];
  archive.layers.forEach((l, i) => {
    if (!members.some((m) => m.name === layers[i])) members.push({ name: layers[i], blob: blob(l.digest) });
  });
  return { id: digest, members, manifest: legacyManifest(archive, { config, layers }, archive.repoTags) };
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
  smokeFile: string | null,
  markerToken: string,
): Submission {
  const script = renderJobScript({
    modules: s.modules,
    tmpdir: paths.tmpdir,
    assemble: image ? { storeLock: `${paths.root}/${STORE_LOCK}`, manifest: `${paths.jobDir}/${JOB_FILES.manifest}`, members: image.members } : null,
    sif: paths.sif,
    sifLink: paths.sifLink,
    smoke: s.smoke,
    smokeFile,
    // Bind sources are under the home directory unless absolute, as every path input is.
    binds: s.binds.map((b) => absoluteBind(b, paths.home)),
    gpus: s.gpus,
    statusFile: `${paths.jobDir}/${JOB_FILES.status}`,
    runtime: s.runtime,
    publish:
      s.publish && paths.publishDir
        ? {
            ...s.publish,
            dir: paths.publishDir,
            lock: `${paths.root}/${publishLockPath(paths.publishDir)}`,
            record: {
              image: s.image,
              digest: image?.id ?? null,
              repository: s.publish.provenance.repository,
              commit: s.publish.provenance.commit,
              tag: s.publish.provenance.tag,
            },
          }
        : null,
    markerToken,
    watchdog:
      s.watchdogSeconds === null
        ? null
        : {
            seconds: s.watchdogSeconds,
            heartbeatFile: `${paths.jobDir}/${JOB_FILES.heartbeat}`,
            watchdogFile: `${paths.jobDir}/${JOB_FILES.watchdog}`,
            loginModules: s.loginModules,
          },
  });
  const sbatch = sbatchArgv({
    jobName: s.jobName,
    partition: s.partition,
    gpus: s.gpus,
    cpus: s.buildCpus,
    time: s.time,
    jobDir: paths.jobDir,
    extra: s.sbatchArgs,
    script: `${paths.jobDir}/${JOB_FILES.script}`,
    output: JOB_FILES.output,
  });
  return { script, manifest: image?.manifest ?? null, sbatch };
}

/** cluster/submit.sh for a submission, and what it reads on stdin: the job script, manifest and smoke file. */
export function submitScript(
  s: Pick<Settings, 'group' | 'loginModules' | 'partition' | 'buildCpus'>,
  paths: Pick<RemotePaths, 'jobDir' | 'root' | 'hold'>,
  sub: Submission,
  smoke: { name: string; data: Buffer } | null,
): { script: string; stdin: Buffer } {
  const script = Buffer.from(sub.script);
  const manifest = sub.manifest === null ? null : Buffer.from(sub.manifest);
  return {
    script: renderScript('submit', {
      group: s.group,
      job_dir: paths.jobDir,
      script_size: script.length,
      manifest_size: manifest?.length ?? null,
      smoke_name: smoke?.name ?? null,
      smoke_size: smoke?.data.length ?? null,
      login_modules: s.loginModules,
      sbatch: sub.sbatch,
      partition: s.partition,
      build_cpus: s.buildCpus,
      script_file: JOB_FILES.script,
      manifest_file: JOB_FILES.manifest,
      submitted_file: JOB_FILES.submitted,
      submit_lock: JOB_FILES.submitLock,
      heartbeat_file: JOB_FILES.heartbeat,
      job_link_prefix: `${paths.root}/${JOB_LINK_PREFIX}`,
      hold: paths.hold,
    }),
    stdin: Buffer.concat([script, manifest ?? Buffer.alloc(0), smoke?.data ?? Buffer.alloc(0)]),
  };
}

/**
 * A submission and then, in the same round trip once the job is submitted, `then` (garbage
 * collection, which the run's hold keeps off this job's image), whatever it does: its output
 * (stdout and stderr) comes back after the answer, each line prefixed `then `.
 */
export function submitThen(submit: string, then: string): string {
  return `(\n${submit}\n) || exit\n{\n(\n${then}\n) || echo "failed: exit $?"\n} 2>&1 | sed 's/^/then /'\n`;
}

/** What a submission printed: the job id, the CPUs it asked for, notes for the log, and the output of `then`. Pure. */
export function parseSubmission(out: string, buildCpus: number) {
  const all = out.split('\n');
  const lines = all.filter((l) => !l.startsWith('then '));
  // Only a fresh submission says how many CPUs it asked for; a found one asked for build-cpus or fewer.
  const cpus = Number(lines.find((l) => l.startsWith('cpus '))?.slice(5));
  return {
    jobId: parseSbatchOutput(lines.join('\n')),
    cpus: Number.isSafeInteger(cpus) && cpus > 0 ? cpus : buildCpus,
    notes: lines.filter((l) => l.startsWith('note ')).map((l) => l.slice(5)),
    then: all.filter((l) => l.startsWith('then ')).map((l) => l.slice(5)),
  };
}

/**
 * Write the job's files and submit it, in one round trip, at most once per job directory however
 * often it is retried (cluster/submit.sh), then run `then` (see submitThen) if given. The files go
 * over stdin, never in a command line.
 */
export async function submitJob(
  remote: Remote,
  s: Settings,
  paths: RemotePaths,
  sub: Submission,
  smoke: { name: string; data: Buffer } | null,
  then: string | null = null,
) {
  const { script: submit, stdin } = submitScript(s, paths, sub, smoke);
  const script = then === null ? submit : submitThen(submit, then);
  const out = await remote.run('Submitting the job', script, { feed: { after: 'ready', stream: () => Readable.from([stdin]) } }).catch((e) => {
    if (e instanceof RemoteCommandError && e.code === 75) {
      throw new RemoteCommandError(
        'Submitting the job',
        e.code,
        e.stderr,
        'Slurm does not answer on the cluster: try again once it does (nothing was submitted).',
      );
    }
    if (e instanceof RemoteCommandError) {
      throw new RemoteCommandError('sbatch', e.code, e.stderr, 'Check the partition, gpus, time and sbatch-args inputs against `sinfo -s` on the cluster.');
    }
    throw e;
  });
  return parseSubmission(out, s.buildCpus);
}

/**
 * Which job to cancel: its id, or (the id never learnt) the job directory that names it (null: the
 * delivery got no job directory yet). `hold`: the run's hold, released if no job is found.
 */
export type JobRef = { jobId: string; jobDir?: string } | { jobId?: null; jobDir: string | null; hold?: string };

/**
 * scancel a delivery's job (cluster/cancel.sh); returns the id cancelled, null if the job directory
 * holds no job. A job that has already ended is no failure (its own record keeps the verdict).
 */
export async function cancelJob(remote: Remote, job: JobRef, loginModules: string[]): Promise<string | null> {
  const out = await remote.run(`Cancelling job ${job.jobId ?? `of ${job.jobDir ?? 'a delivery that submitted none'}`}`, cancelScript(job, loginModules));
  return out.trim() || null;
}

export function cancelScript(job: JobRef, loginModules: string[]): string {
  return renderScript('cancel', {
    login_modules: loginModules,
    job_id: job.jobId ?? null,
    job_dir: job.jobDir ?? null,
    hold: 'hold' in job ? (job.hold ?? null) : null,
    submitted_file: JOB_FILES.submitted,
    submit_lock: JOB_FILES.submitLock,
  });
}

// The sbatch job script's parameters (the script is cluster/job.sh) and the sbatch command line. Pure.
import { type ShellValue, renderScript } from './cluster/scripts.js';
import { GPU_QUERY, MIN_DRIVER } from './gpu.js';
import { publishedNames } from './layout.js';
import type { PublishSettings, SmokeTest } from './settings.js';

/** Phases the job reports, in order; each starts with a marker line in the job's output. */
export const JOB_PHASES = ['modules', 'assemble', 'sif-build', 'gpu-check', 'smoke-test', 'publish'] as const;

/**
 * Every line the job prints for its follower rather than as output starts with the marker and this
 * delivery's token: `::riviera:: <token> phase <phase> <epoch seconds>` as a phase starts, and
 * `::riviera:: <token> gpu <where> <kind> <text>` for the GPU report. The token is random per
 * delivery and never in the smoke test's environment, so a line of the job's output (data) cannot
 * pass for one. (Code running as the user can read the job script, so it guards against output
 * that happens to look like a marker, not against the user's own smoke test.)
 */
export const JOB_MARKER = '::riviera::';

export const jobMarker = (token: string) => `${JOB_MARKER} ${token}`;

export type MarkKind = 'phase' | 'gpu';

/**
 * A marker line's kind and what follows it; null for any other line, which is output. `token`
 * null (a job of another run, e.g. `logs --follow`): any token is taken.
 */
export function parseMark(line: string, token: string | null): { kind: MarkKind; rest: string } | null {
  if (!line.startsWith(`${JOB_MARKER} `)) return null;
  const [tok, kind, ...rest] = line.slice(JOB_MARKER.length + 1).split(' ');
  if ((token !== null && tok !== token) || (kind !== 'phase' && kind !== 'gpu')) return null;
  return { kind, rest: rest.join(' ') };
}

export interface JobScriptParams {
  modules: string[];
  /** Directory under which the job makes its own build temp dir (never /tmp). */
  tmpdir: string;
  /** How to assemble the docker-archive from the store; null: test the existing `sif` as it is (given, or reused because the image is unchanged). */
  assemble: Assembly | null;
  /** Content-addressed .sif the job builds (or reuses) and tests. */
  sif: string;
  /** Stable per-image path switched to the new .sif once it is built; null: none. */
  sifLink: string | null;
  smoke: SmokeTest;
  /** Name of the smoke script in the job directory (for kind 'script'). */
  smokeFile: string | null;
  binds: string[];
  gpus: number;
  /** File the job writes `<phase> <exit code>` to when it ends. */
  statusFile: string;
  runtime: 'auto' | 'singularity' | 'apptainer';
  /** Publish the .sif once the smoke test passed; null: not in this run. */
  publish: JobPublish | null;
  /** This delivery's token in the job's marker lines. */
  markerToken: string;
  /** The job cancels itself when nobody has followed it for this long; null: never. */
  watchdog: JobWatchdog | null;
}

export interface JobWatchdog {
  seconds: number;
  /** The file each poll touches, and the job's own file compared with it (same filesystem). */
  heartbeatFile: string;
  watchdogFile: string;
  /** Modules that provide scancel. */
  loginModules: string[];
}

/** How often the job looks at the heartbeat: often enough to end about `seconds` after the last poll. */
export function watchdogEvery(seconds: number): number {
  return Math.min(30, Math.max(2, Math.floor(seconds / 4)));
}

export interface JobPublish extends Omit<PublishSettings, 'provenance'> {
  /** Serialises our publications into dir: a file in remote-dir, where only we write. */
  lock: string;
  /** The provenance record, as JSON; the job adds its id, the date and the .sif's sha256. */
  record: Record<string, string | null>;
}

export interface Assembly {
  /** The store's lock, which keeps garbage collection out while blobs are read. */
  storeLock: string;
  /** manifest.json for the archive (written to the job directory at submission). */
  manifest: string;
  /** Archive members in the legacy layout, each a blob in the store. */
  members: { name: string; blob: string }[];
}

/** argv after the runtime command (singularity or apptainer) for the smoke test. */
export function smokeArgv(p: Pick<JobScriptParams, 'smoke' | 'smokeFile' | 'binds' | 'gpus' | 'sif'>): string[] {
  const opts = [...(p.gpus > 0 ? ['--nv'] : []), ...p.binds.flatMap((b) => ['--bind', b])];
  if (p.smoke.kind === 'script') return ['run', ...opts, p.sif, p.smokeFile ?? ''];
  return ['exec', ...opts, p.sif, ...p.smoke.argv];
}

export function renderJobScript(p: JobScriptParams): string {
  const a = p.assemble;
  return renderScript('job', {
    status_file: p.statusFile,
    marker: jobMarker(p.markerToken),
    modules: p.modules,
    runtime: p.runtime,
    tmpdir: p.tmpdir,
    sif: p.sif,
    sif_link: p.sifLink,
    smoke: smokeArgv(p),
    gpus: p.gpus,
    gpu_query: GPU_QUERY,
    cuda_majors: Object.keys(MIN_DRIVER),
    cuda_min_drivers: Object.values(MIN_DRIVER),
    assemble: a !== null,
    store_lock: a?.storeLock ?? null,
    manifest: a?.manifest ?? null,
    member_names: a?.members.map((m) => m.name) ?? [],
    member_blobs: a?.members.map((m) => m.blob) ?? [],
    ...publishParams(p.publish),
    watchdog: p.watchdog?.seconds ?? null,
    watchdog_every: p.watchdog ? watchdogEvery(p.watchdog.seconds) : null,
    heartbeat_file: p.watchdog?.heartbeatFile ?? null,
    watchdog_file: p.watchdog?.watchdogFile ?? null,
    login_modules: p.watchdog?.loginModules ?? [],
  });
}

/** The publication's parameters; all '' when not publishing in this run. */
function publishParams(p: JobPublish | null): Record<string, ShellValue> {
  const names = p ? publishedNames(p.name, p.version) : null;
  return {
    pub: p?.dir ?? null,
    pub_name: p?.name ?? null,
    pub_name_field: p ? `"name":${JSON.stringify(p.name)},` : null,
    pub_file: names?.sif ?? null,
    pub_record: names?.record ?? null,
    pub_latest: names?.latest ?? null,
    // The record as JSON without its closing brace: the job adds its id, the date and the sha256.
    pub_json: p ? JSON.stringify({ name: p.name, version: p.version, ...p.record }).slice(0, -1) : null,
    pub_mode: p?.mode ?? null,
    pub_lock: p?.lock ?? null,
    pub_group: p?.group ?? null,
    pub_keep: p?.keep ?? null,
  };
}

export interface SbatchParams {
  jobName: string;
  partition: string;
  gpus: number;
  /** CPUs for the job (--cpus-per-task), which the .sif build uses; submit.sh lowers it to the partition's largest node. */
  cpus: number;
  time: string | null;
  jobDir: string;
  /** The job's output file, relative to jobDir. */
  output: string;
  extra: string[];
  script: string;
}

/** The sbatch argv: everything as options on the command line, nothing pasted into #SBATCH lines. */
export function sbatchArgv(p: SbatchParams): string[] {
  return [
    'sbatch',
    '--parsable',
    `--job-name=${p.jobName}`,
    `--partition=${p.partition}`,
    `--cpus-per-task=${p.cpus}`,
    ...(p.gpus > 0 ? [`--gres=gpu:${p.gpus}`] : []),
    ...(p.time ? [`--time=${p.time}`] : []),
    `--chdir=${p.jobDir}`,
    `--output=${p.output}`,
    ...p.extra,
    p.script,
  ];
}

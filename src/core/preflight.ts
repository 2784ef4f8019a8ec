// Preflight: what the cluster says about a delivery's inputs before anything is saved, sent or
// submitted. The facts come from one script on the login node (run inside the first round trip a
// delivery makes anyway, or alone by `doctor`); the checks are pure and say how to fix each failure.
import { renderScript } from './cluster/scripts.js';
import { mib } from './format.js';
import { sbatchArgv } from './jobscript.js';
import { JOB_FILES } from './layout.js';
import { type Partition, parsePartitions, parseTestOnly, slurmDuration, slurmSeconds } from './partitions.js';
import type { Settings } from './settings.js';

/** What preflight needs of the settings. */
export type PreflightSettings = Pick<
  Settings,
  'jobName' | 'partition' | 'gpus' | 'time' | 'sbatchArgs' | 'modules' | 'loginModules' | 'runtime' | 'remoteDir' | 'tmpdir'
>;

/** The job's own sbatch options (as the delivery submits them), to be tried with --test-only. */
export function testOnlyArgv(s: PreflightSettings): string[] {
  const argv = sbatchArgv({
    jobName: s.jobName,
    partition: s.partition,
    gpus: s.gpus,
    // build-cpus is lowered at submission to what a node of the partition has: never a reason to refuse.
    cpus: 1,
    time: s.time,
    jobDir: s.remoteDir,
    output: JOB_FILES.output,
    extra: s.sbatchArgs,
    script: '',
  });
  // No script argument: sbatch reads a stand-in script from stdin.
  return [...argv.slice(0, -1).filter((a) => a !== '--parsable'), '--test-only'];
}

/** The preflight script (cluster/preflight.sh) for these settings. */
export function preflightScript(s: PreflightSettings): string {
  return renderScript('preflight', {
    login_modules: s.loginModules,
    sbatch_test: testOnlyArgv(s),
    modules: s.modules,
    runtime: s.runtime,
    dir_labels: ['remote-dir', 'tmpdir'],
    dir_paths: [s.remoteDir, s.tmpdir],
  });
}

/**
 * The preflight, then `script` in the same round trip, unless the preflight found a directory it
 * cannot write (its exit 10): the preflight's verdict then explains why, not the script's failure.
 */
export function preflightThen(preflight: string, script: string): string {
  return `(\n${preflight}\n) || exit 0\n${script}`;
}

export function wantsOf(s: PreflightSettings, imageBytes: number | null): PreflightWants {
  return { partition: s.partition, gpus: s.gpus, time: s.time, runtime: s.runtime, imageBytes };
}

export interface DirFacts {
  /** The directory, or its nearest existing parent when it does not exist yet. */
  path: string;
  writable: boolean;
  /** Free KiB for the user; null: df could not tell. */
  availKiB: number | null;
  freeInodes: number | null;
  totalInodes: number | null;
}

export interface PreflightFacts {
  /** The login modules loaded (and sbatch was found). */
  slurm: boolean;
  partitions: Partition[];
  testOnly: { code: number; out: string } | null;
  /** Per module: `module is-avail` said it exists. */
  modules: Map<string, boolean>;
  /** Exit code of loading every module in a subshell; null when there are none. */
  moduleLoad: number | null;
  /** Path of the runtime found after loading them; null: none. */
  runtime: string | null;
  dirs: Map<string, DirFacts>;
  /** sacct answers (the cluster has accounting). */
  accounting: boolean;
}

/** The preflight facts of a script's output (`pf ...` lines; other lines belong to the rest of the round trip). */
export function parsePreflight(stdout: string): PreflightFacts | null {
  const scontrol: string[] = [];
  const sinfo: string[] = [];
  const test: string[] = [];
  let testCode: number | null = null;
  const f: PreflightFacts = {
    slurm: false,
    partitions: [],
    testOnly: null,
    modules: new Map(),
    moduleLoad: null,
    runtime: null,
    dirs: new Map(),
    accounting: false,
  };
  let seen = false;
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('pf ')) continue;
    seen = true;
    const rest = line.slice(3);
    const sp = rest.indexOf(' ');
    const key = sp < 0 ? rest : rest.slice(0, sp);
    const value = sp < 0 ? '' : rest.slice(sp + 1);
    const words = value.split(' ');
    if (key === 'slurm') f.slurm = value === '0';
    else if (key === 'scontrol') scontrol.push(value);
    else if (key === 'sinfo') sinfo.push(value);
    else if (key === 'testonly') test.push(value);
    else if (key === 'testonly-rc') testCode = Number(value);
    else if (key === 'module') f.modules.set(words[0], words[1] === '0');
    else if (key === 'modload') f.moduleLoad = Number(value);
    else if (key === 'runtime') f.runtime = value && value !== '-' ? value : null;
    else if (key === 'sacct') f.accounting = value === '0';
    else if (key === 'dir') {
      const [label, w, avail, ifree, itotal] = words;
      const num = (s: string) => (/^\d+$/.test(s ?? '') ? Number(s) : null);
      f.dirs.set(label, { writable: w === '1', availKiB: num(avail), freeInodes: num(ifree), totalInodes: num(itotal), path: words.slice(5).join(' ') });
    }
  }
  if (!seen) return null;
  f.partitions = parsePartitions(scontrol.join('\n'), sinfo.join('\n'));
  if (testCode !== null) f.testOnly = { code: testCode, out: test.join('\n') };
  return f;
}

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface Check {
  /** Stable name, e.g. `partition`, for --json readers. */
  id: string;
  status: CheckStatus;
  /** What was found. */
  detail: string;
  /** What to do about a warning or failure; '' when it passed. */
  fix: string;
  /** The input the check is about; empty for what only the cluster decides. */
  input: string;
}

/** What preflight checks the facts against: the delivery's settings, and the image's size when known. */
export interface PreflightWants {
  partition: string;
  gpus: number;
  time: string | null;
  runtime: 'auto' | 'singularity' | 'apptainer';
  /** Bytes of the image to deliver; null when unknown (doctor, or an existing .sif). */
  imageBytes: number | null;
}

/** Free inodes below which a build (which unpacks the image's files) may run out: a warning. */
export const LOW_INODES = 100_000;

function describe(p: Partition): string {
  return `${p.name}${p.isDefault ? ' (default)' : ''}: max ${slurmDuration(p.maxTime)}, ${p.gpusPerNode > 0 ? `${p.gpusPerNode} GPU(s) per node` : 'no GPUs'}${p.state !== 'UP' ? `, ${p.state}` : ''}`;
}

/** Every check, in the order a user would fix them. Pure. */
export function evaluatePreflight(f: PreflightFacts, w: PreflightWants): Check[] {
  const checks: Check[] = [];
  const add = (id: string, input: string, status: CheckStatus, detail: string, fix = '') =>
    checks.push({ id, input, status, detail, fix: status === 'pass' ? '' : fix });

  if (!f.slurm) {
    add(
      'slurm',
      'login-modules',
      'fail',
      'sbatch is not on PATH on the login node after loading the login modules.',
      "Set 'login-modules' to the module(s) that provide sbatch, squeue and scancel ('none' if they are on PATH).",
    );
  } else {
    const part = f.partitions.find((p) => p.name === w.partition);
    const offered = f.partitions.map(describe).join('; ') || 'none visible';
    if (!part) {
      add('partition', 'partition', 'fail', `No partition '${w.partition}' on the cluster. It has: ${offered}.`, "Set 'partition' to one of those.");
    } else {
      add(
        'partition',
        'partition',
        part.state === 'UP' ? 'pass' : 'warn',
        describe(part),
        `Partition '${part.name}' is ${part.state}: the job will wait until it is UP.`,
      );
      if (w.gpus > 0) {
        const best = f.partitions.filter((p) => p.gpusPerNode >= w.gpus).map((p) => p.name);
        add(
          'gpus',
          'gpus',
          part.gpusPerNode >= w.gpus ? 'pass' : 'fail',
          part.gpusPerNode >= w.gpus
            ? `${w.gpus} GPU(s) requested; nodes of ${part.name} have up to ${part.gpusPerNode}.`
            : `${w.gpus} GPU(s) requested, but nodes of ${part.name} have at most ${part.gpusPerNode}.`,
          part.gpusPerNode > 0
            ? `Ask for at most ${part.gpusPerNode} ('gpus'), or use a partition with more: ${best.join(', ') || 'none has that many'}.`
            : `Use a GPU partition: ${best.join(', ') || 'none has that many GPUs'}.`,
        );
      }
      const want = w.time === null ? null : slurmSeconds(w.time);
      if (want !== undefined && want !== null) {
        const fits = part.maxTime === null || want <= part.maxTime;
        add(
          'time',
          'time',
          fits ? 'pass' : 'fail',
          `${slurmDuration(want)} requested; ${part.name} allows ${slurmDuration(part.maxTime)}.`,
          `Set 'time' to at most ${slurmDuration(part.maxTime)}, or use a partition with a longer limit.`,
        );
      }
    }
    // With no such partition, sbatch's refusal only says so again.
    if (f.testOnly && part) {
      const t = parseTestOnly(f.testOnly.out, f.testOnly.code);
      add(
        'sbatch',
        'sbatch-args',
        t.accepted ? 'pass' : 'fail',
        t.accepted
          ? `sbatch --test-only accepts the job: ${t.lines.join(' ')}`
          : `sbatch --test-only refuses the job: ${t.lines.join(' ') || `exit ${f.testOnly.code}`}`,
        "Fix what sbatch names above in 'partition', 'gpus', 'time' or 'sbatch-args' (account, qos, memory).",
      );
    }
  }

  const missing = [...f.modules].filter(([, ok]) => !ok).map(([m]) => m);
  if (f.modules.size > 0) {
    add(
      'modules',
      'modules',
      missing.length ? 'fail' : 'pass',
      missing.length ? `No module named ${missing.map((m) => `'${m}'`).join(', ')} on the cluster.` : `All ${f.modules.size} module(s) exist.`,
      "Correct the names in 'modules' (see `module avail` or `module spider NAME` on the cluster).",
    );
  }
  const rtName = w.runtime === 'auto' ? 'apptainer or singularity' : w.runtime;
  if (missing.length === 0) {
    add(
      'runtime',
      'runtime',
      f.runtime ? 'pass' : 'fail',
      f.runtime
        ? `${f.runtime} after loading the modules.`
        : f.moduleLoad
          ? `Loading the modules failed (exit ${f.moduleLoad}).`
          : `No ${rtName} after loading the modules.`,
      f.moduleLoad
        ? "Check that the 'modules' can be loaded together, in that order (`module load ...` on the cluster)."
        : `Add the module that provides ${rtName} to 'modules'.`,
    );
  }

  for (const [label, d] of f.dirs) {
    if (!d.writable) {
      add(
        `${label}-writable`,
        label,
        'fail',
        `${d.path} is not writable.`,
        `Set '${label}' to a directory you can write (relative paths are under your home).`,
      );
      continue;
    }
    const free = d.availKiB === null ? null : d.availKiB * 1024;
    const need = w.imageBytes === null ? null : w.imageBytes * 3;
    const space =
      free === null
        ? { s: 'pass' as const, t: `${d.path} is writable (free space unknown).` }
        : need !== null && free < w.imageBytes!
          ? { s: 'fail' as const, t: `${d.path} has ${mib(free)} free, less than the ${mib(w.imageBytes!)} image.` }
          : need !== null && free < need
            ? { s: 'warn' as const, t: `${d.path} has ${mib(free)} free; building may take about 3× the ${mib(w.imageBytes!)} image (${mib(need)}).` }
            : { s: 'pass' as const, t: `${d.path} is writable, ${mib(free)} free.` };
    add(
      `${label}-space`,
      label,
      space.s,
      space.t,
      `Free space under ${d.path} (or point '${label}' at a scratch file system with room for about 3× the image).`,
    );
    if (d.freeInodes !== null && d.totalInodes) {
      const low = d.freeInodes < LOW_INODES;
      add(
        `${label}-inodes`,
        label,
        low ? 'warn' : 'pass',
        `${d.freeInodes} free inodes under ${d.path}.`,
        `Delete files under ${d.path} or use another file system: unpacking an image needs one inode per file.`,
      );
    }
  }
  add(
    'accounting',
    '',
    'pass',
    f.accounting ? 'sacct answers: the verdict also reads Slurm accounting.' : 'No Slurm accounting (sacct): the verdict reads the job’s own status file.',
  );
  return checks;
}

/** One line per failed check, naming the input and what the cluster offers. */
export function preflightFailureMessage(checks: Check[]): string | null {
  const failed = checks.filter((c) => c.status === 'fail');
  if (failed.length === 0) return null;
  return failed.map((c) => `Preflight '${c.input}': ${c.detail} ${c.fix}`).join('\n');
}

// What Slurm's accounting says about a finished job, where the cluster has it:
// `sacct -j ID -D -P -n -o JobID,State,ExitCode,DerivedExitCode,Reason,NodeList`. Pure.
import type { Verdict } from './slurm.js';

export const SACCT_FIELDS = 'JobID,State,ExitCode,DerivedExitCode,Reason,NodeList';

export interface SacctRow {
  /** `123`, `123.batch`, `123.extern`, `123.0`. */
  jobId: string;
  /** Base state: `CANCELLED by 1000` gives CANCELLED. */
  state: string;
  /** uid in `CANCELLED by <uid>`. */
  cancelledBy: string | null;
  exit: number | null;
  signal: number | null;
  derivedExit: number | null;
  derivedSignal: number | null;
  reason: string;
  nodes: string;
}

function exitPair(s: string | undefined): [number | null, number | null] {
  const m = /^(\d+):(\d+)$/.exec((s ?? '').trim());
  return m ? [Number(m[1]), Number(m[2])] : [null, null];
}

/** Rows of parsable sacct output; lines that are not rows (warnings, blank) are skipped. */
export function parseSacct(out: string): SacctRow[] {
  const rows: SacctRow[] = [];
  for (const line of out.split('\n')) {
    const f = line.trim().split('|');
    if (f.length < 6 || !/^\d+(_\d+)?(\.[A-Za-z0-9_+-]+)?$/.test(f[0])) continue;
    const [state, ...by] = f[1].trim().split(/\s+/);
    const [exit, signal] = exitPair(f[2]);
    const [derivedExit, derivedSignal] = exitPair(f[3]);
    rows.push({
      jobId: f[0],
      state: state.replace(/\+$/, ''),
      cancelledBy: by[0] === 'by' && by[1] ? by[1] : null,
      exit,
      signal,
      derivedExit,
      derivedSignal,
      reason: f[4] === 'None' ? '' : f[4],
      nodes: f[5] === 'None assigned' ? '' : f[5],
    });
  }
  return rows;
}

const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'PREEMPTED', 'BOOT_FAIL', 'DEADLINE', 'OUT_OF_MEMORY', 'REQUEUED']);

export interface Accounting {
  /** The job's own (allocation) row of its last run. */
  job: SacctRow;
  /** Steps of the last run (`.batch`, `.extern`, numbered). */
  steps: SacctRow[];
  /** Earlier runs of a requeued job. */
  requeues: number;
  /** Why the job must not pass, whatever its own status file says; null: nothing against it. */
  failure: { state: string; message: string } | null;
  warnings: string[];
}

/**
 * Read the rows of one job. With -D, sacct lists every run of a requeued job, oldest first: the
 * last row of each id is its last run. null: the job is not (yet) recorded with a final state, as
 * happens for a few seconds after it ends (ask again).
 */
export function readAccounting(rows: SacctRow[], jobId: string): Accounting | null {
  const own = rows.filter((r) => r.jobId === jobId);
  const job = own.at(-1);
  if (!job || !FINAL.has(job.state)) return null;
  const last = new Map<string, SacctRow>();
  for (const r of rows) if (r.jobId.startsWith(`${jobId}.`)) last.set(r.jobId, r);
  const steps = [...last.values()];
  const warnings: string[] = [];
  const requeues = own.length - 1;
  if (requeues > 0)
    warnings.push(
      `Job ${jobId} was requeued ${requeues} time(s) (${own
        .slice(0, -1)
        .map((r) => r.state)
        .join(', ')}); the result is that of its last run.`,
    );

  const oom = steps.filter((s) => s.state === 'OUT_OF_MEMORY');
  const oomReal = oom.filter((s) => !s.jobId.endsWith('.extern'));
  let failure: Accounting['failure'] = null;
  const signalled = [job, ...steps].find((r) => r.signal !== null && r.signal !== 0 && !r.jobId.endsWith('.extern'));
  if (job.state === 'OUT_OF_MEMORY' || oomReal.length > 0) {
    const where = oomReal.length > 0 ? oomReal.map((s) => s.jobId).join(', ') : jobId;
    failure = {
      state: 'OUT_OF_MEMORY',
      message: `Slurm's accounting records ${where} as OUT_OF_MEMORY (exit ${fmtExit(job)}): the job ran out of memory, whatever its own exit status. Ask for more with sbatch-args, e.g. '--mem=32G'.`,
    };
  } else if (job.state === 'CANCELLED') {
    failure = { state: 'CANCELLED', message: `Slurm's accounting records job ${jobId} as cancelled${job.cancelledBy ? ` by uid ${job.cancelledBy}` : ''}.` };
  } else if (job.state !== 'COMPLETED' && job.state !== 'REQUEUED') {
    failure = {
      state: job.state,
      message: `Slurm's accounting records job ${jobId} as ${job.state} (exit ${fmtExit(job)}${job.reason ? `, ${job.reason}` : ''}).`,
    };
  } else if (signalled) {
    failure = {
      state: 'FAILED',
      message: `Slurm's accounting records ${signalled.jobId} as killed by signal ${signalled.signal} (exit ${fmtExit(signalled)}).`,
    };
  }
  if (oom.length > 0 && oomReal.length === 0) {
    warnings.push(
      `Slurm's accounting records only ${jobId}.extern as OUT_OF_MEMORY (before Slurm 22.05 this was often misreported); the job's own steps were not.`,
    );
  }
  return { job, steps, requeues, failure, warnings };
}

function fmtExit(r: SacctRow): string {
  return r.exit === null ? '?' : `${r.exit}:${r.signal ?? 0}`;
}

/**
 * The verdict from the job's own status file and Slurm's last state, corrected by accounting: an
 * out-of-memory kill always fails (an OOM can end with exit 0); a job that looks passed but that
 * accounting records as failed, cancelled or killed by a signal fails; a lost job gets the state
 * accounting knows. Otherwise the verdict stands.
 */
export function applyAccounting(v: Verdict, a: Accounting | null): Verdict {
  const f = a?.failure;
  if (!f) return v;
  const failed = { ok: false as const, state: f.state, exitCode: v.exitCode, interrupted: f.state !== 'FAILED', message: f.message };
  if (f.state === 'OUT_OF_MEMORY' || v.ok || v.state === 'LOST') return failed;
  return v;
}

/** One line for the log: what accounting recorded of the job and its steps. */
export function describeAccounting(a: Accounting): string {
  const row = (r: SacctRow) => `${r.jobId} ${r.state}${r.cancelledBy ? ` by ${r.cancelledBy}` : ''} ${r.exit ?? '?'}:${r.signal ?? 0}`;
  return `Slurm accounting: ${[a.job, ...a.steps].map(row).join(', ')}${a.job.nodes ? ` on ${a.job.nodes}` : ''}.`;
}

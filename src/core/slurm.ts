// Reading what Slurm says: sbatch's job id, squeue's state line, and what a final state means.
// No sacct: many clusters (and the stand-in) have no accounting database.

/** A Slurm job id: a number, or an array job's `ID_TASK`. */
export function isJobId(s: string): boolean {
  return /^\d+(_\d+)?$/.test(s);
}

/** `sbatch --parsable` prints `jobid` or `jobid;cluster`. */
export function parseSbatchOutput(out: string): string {
  const line = out.trim().split('\n').pop() ?? '';
  const id = line.split(';')[0].trim();
  if (!isJobId(id)) throw new Error(`sbatch printed no job id: ${JSON.stringify(out.trim().slice(0, 200))}`);
  return id;
}

export interface SqueueInfo {
  /** Base state (flags such as COMPLETING are reported as-is and are not final). */
  state: string;
  reason: string;
  nodes: string;
}

/** One line of `squeue -h -t all -j ID -o '%T|%r|%N'`; null when Slurm no longer knows the job. */
export function parseSqueueLine(line: string): SqueueInfo | null {
  const t = line.trim();
  if (!t || t === 'UNKNOWN') return null;
  const [state, reason = '', nodes = ''] = t.split('|');
  if (!/^[A-Z_]+$/.test(state)) return null;
  return { state, reason: reason === '(null)' || reason === 'None' ? '' : reason, nodes: nodes === '(null)' ? '' : nodes };
}

/** What the poll learnt from Slurm about the job. */
export type SlurmAnswer =
  /** Slurm lists the job. */
  | { kind: 'listed'; info: SqueueInfo }
  /** Slurm answered, and no longer knows the job (ended and purged, or never there). */
  | { kind: 'unknown' }
  /** Slurm did not answer (controller down, restarting or overloaded): nothing is known. */
  | { kind: 'silent'; message: string };

/**
 * The poll's Slurm line: `OK <squeue line>` (the line empty when squeue listed nothing), or
 * `ERR <squeue's error>` when squeue failed: `Invalid job id specified` is Slurm saying it does not
 * know the job; anything else (`Unable to contact slurm controller`, `Socket timed out`, ...) is
 * Slurm not answering.
 */
export function parseSlurmAnswer(line: string): SlurmAnswer {
  const t = line.trim();
  if (t.startsWith('ERR')) {
    const message = t.slice(3).trim() || 'squeue failed without a message';
    return /Invalid job id specified/i.test(message) ? { kind: 'unknown' } : { kind: 'silent', message };
  }
  const info = parseSqueueLine(t.replace(/^OK\b/, ''));
  return info ? { kind: 'listed', info } : { kind: 'unknown' };
}

const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'PREEMPTED', 'BOOT_FAIL', 'DEADLINE', 'OUT_OF_MEMORY']);

export function isFinalState(state: string): boolean {
  return FINAL.has(state);
}

/** The status file the job writes: `<phase> <exit code>`. */
export interface JobStatus {
  phase: string;
  code: number;
}

export function parseStatusLine(line: string): JobStatus | null {
  const m = /^([a-z-]+) (\d+)$/.exec(line.trim());
  return m ? { phase: m[1], code: Number(m[2]) } : null;
}

export type Verdict =
  { ok: true; state: 'COMPLETED'; exitCode: 0 } | { ok: false; state: string; exitCode: number | null; interrupted: boolean; message: string };

/**
 * What a finished job means. `state` is the last state Slurm reported (null if the record was gone
 * before we saw a final one); `status` is what the job script recorded itself.
 */
export function judgeJob(state: string | null, status: JobStatus | null): Verdict {
  const s = state && isFinalState(state) ? state : null;
  const interruptions: Record<string, string> = {
    CANCELLED: 'The job was cancelled (scancel, or by an administrator). Nothing to fix if that was intended; otherwise re-run.',
    TIMEOUT: "The job reached its time limit. Raise the 'time' input (the partition's maximum is in `sinfo -s`).",
    OUT_OF_MEMORY: "The job ran out of memory. Ask for more with sbatch-args, e.g. '--mem=32G'.",
    NODE_FAIL: 'The node running the job failed. Re-run; if it repeats, tell the cluster administrators.',
    BOOT_FAIL: 'The node could not be booted for the job. Re-run; if it repeats, tell the cluster administrators.',
    PREEMPTED: 'The job was preempted by a higher-priority job. Re-run, or use a partition without preemption.',
    DEADLINE: 'The job could not finish before its deadline.',
  };
  if (s && interruptions[s]) {
    return { ok: false, state: s, exitCode: status?.code ?? null, interrupted: true, message: `Job ${s}: ${interruptions[s]}` };
  }
  // Slurm's word first: the status file sits where the container can write it.
  if (s === 'FAILED' && status?.code === 0) {
    return {
      ok: false,
      state: 'FAILED',
      exitCode: null,
      interrupted: false,
      message: `Slurm reports the job FAILED, although its status file says ${status.phase} ended with 0 (something in the job overwrote it, or the script failed after writing it): see the job output above.`,
    };
  }
  if (status) {
    if (status.phase === 'smoke-test' && status.code === 0) return { ok: true, state: 'COMPLETED', exitCode: 0 };
    if (status.code === 143 && s !== 'FAILED') {
      return { ok: false, state: s ?? 'CANCELLED', exitCode: 143, interrupted: true, message: `Job was terminated by a signal during ${status.phase}.` };
    }
    const what =
      status.phase === 'smoke-test'
        ? `The smoke test exited with code ${status.code}: see its output above.`
        : status.phase === 'sif-build'
          ? `Building the .sif failed (exit ${status.code}): see the singularity output above.`
          : status.phase === 'publish'
            ? `The smoke test passed, but publishing the .sif failed (exit ${status.code}): see the job output above; check the publish-dir permissions.`
            : status.phase === 'assemble'
              ? `Assembling the image archive from the store on the cluster failed (exit ${status.code}): see the job output above; re-running sends any missing blob again.`
              : `The job failed while loading modules (exit ${status.code}): check the 'modules' input against 'module avail'.`;
    return { ok: false, state: 'FAILED', exitCode: status.code, interrupted: false, message: what };
  }
  return {
    ok: false,
    state: s ?? 'LOST',
    exitCode: null,
    interrupted: true,
    message:
      'The job ended without recording a result: it was killed (SIGKILL, node failure or out of memory) before its script could finish. ' +
      'Check `scontrol show job` on the cluster soon after, or re-run.',
  };
}

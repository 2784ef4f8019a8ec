// Polling a submitted job: one round trip per poll (cluster/poll.sh) asks Slurm for the state,
// reads the job's own status file and the output written since the last poll; here are its reply's
// parser, the output stream and the fold of polls into the follow state (follow.ts runs the loop).
// The job never depends on this session.
import { renderScript } from './cluster/scripts.js';
import { parseMark } from './jobscript.js';
import { JOB_FILES } from './layout.js';
import type { Reporter } from './reporter.js';
import { type JobStatus, isFinalState, parseSlurmAnswer, parseStatusLine } from './slurm.js';

/** Most output fetched in one poll; more is fetched at once in the next. */
const CHUNK = 1 << 20;

/** The poll's exit code when the job's directory is not there (no delivery of that job under remote-dir). */
export const NO_JOB_DIR = 98;

/** One poll (cluster/poll.sh): Slurm's state, the job's status line, its output from `offset` on. */
export function pollScript(jobId: string, jobDir: string, offset: number, loginModules: string[], { heartbeat = false } = {}): string {
  return renderScript('poll', {
    login_modules: loginModules,
    job_dir: jobDir,
    job_id: jobId,
    offset,
    chunk: CHUNK,
    heartbeat,
    status_file: JOB_FILES.status,
    output_file: JOB_FILES.output,
    heartbeat_file: JOB_FILES.heartbeat,
    no_job_dir: NO_JOB_DIR,
  });
}

export interface Poll {
  squeue: string;
  status: string;
  output: Buffer;
}

/** Split a poll's stdout: two header lines, then raw output bytes. */
export function parsePoll(stdout: Buffer): Poll {
  const nl1 = stdout.indexOf(10);
  const nl2 = nl1 < 0 ? -1 : stdout.indexOf(10, nl1 + 1);
  if (nl2 < 0) throw new Error(`unexpected reply while following the job: ${JSON.stringify(stdout.toString().slice(0, 200))}`);
  return {
    squeue: stdout.subarray(0, nl1).toString('utf8'),
    status: stdout.subarray(nl1 + 1, nl2).toString('utf8'),
    output: stdout.subarray(nl2 + 1),
  };
}

export interface PhaseTiming {
  phase: string;
  /** Seconds, from the job's own clock. */
  seconds: number;
}

/** A phase marker's `<phase> <epoch seconds>`; null if it is not that. */
function phaseMark(rest: string): { phase: string; at: number } | null {
  const fields = rest.split(' ');
  return fields.length === 2 ? { phase: fields[0], at: Number(fields[1]) } : null;
}

/**
 * Turns the job's output stream into log lines: phase markers open a new log group and time the
 * phases; the last lines are kept for the summary. Handles lines split across polls.
 */
export class OutputStream {
  private pending = Buffer.alloc(0);
  private marks: { phase: string; at: number }[] = [];
  readonly tail: string[] = [];
  /** The job's GPU report lines, marker removed (they are shown as a report, not as output). */
  readonly gpu: string[] = [];
  /** The job printed its last marker: all of its output has been read. */
  ended = false;

  /**
   * `token`: the delivery's token in the job's marker lines; any other line is output. Null (a job
   * of another run, e.g. `logs --follow`): any line shaped like a marker is one.
   */
  constructor(
    private readonly reporter: Reporter,
    private readonly tailLines = 30,
    private readonly token: string | null = null,
  ) {}

  push(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    const lines: string[] = [];
    let nl: number;
    while ((nl = this.pending.indexOf(10)) >= 0) {
      lines.push(this.pending.subarray(0, nl).toString('utf8'));
      this.pending = this.pending.subarray(nl + 1);
    }
    this.lines(lines);
  }

  /** Flush a last line without a newline. */
  end(): void {
    if (this.pending.length > 0) this.lines([this.pending.toString('utf8')]);
    this.pending = Buffer.alloc(0);
  }

  /** Output lines go to the reporter as data, in runs between the phase markers. */
  private lines(lines: string[]): void {
    let run: string[] = [];
    for (const text of lines) {
      const m = parseMark(text, this.token);
      if (m?.kind === 'gpu') {
        this.gpu.push(m.rest);
        continue;
      }
      const mark = m?.kind === 'phase' ? phaseMark(m.rest) : null;
      if (!mark) {
        run.push(text);
        this.tail.push(text);
        if (this.tail.length > this.tailLines) this.tail.shift();
        continue;
      }
      this.reporter.output(run);
      run = [];
      const { phase } = mark;
      this.marks.push(mark);
      if (phase !== 'end') this.reporter.group(`Job: ${phase}`);
      else {
        this.reporter.endGroup();
        this.ended = true;
      }
    }
    this.reporter.output(run);
  }

  get phases(): PhaseTiming[] {
    return this.marks
      .slice(0, -1)
      .map((m, i) => ({ phase: m.phase, seconds: Math.max(0, this.marks[i + 1].at - m.at) }))
      .filter((p) => p.phase !== 'end' && Number.isFinite(p.seconds));
  }
}

export interface FollowState {
  offset: number;
  /** Last state Slurm reported. */
  state: string | null;
  node: string;
  status: JobStatus | null;
  /** Consecutive polls in which Slurm did not know the job and no status file existed. */
  unknownPolls: number;
  /** Since when (ms since the epoch) Slurm has not answered; null while it answers. */
  silentSince: number | null;
}

export function initialFollowState(): FollowState {
  return { offset: 0, state: null, node: '', status: null, unknownPolls: 0, silentSince: null };
}

/** Polls in which Slurm answered without knowing the job, and it left no status, before it counts as lost. */
const LOST_AFTER = 5;

/**
 * Fold one poll into the follow state; returns whether the job has ended. Pure, apart from
 * reporting state changes and pushing output.
 */
export function applyPoll(s: FollowState, poll: Poll, out: OutputStream, reporter: Reporter, jobId: string, now = Date.now()): boolean {
  out.push(poll.output);
  s.offset += poll.output.length;
  s.status = parseStatusLine(poll.status) ?? s.status;
  const answer = parseSlurmAnswer(poll.squeue);
  if (answer.kind === 'silent') {
    // Nothing is known of the job meanwhile (it runs on without the controller): keep following.
    if (s.silentSince === null) {
      s.silentSince = now;
      reporter.warning(`Slurm does not answer (${answer.message}); still following job ${jobId}, which runs on without the controller.`);
    }
    return false;
  }
  if (s.silentSince !== null) {
    reporter.info(`Slurm answers again after ${Math.round((now - s.silentSince) / 1000)} s.`);
    s.silentSince = null;
  }
  if (answer.kind === 'listed') {
    const info = answer.info;
    s.unknownPolls = 0;
    if (info.nodes) s.node = info.nodes;
    if (info.state !== s.state) {
      const why = info.state === 'PENDING' && info.reason ? ` (${info.reason})` : '';
      const where = info.state === 'RUNNING' && info.nodes ? ` on ${info.nodes}` : '';
      reporter.info(`Job ${jobId}: ${info.state}${where}${why}`);
      s.state = info.state;
    }
    // All output was written before the job ended, so this poll's output is complete.
    return isFinalState(info.state) && poll.output.length < CHUNK;
  }
  // Slurm answered and no longer knows the job: it has ended once its own status and last marker are in.
  if (s.status && out.ended && poll.output.length < CHUNK) return true;
  s.unknownPolls++;
  return s.unknownPolls >= LOST_AFTER;
}

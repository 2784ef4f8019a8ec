// Following a submitted job to its end: poll (one round trip each, surviving dropped connections),
// stream its output, cancel it on abort or timeout, and time its phases.
import { JobInterruptedError, RemoteCommandError } from './errors.js';
import { type FollowState, OutputStream, applyPoll, initialFollowState, parsePoll, pollScript } from './poll.js';
import type { Reporter } from './reporter.js';
import type { Session } from './session.js';
import type { Settings } from './settings.js';
import { cancelJob } from './submit.js';
import type { Timings } from './timings.js';

export interface FollowOptions {
  /** Aborting cancels the job. */
  signal?: AbortSignal;
  /** Most milliseconds between polls (default 2000). */
  pollMs?: number;
  /** The delivery's token in the job's marker lines; unset: any marker-shaped line is one. */
  markerToken?: string;
  /** Tell the job's watchdog it is followed (every poll touches its heartbeat file). */
  heartbeat?: boolean;
}

/** Between polls while Slurm does not answer (each failing squeue already takes seconds). */
const SILENT_POLL_MS = 10_000;
/**
 * The longest wait between polls while the job is queued: a queue wait lasts minutes to hours, and
 * sites ask their users not to run squeue every few seconds all that time.
 */
const QUEUED_POLL_MS = 15_000;

/** How long scancel is retried while Slurm does not answer, before the follower gives up on the job. */
const CANCEL_TRIES_MS = 5 * 60_000;

/**
 * How long to wait before the next poll, after `polls` of them. Pure. Quickly at first (short jobs
 * end in seconds), then every `pollMs`; gently while Slurm does not answer; while the job is queued
 * slower and slower, up to QUEUED_POLL_MS, yet often enough that a job's watchdog finds its heartbeat
 * fresh when it starts (a third of `watchdogSeconds`; undefined: not known, so no slower than
 * `pollMs`; null: the job has no watchdog).
 */
export function pollWait(polls: number, state: Pick<FollowState, 'state' | 'silentSince'>, pollMs: number, watchdogSeconds?: number | null): number {
  if (state.silentSince !== null) return SILENT_POLL_MS;
  let cap = pollMs;
  if (state.state === 'PENDING' && watchdogSeconds !== undefined)
    cap = Math.max(pollMs, watchdogSeconds === null ? QUEUED_POLL_MS : Math.min(QUEUED_POLL_MS, (watchdogSeconds * 1000) / 3));
  return Math.min(cap, 250 * 2 ** Math.floor(polls / 2));
}

/** Sleep, cut short by an abort; the abort listener goes with the timer, or they pile up poll after poll. */
export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Follow a job to its end, streaming its output; used by deliveries and by `logs --follow`. */
export async function followJob(
  session: Session,
  s: Pick<Settings, 'loginModules' | 'timeoutSeconds'> & Partial<Pick<Settings, 'watchdogSeconds'>>,
  jobId: string,
  jobDir: string,
  reporter: Reporter,
  hooks: FollowOptions,
  timings?: Timings,
) {
  const state = initialFollowState();
  const out = new OutputStream(reporter, undefined, hooks.markerToken ?? null);
  const submitted = Date.now();
  const deadline = submitted + s.timeoutSeconds * 1000;
  let stopping: 'cancelled' | 'timedOut' | null = null;
  let stoppedAt = 0;
  let cancelSent = false;
  let polls = 0;
  for (;;) {
    if (!stopping && (hooks.signal?.aborted || Date.now() > deadline)) {
      stopping = hooks.signal?.aborted ? 'cancelled' : 'timedOut';
      stoppedAt = Date.now();
      reporter.warning(`${stopping === 'cancelled' ? 'Cancelled' : 'Timed out'}: cancelling job ${jobId}.`);
    }
    if (stopping && !cancelSent) {
      // Never give up on a job without cancelling it: while Slurm does not answer, try at every poll.
      try {
        await session.retry('Cancelling', (r) => cancelJob(r, { jobId }, s.loginModules));
        cancelSent = true;
      } catch (e) {
        if (!(e instanceof RemoteCommandError)) throw e;
        const waited = Math.round((Date.now() - stoppedAt) / 1000);
        if (waited * 1000 > CANCEL_TRIES_MS) {
          throw new JobInterruptedError(
            `Could not cancel job ${jobId}: scancel failed for ${waited} s (${e.stderr.trim().split('\n').pop()}). It was ${state.state ?? 'not yet seen'} when Slurm last answered.`,
            `Cancel it by hand once Slurm answers: scancel ${jobId}.`,
          );
        }
        reporter.warning(`scancel ${jobId} failed (${e.stderr.trim().split('\n').pop()}); trying again.`);
      }
    }
    const r = await session.retry('Following the job', (remote) =>
      remote.exec(pollScript(jobId, jobDir, state.offset, s.loginModules, { heartbeat: !!hooks.heartbeat })),
    );
    if (r.code !== 0) throw new RemoteCommandError('Following the job', r.code, r.stderr.toString());
    const done = applyPoll(state, parsePoll(r.stdout), out, reporter, jobId);
    if (done) break;
    const wait = pollWait(polls++, state, hooks.pollMs ?? 2000, hooks.heartbeat ? s.watchdogSeconds : null);
    await sleep(wait, stopping ? undefined : hooks.signal);
  }
  out.end();
  reporter.endGroup();
  // The job's phases are timed by its own clock; the rest of the job's wall time, as seen from here,
  // is the wait in the queue (plus up to one poll interval).
  const phases = out.phases;
  const inJob = phases.reduce((a, p) => a + p.seconds, 0);
  timings?.add('sbatch-wait', Math.max(0, (Date.now() - submitted) / 1000 - inJob));
  for (const p of phases) timings?.add(p.phase, p.seconds);
  return { state, out, cancelled: stopping === 'cancelled', timedOut: stopping === 'timedOut' };
}

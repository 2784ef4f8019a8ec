// A delivered job, found again by its Slurm id through the jobs/job-ID link its delivery made: its
// state and result, its output, cancelling it. The CLI's status, logs and cancel and the action's
// post step run these, over the same poll, verdict and scancel as a delivery.
import { displayPath } from './clusterpath.js';
import { ConnectionError, InputError, RemoteCommandError } from './errors.js';
import { JOB_FILES, jobLinkPath } from './layout.js';
import { NO_JOB_DIR, parsePoll, pollScript } from './poll.js';
import { shq } from './quote.js';
import type { Reporter } from './reporter.js';
import { type RetryPolicy, Session } from './session.js';
import type { ConnectionSettings } from './settings.js';
import { isFinalState, isJobId, judgeJob, parseSlurmAnswer, parseStatusLine } from './slurm.js';
import { type JobRef, cancelJob } from './submit.js';
import { followJob } from './follow.js';

type Where = Pick<ConnectionSettings, 'remoteDir' | 'loginModules'>;

/** The job's directory on the cluster, through the link; a clear error for what is not a job id. */
export function jobDirOf(where: Where, jobId: string): string {
  if (!isJobId(jobId)) throw new InputError('JOB', `'${jobId}' is not a Slurm job id`);
  return `${where.remoteDir}/${jobLinkPath(jobId)}`;
}

const noDelivery = (where: Where, jobId: string, what: string) =>
  new InputError('JOB', `no ${what} of job ${jobId} under ${displayPath(where.remoteDir)} on the cluster`);

export interface JobReport {
  jobId: string;
  /** Slurm's state while the job lives; once it ended, the delivery's verdict on it. */
  state: string;
  reason: string | null;
  node: string | null;
  /** The phase the job's script recorded last, and its exit code, once it ended. */
  phase: string | null;
  exitCode: number | null;
}

export async function jobStatus(session: Session, where: Where, jobId: string): Promise<JobReport> {
  const dir = jobDirOf(where, jobId);
  // Past the end of the output: only the state lines come back.
  const r = await session.retry('Reading the job state', (remote) => remote.exec(pollScript(jobId, dir, Number.MAX_SAFE_INTEGER, where.loginModules)));
  if (r.code === NO_JOB_DIR) throw noDelivery(where, jobId, 'delivery');
  if (r.code !== 0) throw new RemoteCommandError('Reading the job state', r.code, r.stderr.toString());
  const poll = parsePoll(r.stdout);
  const answer = parseSlurmAnswer(poll.squeue);
  // Slurm not answering: the state is the job's own record (or UNKNOWN while it runs).
  const info = answer.kind === 'listed' ? answer.info : null;
  const status = parseStatusLine(poll.status);
  const state = info && !isFinalState(info.state) ? info.state : judgeJob(info?.state ?? null, status).state;
  return { jobId, state, reason: info?.reason ?? null, node: info?.nodes ?? null, phase: status?.phase ?? null, exitCode: status?.code ?? null };
}

/** The job's output so far. */
export async function jobOutput(session: Session, where: Where, jobId: string): Promise<Buffer> {
  const dir = jobDirOf(where, jobId);
  const r = await session.retry('Reading the job output', (remote) => remote.exec(`cat -- ${shq(`${dir}/${JOB_FILES.output}`)}`));
  if (r.code !== 0) throw noDelivery(where, jobId, 'output');
  return r.stdout;
}

/** Stream the job's output to `reporter` until the job ends, as a delivery follows it. */
export async function followOutput(session: Session, where: Where, jobId: string, reporter: Reporter): Promise<void> {
  await followJob(session, { loginModules: where.loginModules, timeoutSeconds: 365 * 86400 }, jobId, jobDirOf(where, jobId), reporter, { heartbeat: true });
}

/** Retries for a cancel on the way out: a few quick reconnects, within the caller's time limit. */
const QUICK_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 500, maxDelayMs: 2000 };

/**
 * Cancel a job on a session of its own, within `ms`: for the way out when the delivery's own
 * connection may be busy or gone (the post step, a second Ctrl-C).
 */
export async function cancelOnNewSession(conn: ConnectionSettings, job: JobRef, reporter: Reporter, ms = 20_000): Promise<string | null> {
  const session = new Session(conn, reporter, QUICK_RETRY);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      job.jobId ? cancelDelivered(session, conn, job.jobId) : session.retry('Cancelling', (remote) => cancelJob(remote, job, conn.loginModules)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ConnectionError(`No answer from the cluster within ${ms / 1000} s.`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    session.close();
  }
}

/** scancel the job, reconnecting if the connection drops. */
export async function cancelDelivered(session: Session, where: Where, jobId: string): Promise<string | null> {
  jobDirOf(where, jobId);
  return session.retry('Cancelling', (remote) => cancelJob(remote, { jobId }, where.loginModules));
}

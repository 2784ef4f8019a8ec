// Following a job to its end (the loop a delivery and `logs --follow` run): the real poll script
// against a job directory the test writes as a job would, a stand-in squeue reading the state from
// a file, and a session that can drop: output streamed once, phases grouped and timed, a timeout
// or an abort cancelling the job.
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RemoteCommandError } from '../../src/core/errors.js';
import { jobMarker } from '../../src/core/jobscript.js';
import { Session } from '../../src/core/session.js';
import { Timings } from '../../src/core/timings.js';
import { followJob, pollWait } from '../../src/core/follow.js';
import { FAST_RETRY, LOCAL_TARGET, LocalCluster } from '../helpers/localcluster.js';
import { fakeReporter } from '../helpers/reporter.js';

let cluster: LocalCluster;
let session: Session;
let jobDir: string;
const settings = { loginModules: [], timeoutSeconds: 60 };

beforeEach(() => {
  cluster = new LocalCluster('watch-');
  session = new Session(LOCAL_TARGET, fakeReporter(), FAST_RETRY, cluster.connect);
  jobDir = join(cluster.home, 'rs/jobs/run');
  mkdirSync(jobDir, { recursive: true });
  writeFileSync(join(jobDir, 'job.out'), '');
  // As the real one: a job Slurm has purged is an error, not an empty list.
  cluster.command(
    'squeue',
    `if [ -f "$HOME/squeue.state" ]; then cat "$HOME/squeue.state"; else echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1; fi`,
  );
  // scancel ends the job as Slurm would: the script's trap records 143, Slurm says CANCELLED.
  cluster.command('scancel', `echo "$@" >> "$HOME/scancel.log"; echo 'CANCELLED|None|gpu-01' > "$HOME/squeue.state"; echo 'smoke-test 143' > ${jobDir}/status`);
});
afterEach(() => {
  session.close();
  cluster.remove();
});

const slurm = (state: string) => writeFileSync(join(cluster.home, 'squeue.state'), `${state}\n`);
const write = (text: string) => appendFileSync(join(jobDir, 'job.out'), text);
const marker = (phase: string, at: number) => `${jobMarker('tok')} phase ${phase} ${at}\n`;
const tick = () => new Promise((r) => setTimeout(r, 30));
/** Until a poll started after this call has surely read what was written before it. */
async function polled(): Promise<void> {
  const n = cluster.scripts.length;
  while (cluster.scripts.length < n + 2) await new Promise((r) => setTimeout(r, 5));
}

test('streams the output as the job writes it, grouped by phase, once; ends when the job does', async () => {
  const reporter = fakeReporter();
  const timings = new Timings();
  slurm('PENDING|Priority|');
  const following = followJob(session, settings, '7', jobDir, reporter, { pollMs: 20 }, timings);
  await polled();
  slurm('RUNNING|None|gpu-01');
  write(marker('sif-build', 100) + 'building\n');
  await polled();
  write('half a li');
  await polled();
  write('ne\n' + marker('smoke-test', 103) + 'cuda:0\n' + marker('end', 104.5));
  writeFileSync(join(jobDir, 'status'), 'smoke-test 0\n');
  cluster.dropNext = 1; // a drop on the way: no output lost or repeated
  slurm('COMPLETED|None|gpu-01');
  const r = await following;

  expect(reporter.infos().filter((l) => !l.startsWith('Job 7:'))).toEqual(['building', 'half a line', 'cuda:0']);
  expect(reporter.infos().filter((l) => l.startsWith('Job 7:'))).toEqual(['Job 7: PENDING (Priority)', 'Job 7: RUNNING on gpu-01', 'Job 7: COMPLETED']);
  expect(reporter.of('group')).toEqual(['Job: sif-build', 'Job: smoke-test']);
  expect(r).toMatchObject({ cancelled: false, timedOut: false, state: { state: 'COMPLETED', node: 'gpu-01', status: { phase: 'smoke-test', code: 0 } } });
  expect(r.out.tail).toEqual(['building', 'half a line', 'cuda:0']);
  const phases = Object.fromEntries(timings.list().map((t) => [t.phase, t.seconds]));
  expect(phases).toMatchObject({ 'sif-build': 3, 'smoke-test': 1.5 });
  expect(phases['sbatch-wait']).toBeGreaterThanOrEqual(0);
  expect(cluster.connections.length).toBeGreaterThanOrEqual(1);
});

test('a job Slurm forgot ends once its status and last marker are in', async () => {
  write(marker('smoke-test', 1) + 'done\n' + marker('end', 2));
  writeFileSync(join(jobDir, 'status'), 'smoke-test 0\n');
  const r = await followJob(session, settings, '8', jobDir, fakeReporter(), { pollMs: 10 });
  expect(r.state).toMatchObject({ state: null, status: { phase: 'smoke-test', code: 0 } });
});

test('the timeout cancels the job, then follows it to its end', async () => {
  slurm('RUNNING|None|gpu-01');
  const reporter = fakeReporter();
  const r = await followJob(session, { loginModules: [], timeoutSeconds: 0 }, '9', jobDir, reporter, { pollMs: 10 });
  expect(r).toMatchObject({ timedOut: true, cancelled: false, state: { state: 'CANCELLED' } });
  expect(readFileSync(join(cluster.home, 'scancel.log'), 'utf8')).toBe('9\n');
  expect(reporter.warnings()).toContain('Timed out: cancelling job 9.');
});

test('an abort (Ctrl-C, a cancelled workflow) cancels the job once', async () => {
  slurm('RUNNING|None|gpu-01');
  const controller = new AbortController();
  const following = followJob(session, settings, '10', jobDir, fakeReporter(), { pollMs: 10_000, signal: controller.signal });
  await tick();
  controller.abort();
  const r = await following;
  expect(r).toMatchObject({ cancelled: true, timedOut: false });
  expect(readFileSync(join(cluster.home, 'scancel.log'), 'utf8')).toBe('10\n');
});

test('a poll that fails (no job directory) is an error, not a hang', async () => {
  await expect(followJob(session, settings, '11', join(cluster.home, 'nowhere'), fakeReporter(), { pollMs: 10 })).rejects.toThrow(RemoteCommandError);
});

describe('pollWait', () => {
  const at = (state: string | null, silentSince: number | null = null) => ({ state, silentSince });
  const waits = (n: number, state: ReturnType<typeof at>, watchdog?: number | null) => Array.from({ length: n }, (_, i) => pollWait(i, state, 2000, watchdog));

  test('quick at first, then every pollMs while the job runs', () => {
    expect(waits(10, at('RUNNING'), 600)).toEqual([250, 250, 500, 500, 1000, 1000, 2000, 2000, 2000, 2000]);
  });

  test('a job queued for long is polled every 15 s, not every 2 s; its first seconds in the queue as before', () => {
    const queued = waits(40, at('PENDING'), 600);
    expect(queued.slice(0, 6)).toEqual([250, 250, 500, 500, 1000, 1000]);
    expect(queued.slice(-5)).toEqual([15_000, 15_000, 15_000, 15_000, 15_000]);
    // An hour in the queue: about 240 polls instead of 1,800.
    let t = 0;
    let polls = 0;
    while (t < 3_600_000) t += pollWait(polls++, at('PENDING'), 2000, 600);
    expect(polls).toBeLessThan(260);
  });

  test('no slower than a third of the watchdog, so that a job starting finds its heartbeat fresh', () => {
    expect(pollWait(40, at('PENDING'), 2000, 20)).toBeCloseTo(20_000 / 3);
    expect(pollWait(40, at('PENDING'), 2000, 10)).toBeCloseTo(10_000 / 3);
  });

  test('no watchdog: up to 15 s; a watchdog not known (logs --follow): as fast as pollMs', () => {
    expect(pollWait(40, at('PENDING'), 2000, null)).toBe(15_000);
    expect(pollWait(40, at('PENDING'), 2000, undefined)).toBe(2000);
  });

  test('Slurm not answering: every 10 s, whatever the state', () => {
    expect(pollWait(0, at('PENDING', Date.now()), 2000, 600)).toBe(10_000);
    expect(pollWait(0, at('RUNNING', Date.now()), 2000, 600)).toBe(10_000);
  });
});

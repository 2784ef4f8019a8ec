// A delivered job found again by its id (the CLI's status, logs and cancel; the post step): the
// real poll and scancel scripts, run in a local home with a delivery's jobs/job-ID link and
// stand-in squeue and scancel, over a Session that can lose its connection.
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { cancelDelivered, jobDirOf, jobOutput, jobStatus } from '../../src/core/control.js';
import { InputError } from '../../src/core/errors.js';
import { Session } from '../../src/core/session.js';
import { FAST_RETRY, LOCAL_TARGET, LocalCluster } from '../helpers/localcluster.js';
import { fakeReporter } from '../helpers/reporter.js';

let cluster: LocalCluster;
let session: Session;
const where = { remoteDir: 'rs', loginModules: [] };

beforeEach(() => {
  cluster = new LocalCluster('control-');
  session = new Session(LOCAL_TARGET, fakeReporter(), FAST_RETRY, cluster.connect);
});
afterEach(() => {
  session.close();
  cluster.remove();
});

/** A delivery of job `id`: its directory, the link to it, and what squeue says about it (null: forgotten). */
function delivered(id: string, squeue: string | null, files: Record<string, string> = {}) {
  const dir = join('rs/jobs', `run-${id}`);
  for (const [name, data] of Object.entries(files)) cluster.file(join(dir, name), data);
  cluster.file(join(dir, '.keep'), '');
  symlinkSync(join(cluster.home, dir), join(cluster.home, 'rs/jobs', `job-${id}`));
  cluster.command('squeue', squeue === null ? 'exit 1' : `printf '%s\\n' '${squeue}'`);
}

describe('jobStatus', () => {
  test('a running job: Slurm state, node and reason, no result yet', async () => {
    delivered('41', 'RUNNING|None|gpu-01', { 'job.out': 'started\n' });
    expect(await jobStatus(session, where, '41')).toEqual({ jobId: '41', state: 'RUNNING', reason: '', node: 'gpu-01', phase: null, exitCode: null });
  });

  test.each([
    ['passed, and forgotten by Slurm', null, 'smoke-test 0', 'COMPLETED'],
    ['failed smoke test', 'FAILED|NonZeroExitCode|gpu-01', 'smoke-test 3', 'FAILED'],
    ['killed by scancel', null, 'smoke-test 143', 'CANCELLED'],
    ['timed out (Slurm says so)', 'TIMEOUT|TimeLimit|gpu-01', 'smoke-test 143', 'TIMEOUT'],
    ['gone without a trace', null, '', 'LOST'],
  ])('a finished job reads as a delivery judges it: %s', async (_name, squeue, status, state) => {
    delivered('42', squeue, status ? { status: `${status}\n` } : {});
    expect((await jobStatus(session, where, '42')).state).toBe(state);
  });

  test('no delivery of that job under remote-dir: an InputError naming it', async () => {
    cluster.command('squeue', 'exit 1');
    await expect(jobStatus(session, where, '43')).rejects.toThrow(new InputError('JOB', 'no delivery of job 43 under ~/rs on the cluster'));
  });

  test('survives a dropped connection', async () => {
    delivered('44', 'PENDING|Priority|');
    cluster.dropNext = 1;
    expect(await jobStatus(session, where, '44')).toMatchObject({ state: 'PENDING', reason: 'Priority' });
    expect(cluster.connections).toHaveLength(2);
  });
});

describe('jobOutput', () => {
  test('the whole output, bytes as written', async () => {
    const out = 'line 1\nünïcode ✓\n\x1b[31mred\x1b[0m\n';
    delivered('51', null, { 'job.out': out });
    expect((await jobOutput(session, where, '51')).toString()).toBe(out);
  });

  test('no output: an InputError', async () => {
    delivered('52', null);
    await expect(jobOutput(session, where, '52')).rejects.toThrow("Input 'JOB': no output of job 52 under ~/rs on the cluster");
  });
});

describe('cancelDelivered', () => {
  // No login modules here: this machine's Lmod would put the real Slurm clients first on PATH.
  test('scancels the job by id', async () => {
    cluster.command('scancel', 'printf "%s\\n" "$@" > "$HOME/scancel.args"');
    await cancelDelivered(session, where, '61');
    expect(readFileSync(join(cluster.home, 'scancel.args'), 'utf8')).toBe('61\n');
  });

  test('a failing scancel is an error naming it', async () => {
    // (A job already ended is no failure: cancel.sh lets "Invalid job id specified" pass.)
    cluster.command('scancel', 'echo "scancel: error: Kill job error on job id 62: Access/permission denied" >&2; exit 1');
    await expect(cancelDelivered(session, where, '62')).rejects.toThrow(
      /Cancelling job 62 failed on the cluster \(exit 1\): scancel: error: Kill job error on job id 62: Access\/permission denied/,
    );
  });
});

test.each(['', '12a', '1;rm -rf ~', '../12', '12_', '-1'])('%j is not a job id: refused before anything runs', async (id) => {
  expect(() => jobDirOf(where, id)).toThrow(InputError);
  await expect(jobStatus(session, where, id)).rejects.toThrow(/is not a Slurm job id/);
  await expect(cancelDelivered(session, where, id)).rejects.toThrow(/is not a Slurm job id/);
  expect(cluster.connections).toHaveLength(0);
});

test('array job ids are job ids', () => {
  expect(jobDirOf(where, '123_4')).toBe('rs/jobs/job-123_4');
});

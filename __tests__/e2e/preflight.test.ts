// Preflight against the stand-in: each way the inputs can ask for what the cluster does not offer
// fails the step within seconds, naming the input and what the cluster has, with no image data on
// the wire (byte-counting proxy) and no job submitted. Then doctor and preflight-only, which check
// a setup on their own.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLI,
  CLUSTER_FLAGS,
  CLUSTER_HOME,
  type Proxy,
  STATE_DIR,
  makeDataImageContext,
  requireCluster,
  runStep,
  startProxy,
  uniqueRemoteDir,
  viaProxy,
} from './harness.js';

const IMAGE = `rs-e2e/preflight:${process.pid}`;
/** The image is 4 MiB of random data (incompressible): a few KiB on the wire cannot be any of it. */
const IMAGE_MIB = 4;
let ws: string;
let proxy: Proxy;

beforeAll(async () => {
  await requireCluster();
  ws = makeDataImageContext({ randomMiB: IMAGE_MIB, zerosMiB: 0, seed: 'preflight' });
  execFileSync('docker', ['build', '-q', '-t', IMAGE, ws], { stdio: 'ignore' });
  proxy = await startProxy();
});

afterAll(() => {
  proxy?.stop();
  spawnSync('docker', ['rmi', '-f', IMAGE], { stdio: 'ignore' });
});

/** Jobs Slurm still lists (all states) under a job name. */
function jobsNamed(name: string): string[] {
  return execFileSync('squeue', ['-h', '-t', 'all', '-n', name, '-o', '%i'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

function inputs(extra: Record<string, string>): Record<string, string> {
  return { ...viaProxy(proxy.port), image: IMAGE, build: 'false', 'smoke-test': 'gpu-check.sh', partition: 'short-gpu', gpus: '1', ...extra };
}

describe.each([
  [
    'partition',
    { partition: 'no-such-part' },
    /Preflight 'partition': No partition 'no-such-part' on the cluster\. It has: short-gpu: max 04:00:00, 2 GPU\(s\) per node; day-long-cpu \(default\)/,
  ],
  ['gpus', { gpus: '3' }, /Preflight 'gpus': 3 GPU\(s\) requested, but nodes of short-gpu have at most 2\./],
  ['time', { time: '5:00:00' }, /Preflight 'time': 05:00:00 requested; short-gpu allows 04:00:00\./],
  ['modules', { modules: 'slurm singularity cuda12.2/nosuch' }, /Preflight 'modules': No module named 'cuda12\.2\/nosuch' on the cluster\./],
  ['runtime', { modules: 'slurm cuda12.2/toolkit' }, /Preflight 'runtime': No apptainer or singularity after loading the modules\. Add the module/],
  [
    'sbatch-args',
    { 'sbatch-args': '--constraint=nosuch' },
    /Preflight 'sbatch-args': sbatch --test-only refuses the job: allocation failure: Invalid feature specification/,
  ],
  ['tmpdir', { tmpdir: '/root/rs-preflight/tmp' }, /Preflight 'tmpdir': \/root is not writable\./],
])('a preflight failure: %s', (name, extra, message) => {
  let run: Awaited<ReturnType<typeof runStep>>;
  let up: number;
  const remoteDir = uniqueRemoteDir(`preflight-${name}`);
  const jobName = `rs-preflight-${name}-${process.pid}`;

  beforeAll(async () => {
    const before = proxy.counts().up;
    run = await runStep(inputs({ ...extra, 'remote-dir': remoteDir, 'job-name': jobName }), { workspace: ws });
    up = proxy.counts().up - before;
  });

  test('fails the step with a line naming the input and what the cluster offers', () => {
    expect(run.code).not.toBe(0);
    expect(run.log).toMatch(message);
    expect(run.log).toContain('Nothing was saved, sent or submitted.');
    console.log(`preflight failure (${name}): ${run.seconds.toFixed(1)} s, ${up} bytes up`);
  });

  test('sends no image data, keeps nothing of the save it began, and submits no job', () => {
    expect(up).toBeLessThan(64 * 1024);
    expect(run.log).not.toContain('Saved ');
    // The save begins while preflight runs: it is stopped and its tar removed.
    expect(run.leftInTemp.filter((f) => f.startsWith('riviera-save-'))).toEqual([]);
    expect(run.log).not.toMatch(/Submitted job/);
    expect(jobsNamed(jobName)).toEqual([]);
    const jobs = join(CLUSTER_HOME, remoteDir, 'jobs');
    expect(existsSync(jobs) ? readdirSync(jobs) : []).toEqual([]);
  });
});

describe('preflight-only (the action) and doctor (the CLI)', () => {
  const KEYS = ['--private-key-file', join(STATE_DIR, 'id_ed25519'), '--known-hosts-file', join(STATE_DIR, 'known_hosts')];
  const doctor = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, 'doctor', ...KEYS, ...CLUSTER_FLAGS, ...args], {
      cwd: ws,
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
    });

  test('preflight-only passes a good setup, writes the table to the summary, and delivers nothing', async () => {
    const jobName = `rs-preflight-only-${process.pid}`;
    const before = proxy.counts().up;
    const run = await runStep(inputs({ 'preflight-only': 'true', 'job-name': jobName, 'remote-dir': uniqueRemoteDir('preflight-only') }), { workspace: ws });
    expect(run.log).not.toMatch(/::error::/);
    expect(run.code).toBe(0);
    expect(run.summary).toMatch(/preflight/);
    for (const id of ['connection', 'partition', 'gpus', 'time', 'sbatch', 'modules', 'runtime', 'remote-dir-space', 'tmpdir-space'])
      expect(run.summary).toContain(`<td>${id}</td>`);
    expect(proxy.counts().up - before).toBeLessThan(64 * 1024);
    expect(jobsNamed(jobName)).toEqual([]);
  });

  test('preflight-only fails the step on a failed check', async () => {
    const run = await runStep(inputs({ 'preflight-only': 'true', gpus: '4' }), { workspace: ws });
    expect(run.code).not.toBe(0);
    expect(run.log).toMatch(/::error::Preflight 'gpus': 4 GPU\(s\) requested, but nodes of short-gpu have at most 2\./);
  });

  test('doctor: a table of pass/warn/fail with the fix for each; exit 2 on a failure', () => {
    const good = doctor('--partition', 'short-gpu');
    expect(good.status).toBe(0);
    expect(good.stdout).toMatch(/^pass {2}connection +rivuser@127\.0\.0\.1:2222: host key matches/m);
    expect(good.stdout).toMatch(/^pass {2}runtime +\/opt\/(singularity|apptainer)\/bin\//m);
    const bad = doctor('--partition', 'gpu-huge', '--modules', 'slurm nosuch');
    expect(bad.status).toBe(2);
    expect(bad.stdout).toMatch(/^FAIL {2}partition +No partition 'gpu-huge' on the cluster\. It has: short-gpu/m);
    expect(bad.stdout).toMatch(/^ +fix: Set 'partition' to one of those\./m);
    expect(bad.stdout).toMatch(/^FAIL {2}modules +No module named 'nosuch'/m);
  });

  test('doctor --json: every check with status, input, detail and fix', () => {
    const r = doctor('--gpus', '3', '--json');
    expect(r.status).toBe(2);
    const checks = JSON.parse(r.stdout) as { id: string; status: string; input: string; detail: string; fix: string }[];
    expect(checks.find((c) => c.id === 'gpus')).toEqual({
      id: 'gpus',
      status: 'fail',
      input: 'gpus',
      detail: '3 GPU(s) requested, but nodes of short-gpu have at most 2.',
      fix: expect.stringContaining('at most 2'),
    });
    expect(checks.find((c) => c.id === 'accounting')?.status).toBe('pass');
  });

  test('doctor names a refused host key as a known-hosts failure', () => {
    const r = spawnSync(
      process.execPath,
      [CLI, 'doctor', '--private-key-file', join(STATE_DIR, 'id_ed25519'), '--known-hosts-file', '/dev/null', ...CLUSTER_FLAGS],
      {
        cwd: ws,
        encoding: 'utf8',
        env: { PATH: process.env.PATH, HOME: process.env.HOME },
      },
    );
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/known-hosts/);
  });
});

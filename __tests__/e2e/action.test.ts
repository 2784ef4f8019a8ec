// The bundled action, run as the runner runs it, against the stand-in cluster and the real Docker engine.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLUSTER_HOME,
  activeJobState,
  clusterInputs,
  clusterWorkspace,
  eventually,
  filesUnder,
  gpuCheckInputs,
  runStep,
  singularityCalls,
  startStep,
  uniqueRemoteDir,
} from './harness.js';

const IMAGE = 'rs-e2e/gpucheck:v1';
let ws: string;

beforeAll(async () => {
  ws = await clusterWorkspace();
});

const inputs = (extra: Record<string, string> = {}) => gpuCheckInputs(IMAGE, extra);

// The same delivery over each SSH client: what the job and the cluster show must not differ.
describe.each(['builtin', 'openssh'])('a passing GPU smoke test (ssh-client %s)', (client) => {
  let run: Awaited<ReturnType<typeof runStep>>;
  const remoteDir = uniqueRemoteDir(`pass-${client}`);
  const since = Date.now() / 1000;

  beforeAll(async () => {
    run = await runStep(inputs({ 'remote-dir': remoteDir, 'ssh-client': client }), { workspace: ws });
  });

  test('connects with that client', () => {
    expect(run.log).toContain(`Connected to rivuser@127.0.0.1:2222 with the ${client === 'openssh' ? 'OpenSSH' : 'built-in SSH'} client.`);
  });

  test('succeeds and sets every output', () => {
    expect(run.log).not.toMatch(/::error::/);
    expect(run.code).toBe(0);
    expect(run.outputs['job-state']).toBe('COMPLETED');
    expect(run.outputs['exit-code']).toBe('0');
    expect(run.outputs['job-id']).toMatch(/^\d+$/);
    const id = execFileSync('docker', ['image', 'inspect', '--format', '{{.Id}}', IMAGE], { encoding: 'utf8' }).trim();
    expect(run.outputs['image-digest']).toBe(id);
    expect(run.outputs['sif-path']).toBe(`${CLUSTER_HOME}/${remoteDir}/sif/${id.slice(7)}.sif`);
    expect(statSync(run.outputs['sif-path']).size).toBeGreaterThan(1000);
    expect(Number(run.outputs['bytes-total'])).toBeGreaterThan(1_000_000);
  });

  test("streams the job's output into grouped log sections", () => {
    expect(run.log).toContain('::group::Job: sif-build');
    expect(run.log).toContain('::group::Job: smoke-test');
    expect(run.log).toMatch(/Output tensor device: cuda:0/);
    expect(run.log).toMatch(/Job \d+: (PENDING|RUNNING|COMPLETED)/);
  });

  test('saves the job id for post as soon as it is known, and that the job ended', () => {
    expect(run.state.jobId).toBe(run.outputs['job-id']);
    expect(run.state.jobDone).toBe('true');
    expect(run.state.isPost).toBe('true');
  });

  test('writes a job summary with the job, digest, timings and output', () => {
    expect(run.summary).toContain(run.outputs['job-id']);
    expect(run.summary).toContain(run.outputs['image-digest']);
    for (const phase of ['build', 'save', 'upload', 'sbatch-wait', 'sif-build', 'smoke-test', 'total']) expect(run.summary).toContain(phase);
    expect(run.summary).toContain('Output tensor device: cuda:0');
  });

  test('ran singularity in the job with --nv, modules loaded and temp dirs off /tmp', () => {
    const calls = singularityCalls(since).filter((c) => c.SLURM_JOB_ID === run.outputs['job-id']);
    const build = calls.find((c) => c.argv[0] === 'build');
    const smoke = calls.find((c) => c.argv[0] === 'run');
    expect(build?.argv.at(-1)).toMatch(/^docker-archive:\/home\/rivuser\/.+\.tar$/);
    for (const v of [build!.TMPDIR, build!.SINGULARITY_TMPDIR, build!.APPTAINER_TMPDIR]) expect(v).toMatch(new RegExp(`^${CLUSTER_HOME}/${remoteDir}/tmp/`));
    expect(smoke?.argv).toEqual(['run', '--nv', run.outputs['sif-path'], 'gpu-check.sh']);
    // All five are loaded in order; Lmod keeps one version per name, so of cuda12.2/* only the last stays.
    expect(readFileSync(`${smoke!.cwd}/job.sh`, 'utf8')).toContain('\nmodules=(slurm singularity cuda12.2/blas cuda12.2/fft cuda12.2/toolkit)\n');
    expect(smoke?.LOADEDMODULES?.split(':')).toEqual(['slurm', 'singularity', 'cuda12.2/toolkit']);
  });

  test('leaves no partial or temporary files, and keeps the remote dir private', () => {
    const files = filesUnder(`${CLUSTER_HOME}/${remoteDir}`);
    expect(files.filter((f) => /partial|\.tmp\./.test(f))).toEqual([]);
    expect(readdirSync(`${CLUSTER_HOME}/${remoteDir}/tmp`)).toEqual([]);
    expect(statSync(`${CLUSTER_HOME}/${remoteDir}`).mode & 0o077).toBe(0);
  });

  test('masks every line of the private key before printing anything, and never prints it', () => {
    const key = clusterInputs()['private-key'];
    const keyLines = key.split('\n').filter((l) => l.trim().length > 0);
    const logLines = run.log.split('\n');
    // The runner consumes ::add-mask:: commands and masks the value everywhere after them.
    const firstOther = logLines.findIndex((l) => !l.startsWith('::add-mask::'));
    const masks = new Set(logLines.slice(0, firstOther).map((l) => l.slice('::add-mask::'.length)));
    for (const line of keyLines) expect(masks.has(line)).toBe(true);
    const printed = logLines.slice(firstOther).join('\n');
    for (const line of keyLines.filter((l) => l.length > 20)) {
      expect(printed).not.toContain(line);
      expect(run.summary).not.toContain(line);
    }
  });
});

test('a failing smoke test fails the step with its exit code and output', async () => {
  // No GPU requested: the smoke test sees none and exits 3.
  const run = await runStep(inputs({ gpus: '0', 'remote-dir': uniqueRemoteDir('fail'), partition: 'day-long-cpu' }), { workspace: ws });
  expect(run.code).toBe(1);
  expect(run.outputs['job-state']).toBe('FAILED');
  expect(run.outputs['exit-code']).toBe('3');
  expect(run.log).toContain('smoke test failed: no GPU visible in the container');
  expect(run.log).toMatch(/::error::.*smoke test exited with code 3/);
  expect(run.summary).toContain('FAILED');
});

describe('bad inputs fail at once, naming the input, and touch nothing', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ['port abc', { port: 'abc' }, /Input 'port'/],
    ['port 70000', { port: '70000' }, /Input 'port'/],
    ['missing host', { host: '' }, /Input 'host'/],
    ['negative gpus', { gpus: '-1' }, /Input 'gpus'/],
    ['time forever', { time: 'forever' }, /Input 'time'/],
    ['a key that does not parse', { 'private-key': 'not a key' }, /Input 'private-key'/],
    ['a known-hosts line that does not parse', { 'known-hosts': 'nonsense' }, /Input 'known-hosts'/],
    ['modules with shell syntax', { modules: 'slurm;touch /tmp/rs-pwned-mod' }, /Input 'modules'/],
    ['tmpdir under /tmp', { tmpdir: '/tmp/build' }, /Input 'tmpdir'/],
    ['a positional sbatch argument', { 'sbatch-args': '--mem=1G evil.sh' }, /Input 'sbatch-args'/],
    ['a missing smoke-test file', { 'smoke-test': 'nope.py' }, /Input 'smoke-test'/],
    [
      "a smoke-test outside the workspace (the runner's environment)",
      { 'smoke-test': '/proc/self/environ' },
      /Input 'smoke-test': '\/proc\/self\/environ' is outside the workspace/,
    ],
    ['a smoke-test named like a job file', { 'smoke-test': 'status' }, /Input 'smoke-test'/],
    ['grouped short sbatch options hiding -D', { 'sbatch-args': '-HD/tmp' }, /Input 'sbatch-args'/],
  ];
  test.each(cases)('%s', async (_name, bad, message) => {
    const remoteDir = uniqueRemoteDir('bad');
    const image = `rs-e2e/never-built:${process.pid}`;
    const run = await runStep(inputs({ ...bad, image, 'remote-dir': remoteDir }), { workspace: ws });
    expect(run.code).toBe(1);
    expect(run.log).toMatch(message);
    expect(run.seconds).toBeLessThan(3); // node start-up included
    expect(existsSync(`${CLUSTER_HOME}/${remoteDir}`)).toBe(false);
    expect(() => execFileSync('docker', ['image', 'inspect', image], { stdio: 'ignore' })).toThrow();
    expect(run.state.jobId).toBeUndefined();
  });
});

test.each(['builtin', 'openssh'])(
  'ssh-client %s: a host key that is not in known-hosts is refused, with its fingerprint, before anything is written',
  async (client) => {
    const other = execFileSync('bash', ['-c', 'd=$(mktemp -d); ssh-keygen -q -t ed25519 -N "" -f $d/k; cat $d/k.pub'], { encoding: 'utf8' });
    const remoteDir = uniqueRemoteDir('hostkey');
    const run = await runStep(
      inputs({ 'known-hosts': `[127.0.0.1]:2222 ${other.split(' ').slice(0, 2).join(' ')}`, 'remote-dir': remoteDir, 'ssh-client': client }),
      { workspace: ws },
    );
    expect(run.code).toBe(1);
    expect(run.log).toMatch(/Host key refused: the host key of \[127\.0\.0\.1\]:2222 does not match/);
    const real = execFileSync('ssh-keygen', ['-lf', '/var/lib/riviera-acceptance/sshd/host_ed25519.pub'], { encoding: 'utf8' }).split(' ')[1];
    expect(run.log).toContain(real);
    expect(existsSync(`${CLUSTER_HOME}/${remoteDir}`)).toBe(false);
  },
);

test('hostile inputs are passed as plain data and never run, on the cluster or here', async () => {
  const marker = `rs-pwned-${process.pid}`;
  const hostile = (n: number) => `$(touch /tmp/${marker}-${n})\`touch /tmp/${marker}-b${n}\`;touch /tmp/${marker}-c${n}`;
  const script = `smoke ${hostile(0)}.sh`.replace(/\//g, '_');
  writeFileSync(join(ws, script), readFileSync(join(ws, 'gpu-check.sh')));
  const bindSrc = `${CLUSTER_HOME}/e2e/bind ${marker} 'q"`;
  execFileSync('install', ['-d', '-o', 'rivuser', bindSrc]);
  // Path inputs expand $HOME and $USER and refuse any other `$`: they get the rest of the hostile value.
  const hostilePath = (n: number) => hostile(n).replace(/^\$\([^)]*\)/, '');
  const remoteDir = `e2e/hostile ${hostilePath(1)} '"`;
  const run = await runStep(
    inputs({
      'remote-dir': remoteDir,
      tmpdir: `e2e/tmp ${hostilePath(2)}`,
      'smoke-test': script,
      'job-name': `job ${hostile(3)} "'`,
      'sbatch-args': `--comment="${hostile(4)}" '--mem=100M'`,
      binds: `${bindSrc}:/data`,
      time: '10:00',
    }),
    { workspace: ws },
  );
  expect(run.log).not.toMatch(/::error::/);
  expect(run.code).toBe(0);
  expect(run.outputs['job-state']).toBe('COMPLETED');
  expect(existsSync(`${CLUSTER_HOME}/${remoteDir}`)).toBe(true);
  const pwned = execFileSync('bash', ['-c', `find / -xdev -name '${marker}*' -not -path '/proc/*' 2>/dev/null | grep -v "${CLUSTER_HOME}/e2e/" || true`], {
    encoding: 'utf8',
  });
  expect(pwned).toBe('');
  const smoke = singularityCalls(0).find((c) => c.SLURM_JOB_ID === run.outputs['job-id'] && c.argv[0] === 'run');
  expect(smoke?.argv).toEqual(['run', '--nv', '--bind', `${bindSrc}:/data`, run.outputs['sif-path'], script]);
});

describe('cancellation leaves no job behind', () => {
  let slow: string;
  beforeAll(() => {
    slow = join(ws, 'slow.sh');
    writeFileSync(slow, 'echo started-slow-smoke-test\nsleep 300\n');
  });

  test.each(['builtin', 'openssh'])('ssh-client %s: SIGINT (the runner cancelling) scancels the running job', async (client) => {
    const step = startStep(inputs({ 'smoke-test': 'slow.sh', 'remote-dir': uniqueRemoteDir('cancel'), 'ssh-client': client }), { workspace: ws });
    await step.waitFor('started-slow-smoke-test');
    const jobId = /Submitted job (\d+)/.exec(step.log())![1];
    expect(activeJobState(jobId)).toBe('RUNNING');
    step.child.kill('SIGINT');
    const run = await step.done;
    expect(run.code).toBe(1);
    expect(run.outputs['job-state']).toBe('CANCELLED');
    await eventually(() => activeJobState(jobId) === '', 20_000, `job ${jobId} to leave the queue`);
    // Post sees that main already dealt with the job.
    const post = await runStep(inputs(), { workspace: ws, state: run.state });
    expect(post.code).toBe(0);
    expect(post.log).not.toContain('Cancelled job');
  });

  test('when main is killed outright, the post step scancels the job', async () => {
    const step = startStep(inputs({ 'smoke-test': 'slow.sh', 'remote-dir': uniqueRemoteDir('kill') }), { workspace: ws });
    await step.waitFor('started-slow-smoke-test');
    const jobId = /Submitted job (\d+)/.exec(step.log())![1];
    step.child.kill('SIGKILL');
    const main = await step.done;
    expect(main.state.jobId).toBe(jobId);
    expect(main.state.jobDone).toBeUndefined();
    expect(activeJobState(jobId)).toBe('RUNNING');
    const post = await runStep(inputs(), { workspace: ws, state: main.state });
    expect(post.code).toBe(0);
    expect(post.log).toContain(`Cancelled job ${jobId}`);
    await eventually(() => activeJobState(jobId) === '', 20_000, `job ${jobId} to leave the queue`);
  });
});

describe('a job that runs out of time', () => {
  beforeAll(() => writeFileSync(join(ws, 'slow.sh'), 'echo started-slow-smoke-test\nsleep 300\n'));

  test("the action's own timeout cancels the job and says what to raise", async () => {
    const run = await runStep(inputs({ 'smoke-test': 'slow.sh', timeout: '8s', 'remote-dir': uniqueRemoteDir('timeout') }), { workspace: ws });
    expect(run.code).toBe(1);
    expect(run.outputs['job-state']).toBe('TIMEOUT');
    expect(run.log).toMatch(/::error::No result within the timeout \(8 s\); the job was cancelled\. Raise the 'timeout' input/);
    await eventually(() => activeJobState(run.outputs['job-id']) === '', 20_000, 'the job to leave the queue');
  });

  test("Slurm's time limit maps to TIMEOUT, with what to try", async () => {
    const run = await runStep(inputs({ 'smoke-test': 'slow.sh', time: '1', 'remote-dir': uniqueRemoteDir('slurm-timeout') }), { workspace: ws });
    expect(run.code).toBe(1);
    expect(run.outputs['job-state']).toBe('TIMEOUT');
    expect(run.log).toMatch(/::error::Job TIMEOUT: The job reached its time limit\. Raise the 'time' input/);
  }, 240_000);
});

test('a login profile that prints a banner on the cluster does not confuse the delivery', async () => {
  const profile = `${CLUSTER_HOME}/.bash_profile`;
  expect(existsSync(profile)).toBe(false);
  writeFileSync(profile, 'echo "Welcome to Riviera. Quota: 91% used."\n. ~/.profile\n');
  try {
    const run = await runStep(inputs({ 'remote-dir': uniqueRemoteDir('banner') }), { workspace: ws });
    expect(run.log).not.toMatch(/::error::/);
    expect(run.code).toBe(0);
    expect(run.outputs['job-state']).toBe('COMPLETED');
    expect(run.log).toContain('Output tensor device: cuda:0');
  } finally {
    rmSync(profile, { force: true });
  }
});

// Never leave a job behind and never misreport one (issue 13): job and build output as data, other
// login shells, and the job's life when the link, the controller or the runner goes away.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLUSTER_HOME,
  ROOT,
  activeJobState,
  clusterWorkspace,
  eventually,
  makeDataImageContext,
  makeWorkspace,
  gpuCheckInputs,
  runStep,
  singularityCalls,
  startProxy,
  startStep,
  uniqueRemoteDir,
  viaProxy,
} from './harness.js';

const IMAGE = 'rs-e2e/gpucheck:jobs';
let ws: string;

beforeAll(async () => {
  ws = await clusterWorkspace();
});

const inputs = (extra: Record<string, string> = {}) => gpuCheckInputs(IMAGE, extra);

const FORGED = ['::save-state name=jobDone::true', '::set-output name=forged::yes', '::set-output name=job-state::COMPLETED'];

describe('job and build output is data', () => {
  test('workflow commands printed by the build and the job are not honoured; after a hard kill of main, post still cancels', async () => {
    const dir = makeWorkspace();
    const dockerfile = readFileSync(join(dir, 'Dockerfile'), 'utf8');
    writeFileSync(join(dir, 'Dockerfile'), `${dockerfile}RUN echo '::set-output name=built::forged' && echo '::save-state name=built::forged'\n`);
    writeFileSync(join(dir, 'forge.sh'), `${FORGED.map((l) => `echo '${l}'`).join('\n')}\necho forge-printed\nsleep 300\n`);
    const step = startStep(inputs({ image: `rs-e2e/forge:${process.pid}`, 'smoke-test': 'forge.sh', 'remote-dir': uniqueRemoteDir('forge') }), {
      workspace: dir,
    });
    await step.waitFor('forge-printed', 180_000);
    const jobId = /Submitted job (\d+)/.exec(step.log())![1];
    // The lines reached the log as they are...
    expect(step.log()).toContain('::set-output name=built::forged');
    for (const l of FORGED) expect(step.log()).toContain(l);
    step.child.kill('SIGKILL');
    const main = await step.done;
    // ...but the runner (emulated by the harness) set no output and no state from them.
    expect(main.outputs.forged).toBeUndefined();
    expect(main.outputs.built).toBeUndefined();
    expect(main.state.built).toBeUndefined();
    expect(main.outputs['job-state']).toBeUndefined();
    expect(main.state.jobDone).toBeUndefined();
    expect(main.state.jobId).toBe(jobId);
    expect(activeJobState(jobId)).toBe('RUNNING');
    const post = await runStep(inputs(), { workspace: dir, state: main.state });
    expect(post.log).toContain(`Cancelled job ${jobId}`);
    await eventually(() => activeJobState(jobId) === '', 30_000, `job ${jobId} to leave the queue`);
  }, 300_000);
});

describe('a user whose login shell is tcsh', () => {
  test('delivers and passes like anyone else', async () => {
    expect(execFileSync('getent', ['passwd', 'rivtcsh'], { encoding: 'utf8' }).trim()).toMatch(/:\/usr\/bin\/tcsh$/);
    const run = await runStep(inputs({ username: 'rivtcsh', 'remote-dir': uniqueRemoteDir('tcsh') }), { workspace: ws });
    expect(run.log).not.toMatch(/::error::/);
    expect(run.code).toBe(0);
    expect(run.outputs['job-state']).toBe('COMPLETED');
    expect(run.outputs['sif-path']).toMatch(/^\/home\/rivtcsh\//);
    expect(run.log).toContain('Output tensor device: cuda:0');
  }, 300_000);
});

/** Jobs Slurm ran in `jobDir`, from the job completion log (every job that ended, with its work dir). */
function jobsRunIn(jobDir: string): string[] {
  const log = readFileSync('/var/log/slurm/jobcomp.log', 'utf8');
  return log
    .split('\n')
    .filter((l) => l.includes(` WorkDir=${jobDir} `))
    .map((l) => /JobId=(\d+)/.exec(l)![1]);
}

const slurmctldPid = () => {
  try {
    return execFileSync('pgrep', ['-x', 'slurmctld'], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
};

describe('the controller away for longer than a minute', () => {
  afterAll(() => {
    // Put the stand-in back as it was, whatever happened.
    if (!slurmctldPid()) execFileSync('slurmctld');
    execFileSync('bash', [join(ROOT, 'test-cluster/cluster-up.sh')], { stdio: 'ignore' });
  });

  test('the delivery keeps following, says Slurm does not answer, and reports the real result', async () => {
    writeFileSync(join(ws, 'long.sh'), 'echo long-started\nsleep 150\necho long-done\n' + readFileSync(join(ws, 'gpu-check.sh'), 'utf8'));
    const step = startStep(inputs({ 'smoke-test': 'long.sh', timeout: '15m', 'remote-dir': uniqueRemoteDir('outage') }), { workspace: ws });
    await step.waitFor('long-started', 180_000);
    const pid = slurmctldPid();
    expect(pid).not.toBe('');
    execFileSync('kill', [pid]);
    await eventually(() => slurmctldPid() === '', 30_000, 'slurmctld to stop');
    await step.waitFor(/Slurm does not answer/, 90_000);
    await new Promise((r) => setTimeout(r, 100_000));
    execFileSync('slurmctld');
    const run = await step.done;
    expect(run.log).toContain('long-done');
    expect(run.log).toMatch(/Slurm answers again after \d+ s/);
    expect(run.log).not.toMatch(/::error::/);
    expect(run.code).toBe(0);
    expect(run.outputs['job-state']).toBe('COMPLETED');
  }, 600_000);
});

describe('a runner that dies without a post step', () => {
  test('a running job cancels itself about `watchdog` after the last poll', async () => {
    writeFileSync(join(ws, 'slow.sh'), 'echo started-slow-smoke-test\nsleep 300\n');
    const step = startStep(inputs({ 'smoke-test': 'slow.sh', watchdog: '20s', 'remote-dir': uniqueRemoteDir('dead-runner') }), { workspace: ws });
    await step.waitFor('started-slow-smoke-test', 180_000);
    const jobId = /Submitted job (\d+)/.exec(step.log())![1];
    step.child.kill('SIGKILL');
    const killed = Date.now();
    await step.done;
    await eventually(() => activeJobState(jobId) === '', 90_000, `job ${jobId} to end on its own`);
    const after = (Date.now() - killed) / 1000;
    // The last poll touched the heartbeat at most a poll interval (2 s) before the kill; the job looks every 5 s.
    expect(after).toBeGreaterThan(15);
    expect(after).toBeLessThan(45);
    const dir = /output in (\S+)\/job\.out/.exec(step.log())![1];
    expect(readFileSync(join(dir, 'job.out'), 'utf8')).toMatch(/watchdog: no delivery has followed this job for \d+ s/);
    console.log(`job ${jobId} ended ${after.toFixed(1)} s after the runner was killed (watchdog 20s)`);
  }, 300_000);

  test("a job queued behind a colleague's GPU job does not run its smoke test when it finally starts", async () => {
    const blocker = execFileSync('sbatch', ['--parsable', '-p', 'short-gpu', '--gres=gpu:2', '-o', '/dev/null', '--wrap', 'sleep 60'], {
      encoding: 'utf8',
    }).trim();
    try {
      const since = Date.now() / 1000;
      const step = startStep(inputs({ watchdog: '20s', 'remote-dir': uniqueRemoteDir('dead-queued') }), { workspace: ws });
      await step.waitFor(/Job \d+: PENDING/, 180_000);
      const jobId = /Submitted job (\d+)/.exec(step.log())![1];
      step.child.kill('SIGKILL');
      const killed = Date.now();
      await step.done;
      await eventually(() => activeJobState(jobId) === '', 150_000, `job ${jobId} to end on its own`);
      const after = (Date.now() - killed) / 1000;
      const calls = singularityCalls(since).filter((c) => c.SLURM_JOB_ID === jobId);
      expect(calls.filter((c) => c.argv[0] === 'run' || c.argv[0] === 'exec')).toEqual([]);
      console.log(`queued job ${jobId} ended ${after.toFixed(1)} s after the runner was killed (blocker 60 s, watchdog 20s)`);
    } finally {
      execFileSync('scancel', [blocker]);
    }
  }, 300_000);
});

describe('exactly one job per delivery', () => {
  const SBATCH = '/opt/slurm/bin/sbatch';
  afterAll(() => {
    // Put the real sbatch back.
    if (existsSync(`${SBATCH}.real`)) renameSync(`${SBATCH}.real`, SBATCH);
  });

  test('a submission whose link drops after sbatch ran is retried without a second job', async () => {
    // sbatch that answers 5 s late: the link is cut in between, once the job exists.
    renameSync(SBATCH, `${SBATCH}.real`);
    writeFileSync(SBATCH, `#!/bin/sh\n${SBATCH}.real "$@"; rc=$?\nsleep 5\nexit $rc\n`, { mode: 0o755 });
    const proxy = await startProxy();
    try {
      const remoteDir = uniqueRemoteDir('retry');
      const step = startStep({ ...inputs({ 'remote-dir': remoteDir }), ...viaProxy(proxy.port) }, { workspace: ws });
      await eventually(
        () =>
          /WorkDir=\S*\/e2e\/retry-/.test(
            execFileSync('scontrol', ['show', 'job', '-o'], { encoding: 'utf8' })
              .split('\n')
              .filter((l) => l.includes(remoteDir))
              .join('\n'),
          ),
        180_000,
        'the job to exist',
      );
      proxy.cut();
      const run = await step.done;
      expect(run.log).toMatch(/Submitting: .*Reconnecting in/);
      expect(run.code).toBe(0);
      const dir = /output in (\S+)\/job\.out/.exec(run.log)![1];
      await eventually(() => jobsRunIn(dir).length > 0, 30_000, 'the job in the completion log');
      expect(jobsRunIn(dir)).toEqual([run.outputs['job-id']]);
    } finally {
      proxy.stop();
      renameSync(`${SBATCH}.real`, SBATCH);
    }
  }, 300_000);

  test('main killed between saving the job directory and learning the job id: post finds the job and cancels it', async () => {
    renameSync(SBATCH, `${SBATCH}.real`);
    writeFileSync(SBATCH, `#!/bin/sh\n${SBATCH}.real "$@"; rc=$?\nsleep 8\nexit $rc\n`, { mode: 0o755 });
    try {
      writeFileSync(join(ws, 'slow.sh'), 'echo started-slow-smoke-test\nsleep 300\n');
      const remoteDir = uniqueRemoteDir('orphan');
      const step = startStep(inputs({ 'smoke-test': 'slow.sh', 'remote-dir': remoteDir }), { workspace: ws });
      await eventually(() => execFileSync('scontrol', ['show', 'job', '-o'], { encoding: 'utf8' }).includes(remoteDir), 180_000, 'the job to exist');
      step.child.kill('SIGKILL');
      const main = await step.done;
      expect(main.state.jobId).toBeUndefined();
      expect(main.state.jobDir).toContain(remoteDir);
      const post = await runStep(inputs(), { workspace: ws, state: main.state });
      const jobId = /Cancelled job (\d+)/.exec(post.log)?.[1];
      expect(jobId).toBeDefined();
      await eventually(() => activeJobState(jobId!) === '', 30_000, `job ${jobId} to leave the queue`);
    } finally {
      renameSync(`${SBATCH}.real`, SBATCH);
    }
  }, 300_000);
});

describe('the submission travels over stdin', () => {
  test('a smoke file near the 256 KiB limit works', async () => {
    const body = readFileSync(join(ws, 'gpu-check.sh'), 'utf8');
    const filler = `# ${'x'.repeat(98)}\n`.repeat(2480);
    writeFileSync(join(ws, 'big-check.sh'), filler + body);
    expect(Buffer.byteLength(filler + body)).toBeGreaterThan(248_000);
    const run = await runStep(inputs({ 'smoke-test': 'big-check.sh', 'remote-dir': uniqueRemoteDir('big') }), { workspace: ws });
    expect(run.log).not.toMatch(/::error::/);
    expect(run.code).toBe(0);
    expect(run.log).toContain('Output tensor device: cuda:0');
  }, 300_000);
});

describe('marker lines', () => {
  test('a job printing marker lines and workflow commands of its own changes neither the groups, the timings, the GPU report nor the outputs', async () => {
    const forged = [
      '::riviera-phase:: fake 1',
      '::riviera-phase:: smoke-test 1',
      '::riviera:: 0123456789abcdef01234567 phase fake 1',
      '::riviera-gpu:: node forged-node',
      '::riviera-gpu:: outside query FORGED GPU, 999.99, 1 MiB',
      '::riviera:: 0123456789abcdef01234567 gpu outside query FORGED GPU, 999.99, 1 MiB',
      '::riviera:: 0123456789abcdef01234567 gpu inside env 99.0',
      ...FORGED,
      '::set-output name=gpu-name::FORGED GPU',
      '::save-state name=forgedState::yes',
    ];
    writeFileSync(join(ws, 'fake-phase.sh'), `${forged.map((l) => `echo '${l}'`).join('\n')}\n${readFileSync(join(ws, 'gpu-check.sh'), 'utf8')}`);
    const run = await runStep(inputs({ 'smoke-test': 'fake-phase.sh', 'remote-dir': uniqueRemoteDir('phase') }), { workspace: ws });
    expect(run.code).toBe(0);
    expect(run.log).not.toContain('::group::Job: fake');
    for (const l of forged) expect(run.log).toContain(l);
    const smoke = /<td>smoke-test<\/td><td>([\d.]+)<\/td>/.exec(run.summary);
    expect(Number(smoke?.[1])).toBeLessThan(120);
    // The GPU report is the node's (the stand-in's A100), not the forged one.
    expect(run.outputs).toMatchObject({ 'gpu-name': 'NVIDIA A100-SXM4-40GB', 'gpu-count': '1', 'job-state': 'COMPLETED' });
    expect(run.outputs['image-cuda']).not.toBe('99.0');
    expect(run.log).not.toMatch(/GPU report: .*FORGED/);
    expect(run.log).not.toMatch(/GPU report: .* on forged-node/);
    expect(run.summary).not.toMatch(/× FORGED GPU/);
    expect(run.outputs.forged).toBeUndefined();
    expect(run.state.forgedState).toBeUndefined();
  }, 300_000);
});

/** The runs holding images in remote-dir's store (layout.ts: .store/holds/RUN). */
const holdsIn = (remoteDir: string) => readdirSync(`${CLUSTER_HOME}/${remoteDir}/.store/holds`);
const recordsIn = (remoteDir: string) => readdirSync(`${CLUSTER_HOME}/${remoteDir}/.store/images`);

describe('a delivery that ends before its job exists releases its hold on the image', () => {
  test('cancelled (SIGINT) before submitting: main releases the hold, and post has nothing left to do', async () => {
    const remoteDir = uniqueRemoteDir('hold-int');
    const step = startStep(inputs({ 'remote-dir': remoteDir }), { workspace: ws });
    await step.waitFor('Connected; host key matches');
    step.child.kill('SIGINT');
    const main = await step.done;
    expect(main.code).toBe(1);
    expect(main.log).toContain('cancelled before a job was submitted');
    expect(main.state.jobId).toBeUndefined();
    // The store was prepared (the image recorded, so it was held), and the hold is gone.
    expect(recordsIn(remoteDir)).toHaveLength(1);
    expect(holdsIn(remoteDir)).toEqual([]);
    expect(main.state.hold).toMatch(/\.store\/holds\//);
    expect(main.state.jobDone).toBe('true');
    const post = await runStep(inputs({ 'remote-dir': remoteDir }), { workspace: ws, state: main.state });
    expect(post.code).toBe(0);
    expect(post.log).not.toMatch(/released|Cancelled|::warning::/);
  }, 300_000);

  test('main killed (SIGKILL) during the upload leaves the hold; post releases it', async () => {
    // Enough data that the upload is still under way when the hold appears.
    const dataWs = makeDataImageContext({ randomMiB: 96, zerosMiB: 0, seed: `hold-${process.pid}` });
    const remoteDir = uniqueRemoteDir('hold-kill');
    const image = `rs-e2e/holds:${process.pid}`;
    try {
      const step = startStep(inputs({ image, 'remote-dir': remoteDir }), { workspace: dataWs });
      await step.waitFor('Connected; host key matches', 240_000);
      await eventually(() => existsSync(`${CLUSTER_HOME}/${remoteDir}/.store/holds`) && holdsIn(remoteDir).length > 0, 60_000, 'the hold to be taken');
      step.child.kill('SIGKILL');
      const main = await step.done;
      expect(main.state.jobId).toBeUndefined();
      expect(main.state.jobDir).toBeUndefined();
      // A killed main releases nothing itself: the hold would last a day.
      const [hold] = holdsIn(remoteDir);
      expect(main.state.hold).toMatch(new RegExp(`/\\.store/holds/${hold}$`));
      const post = await runStep(inputs({ image, 'remote-dir': remoteDir }), { workspace: dataWs, state: main.state });
      expect(post.code).toBe(0);
      expect(post.log).toContain('released its hold on the image');
      expect(holdsIn(remoteDir)).toEqual([]);
    } finally {
      execFileSync('docker', ['rmi', '-f', image], { stdio: 'ignore' });
    }
  }, 300_000);
});

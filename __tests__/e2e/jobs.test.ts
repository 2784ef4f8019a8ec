// Never leave a job behind and never misreport one (issue 13): job and build output as data, other
// login shells, and the job's life when the link, the controller or the runner goes away.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { activeJobState, clusterInputs, eventually, makeWorkspace, requireCluster, runStep, startStep, uniqueRemoteDir } from './harness.js';

const IMAGE = 'rs-e2e/gpucheck:jobs';
let ws: string;

beforeAll(async () => {
  await requireCluster();
  ws = makeWorkspace();
});

function inputs(extra: Record<string, string> = {}): Record<string, string> {
  return { ...clusterInputs(), image: IMAGE, context: '.', 'smoke-test': 'gpu-check.sh', partition: 'short-gpu', gpus: '1', ...extra };
}

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

// The action's two steps as the runner runs them, with @actions/core stood in for (inputs, state,
// outputs recorded): main hands the inputs to the core delivery (stood in for here: it is tested
// on its own) and turns its result into outputs, state for post and a failed step; post cancels a
// job main left behind, for real, through the retrying session against a local stand-in cluster.
import { jest } from '@jest/globals';
import type { DeliveryHooks, DeliveryResult } from '../../src/core/deliver.js';
import type { Settings } from '../../src/core/settings.js';
import * as core from '../helpers/core.js';
import { testKeys } from '../helpers/keys.js';
import { deliveryResult } from '../helpers/result.js';
import type { LocalCluster } from '../helpers/localcluster.js';

const keys = testKeys();
let cluster: LocalCluster;

const deliver = jest.fn<(s: Settings, r: unknown, hooks: DeliveryHooks) => Promise<DeliveryResult>>();
jest.unstable_mockModule('@actions/core', () => core);
jest.unstable_mockModule('../../src/core/deliver.js', () => ({ deliver }));
jest.unstable_mockModule('../../src/core/connect.js', async () => (await import('../helpers/localcluster.js')).localConnectModule(() => cluster));

/**
 * The action's modules afresh (state.ts reads the saved state when it loads, as each step does),
 * and a local cluster from the same module registry, so that its errors are the session's.
 */
async function load() {
  jest.resetModules();
  cluster?.remove();
  cluster = new (await import('../helpers/localcluster.js')).LocalCluster('action-');
  process.env.GITHUB_WORKSPACE = cluster.home;
  return { main: await import('../../src/action/main.js'), post: await import('../../src/action/post.js') };
}

const result = deliveryResult;

beforeEach(() => {
  core.reset();
  deliver.mockReset();
  Object.assign(core.inputs, {
    host: '127.0.0.1',
    port: '2222',
    username: 'u',
    'private-key': keys.privateKey,
    'known-hosts': keys.knownHosts,
    image: 'img:1',
    'smoke-command': 'nvidia-smi',
    'remote-dir': 'rs',
    'login-modules': 'none',
  });
  delete process.env.GITHUB_STEP_SUMMARY;
});
afterAll(() => cluster?.remove());

describe('main', () => {
  test('marks the run as main for post, delivers the parsed settings, and sets every output', async () => {
    deliver.mockImplementation(async (_s, _r, hooks) => {
      await hooks.onJobSubmitted?.({ jobId: '77', jobDir: 'rs/jobs/x' });
      await hooks.onJobEnded?.();
      return result();
    });
    const { main } = await load();
    await main.run();
    expect(core.saved).toEqual({ isPost: 'true', jobId: '77', jobDone: 'true' });
    const settings = deliver.mock.calls[0][0];
    expect(settings).toMatchObject({ host: '127.0.0.1', port: 2222, username: 'u', image: 'img:1', remoteDir: 'rs', loginModules: [] });
    expect(core.outputs).toEqual({
      'job-id': '77',
      'job-state': 'COMPLETED',
      'exit-code': '0',
      'sif-path': '/home/u/rs/sif/abc.sif',
      'image-digest': 'sha256:abc',
      'bytes-sent': '10',
      'bytes-total': '100',
      'sif-reused': 'false',
      'published-path': '',
      // No GPU report from this job.
      'gpu-name': '',
      'gpu-count': '0',
      'driver-version': '',
      'driver-cuda': '',
      'image-cuda': '',
    });
    expect(core.setFailed).not.toHaveBeenCalled();
    expect(core.info).toHaveBeenCalledWith('The smoke test passed. (job 77, /home/u/rs/sif/abc.sif)');
  });

  test('masks every line of the key before anything else', async () => {
    deliver.mockResolvedValue(result());
    const { main } = await load();
    await main.run();
    const lines = keys.privateKey.split('\n').filter((l) => l.trim());
    for (const l of lines) expect(core.setSecret).toHaveBeenCalledWith(l);
    expect(core.setSecret.mock.invocationCallOrder[0]).toBeLessThan(core.getInput.mock.invocationCallOrder[1]);
  });

  test('a job that did not pass: outputs first, then the step fails with its message', async () => {
    const { JobFailedError } = await import('../../src/core/errors.js');
    deliver.mockResolvedValue(
      result({
        ok: false,
        jobState: 'FAILED',
        exitCode: 3,
        message: 'The smoke test exited with code 3.',
        error: new JobFailedError('The smoke test exited with code 3.'),
      }),
    );
    const { main } = await load();
    await main.run();
    expect(core.outputs['exit-code']).toBe('3');
    expect(core.setFailed).toHaveBeenCalledWith('The smoke test exited with code 3.');
    expect(core.setOutput.mock.invocationCallOrder.at(-1)!).toBeLessThan(core.setFailed.mock.invocationCallOrder[0]);
  });

  test('a bad input fails the step naming it, and nothing is delivered', async () => {
    core.inputs.gpus = 'many';
    const { main } = await load();
    await main.run();
    expect(deliver).not.toHaveBeenCalled();
    expect(core.setFailed).toHaveBeenCalledWith("Input 'gpus': must be a whole number of GPUs");
  });

  test('SIGINT (the runner cancelling) aborts the delivery; the handlers are removed afterwards', async () => {
    let signal: AbortSignal | undefined;
    deliver.mockImplementation(async (_s, _r, hooks) => {
      signal = hooks.signal;
      process.emit('SIGINT', 'SIGINT');
      return result();
    });
    const before = process.listenerCount('SIGINT');
    const { main } = await load();
    await main.run();
    expect(signal?.aborted).toBe(true);
    expect(process.listenerCount('SIGINT')).toBe(before);
  });
});

describe('post', () => {
  const asPost = (jobId: string, jobDone = false) => Object.assign(core.state, { isPost: 'true', jobId, ...(jobDone ? { jobDone: 'true' } : {}) });

  test('cancels the job main left running', async () => {
    asPost('88');
    const { post } = await load();
    cluster.command('scancel', 'printf "%s\\n" "$@" >> "$HOME/scancel.args"');
    await post.post();
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(`${cluster.home}/scancel.args`, 'utf8')).toBe('88\n');
    expect(core.info).toHaveBeenCalledWith('Cancelled job 88: the main step ended before it did.');
    expect(core.saveState).not.toHaveBeenCalled();
  });

  test('reconnects when the connection drops, as the CLI does', async () => {
    asPost('89');
    const { post } = await load();
    cluster.command('scancel', 'true');
    cluster.dropNext = 1;
    await post.post();
    expect(cluster.connections).toHaveLength(2);
    expect(core.warning).toHaveBeenCalledWith(expect.stringMatching(/^Cancelling: The SSH connection was lost\. Reconnecting in/));
    expect(core.info).toHaveBeenCalledWith('Cancelled job 89: the main step ended before it did.');
  }, 10_000);

  test('nothing to do when main saw its job end, or never submitted one', async () => {
    asPost('90', true);
    await (await load()).post.post();
    expect(cluster.scripts).toEqual([]);
    core.reset();
    asPost('');
    await (await load()).post.post();
    expect(cluster.scripts).toEqual([]);
    expect(core.info).not.toHaveBeenCalled();
  });

  test('a failure only warns, with what to do by hand; it never fails the workflow', async () => {
    asPost('91');
    const { post } = await load();
    cluster.command('scancel', 'echo "scancel: error: Access/permission denied" >&2; exit 1');
    await post.post();
    expect(core.setFailed).not.toHaveBeenCalled();
    expect(core.warning).toHaveBeenCalledWith(
      expect.stringMatching(
        /^Could not cancel job 91: Cancelling job 91 failed on the cluster \(exit 1\): scancel: error: Access\/permission denied\. Cancel it by hand: scancel 91$/,
      ),
    );
  });
});

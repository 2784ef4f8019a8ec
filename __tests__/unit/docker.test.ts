// The local Docker engine, through core/process.ts stood in for: the argv each step runs, build
// output streamed to the log, and failures as BuildErrors that say what to do.
import { jest } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProcessResult, RunOptions } from '../../src/core/process.js';
import { fakeReporter } from '../helpers/reporter.js';

const runProcess = jest.fn<(cmd: string, args: string[], opts?: RunOptions) => Promise<ProcessResult>>();
jest.unstable_mockModule('../../src/core/process.js', () => ({ runProcess }));
const { buildImage, inspectImage } = await import('../../src/core/docker.js');
const { BuildError } = await import('../../src/core/errors.js');

const ok = (stdout = ''): ProcessResult => ({ code: 0, stdout, stderr: '' });
let temp: string;
beforeEach(() => {
  runProcess.mockReset();
  temp = mkdtempSync(join(tmpdir(), 'docker-'));
  process.env.RUNNER_TEMP = temp;
});
afterEach(() => {
  delete process.env.RUNNER_TEMP;
  rmSync(temp, { recursive: true, force: true });
});

describe('buildImage', () => {
  test('docker build with tag, Dockerfile, build args and context; its output streamed to the log', async () => {
    runProcess.mockImplementation(async (_c, _a, opts) => {
      opts?.onLine?.('#1 [internal] load build definition');
      return ok();
    });
    const reporter = fakeReporter();
    await buildImage({ image: 'img:1', context: 'ctx dir', dockerfile: 'ctx dir/Dockerfile.gpu', buildArgs: ['A=1', 'B=x y'] }, reporter);
    expect(runProcess).toHaveBeenCalledWith(
      'docker',
      ['build', '-t', 'img:1', '-f', 'ctx dir/Dockerfile.gpu', '--build-arg', 'A=1', '--build-arg', 'B=x y', 'ctx dir'],
      expect.anything(),
    );
    expect(reporter.infos()).toEqual(['#1 [internal] load build definition']);
  });

  test('no Dockerfile given: none passed (docker finds context/Dockerfile)', async () => {
    runProcess.mockResolvedValue(ok());
    await buildImage({ image: 'img:1', context: '.', dockerfile: null, buildArgs: [] }, fakeReporter());
    expect(runProcess.mock.calls[0][1]).toEqual(['build', '-t', 'img:1', '.']);
  });

  test('a failed build: a BuildError with the exit code and the last 15 lines of its stderr', async () => {
    const stderr = Array.from({ length: 20 }, (_, i) => `err ${i}`).join('\n');
    runProcess.mockResolvedValue({ code: 1, stdout: '', stderr });
    const err = await buildImage({ image: 'img:1', context: '.', dockerfile: null, buildArgs: [] }, fakeReporter()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as Error).message).toBe(`docker build failed (exit 1):\n${Array.from({ length: 15 }, (_, i) => `err ${i + 5}`).join('\n')}`);
  });

  test('no docker here: a BuildError saying to install it', async () => {
    runProcess.mockRejectedValue(Object.assign(new Error('spawn docker ENOENT'), { code: 'ENOENT' }));
    await expect(buildImage({ image: 'img:1', context: '.', dockerfile: null, buildArgs: [] }, fakeReporter())).rejects.toThrow(
      'Could not run docker: spawn docker ENOENT\nInstall Docker on the runner, or start its engine.',
    );
  });
});

describe('inspectImage', () => {
  test("the image's id and size", async () => {
    runProcess.mockResolvedValue(ok('sha256:abc 12345 ["sha256:l1","sha256:l2"]\n'));
    expect(await inspectImage('img:1', fakeReporter())).toMatchObject({ id: 'sha256:abc', size: 12345 });
    expect(runProcess.mock.calls[0][1]).toEqual(['image', 'inspect', '--format', '{{.Id}} {{.Size}} {{json .RootFS.Layers}}', 'img:1']);
  });

  test('not in the engine: a BuildError that says how to get it there', async () => {
    runProcess.mockResolvedValue({ code: 1, stdout: '', stderr: 'Error: No such image: img:1' });
    await expect(inspectImage('img:1', fakeReporter())).rejects.toThrow("The image 'img:1' is not in the local Docker engine.\nBuild it first");
  });
});

// The local Docker engine: build the image and save it to a tar.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildError } from './errors.js';
import { mib } from './format.js';
import { runProcess } from './process.js';
import type { Reporter } from './reporter.js';

async function docker(args: string[], reporter: Reporter, stream = false): Promise<string> {
  const { code, stdout, stderr } = await runProcess('docker', args, stream ? { onLine: (l) => reporter.output([l]) } : {}).catch((e: Error) => {
    throw new BuildError(`Could not run docker: ${e.message}`, 'Install Docker on the runner, or start its engine.');
  });
  if (code !== 0) {
    const tail = stderr.trim().split('\n').slice(-15).join('\n');
    throw new BuildError(`docker ${args[0]} failed (exit ${code}):\n${tail}`);
  }
  return stdout;
}

export interface BuildParams {
  image: string;
  context: string;
  dockerfile: string | null;
  buildArgs: string[];
}

export async function buildImage(p: BuildParams, reporter: Reporter): Promise<void> {
  const args = ['build', '-t', p.image, ...(p.dockerfile ? ['-f', p.dockerfile] : []), ...p.buildArgs.flatMap((a) => ['--build-arg', a]), p.context];
  await docker(args, reporter, true);
}

/** The image's ID (`sha256:…`) and size in bytes; a clear error if the engine does not have it. */
export async function inspectImage(image: string, reporter: Reporter): Promise<{ id: string; size: number }> {
  let out: string;
  try {
    out = await docker(['image', 'inspect', '--format', '{{.Id}} {{.Size}}', image], reporter);
  } catch {
    throw new BuildError(
      `The image '${image}' is not in the local Docker engine.`,
      "Build it first (e.g. docker/build-push-action with load: true), or set 'build: true'.",
    );
  }
  const [id, size] = out.trim().split(' ');
  return { id, size: Number(size) || 0 };
}

/**
 * `docker save` into a fresh private temp dir; returns the tar's path and a cleanup function.
 * Progress (the tar's size against the image's) every two seconds on long saves.
 */
export async function saveImage(image: string, expectedBytes: number, reporter: Reporter): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), 'riviera-save-'));
  const path = join(dir, 'image.tar');
  const cleanup = () => rm(dir, { recursive: true, force: true });
  const timer = setInterval(() => {
    stat(path).then(
      (st) => reporter.progress(`Saving: ${mib(st.size)} of about ${mib(expectedBytes)}`),
      () => undefined,
    );
  }, 2000);
  try {
    await docker(['save', '-o', path, image], reporter);
  } catch (e) {
    await cleanup();
    throw e;
  } finally {
    clearInterval(timer);
  }
  return { path, cleanup };
}

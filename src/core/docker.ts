// The local Docker engine: build the image and save it to a tar.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildError } from './errors.js';
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

/** The image's ID (`sha256:…`), size in bytes and layers' diff IDs; a clear error if the engine does not have it. */
export async function inspectImage(image: string, reporter: Reporter): Promise<{ id: string; size: number; diffIds: string[] }> {
  let out: string;
  try {
    out = await docker(['image', 'inspect', '--format', '{{.Id}} {{.Size}} {{json .RootFS.Layers}}', image], reporter);
  } catch {
    throw new BuildError(
      `The image '${image}' is not in the local Docker engine.`,
      "Build it first (e.g. docker/build-push-action with load: true), or set 'build: true'.",
    );
  }
  const [id, size, layers] = out.trim().split(' ');
  let diffIds: string[] = [];
  try {
    const parsed: unknown = JSON.parse(layers ?? 'null');
    if (Array.isArray(parsed)) diffIds = parsed.filter((d): d is string => typeof d === 'string' && /^sha256:[0-9a-f]{64}$/.test(d));
  } catch {
    // No layer list: the blobs are learnt from the saved archive instead.
  }
  return { id, size: Number(size) || 0, diffIds };
}

/** A fresh private temp dir for a saved image, and how to remove it. */
export async function saveDir(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), 'riviera-save-'));
  return { path: join(dir, 'image.tar'), cleanup: () => rm(dir, { recursive: true, force: true }) };
}

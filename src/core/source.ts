// Where the image comes from: the local Docker engine (saved to a tar only when the cluster needs
// its blobs), or a tar saved elsewhere. Either way the archive's index is read, never its layers.
import { stat } from 'node:fs/promises';
import { type ImageArchive, readImageArchive } from './archive.js';
import { inspectImage, saveImage } from './docker.js';
import { InputError } from './errors.js';
import { mib } from './format.js';
import { type Reporter, inGroup } from './reporter.js';
import type { Settings } from './settings.js';
import type { Timings } from './timings.js';
import { workspaceFile } from './workspace.js';

/** The image as saved locally: its archive index and the tar to read blobs from. */
export interface SavedImage {
  archive: ImageArchive;
  tar: string;
  size: number;
  cleanup: () => Promise<void>;
}

async function save(s: Settings, digest: string, expectedBytes: number, reporter: Reporter, timings: Timings): Promise<SavedImage> {
  const saved = await inGroup(reporter, `Save ${s.image}`, () => timings.time('save', () => saveImage(s.image, expectedBytes, reporter)));
  try {
    const archive = await readImageArchive(saved.path);
    const size = (await stat(saved.path)).size;
    reporter.info(`Saved ${s.image} (${digest}): ${archive.layout} layout, ${archive.layers.length} layer(s), ${mib(size)}`);
    return { archive, tar: saved.path, size, cleanup: saved.cleanup };
  } catch (e) {
    await saved.cleanup();
    throw e;
  }
}

/** Where the image comes from: the local engine (saved only when the cluster needs its blobs), or a saved tar. */
export interface ImageSource {
  digest: string;
  /** Size of the image (the tar's, or the engine's estimate before it is saved). */
  size: number;
  load(): Promise<SavedImage>;
}

export async function engineSource(s: Settings, reporter: Reporter, timings: Timings): Promise<ImageSource> {
  const { id, size } = await inspectImage(s.image, reporter);
  return { digest: id, size, load: () => save(s, id, size, reporter, timings) };
}

/** A tar saved elsewhere (`docker save`, buildx `type=docker`/`type=oci`): read its index, never delete it. */
export async function archiveSource(path: string, reporter: Reporter): Promise<ImageSource> {
  const { path: real, size } = await workspaceFile('archive', path);
  let archive: ImageArchive;
  try {
    archive = await readImageArchive(real);
  } catch (e) {
    throw new InputError('archive', e instanceof Error ? e.message : String(e), 'Pass a tar written by `docker save -o FILE IMAGE` (or an OCI layout tar) holding one image.');
  }
  reporter.info(`Read ${path} (${archive.imageId}): ${archive.layout} layout, ${archive.layers.length} layer(s), ${mib(size)}`);
  const loaded: SavedImage = { archive, tar: real, size, cleanup: async () => undefined };
  return { digest: archive.imageId, size, load: async () => loaded };
}


// Where the image comes from: the local Docker engine (saved only when the cluster needs its
// blobs, into a pipe that the upload reads while it is written), or a tar saved elsewhere. Either
// way the archive's index is read, never its layers.
import { type ImageArchive, readImageArchive } from './archive.js';
import { inspectImage, saveDir } from './docker.js';
import { InputError } from './errors.js';
import { mib } from './format.js';
import type { Reporter } from './reporter.js';
import type { Settings } from './settings.js';
import type { TarEntry } from './tar.js';
import { TarBytes } from './tarbytes.js';
import { workspaceFile } from './workspace.js';

/** The image as saved locally: its archive index and the tar to read blobs from. */
export interface SavedImage {
  archive: ImageArchive;
  tar: string;
  size: number;
  cleanup: () => Promise<void>;
}

/** A save under way: its bytes as they are written, and the image once saved. */
export interface Saving {
  bytes: TarBytes;
  /** Whether this is a save under way (from the engine), not a tar already on disk. */
  saving: boolean;
  saved: Promise<SavedImage>;
  /** Stop the save (its tar is removed; `saved` rejects). Nothing to stop for a tar saved elsewhere. */
  abort(): void;
}

/** Where the image comes from: the local engine (saved only when the cluster needs its blobs), or a saved tar. */
export interface ImageSource {
  digest: string;
  /** Size of the image (the tar's, or the engine's estimate before it is saved). */
  size: number;
  /** Hexes of its blobs known before it is saved (config and layers), for the store's report. */
  blobHexes: string[];
  /**
   * Save it (or open the saved tar). `early` sees each member the moment its header is written and
   * says whether to hash it on the way (the upload may send it before the save ends).
   */
  load(early?: (e: TarEntry) => boolean): Promise<Saving>;
}

const hex = (d: string) => d.replace(/^sha256:/, '');

export async function engineSource(s: Settings, reporter: Reporter): Promise<ImageSource> {
  const { id, size, diffIds } = await inspectImage(s.image, reporter);
  return {
    digest: id,
    size,
    blobHexes: [...new Set([id, ...diffIds].map(hex))],
    load: async (early = () => false) => {
      const dir = await saveDir();
      const { bytes, done, abort } = TarBytes.save(s.image, dir.path, early);
      const saved = (async () => {
        try {
          await done;
          const archive = await readImageArchive(dir.path);
          return { archive, tar: dir.path, size: bytes.written, cleanup: dir.cleanup };
        } catch (e) {
          await dir.cleanup();
          throw e;
        }
      })();
      return { bytes, saving: true, saved, abort };
    },
  };
}

/** A tar saved elsewhere (`docker save`, buildx `type=docker`/`type=oci`): read its index, never delete it. */
export async function archiveSource(path: string, reporter: Reporter): Promise<ImageSource> {
  const { path: real, size } = await workspaceFile('archive', path);
  let archive: ImageArchive;
  try {
    archive = await readImageArchive(real);
  } catch (e) {
    throw new InputError(
      'archive',
      e instanceof Error ? e.message : String(e),
      'Pass a tar written by `docker save -o FILE IMAGE` (or an OCI layout tar) holding one image.',
    );
  }
  reporter.info(`Read ${path} (${archive.imageId}): ${archive.layout} layout, ${archive.layers.length} layer(s), ${mib(size)}`);
  const loaded: SavedImage = { archive, tar: real, size, cleanup: async () => undefined };
  return {
    digest: archive.imageId,
    size,
    blobHexes: [...new Set([archive.config, ...archive.layers].map((b) => hex(b.digest)))],
    load: async () => ({ bytes: await TarBytes.ofFile(real), saving: false, saved: Promise.resolve(loaded), abort: () => undefined }),
  };
}

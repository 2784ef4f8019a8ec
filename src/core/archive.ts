// Reads the index of a `docker save` archive: the legacy layout, the Docker 25+ archive that is
// both legacy and OCI, and a pure OCI layout (containerd image store). Layer data is never read
// beyond its first bytes: layers can be GBs, and the receiver verifies their digests.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { z } from 'zod';
import { BuildError } from './errors.js';
import { listTar, readTarMember, type TarEntry } from './tar.js';

export interface ArchiveBlob {
  /** 'sha256:<hex>' of the bytes as stored in the tar. */
  digest: string;
  /** Name of the tar member that holds the bytes (links already followed). */
  member: string;
  offset: number;
  size: number;
  mediaType: 'config' | 'layer' | 'layer+gzip';
}

export interface ImageArchive {
  path: string;
  layout: 'legacy' | 'oci';
  repoTags: string[];
  config: ArchiveBlob;
  layers: ArchiveBlob[];
  /** 'sha256:<hex>' of the config. */
  imageId: string;
  diffIds: string[];
}

const RESAVE = 'Save the image again with `docker save -o FILE IMAGE`.';
const ONE_IMAGE = 'Pass a single image reference to `docker save -o FILE IMAGE`.';

const Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 hex digits>');
const Descriptor = z.object({
  digest: Digest,
  platform: z.object({ os: z.string(), architecture: z.string() }).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
type Descriptor = z.infer<typeof Descriptor>;
const Index = z.object({ manifests: z.array(Descriptor) });
const Manifest = z.object({ config: Descriptor, layers: z.array(Descriptor) });
const LegacyManifest = z.array(z.object({ Config: z.string(), RepoTags: z.array(z.string()).nullish(), Layers: z.array(z.string()) }));
const ImageConfig = z.object({ rootfs: z.object({ diff_ids: z.array(Digest) }) });

export async function readImageArchive(path: string): Promise<ImageArchive> {
  const members = new Members(path, await listTar(path));
  if (members.has('manifest.json')) {
    return readLegacy(members, members.has('oci-layout') || members.has('index.json') ? 'oci' : 'legacy');
  }
  if (members.has('index.json')) return readOci(members);
  throw new BuildError(`Image archive ${path} has neither manifest.json nor index.json, so it was not made by \`docker save\`.`, RESAVE);
}

/** JSON text of a one-image legacy manifest.json naming the blobs as the receiver stores them. */
export function legacyManifest(archive: ImageArchive, names: { config: string; layers: string[] }, repoTags: string[]): string {
  if (names.layers.length !== archive.layers.length) {
    throw new Error(`legacyManifest: ${names.layers.length} layer names for ${archive.layers.length} layers`);
  }
  return JSON.stringify([{ Config: names.config, RepoTags: repoTags, Layers: names.layers }]);
}

async function readLegacy(members: Members, layout: ImageArchive['layout']): Promise<ImageArchive> {
  const items = members.parse('manifest.json', (await members.read('manifest.json', 'the archive')).bytes, LegacyManifest);
  if (items.length !== 1) {
    throw new BuildError(`Image archive ${members.path} holds ${items.length} images in manifest.json; save exactly one image.`, ONE_IMAGE);
  }
  const [{ Config, RepoTags, Layers }] = items;
  const { config, diffIds } = await readConfig(members, Config, nameDigest(Config), 'manifest.json');
  checkLayerCount(members, Layers.length, diffIds.length);
  const layers = await Promise.all(Layers.map((name, i) => layerBlob(members, name, nameDigest(name) ?? diffIds[i], 'manifest.json')));
  return { path: members.path, layout, repoTags: RepoTags ?? [], config, layers, imageId: config.digest, diffIds };
}

async function readOci(members: Members): Promise<ImageArchive> {
  const index = members.parse('index.json', (await members.read('index.json', 'the archive')).bytes, Index);
  const images = new Set(index.manifests.map((d) => d.digest));
  if (images.size !== 1) {
    throw new BuildError(`Image archive ${members.path} holds ${images.size} images in index.json; save exactly one image.`, ONE_IMAGE);
  }
  const repoTags = [...new Set(index.manifests.flatMap(imageName))];
  const manifest = await resolveManifest(members, index.manifests[0], 'index.json');
  const referrer = `manifest ${manifest.digest}`;
  const { config, diffIds } = await readConfig(members, blobPath(manifest.config.digest), manifest.config.digest, referrer);
  checkLayerCount(members, manifest.layers.length, diffIds.length);
  const layers = await Promise.all(manifest.layers.map((d) => layerBlob(members, blobPath(d.digest), d.digest, referrer)));
  return { path: members.path, layout: 'oci', repoTags, config, layers, imageId: config.digest, diffIds };
}

/** Follows nested indexes down to one image manifest. */
async function resolveManifest(members: Members, desc: Descriptor, referrer: string): Promise<z.infer<typeof Manifest> & { digest: string }> {
  const name = blobPath(desc.digest);
  const { bytes } = await members.read(name, referrer, desc.digest);
  const json = members.parse(name, bytes, z.union([Index, Manifest]));
  if (!('manifests' in json)) return { ...json, digest: desc.digest };
  const child = pickPlatform(members, json.manifests);
  if (!child) throw new BuildError(`Image index ${name} in ${members.path} lists no image manifest.`, RESAVE);
  return resolveManifest(members, child, `index ${desc.digest}`);
}

/** Skips attestations; among the manifests present in the archive (docker save keeps only pulled
 * platforms) prefers linux/amd64, else the first. */
function pickPlatform(members: Members, manifests: Descriptor[]): Descriptor | undefined {
  const real = manifests.filter((d) => d.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest' && d.platform?.os !== 'unknown');
  const present = real.filter((d) => members.has(blobPath(d.digest)));
  const candidates = present.length ? present : real; // none present: fail naming the first missing one
  return candidates.find((d) => d.platform?.os === 'linux' && d.platform.architecture === 'amd64') ?? candidates[0];
}

async function readConfig(members: Members, name: string, expected: string | undefined, referrer: string) {
  const { entry, bytes } = await members.read(name, referrer, expected);
  const { rootfs } = members.parse(name, bytes, ImageConfig);
  const config: ArchiveBlob = { digest: `sha256:${sha256(bytes)}`, member: entry.name, offset: entry.offset, size: entry.size, mediaType: 'config' };
  return { config, diffIds: rootfs.diff_ids };
}

async function layerBlob(members: Members, name: string, digest: string, referrer: string): Promise<ArchiveBlob> {
  const entry = members.get(name, referrer);
  const magic = await readTarMember(members.path, entry, Math.min(entry.size, 4));
  if (magic.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) {
    throw new BuildError(`Layer ${name} in ${members.path} is zstd-compressed, which is not supported.`, 'Build the image with gzip or uncompressed layers.');
  }
  const gzip = magic[0] === 0x1f && magic[1] === 0x8b;
  return { digest, member: entry.name, offset: entry.offset, size: entry.size, mediaType: gzip ? 'layer+gzip' : 'layer' };
}

function checkLayerCount(members: Members, layers: number, diffIds: number): void {
  if (layers !== diffIds) {
    throw new BuildError(`Image archive ${members.path} lists ${layers} layers but its config has ${diffIds} diff_ids.`, RESAVE);
  }
}

function imageName(d: Descriptor): string[] {
  const name = d.annotations?.['io.containerd.image.name'];
  const ref = d.annotations?.['org.opencontainers.image.ref.name'];
  // ref.name may be a bare tag ("latest"), which is no image name.
  return name ? [name] : ref && /[:/]/.test(ref) ? [ref] : [];
}

const blobPath = (digest: string) => `blobs/sha256/${digest.slice('sha256:'.length)}`;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const clean = (name: string) => posix.normalize(name).replace(/^(\.\/|\/)+/, '');

/** The digest a member's name gives: `blobs/sha256/<hex>`, or a legacy config `<hex>.json`. */
function nameDigest(name: string): string | undefined {
  const match = /^(?:blobs\/sha256\/([0-9a-f]{64})|([0-9a-f]{64})\.json)$/.exec(clean(name));
  return match ? `sha256:${match[1] ?? match[2]}` : undefined;
}

class Members {
  private readonly byName: Map<string, TarEntry>;

  constructor(
    readonly path: string,
    entries: TarEntry[],
  ) {
    this.byName = new Map(entries.map((e) => [clean(e.name), e]));
  }

  has(name: string): boolean {
    return this.byName.has(clean(name));
  }

  /** The regular file holding a member's bytes, following links (older docker save symlinks repeated layers). */
  get(ref: string, referrer: string): TarEntry {
    let name = clean(ref);
    let entry = this.byName.get(name);
    for (let hops = 0; entry && hops < 16 && (entry.type === 'symlink' || entry.type === 'hardlink'); hops++) {
      name = clean(entry.type === 'symlink' ? posix.join(posix.dirname(name), entry.linkname) : entry.linkname);
      entry = this.byName.get(name);
    }
    if (entry?.type !== 'file') {
      throw new BuildError(`Image archive ${this.path} has no member '${ref}' (referenced by ${referrer}).`, RESAVE);
    }
    return entry;
  }

  /** A small member's bytes, checked against `digest` when one is known. */
  async read(ref: string, referrer: string, digest?: string): Promise<{ entry: TarEntry; bytes: Buffer }> {
    const entry = this.get(ref, referrer);
    const bytes = await readTarMember(this.path, entry);
    if (digest && `sha256:${sha256(bytes)}` !== digest) {
      throw new BuildError(`Member '${ref}' of image archive ${this.path} does not match its digest ${digest}.`, RESAVE);
    }
    return { entry, bytes };
  }

  parse<T>(name: string, bytes: Buffer, schema: z.ZodType<T>): T {
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new BuildError(`Member '${name}' of image archive ${this.path} is not valid JSON.`, RESAVE);
    }
    const result = schema.safeParse(json);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new BuildError(`Member '${name}' of image archive ${this.path} is malformed: ${issue.path.join('.') || 'top level'}: ${issue.message}.`, RESAVE);
    }
    return result.data;
  }
}

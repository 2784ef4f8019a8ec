// The content-addressed store on the cluster, under remote-dir/.store: the parameters of its
// scripts (cluster/store-*.sh) and how a transfer is planned from what they report. The cluster
// side uses only bash, coreutils, flock, tar and gzip.
import type { ArchiveBlob, ImageArchive } from './archive.js';
import { renderScript } from './cluster/scripts.js';
import {
  BLOBS,
  HOLDS,
  IMAGE_RECORDS,
  INCOMING,
  JOBS,
  REMOTE_DIRS,
  REMOTE_MARKER,
  RUN_ID_GLOB,
  SIFS,
  STORE,
  STORE_LOCK,
  hexOf,
  holdPath,
  imageRecordPath,
  joinLockPath,
  joinedRecordPath,
  partPath,
  sifPath,
} from './layout.js';
import type { RangePart } from './ranges.js';

/** Every blob of an image, config first, each once (an image may repeat a layer). */
export function imageBlobs(archive: ImageArchive): ArchiveBlob[] {
  const seen = new Set<string>();
  return [archive.config, ...archive.layers].filter((b) => !seen.has(b.digest) && seen.add(b.digest));
}

export interface PrepareParams {
  remoteDir: string;
  tmpdir: string;
  /** Group to share the store with (setgid dirs, group-readable files); null: private (0700). */
  group: string | null;
  /** The image being delivered; null when testing an existing .sif. */
  imageHex: string | null;
  blobHexes: string[];
  /** Whether an intact .sif may be reused (false with force-rebuild). */
  reuse: boolean;
  /** Publish directory to create (if it is not there) and resolve; null: not publishing. */
  publishDir: string | null;
  /** Mode of the published files (a publish directory made here gets the matching x bits). */
  publishMode: string | null;
  /** Group of a publish directory made here; null: none. */
  publishGroup: string | null;
  /** The run, whose hold on the image its job will use this prepare takes. */
  run: string;
  /** An existing .sif to test instead of an image (must exist); null: deliver the image. */
  existingSif: string | null;
  /** Stop after the .sif check: the blobs are not known yet (the image is saved only if needed). */
  sifOnly?: boolean;
}

/** A directory's mode for files of `mode`: x wherever they are readable. */
function dirMode(mode: string): string {
  const m = parseInt(mode, 8);
  return (m | ((m & 0o444) >> 2)).toString(8);
}

/** Exit code of the prepare script when remote-dir is refused (its message on stderr). */
export const PREPARE_REFUSED = 4;

/** One round trip before the transfer (cluster/store-prepare.sh says what it reports). */
export function prepareScript(p: PrepareParams): string {
  return renderScript('store-prepare', {
    group: p.group,
    remote_dir: p.remoteDir,
    tmpdir: p.tmpdir,
    publish_dir: p.publishDir,
    publish_dir_mode: p.publishMode && dirMode(p.publishMode),
    publish_group: p.publishGroup,
    marker: REMOTE_MARKER,
    remote_dirs: REMOTE_DIRS,
    sif_dir: SIFS,
    existing_sif: p.existingSif,
    image_hex: p.imageHex,
    blob_hexes: p.blobHexes,
    reuse: p.reuse,
    sif_only: !!p.sifOnly,
    sif: p.imageHex === null ? null : sifPath(p.imageHex),
    image_record: p.imageHex === null ? null : imageRecordPath(p.imageHex),
    blobs: BLOBS,
    incoming: INCOMING,
    store_lock: STORE_LOCK,
    hold: holdPath(p.run),
  });
}

export interface StoreReport {
  home: string;
  root: string;
  tmpdir: string;
  /** Absolute publish directory, when publishing. */
  publishDir: string | null;
  /** Absolute path of the existing .sif under test, if any. */
  existingSif: string | null;
  /** The cluster has zstd (blobs may be sent zstd-compressed). */
  zstd: boolean;
  /** The login shell's PATH, which the receivers (run without a login profile) take over. */
  path: string;
  sifReusable: boolean;
  have: Set<string>;
  bad: Set<string>;
  /** Ranges of interrupted uploads, by part key (a blob's hex, or a stand-in for one). */
  parts: Map<string, RangePart[]>;
}

export function parsePrepare(stdout: string): StoreReport {
  const r: StoreReport = {
    home: '',
    root: '',
    tmpdir: '',
    publishDir: null,
    existingSif: null,
    zstd: false,
    path: '',
    sifReusable: false,
    have: new Set(),
    bad: new Set(),
    parts: new Map(),
  };
  for (const line of stdout.split('\n')) {
    const [kind, a, b, c] = line.split(' ');
    if (kind === 'home') r.home = line.slice(5);
    else if (kind === 'root') r.root = line.slice(5);
    else if (kind === 'tmpdir') r.tmpdir = line.slice(7);
    else if (kind === 'publish') r.publishDir = line.slice(8);
    else if (kind === 'existing') r.existingSif = line.slice(9);
    else if (kind === 'tool' && a === 'zstd') r.zstd = true;
    else if (kind === 'path') r.path = line.slice(5);
    else if (kind === 'sif') r.sifReusable = a === 'ok';
    else if (kind === 'blob' && b === 'have') r.have.add(a);
    else if (kind === 'blob' && b === 'bad') r.bad.add(a);
    else if (kind === 'part') {
      const [start, end, have] = [Number(b), Number(c), Number(line.split(' ')[4])];
      if ([start, end, have].every(Number.isSafeInteger)) r.parts.set(a, [...(r.parts.get(a) ?? []), { start, end, have }]);
    }
  }
  if (!r.root || !r.tmpdir) throw new Error(`unexpected reply from the cluster while preparing the store: ${JSON.stringify(stdout.slice(0, 300))}`);
  return r;
}

export interface BlobSend {
  blob: ArchiveBlob;
  /** Its ranges the cluster holds (interrupted uploads), to resume. */
  parts: RangePart[];
}

/** What to send: the blobs the cluster lacks, largest first, with the ranges of them it holds. Pure. */
export function planTransfer(archive: ImageArchive, report: StoreReport): BlobSend[] {
  if (report.sifReusable) return [];
  return imageBlobs(archive)
    .filter((b) => !report.have.has(hexOf(b.digest)))
    .map((blob) => ({ blob, parts: report.parts.get(hexOf(blob.digest)) ?? [] }))
    .sort((x, y) => y.blob.size - x.blob.size);
}

/** Exit codes of the receive script. */
export const RECEIVE = { ok: 0, busy: 75, short: 77, corrupt: 78 } as const;

export type Codec = 'raw' | 'gzip' | 'zstd';

export interface ReceiveParams {
  root: string;
  /** Name of the blob's part files: its hex, or a stand-in while its digest is not known. */
  key: string;
  /** The blob's digest hex; null: not known yet (its ranges wait for a later call that names it). */
  hex: string | null;
  /** The whole blob's size. */
  size: number;
  /** This range: bytes [start, end) of the blob. */
  start: number;
  end: number;
  codec: Codec;
  /** The login shell's PATH ('' = keep the one the script starts with). */
  path: string;
}

/** The store's paths under an absolute root, as the receive and gc scripts name them. */
function storePaths(root: string) {
  return { store: `${root}/${STORE}`, store_lock: `${root}/${STORE_LOCK}`, blobs: `${root}/${BLOBS}`, incoming: `${root}/${INCOMING}` };
}

/** Receive one range of a blob on stdin, sent as `codec`, and join the blob once all is there (cluster/store-receive.sh says how). */
export function receiveScript(p: ReceiveParams): string {
  const at = (path: string) => `${p.root}/${path}`;
  return renderScript('store-receive', {
    ...storePaths(p.root),
    part: at(partPath(p.key, p.start, p.end)),
    join_lock: at(joinLockPath(p.key)),
    joined_record: at(joinedRecordPath(p.key)),
    key: p.key,
    hex: p.hex,
    size: p.size,
    length: p.end - p.start,
    codec: p.codec,
    login_path: p.path,
    rc_busy: RECEIVE.busy,
    rc_short: RECEIVE.short,
    rc_corrupt: RECEIVE.corrupt,
  });
}

export interface GcParams {
  root: string;
  /** Image records to keep, newest first. */
  keepImages: number;
  /** Records, partial uploads and job directories older than this are removed. */
  maxAgeDays: number;
  /** Modules that give squeue on the login node (garbage collection asks Slurm which jobs it knows). */
  loginModules: string[];
}

/** Garbage collection of the store (cluster/store-gc.sh). */
export function gcScript(p: GcParams): string {
  const at = (path: string) => `${p.root}/${path}`;
  return renderScript('store-gc', {
    ...storePaths(p.root),
    records: at(IMAGE_RECORDS),
    holds: at(HOLDS),
    sifs: at(SIFS),
    jobs: at(JOBS),
    run_glob: RUN_ID_GLOB,
    login_modules: p.loginModules,
    keep_images: p.keepImages,
    max_age_minutes: p.maxAgeDays * 1440,
  });
}

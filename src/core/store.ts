// The content-addressed store on the cluster, under remote-dir/.store: what its shell side does
// (rendered here, pure) and how a transfer is planned from what it reports. The cluster side uses
// only sh, coreutils, flock, tar and gzip.
import type { ArchiveBlob, ImageArchive } from './archive.js';
import { shq } from './quote.js';

export const STORE = '.store';

export function hexOf(digest: string): string {
  return digest.replace(/^sha256:/, '');
}

/** Every blob of an image, config first, each once (an image may repeat a layer). */
export function imageBlobs(archive: ImageArchive): ArchiveBlob[] {
  const seen = new Set<string>();
  return [archive.config, ...archive.layers].filter((b) => !seen.has(b.digest) && seen.add(b.digest));
}

/**
 * sha256 of stdin as hex, by openssl where the cluster has it (several times faster than
 * coreutils' sha256sum on machines with SHA instructions), else by sha256sum.
 */
export const SHA256_FUNCTION = `sha256() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 | sed 's/^.*= *//'; else sha256sum | cut -d' ' -f1; fi; }`;

/** Every directory of remote-dir, which group sharing makes setgid (new files inherit the group). */
const STORE_DIRS = `. ${STORE} ${STORE}/blobs ${STORE}/blobs/sha256 ${STORE}/incoming ${STORE}/images sif images jobs`;

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
  /** Publish directory to create and resolve; null: not publishing. */
  publishDir: string | null;
  /** An existing .sif to test instead of an image (must exist); null: deliver the image. */
  existingSif: string | null;
  /** Stop after the .sif check: the blobs are not known yet (the image is saved only if needed). */
  sifOnly?: boolean;
}

/**
 * One round trip before the transfer: create the directories, record the image (so garbage
 * collection keeps its blobs from now on), check its .sif, and report each blob:
 * `blob HEX have`, `blob HEX part BYTES` (an interrupted upload to resume) or `blob HEX bad`
 * (it failed its digest check and was removed). Blobs are only checked when they will be used.
 */
export function prepareScript(p: PrepareParams): string {
  const mode = p.group ? `umask 027` : `umask 077`;
  const share = p.group
    ? `chgrp ${shq(p.group)} ${STORE_DIRS} || { echo "cannot give the store to group ${p.group}: are you in it?" >&2; exit 1; }
chmod 2750 ${STORE_DIRS}; chmod g+r sif/* 2>/dev/null || true`
    : `chmod 700 .`;
  return `${mode}; set -e
${SHA256_FUNCTION}
command -v zstd >/dev/null 2>&1 && echo "tool zstd"
mkdir -p -- ${shq(p.remoteDir)} ${shq(p.tmpdir)}
cd -- ${shq(p.tmpdir)}; echo "tmpdir $(pwd -P)"; cd
${p.publishDir ? `mkdir -p -- ${shq(p.publishDir)}; cd -- ${shq(p.publishDir)}; echo "publish $(pwd -P)"; cd\n` : ''}cd -- ${shq(p.remoteDir)}; echo "root $(pwd -P)"
mkdir -p ${STORE}/blobs/sha256 ${STORE}/incoming ${STORE}/images sif images jobs
${share}
${p.existingSif ? `(cd; [ -s ${shq(p.existingSif)} ] || { printf 'no .sif at %s on the cluster\\n' ${shq(p.existingSif.startsWith('/') ? p.existingSif : `~/${p.existingSif}`)} >&2; exit 3; }
echo "existing $(readlink -f -- ${shq(p.existingSif)})") || exit 3
` : ''}${p.imageHex === null ? 'exit 0\n' : imageChecks(p.imageHex, p.blobHexes, p.reuse, !!p.sifOnly)}`;
}

/** Record the image (so GC keeps its blobs from now on), check its .sif, and report its blobs. */
function imageChecks(imageHex: string, blobHexes: string[], reuse: boolean, sifOnly: boolean): string {
  const sifCheck = `set +e
sif=sif/${imageHex}.sif
if [ ${reuse ? 1 : 0} = 1 ] && [ -s "$sif" ] && [ -s "$sif.sha256" ] && [ "$(sha256 < "$sif")" = "$(cut -d' ' -f1 "$sif.sha256")" ]; then
  touch ${STORE}/images/${imageHex} 2>/dev/null; echo "sif ok"; exit 0
fi
echo "sif build"
`;
  if (sifOnly) return sifCheck;
  return `printf '%s\\n' ${blobHexes.join(' ')} > ${STORE}/images/${imageHex}.tmp.$$ && mv -f ${STORE}/images/${imageHex}.tmp.$$ ${STORE}/images/${imageHex}
${sifCheck}for h in ${blobHexes.join(' ')}; do
  f=${STORE}/blobs/sha256/$h
  if [ -f "$f" ]; then
    if [ "$(sha256 < "$f")" = "$h" ]; then touch "$f"; echo "blob $h have"; else rm -f "$f"; echo "blob $h bad"; fi
  elif [ -f ${STORE}/incoming/$h.partial ]; then
    echo "blob $h part $(stat -c %s ${STORE}/incoming/$h.partial)"
  fi
done
`;
}

export interface StoreReport {
  root: string;
  tmpdir: string;
  /** Absolute publish directory, when publishing. */
  publishDir: string | null;
  /** Absolute path of the existing .sif under test, if any. */
  existingSif: string | null;
  /** The cluster has zstd (blobs may be sent zstd-compressed). */
  zstd: boolean;
  sifReusable: boolean;
  have: Set<string>;
  bad: Set<string>;
  partial: Map<string, number>;
}

export function parsePrepare(stdout: string): StoreReport {
  const r: StoreReport = { root: '', tmpdir: '', publishDir: null, existingSif: null, zstd: false, sifReusable: false, have: new Set(), bad: new Set(), partial: new Map() };
  for (const line of stdout.split('\n')) {
    const [kind, a, b, c] = line.split(' ');
    if (kind === 'root') r.root = line.slice(5);
    else if (kind === 'tmpdir') r.tmpdir = line.slice(7);
    else if (kind === 'publish') r.publishDir = line.slice(8);
    else if (kind === 'existing') r.existingSif = line.slice(9);
    else if (kind === 'tool' && a === 'zstd') r.zstd = true;
    else if (kind === 'sif') r.sifReusable = a === 'ok';
    else if (kind === 'blob' && b === 'have') r.have.add(a);
    else if (kind === 'blob' && b === 'bad') r.bad.add(a);
    else if (kind === 'blob' && b === 'part') r.partial.set(a, Number(c));
  }
  if (!r.root || !r.tmpdir) throw new Error(`unexpected reply from the cluster while preparing the store: ${JSON.stringify(stdout.slice(0, 300))}`);
  return r;
}

export interface BlobSend {
  blob: ArchiveBlob;
  /** Bytes already on the cluster (an interrupted upload), sent from here on. */
  offset: number;
}

/** What to send: the blobs the cluster lacks, largest first, resuming partial ones. Pure. */
export function planTransfer(archive: ImageArchive, report: StoreReport): BlobSend[] {
  if (report.sifReusable) return [];
  return imageBlobs(archive)
    .filter((b) => !report.have.has(hexOf(b.digest)))
    .map((blob) => {
      const part = report.partial.get(hexOf(blob.digest)) ?? 0;
      return { blob, offset: part > 0 && part < blob.size ? part : 0 };
    })
    .sort((x, y) => y.blob.size - x.blob.size);
}

/** Exit codes of the receive script. */
export const RECEIVE = { ok: 0, busy: 75, short: 77, corrupt: 78 } as const;

export type Codec = 'raw' | 'gzip' | 'zstd';

const DECOMPRESS: Record<Codec, string> = { raw: 'cat', gzip: 'gzip -dc', zstd: 'zstd -dcq' };

/**
 * Receive one blob on stdin (raw, gzip or zstd), appended to its partial file, checked against its
 * digest and only then moved into the store. It first takes its locks, then says `ready N`: the
 * sender starts at raw byte N (what an interrupted upload left), or `have` (another delivery sent
 * it meanwhile). A lock per blob lets concurrent deliveries send a blob once; a shared store lock
 * keeps garbage collection out.
 */
export function receiveScript(root: string, hex: string, size: number, codec: Codec): string {
  return `${SHA256_FUNCTION}
cd -- ${shq(`${root}/${STORE}`)} || exit 1
exec 8>lock; flock -s -w 600 8 || { echo "the store is locked (garbage collection?)" >&2; exit ${RECEIVE.busy}; }
exec 9>incoming/${hex}.lock; flock -w 1800 9 || { echo "another delivery is still sending this blob" >&2; exit ${RECEIVE.busy}; }
[ -f blobs/sha256/${hex} ] && { echo have; exit 0; }
p=incoming/${hex}.partial
have=$(stat -c %s "$p" 2>/dev/null || echo 0)
[ "$have" -le ${size} ] || { rm -f "$p"; have=0; }
echo "ready $have"
${DECOMPRESS[codec]} >> "$p"
have=$(stat -c %s "$p")
[ "$have" -ge ${size} ] || { echo "short $have"; exit ${RECEIVE.short}; }
# Hashed once complete (read back from the page cache): hashing while receiving competes for the
# CPU that decrypting needs, and a resumed blob must be hashed whole anyway.
sum=$(sha256 < "$p")
[ "$have" = ${size} ] && [ "$sum" = ${hex} ] || { rm -f "$p"; echo corrupt; exit ${RECEIVE.corrupt}; }
mv -f "$p" blobs/sha256/${hex}
echo ok
`;
}

export interface GcParams {
  root: string;
  /** Image records to keep, newest first. */
  keepImages: number;
  /** Records, partial uploads and job directories older than this are removed. */
  maxAgeDays: number;
}

/**
 * Garbage collection, under the exclusive store lock (skipped, not waited for, when deliveries are
 * sending): keep the newest image records, drop the blobs and .sif files no kept record names.
 */
export function gcScript(p: GcParams): string {
  return `cd -- ${shq(`${p.root}/${STORE}`)} || exit 0
exec 8>lock; flock -x -w 5 8 || { echo "gc skipped: the store is in use"; exit 0; }
find images -type f -name '[0-9a-f]*' ! -name '*.tmp.*' -mmin +${p.maxAgeDays * 1440} -delete
ls -t images | grep -v '\\.tmp\\.' | tail -n +${p.keepImages + 1} | while read -r i; do rm -f "images/$i"; done
keep=$(mktemp keep.XXXXXX) || exit 1
cat images/* 2>/dev/null | sort -u > "$keep"
blobs=0; sifs=0
for f in blobs/sha256/*; do
  [ -e "$f" ] || continue
  grep -qx "\${f##*/}" "$keep" || { rm -f "$f"; blobs=$((blobs+1)); }
done
for f in ../sif/*.sif; do
  [ -e "$f" ] || continue
  h=\${f##*/}; h=\${h%.sif}
  [ -e "images/$h" ] || { rm -f "$f" "$f.sha256"; sifs=$((sifs+1)); }
done
find incoming -type f -mmin +1440 -delete
find ../jobs -mindepth 1 -maxdepth 1 -type d -mmin +${p.maxAgeDays * 1440} -exec rm -rf {} +
rm -f "$keep"
echo "gc removed $blobs blob(s) and $sifs .sif file(s)"
`;
}

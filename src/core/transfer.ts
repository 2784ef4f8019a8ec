// Sends the blobs the cluster lacks: each streamed out of the local `docker save` tar, compressed on
// the fly where that pays (zstd where both ends have it, else gzip), several at once on separate
// channels, resumed from the bytes already on the cluster after a dropped connection, and verified
// there before it enters the store.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Duplex, Readable, Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import type { ArchiveBlob } from './archive.js';
import { RemoteCommandError } from './errors.js';
import { mib } from './format.js';
import { commandWorks, processFilter } from './process.js';
import type { Reporter } from './reporter.js';
import type { Session } from './session.js';
import { hexOf } from './layout.js';
import { type BlobSend, type Codec, RECEIVE, receiveScript } from './store.js';

/** Channels in flight at once: one channel's window caps its rate, several fill the link. */
const CONCURRENCY = 4;
/** Bytes sampled (at start, middle and end) to decide whether compressing a blob pays. */
const SAMPLE = 256 * 1024;
/** Compress only if the sample shrinks below this fraction. */
const WORTH_IT = 0.9;

/** Whether compression is worth its CPU for this blob, judged on samples of it. */
export async function worthCompressing(tarPath: string, blob: ArchiveBlob): Promise<boolean> {
  if (blob.mediaType === 'layer+gzip' || blob.size < 1024) return false;
  const fh = await open(tarPath, 'r');
  try {
    const starts = blob.size <= 3 * SAMPLE ? [0] : [0, Math.floor(blob.size / 2), blob.size - SAMPLE];
    let raw = 0;
    let packed = 0;
    for (const s of starts) {
      const buf = Buffer.alloc(Math.min(SAMPLE, blob.size - s));
      await fh.read(buf, 0, buf.length, blob.offset + s);
      raw += buf.length;
      packed += zlib.deflateRawSync(buf, { level: 1 }).length;
    }
    return packed < raw * WORTH_IT;
  } finally {
    await fh.close();
  }
}

type ZstdZlib = { createZstdCompress?: (o?: object) => Duplex; constants: Record<string, number> };

/** A zstd compressor here, if there is one: Node's own (22.15+) or the zstd command. */
function localZstd(): (() => Duplex) | null {
  const z = zlib as unknown as ZstdZlib;
  if (typeof z.createZstdCompress === 'function') {
    const level = z.constants.ZSTD_c_compressionLevel;
    return () => z.createZstdCompress!({ params: { [level]: 1 } });
  }
  if (!commandWorks('zstd')) return null;
  return () => processFilter('zstd', ['-1', '-q', '-c']);
}

let zstdFactory: (() => Duplex) | null | undefined;

/** The codec for one blob: nothing for incompressible data, zstd if both ends have it, else gzip. */
export function chooseCodec(compressible: boolean, remoteZstd: boolean): Codec {
  if (!compressible) return 'raw';
  if (zstdFactory === undefined) zstdFactory = localZstd();
  if (remoteZstd && zstdFactory) return 'zstd';
  return 'gzip';
}

function compressor(codec: Codec): Duplex | null {
  if (codec === 'gzip') return zlib.createGzip({ level: 1 });
  if (codec === 'zstd') return zstdFactory!();
  return null;
}

export interface TransferStats {
  /** Bytes handed to SSH (after compression), including any lost in a dropped connection. */
  sent: number;
  /** Raw blob bytes on the cluster so far (for progress). */
  raw: number;
  /** Raw bytes of the blobs being sent. */
  rawTotal: number;
}

class Counter extends Transform {
  constructor(private readonly onBytes: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null, d?: Buffer) => void): void {
    this.onBytes(chunk.length);
    cb(null, chunk);
  }
}

function blobStream(tarPath: string, blob: ArchiveBlob, from: number, codec: Codec, onRaw: (n: number) => void, onWire: (n: number) => void): Readable {
  const raw = from >= blob.size ? Readable.from([]) : createReadStream(tarPath, { start: blob.offset + from, end: blob.offset + blob.size - 1, highWaterMark: 1 << 20 });
  const packer = compressor(codec);
  const parts: Duplex[] = [new Counter(onRaw), ...(packer ? [packer] : []), new Counter(onWire)];
  let s: Readable = raw;
  for (const p of parts) {
    s.on('error', (e) => p.destroy(e));
    s = s.pipe(p);
  }
  // Stopping the last stage (the channel closed early) stops the whole chain.
  s.on('close', () => [raw, ...parts].forEach((x) => x.destroy()));
  return s;
}

/** Send one blob, resuming from the bytes the cluster already has, also after a dropped connection. */
async function sendBlob(session: Session, root: string, tarPath: string, job: BlobSend, remoteZstd: boolean, stats: TransferStats, reporter: Reporter): Promise<void> {
  const { blob } = job;
  const hex = hexOf(blob.digest);
  const codec = chooseCodec(await worthCompressing(tarPath, blob), remoteZstd);
  reporter.debug(`blob ${hex.slice(0, 12)}: ${blob.size} bytes, ${codec}`);
  // Where this blob stands on the cluster, for progress: a resend does not count twice.
  let position = job.offset;
  const moveTo = (n: number) => {
    stats.raw += n - position;
    position = n;
  };
  let corrupt = 0;
  await session.retry(`Sending ${hex.slice(0, 12)}`, async (remote) => {
    for (let round = 0; round < 20; round++) {
      const r = await remote.exec(receiveScript(root, hex, blob.size, codec), {
        feed: {
          after: 'ready ',
          stream: (line) => {
            const from = Number(line.split(' ')[1]);
            if (from > 0) reporter.info(`Resuming ${hex.slice(0, 12)} at ${from} of ${blob.size} bytes.`);
            moveTo(from);
            return blobStream(tarPath, blob, from, codec, (n) => moveTo(position + n), (n) => (stats.sent += n));
          },
        },
      });
      const said = r.stdout.toString().trim();
      if (r.code === RECEIVE.ok) return moveTo(blob.size);
      // The stream stopped early: go on from what arrived.
      if (r.code === RECEIVE.short) continue;
      if (r.code === RECEIVE.corrupt && ++corrupt < 3) {
        reporter.warning(`Blob ${hex.slice(0, 12)} failed its digest check on the cluster; sending it again.`);
        continue;
      }
      throw new RemoteCommandError(`Receiving blob ${hex.slice(0, 12)}`, r.code, r.stderr.toString() || said);
    }
    throw new RemoteCommandError(`Receiving blob ${hex.slice(0, 12)}`, null, 'the upload keeps stopping short');
  });
}

/** Send every planned blob (largest first, a few at a time), logging progress every few seconds. */
export async function sendBlobs(session: Session, root: string, tarPath: string, plan: BlobSend[], remoteZstd: boolean, reporter: Reporter): Promise<TransferStats> {
  const stats: TransferStats = { sent: 0, raw: plan.reduce((a, j) => a + j.offset, 0), rawTotal: plan.reduce((a, j) => a + j.blob.size, 0) };
  if (plan.length === 0) return stats;
  const started = Date.now();
  const resumedFrom = stats.raw;
  const progress = () => {
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    const rate = (stats.raw - resumedFrom) / secs;
    const eta = rate > 0 ? Math.max(0, (stats.rawTotal - stats.raw) / rate) : 0;
    reporter.progress(`Sent ${mib(stats.raw)} of ${mib(stats.rawTotal)} (${mib(stats.sent)} on the wire), ${mib(rate)}/s, ETA ${eta.toFixed(0)} s`);
  };
  const timer = setInterval(progress, 3000);
  try {
    const queue = [...plan];
    const worker = async () => {
      for (let job = queue.shift(); job; job = queue.shift()) await sendBlob(session, root, tarPath, job, remoteZstd, stats, reporter);
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, plan.length) }, worker));
  } finally {
    clearInterval(timer);
  }
  progress();
  return stats;
}

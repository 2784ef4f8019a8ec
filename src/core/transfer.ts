// Sends the blobs the cluster lacks: each streamed out of the local `docker save` tar, gzip-compressed
// on the fly where that pays, several at once on separate channels, resumed from the bytes already
// on the cluster after a dropped connection, and verified there before it enters the store.
import { createReadStream } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { constants, createGzip, deflateRawSync } from 'node:zlib';
import { open } from 'node:fs/promises';
import type { ArchiveBlob } from './archive.js';
import { RemoteCommandError } from './errors.js';
import type { Reporter } from './reporter.js';
import type { Session } from './session.js';
import { type BlobSend, RECEIVE, hexOf, receiveScript } from './store.js';

/** Channels in flight at once: one channel's window caps its rate, several fill the link. */
const CONCURRENCY = 4;
/** Bytes sampled (at start, middle and end) to decide whether compressing a blob pays. */
const SAMPLE = 256 * 1024;
/** Compress only if the sample shrinks below this fraction. */
const WORTH_IT = 0.9;

/** Whether gzip is worth its CPU for this blob, judged on samples of it. */
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
      packed += deflateRawSync(buf, { level: 1 }).length;
    }
    return packed < raw * WORTH_IT;
  } finally {
    await fh.close();
  }
}

export interface TransferStats {
  /** Bytes written to the channels (after compression). */
  sent: number;
  /** Raw blob bytes that reached the cluster in this delivery. */
  raw: number;
  /** Raw bytes this delivery had to move. */
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

function blobStream(tarPath: string, blob: ArchiveBlob, from: number, gzip: boolean, stats: TransferStats): Readable {
  const raw = from >= blob.size ? Readable.from([]) : createReadStream(tarPath, { start: blob.offset + from, end: blob.offset + blob.size - 1, highWaterMark: 1 << 20 });
  const rawCount = new Counter((n) => (stats.raw += n));
  const wire = new Counter((n) => (stats.sent += n));
  const parts: NodeJS.ReadWriteStream[] = gzip ? [rawCount, createGzip({ level: 1, strategy: constants.Z_DEFAULT_STRATEGY }), wire] : [rawCount, wire];
  let s: Readable = raw;
  for (const p of parts) {
    s.on('error', (e) => (p as unknown as Readable).destroy(e));
    s = s.pipe(p as unknown as NodeJS.WritableStream & Readable);
  }
  return s;
}

/** Send one blob, resuming from the bytes the cluster already has, also after a dropped connection. */
async function sendBlob(session: Session, root: string, tarPath: string, blob: ArchiveBlob, stats: TransferStats, reporter: Reporter): Promise<void> {
  const hex = hexOf(blob.digest);
  const gzip = await worthCompressing(tarPath, blob);
  let corrupt = 0;
  await session.retry(`Sending ${hex.slice(0, 12)}`, async (remote) => {
    for (let round = 0; round < 20; round++) {
      const r = await remote.exec(receiveScript(root, hex, blob.size, gzip), {
        feed: {
          after: 'ready ',
          stream: (line) => {
            const from = Number(line.split(' ')[1]);
            if (from > 0) reporter.info(`Resuming ${hex.slice(0, 12)} at ${from} of ${blob.size} bytes.`);
            return blobStream(tarPath, blob, from, gzip, stats);
          },
        },
      });
      const said = r.stdout.toString().trim();
      if (r.code === RECEIVE.ok) return;
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

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/** Send every planned blob (largest first, a few at a time), logging progress every few seconds. */
export async function sendBlobs(session: Session, root: string, tarPath: string, plan: BlobSend[], reporter: Reporter): Promise<TransferStats> {
  const stats: TransferStats = { sent: 0, raw: 0, rawTotal: plan.reduce((a, j) => a + j.blob.size - j.offset, 0) };
  if (plan.length === 0) return stats;
  const started = Date.now();
  const progress = () => {
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    const rate = stats.raw / secs;
    const eta = rate > 0 ? Math.max(0, (stats.rawTotal - stats.raw) / rate) : 0;
    reporter.progress(`Sent ${mib(stats.raw)} of ${mib(stats.rawTotal)} (${mib(stats.sent)} on the wire), ${mib(rate)}/s, ETA ${eta.toFixed(0)} s`);
  };
  const timer = setInterval(progress, 3000);
  try {
    const queue = [...plan];
    const worker = async () => {
      for (let job = queue.shift(); job; job = queue.shift()) await sendBlob(session, root, tarPath, job.blob, stats, reporter);
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, plan.length) }, worker));
  } finally {
    clearInterval(timer);
  }
  progress();
  return stats;
}

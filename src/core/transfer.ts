// Sends the blobs the cluster lacks: cut into ranges that go several at once on separate channels
// (one channel is capped by its SSH window, several fill the link), each compressed on the fly
// where that pays (zstd where both ends have it, at a level that follows what limits the transfer;
// else gzip), resumed per range from the bytes already on the cluster after a dropped connection.
// The cluster joins a blob's ranges and checks the whole against its digest before it enters the
// store. Blobs may be added while the image is still being saved: their bytes are read as they
// reach the disk, and a blob whose digest is not known until it is saved is joined at the end.
import { EventEmitter } from 'node:events';
import { cpus } from 'node:os';
import { Duplex, Readable, Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import type { ArchiveBlob } from './archive.js';
import { LevelTuner, threadsPerChannel, zstdArgs } from './compression.js';
import { RemoteCommandError } from './errors.js';
import { mib } from './format.js';
import { commandWorks, processFilter } from './process.js';
import { DEFAULT_RANGES, type RangeJob, type RangePart, RangeQueue } from './ranges.js';
import type { Reporter } from './reporter.js';
import type { Session } from './session.js';
import { hexOf } from './layout.js';
import { type BlobSend, type Codec, RECEIVE, type StoreReport, receiveScript } from './store.js';
import { TarBytes } from './tarbytes.js';

/** Channels in flight at once: one channel's window caps its rate, several fill the link. */
const CONCURRENCY = DEFAULT_RANGES.channels;
/** Bytes sampled (at start, middle and end) to decide whether compressing a blob pays. */
const SAMPLE = 256 * 1024;
/** Compress only if the sample shrinks below this fraction. */
const WORTH_IT = 0.9;
/** How often a sending channel is looked at to tell whether the link or the compressor limits it. */
const METER_MS = 50;

/** Whether compression is worth its CPU for this blob, judged on samples of it (of its start only while it is being saved). */
export async function worthCompressing(source: string | TarBytes, blob: Pick<ArchiveBlob, 'offset' | 'size' | 'mediaType'>): Promise<boolean> {
  if (blob.mediaType === 'layer+gzip' || blob.size < 1024) return false;
  const bytes = typeof source === 'string' ? await TarBytes.ofFile(source) : source;
  const whole = bytes.finished || bytes.written >= blob.offset + blob.size;
  const starts = blob.size <= 3 * SAMPLE || !whole ? [0] : [0, Math.floor(blob.size / 2), blob.size - SAMPLE];
  let raw = 0;
  let packed = 0;
  for (const s of starts) {
    const buf = await bytes.sample(blob.offset + s, Math.min(SAMPLE, blob.size - s));
    raw += buf.length;
    packed += zlib.deflateRawSync(buf, { level: 1 }).length;
  }
  return packed < raw * WORTH_IT;
}

type ZstdZlib = { createZstdCompress?: (o?: object) => Duplex; constants: Record<string, number> };

/** A zstd compressor here at a level and thread count, if there is one: Node's own (22.15+) or the zstd command. */
function localZstd(): ((level: number, threads: number) => Duplex) | null {
  const z = zlib as unknown as ZstdZlib;
  if (typeof z.createZstdCompress === 'function') {
    const { ZSTD_c_compressionLevel: level, ZSTD_c_nbWorkers: workers } = z.constants;
    return (l, t) => z.createZstdCompress!({ params: { [level]: l, ...(t > 1 ? { [workers]: t } : {}) } });
  }
  if (!commandWorks('zstd')) return null;
  return (l, t) => processFilter('zstd', zstdArgs(l, t));
}

let zstdFactory: ((level: number, threads: number) => Duplex) | null | undefined;

/** This machine's zstd compressor, looked for once. */
function zstdHere(): ((level: number, threads: number) => Duplex) | null {
  if (zstdFactory === undefined) zstdFactory = localZstd();
  return zstdFactory;
}

/** The codec for one blob: nothing for incompressible data, zstd if both ends have it, else gzip. Pure. */
export function chooseCodec(compressible: boolean, remoteZstd: boolean, localZstd: boolean): Codec {
  if (!compressible) return 'raw';
  return remoteZstd && localZstd ? 'zstd' : 'gzip';
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

/** One blob to send: where its bytes are in the tar, and what the cluster holds of it. */
export interface Upload {
  /** Its part files' name on the cluster: its digest's hex, or a stand-in while the digest is not known. */
  key: string;
  /** Its digest's hex; null while not known yet (it is known by the time the transfer ends). */
  hex: () => string | null;
  offset: number;
  size: number;
  mediaType: ArchiveBlob['mediaType'];
  /** Its ranges the cluster holds (some maybe partly), from the store's report. */
  parts: RangePart[];
}

interface Sending extends Upload {
  codec: Promise<Codec> | null;
  joined: boolean;
  /**
   * One more receive, naming the digest, is due at the end: the cluster said it has the blob going
   * by the stand-in name alone (that receive checks it by digest), or a range sent before the digest
   * was known ended as a part after the blob was joined (that receive removes it).
   */
  confirm: boolean;
  /** A range sent of it, to join on (at the end, for a blob whose digest came late). */
  last: RangeJob | null;
  /** The ranges sent of it, `START-END`. */
  sent: string[];
  corrupt: number;
}

/**
 * Sends uploads as they are added, on CONCURRENCY channels; `finish` waits for the last and joins
 * whatever the cluster could not join while the digest was unknown.
 */
export class Transfer {
  readonly stats: TransferStats = { sent: 0, raw: 0, rawTotal: 0 };
  private readonly queue = new RangeQueue([]);
  private readonly uploads = new Map<string, Sending>();
  private readonly events = new EventEmitter();
  private readonly tuner = new LevelTuner(cpus().length);
  private readonly threads = threadsPerChannel(cpus().length, CONCURRENCY);
  private readonly workers: Promise<void>[];
  private closed = false;
  private failure: unknown = null;
  private readonly started = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly session: Session,
    /** The store's directory, whether it has zstd, and the login shell's PATH, from its report. */
    private readonly store: Pick<StoreReport, 'root' | 'zstd' | 'path'>,
    private readonly bytes: TarBytes,
    private readonly reporter: Reporter,
  ) {
    this.events.setMaxListeners(0);
    this.workers = Array.from({ length: CONCURRENCY }, () => this.worker());
    this.timer = setInterval(() => this.progress(), 3000);
  }

  add(u: Upload): void {
    if (this.uploads.has(u.key)) return;
    this.uploads.set(u.key, { ...u, codec: null, joined: false, confirm: false, last: null, sent: [], corrupt: 0 });
    this.stats.rawTotal += u.size;
    this.stats.raw += u.parts.reduce((a, p) => a + p.have, 0);
    this.queue.add({ key: u.key, size: u.size, parts: u.parts });
    this.events.emit('change');
  }

  /** No more uploads: wait for the ones added, join the blobs not joined yet, and say how it went. */
  async finish(): Promise<TransferStats> {
    this.closed = true;
    this.events.emit('change');
    try {
      await Promise.all(this.workers);
      if (this.failure) throw this.failure;
      for (const u of this.uploads.values()) {
        if (u.joined && !u.confirm) continue;
        const r = u.last ?? { key: u.key, start: 0, end: u.size, from: 0 };
        // Nothing left to send of it: its receiver checks the parts and joins them.
        await this.sendRange({ ...r, from: r.end });
        if (!u.joined) throw new RemoteCommandError(`Receiving blob ${this.label(u)}`, null, 'its ranges are all sent but the cluster did not join them');
      }
      // Said once every range has come back: the one that joins may answer before the others.
      for (const u of this.uploads.values())
        this.reporter.debug(`blob ${this.label(u)}: in the store${u.sent.length ? `, sent in ranges ${u.sent.join(',')}` : ''}`);
    } finally {
      clearInterval(this.timer);
    }
    this.progress();
    return this.stats;
  }

  /** Stop: no more ranges are started (the delivery failed elsewhere). */
  abort(e: unknown): void {
    this.failure ??= e;
    this.closed = true;
    this.events.emit('change');
  }

  private label(u: Upload): string {
    return (u.hex() ?? u.key).slice(0, 12);
  }

  private progress(): void {
    const secs = Math.max(0.001, (Date.now() - this.started) / 1000);
    const rate = this.stats.sent / secs;
    this.reporter.progress(`Sent ${mib(this.stats.raw)} of ${mib(this.stats.rawTotal)} (${mib(this.stats.sent)} on the wire, ${mib(rate)}/s)`);
  }

  private async worker(): Promise<void> {
    for (;;) {
      if (this.failure) return;
      const job = this.queue.next();
      if (!job) {
        if (this.closed && this.queue.done) return;
        await new Promise((r) => this.events.once('change', r));
        continue;
      }
      try {
        await this.sendRange(job);
      } catch (e) {
        this.abort(e);
        return;
      }
    }
  }

  private codecOf(u: Sending): Promise<Codec> {
    u.codec ??= worthCompressing(this.bytes, u).then((c) => chooseCodec(c, this.store.zstd, zstdHere() !== null));
    return u.codec;
  }

  /** The bytes [from, end) of an upload, compressed with `codec`, counted both sides of the compressor. */
  private stream(u: Sending, from: number, end: number, codec: Codec, level: number, onRaw: (n: number) => void): { s: Readable; full: () => number } {
    const raw = this.bytes.read(u.offset + from, u.offset + end);
    const packer = codec === 'gzip' ? zlib.createGzip({ level: 1 }) : codec === 'zstd' ? zstdHere()!(level, this.threads) : null;
    const parts: Duplex[] = [new Counter(onRaw), ...(packer ? [packer] : []), new Counter((n) => (this.stats.sent += n))];
    let s: Readable = raw;
    for (const p of parts) {
      s.on('error', (e) => p.destroy(e));
      s = s.pipe(p);
    }
    // Stopping the last stage (the channel closed early) stops the whole chain.
    s.on('close', () => [raw, ...parts].forEach((x) => x.destroy()));
    // A channel that cannot take more pauses the stream feeding it: sampled, that says whether the
    // link (paused) or the compressor (flowing, waiting for data) limits this range.
    let samples = 0;
    let paused = 0;
    const out = s;
    const meter = setInterval(() => {
      if (out.readableFlowing === null) return;
      samples++;
      if (out.readableFlowing === false) paused++;
    }, METER_MS);
    out.on('close', () => clearInterval(meter));
    return { s: out, full: () => (samples ? paused / samples : 0.5) };
  }

  /** Send one range, resuming from the bytes the cluster has of it, also after a dropped connection. */
  private async sendRange(job: RangeJob): Promise<void> {
    const u = this.uploads.get(job.key)!;
    // The cluster has the blob: the rest of its ranges need not go.
    if (u.joined && job.from < job.end) {
      this.stats.raw += job.end - job.from;
      return;
    }
    const codec = job.from >= job.end ? 'raw' : await this.codecOf(u);
    u.last = job;
    this.reporter.debug(
      `blob ${this.label(u)}: range ${job.start}-${job.end} of ${u.size} from ${job.from}, ${codec}${codec === 'zstd' ? ` level ${this.tuner.level}` : ''}`,
    );
    // Where this range stands on the cluster, for progress: a resend does not count twice.
    let position = job.from;
    const moveTo = (n: number) => {
      this.stats.raw += n - position;
      position = n;
    };
    await this.session.retry(`Sending ${this.label(u)}`, async (remote) => {
      for (let round = 0; round < 20; round++) {
        const level = this.tuner.level;
        let meter: (() => number) | null = null;
        const hex = u.hex();
        const receive = receiveScript({ root: this.store.root, key: u.key, hex, size: u.size, start: job.start, end: job.end, codec, path: this.store.path });
        // A receiver needs no `module`: the login profile's cost is spared on every range.
        const r = await remote.exec(receive, {
          login: false,
          feed: {
            after: 'ready ',
            stream: (line) => {
              const from = job.start + Number(line.split(' ')[1]);
              if (from > job.start && from < job.end) this.reporter.info(`Resuming ${this.label(u)} at ${from} of ${u.size} bytes.`);
              moveTo(from);
              const { s, full } = this.stream(u, from, job.end, codec, level, (n) => moveTo(position + n));
              meter = full;
              return s;
            },
          },
        });
        const said = r.stdout.toString().trim().split('\n');
        const last = said[said.length - 1] ?? '';
        if (r.code === RECEIVE.ok) {
          moveTo(job.end);
          if (codec === 'zstd' && meter) this.tuner.record(level, (meter as () => number)());
          if (job.from < job.end) u.sent.push(`${job.start}-${job.end}`);
          if (last === 'ok' || last === 'have') {
            u.joined = true;
            u.confirm = hex === null;
          } else if (u.joined) u.confirm = true;
          return;
        }
        // The stream stopped early: go on from what arrived.
        if (r.code === RECEIVE.short) continue;
        if (r.code === RECEIVE.corrupt && ++u.corrupt < 3) {
          // The cluster removed every part of it: the whole blob goes again.
          this.reporter.warning(`Blob ${this.label(u)} failed its digest check on the cluster; sending it again.`);
          this.stats.raw -= u.size;
          this.queue.restart(u.key);
          this.events.emit('change');
          return;
        }
        throw new RemoteCommandError(`Receiving blob ${this.label(u)}`, r.code, r.stderr.toString() || said.join('\n'));
      }
      throw new RemoteCommandError(`Receiving blob ${this.label(u)}`, null, 'the upload keeps stopping short');
    });
  }
}

/** An upload of a blob whose digest is known. */
export function uploadOf(job: BlobSend): Upload {
  const hex = hexOf(job.blob.digest);
  return { key: hex, hex: () => hex, offset: job.blob.offset, size: job.blob.size, mediaType: job.blob.mediaType, parts: job.parts };
}

// The bytes of a saved image: a tar already on disk, or one `docker save` is still writing (straight
// into the file, which this module reads behind it), so that the upload can start while the image
// is saved; docker writes at its own pace, never waiting for this process's event loop.
// Members are known as soon as their headers pass, and the large ones are hashed on the way, so
// the cluster can check a blob sent before its name (its digest) was known.
import { createHash, type Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { BuildError } from './errors.js';
import { startProcessToFile } from './process.js';
import { TarFollower, type TarEntry } from './tar.js';

const CHUNK = 1 << 20;
/** What the save is followed by: a large read each time, and a short nap when it caught up. */
const FOLLOW_CHUNK = 4 << 20;
const FOLLOW_POLL_MS = 5;

/** A member of the tar, and its sha256 once all of it went by (only members that were hashed). */
export interface TarMember extends TarEntry {
  hex: string | null;
}

export class TarBytes {
  /** Bytes on disk so far. */
  written = 0;
  finished = false;
  failed: Error | null = null;
  readonly members = new Map<string, TarMember>();
  private readonly events = new EventEmitter();

  private constructor(readonly path: string) {
    this.events.setMaxListeners(0);
  }

  /** A tar already complete on disk. */
  static async ofFile(path: string): Promise<TarBytes> {
    const t = new TarBytes(path);
    t.written = (await stat(path)).size;
    t.finished = true;
    return t;
  }

  /**
   * `docker save image` into `path`, followed as it goes: members whose data `hash` selects are
   * hashed on the way. `done` resolves when the tar is complete and on disk.
   */
  static save(image: string, path: string, hash: (e: TarEntry) => boolean): { bytes: TarBytes; done: Promise<void>; abort: () => void } {
    const t = new TarBytes(path);
    const hashes = new Map<string, Hash>();
    const follower = new TarFollower(
      path,
      (e) => {
        if (e.type !== 'file') return;
        t.members.set(e.name, { ...e, hex: null });
        if (hash(e)) hashes.set(e.name, createHash('sha256'));
      },
      (e, chunk) => hashes.get(e.name)?.update(chunk),
      (e) => {
        const h = hashes.get(e.name);
        if (h) t.members.get(e.name)!.hex = h.digest('hex');
      },
    );
    let stopped = false;
    let child: ReturnType<typeof startProcessToFile> | null = null;
    const done = (async () => {
      const out = await open(path, 'wx', 0o600);
      let proc: ReturnType<typeof startProcessToFile>;
      try {
        proc = child = startProcessToFile('docker', ['save', image], out.fd);
      } finally {
        await out.close();
      }
      if (stopped) proc.kill();
      let stderr = '';
      proc.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      let exited = false;
      const ended = proc.ended.finally(() => (exited = true));
      const fh = await open(path, 'r');
      try {
        // Read behind the writer: what is read is on disk, so `written` may count it. Each read
        // gets a buffer of its own: the follower keeps pieces of a header cut between two reads.
        for (;;) {
          const ahead = (await fh.stat()).size - t.written;
          const buf = Buffer.allocUnsafe(Math.max(1, Math.min(FOLLOW_CHUNK, ahead)));
          const { bytesRead } = await fh.read(buf, 0, buf.length, t.written);
          if (bytesRead > 0) {
            follower.push(buf.subarray(0, bytesRead));
            t.written += bytesRead;
            t.changed();
            continue;
          }
          // Nothing new: done if docker has exited (and this read came after), else look again soon.
          if (exited) break;
          await Promise.race([ended, new Promise((r) => setTimeout(r, FOLLOW_POLL_MS))]);
        }
        const code = await ended;
        if (stopped) throw new BuildError('docker save was stopped.');
        if (code !== 0) throw new BuildError(`docker save failed (exit ${code}):\n${stderr.trim().split('\n').slice(-15).join('\n')}`);
        t.finished = true;
      } catch (e) {
        proc.kill();
        t.failed = e instanceof Error ? e : new Error(String(e));
        throw t.failed;
      } finally {
        await fh.close();
        t.changed();
      }
    })();
    // The failure reaches every reader and the caller through `done`; never unhandled here.
    done.catch(() => undefined);
    const abort = () => {
      stopped = true;
      child?.kill();
    };
    return { bytes: t, done, abort };
  }

  private changed(): void {
    this.events.emit('change');
  }

  /** Resolves at the next change: more bytes, the end, or a failure. */
  wait(): Promise<void> {
    if (this.finished || this.failed) return Promise.resolve();
    return new Promise((r) => this.events.once('change', r));
  }

  /** Bytes [start, end) of the tar, read as they reach the disk. */
  read(start: number, end: number): Readable {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    return Readable.from(
      (async function* () {
        const fh = await open(self.path, 'r');
        try {
          for (let pos = start; pos < end;) {
            while (self.written <= pos) {
              if (self.failed) throw self.failed;
              if (self.finished) throw new BuildError(`The saved image ${self.path} ends at byte ${self.written}, before byte ${end}.`);
              await self.wait();
            }
            const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.min(end, self.written) - pos));
            const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
            if (bytesRead === 0) throw new BuildError(`The saved image ${self.path} could not be read at byte ${pos}.`);
            pos += bytesRead;
            yield buf.subarray(0, bytesRead);
          }
        } finally {
          await fh.close();
        }
      })(),
      { objectMode: false },
    );
  }

  /** Up to `length` bytes at `offset`, waiting for them to be written. */
  async sample(offset: number, length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.read(offset, offset + length)) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }
}

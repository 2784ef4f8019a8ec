// Minimal tar index reader. It walks the headers of a tar file on disk with positioned reads and
// skips member data, so a multi-GB `docker save` archive is indexed without reading its layers.
import { open, type FileHandle } from 'node:fs/promises';
import { BuildError } from './errors.js';

export interface TarEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';
  size: number;
  /** Byte offset of the data in the tar file. */
  offset: number;
  linkname: string;
}

const BLOCK = 512;
const HINT = 'Save the image again with `docker save -o FILE IMAGE` and check that the file was copied completely.';

export async function listTar(path: string): Promise<TarEntry[]> {
  return withFile(path, async (fh) => {
    const fileSize = (await fh.stat()).size;
    const entries: TarEntry[] = [];
    // pax ('x') and GNU ('L'/'K') headers describe the next real entry only.
    let next: { path?: string; linkpath?: string; size?: number } = {};
    for (let pos = 0; pos < fileSize;) {
      const header = await readAt(fh, pos, BLOCK);
      if (pos === 0 && header[0] === 0x1f && header[1] === 0x8b) throw invalid(path, 'it is gzip-compressed: pass the tar itself (gunzip it first)');
      if (header.length < BLOCK) throw invalid(path, `it ends inside the header at byte ${pos}`);
      if (header.every((b) => b === 0)) break; // end-of-archive marker
      if (!checksumOk(header)) throw invalid(path, `the header at byte ${pos} has a bad checksum`);
      const flag = String.fromCharCode(header[156]);
      const meta = 'xgLK'.includes(flag);
      const size = (meta ? undefined : next.size) ?? parseNumber(header, 124, 12);
      if (size === undefined) throw invalid(path, `the header at byte ${pos} has an unreadable size`);
      const offset = pos + BLOCK;
      if (offset + size > fileSize) throw invalid(path, `it is truncated: the member at byte ${pos} needs ${size} bytes but the file ends at byte ${fileSize}`);
      if (meta) {
        const data = flag === 'g' ? Buffer.alloc(0) : await readAt(fh, offset, size);
        if (flag === 'x') next = { ...next, ...parsePax(path, data, pos) };
        else if (flag === 'L') next.path = cString(data, 0, data.length);
        else if (flag === 'K') next.linkpath = cString(data, 0, data.length);
      } else {
        entries.push({
          name: next.path ?? headerName(header),
          type: typeOf(flag),
          size,
          offset,
          linkname: next.linkpath ?? cString(header, 157, 100),
        });
        next = {};
      }
      pos = offset + Math.ceil(size / BLOCK) * BLOCK;
    }
    return entries;
  });
}

/** The data of one member (or its first `length` bytes). */
export async function readTarMember(path: string, entry: TarEntry, length = entry.size): Promise<Buffer> {
  return withFile(path, async (fh) => {
    const data = await readAt(fh, entry.offset, length);
    if (data.length < length) throw invalid(path, `it is truncated inside member '${entry.name}'`);
    return data;
  });
}

async function withFile<T>(path: string, use: (fh: FileHandle) => Promise<T>): Promise<T> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new BuildError(`Cannot read image archive ${path}: ${(err as Error).message}`, HINT);
  }
  try {
    return await use(fh);
  } finally {
    await fh.close();
  }
}

/** Reads up to `length` bytes; shorter only at end of file. */
async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

function invalid(path: string, problem: string): BuildError {
  return new BuildError(`Image archive ${path} is not a valid tar file: ${problem}.`, HINT);
}

function checksumOk(header: Buffer): boolean {
  let sum = 8 * 0x20; // the checksum field itself counts as spaces
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += header[i];
  return parseNumber(header, 148, 8) === sum;
}

/** Octal text, or base-256 (high bit set) for values too big for octal. */
function parseNumber(buf: Buffer, start: number, length: number): number | undefined {
  if (buf[start] & 0x80) {
    if (buf[start] === 0xff) return undefined; // negative
    let n = buf[start] & 0x7f;
    for (let i = start + 1; i < start + length; i++) n = n * 256 + buf[i];
    return Number.isSafeInteger(n) ? n : undefined;
  }
  const text = cString(buf, start, length).trim();
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : undefined;
}

function cString(buf: Buffer, start: number, length: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end >= 0 && end < start + length ? end : start + length);
}

function headerName(header: Buffer): string {
  const name = cString(header, 0, 100);
  // POSIX ustar splits long names into prefix + name; old GNU headers ('ustar  ') use those bytes for times.
  const prefix = header.toString('latin1', 257, 263) === 'ustar\0' ? cString(header, 345, 155) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function typeOf(flag: string): TarEntry['type'] {
  switch (flag) {
    case '0':
    case '\0':
    case '7':
      return 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '5':
      return 'dir';
    default:
      return 'other';
  }
}

/** pax records: "<length> <key>=<value>\n", length in bytes including itself. */
function parsePax(path: string, data: Buffer, pos: number): { path?: string; linkpath?: string; size?: number } {
  const out: { path?: string; linkpath?: string; size?: number } = {};
  for (let i = 0; i < data.length;) {
    const space = data.indexOf(0x20, i);
    const length = Number(data.toString('latin1', i, space));
    const eq = data.indexOf(0x3d, space);
    if (space < 0 || !Number.isInteger(length) || length <= 0 || eq < 0 || eq >= i + length) {
      throw invalid(path, `the pax header at byte ${pos} is malformed`);
    }
    const key = data.toString('utf8', space + 1, eq);
    const value = data.toString('utf8', eq + 1, i + length - 1);
    if (key === 'path' || key === 'linkpath') out[key] = value;
    else if (key === 'size') {
      if (!/^\d+$/.test(value)) throw invalid(path, `the pax header at byte ${pos} has a bad size`);
      out.size = Number(value);
    }
    i += length;
  }
  return out;
}

/**
 * Follows a tar as its bytes go by (`docker save` into a pipe): reports each member as soon as its
 * header has passed, and hands on each piece of member data with the member it belongs to.
 */
export class TarFollower {
  /** Absolute offset of the next byte pushed. */
  private pos = 0;
  private header: Buffer[] = [];
  private headerBytes = 0;
  /** Bytes left of the current member's data, of a meta header's data, or of padding. */
  private left = 0;
  private state: 'header' | 'data' | 'meta' | 'pad' | 'end' = 'header';
  private current: TarEntry | null = null;
  private meta: { flag: string; data: Buffer[] } | null = null;
  private pad = 0;
  private next: { path?: string; linkpath?: string; size?: number } = {};

  constructor(
    private readonly name: string,
    private readonly onEntry: (e: TarEntry) => void,
    private readonly onData: (e: TarEntry, chunk: Buffer) => void = () => undefined,
    private readonly onEnd: (e: TarEntry) => void = () => undefined,
  ) {}

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && this.state !== 'end') {
      if (this.state === 'header') {
        const n = Math.min(BLOCK - this.headerBytes, chunk.length - i);
        this.header.push(chunk.subarray(i, i + n));
        this.headerBytes += n;
        i += n;
        if (this.headerBytes === BLOCK) this.onHeader(Buffer.concat(this.header), this.pos + i);
        continue;
      }
      const n = Math.min(this.left, chunk.length - i);
      const piece = chunk.subarray(i, i + n);
      i += n;
      this.left -= n;
      if (this.state === 'data') this.onData(this.current!, piece);
      else if (this.state === 'meta') this.meta!.data.push(piece);
      if (this.left === 0) this.endOfPart();
    }
    this.pos += chunk.length;
  }

  /** `dataAt`: absolute offset just past the header, where its data starts. */
  private onHeader(header: Buffer, dataAt: number): void {
    const at = dataAt - BLOCK;
    this.header = [];
    this.headerBytes = 0;
    if (header.every((b) => b === 0)) {
      this.state = 'end';
      return;
    }
    if (!checksumOk(header)) throw invalid(this.name, `the header near byte ${at} has a bad checksum`);
    const flag = String.fromCharCode(header[156]);
    const isMeta = 'xgLK'.includes(flag);
    const size = (isMeta ? undefined : this.next.size) ?? parseNumber(header, 124, 12);
    if (size === undefined) throw invalid(this.name, `the header near byte ${at} has an unreadable size`);
    this.pad = Math.ceil(size / BLOCK) * BLOCK - size;
    this.left = size;
    if (isMeta) {
      this.meta = { flag, data: [] };
      this.state = 'meta';
    } else {
      this.current = {
        name: this.next.path ?? headerName(header),
        type: typeOf(flag),
        size,
        offset: dataAt,
        linkname: this.next.linkpath ?? cString(header, 157, 100),
      };
      this.next = {};
      this.state = 'data';
      this.onEntry(this.current);
    }
    if (size === 0) this.endOfPart();
  }

  private endOfPart(): void {
    if (this.state === 'meta') {
      const data = Buffer.concat(this.meta!.data);
      if (this.meta!.flag === 'x') this.next = { ...this.next, ...parsePax(this.name, data, 0) };
      else if (this.meta!.flag === 'L') this.next.path = cString(data, 0, data.length);
      else if (this.meta!.flag === 'K') this.next.linkpath = cString(data, 0, data.length);
      this.meta = null;
    } else if (this.state === 'data') {
      this.onEnd(this.current!);
      this.current = null;
    }
    if (this.state !== 'pad' && this.pad > 0) {
      this.state = 'pad';
      this.left = this.pad;
      this.pad = 0;
    } else this.state = 'header';
  }
}

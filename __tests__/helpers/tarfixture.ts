// Tiny tar writer for fixture archives: ustar headers, with long names stored as pax records,
// GNU 'L'/'K' members or a ustar prefix, and sizes in octal, base-256 or a pax record.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';

export interface TarFixtureEntry {
  name: string;
  data?: string | Buffer;
  /** 'pax-global' writes a 'g' header whose data are pax records (see paxRecords). */
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'pax-global';
  linkname?: string;
  /** How a name or linkname over 100 bytes is stored (default 'pax'). */
  longNames?: 'pax' | 'gnu' | 'ustar';
  /** How the size is stored (default 'octal'). */
  size?: 'octal' | 'base256' | 'pax';
}

const FLAGS = { file: '0', hardlink: '1', symlink: '2', dir: '5', 'pax-global': 'g' } as const;

/** A tar archive; `end: false` leaves out the two zero blocks that close it. */
export function tarBuffer(entries: TarFixtureEntry[], { end = true } = {}): Buffer {
  const parts = entries.flatMap(member);
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export async function writeTar(path: string, entries: TarFixtureEntry[], options?: { end?: boolean }): Promise<string> {
  await writeFile(path, tarBuffer(entries, options));
  return path;
}

export function paxRecords(records: Record<string, string>): Buffer {
  return Buffer.concat(
    Object.entries(records).map(([key, value]) => {
      const body = Buffer.byteLength(` ${key}=${value}\n`);
      let length = body;
      while (length !== body + String(length).length) length = body + String(length).length;
      return Buffer.from(`${length} ${key}=${value}\n`);
    }),
  );
}

function member(entry: TarFixtureEntry): Buffer[] {
  const data = Buffer.from(entry.data ?? '');
  const { name, linkname = '', longNames = 'pax', size = 'octal' } = entry;
  const flag = FLAGS[entry.type ?? 'file'];
  const out: Buffer[] = [];
  const pax: Record<string, string> = {};
  let headerName = name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    if (longNames === 'ustar') [prefix, headerName] = splitUstar(name);
    else if (longNames === 'gnu') out.push(...block('././@LongLink', 'L', Buffer.from(`${name}\0`), { gnu: true }));
    else pax.path = name;
  }
  if (Buffer.byteLength(linkname) > 100) {
    if (longNames === 'gnu') out.push(...block('././@LongLink', 'K', Buffer.from(`${linkname}\0`), { gnu: true }));
    else pax.linkpath = linkname;
  }
  if (size === 'pax') pax.size = String(data.length);
  if (Object.keys(pax).length) out.push(...block(`PaxHeaders/${name.slice(-80)}`, 'x', paxRecords(pax), {}));
  out.push(...block(headerName, flag, data, { linkname, prefix, gnu: longNames === 'gnu', size }));
  return out;
}

function block(name: string, flag: string, data: Buffer, o: { linkname?: string; prefix?: string; gnu?: boolean; size?: TarFixtureEntry['size'] }): Buffer[] {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, 100, 'utf8');
  octal(h, 100, 8, flag === '5' ? 0o755 : 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  if (o.size === 'base256') {
    h[124] = 0x80;
    for (let i = 135, n = data.length; i > 124; i--, n = Math.floor(n / 256)) h[i] = n % 256;
  } else octal(h, 124, 12, o.size === 'pax' ? 0 : data.length);
  octal(h, 136, 12, 1_700_000_000);
  h.write(flag, 156, 'latin1');
  h.write((o.linkname ?? '').slice(0, 100), 157, 100, 'utf8');
  h.write(o.gnu ? 'ustar  \0' : 'ustar\x0000', 257, 'latin1');
  h.write('root', 265);
  h.write('root', 297);
  h.write(o.prefix ?? '', 345, 155, 'utf8');
  h.fill(0x20, 148, 156);
  octal(
    h,
    148,
    7,
    h.reduce((sum, b) => sum + b, 0),
  );
  return [h, data, Buffer.alloc((512 - (data.length % 512)) % 512)];
}

function octal(h: Buffer, offset: number, length: number, n: number): void {
  h.write(`${n.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'latin1');
}

function splitUstar(name: string): [string, string] {
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    if (i <= 155 && name.length - i - 1 <= 100) return [name.slice(0, i), name.slice(i + 1)];
  }
  throw new Error(`cannot split '${name}' into a ustar prefix and name`);
}

/** A one-layer image as legacy `docker save` writes it, at `path`; returns its image id. */
export function writeSavedImage(path: string, layer: Buffer, repoTag = 'img:1'): { path: string; id: string } {
  const sha = (d: string | Buffer) => createHash('sha256').update(d).digest('hex');
  const config = JSON.stringify({ rootfs: { type: 'layers', diff_ids: [`sha256:${sha(layer)}`] } });
  writeFileSync(
    path,
    tarBuffer([
      { name: 'manifest.json', data: JSON.stringify([{ Config: `${sha(config)}.json`, RepoTags: [repoTag], Layers: ['l1/layer.tar'] }]) },
      { name: `${sha(config)}.json`, data: config },
      { name: 'l1/layer.tar', data: layer },
    ]),
  );
  return { path, id: `sha256:${sha(config)}` };
}

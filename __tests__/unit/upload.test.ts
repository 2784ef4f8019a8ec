// Which members of a tar being saved go before the save ends, and the save begun before the
// cluster has said what it lacks: members held until then, handed over in order, the save stopped
// (and its tar gone) when nothing is needed.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ImageSource, SavedImage, Saving } from '../../src/core/source.js';
import type { TarEntry } from '../../src/core/tar.js';
import { TarBytes } from '../../src/core/tarbytes.js';
import { SaveAhead, earlyMember } from '../../src/core/upload.js';

const MIB = 1 << 20;
const hex = (c: string) => c.repeat(64);
const entry = (name: string, size: number, offset = 512): TarEntry => ({ name, size, offset, type: 'file', linkname: '' });

describe('earlyMember', () => {
  test('a blob named by its digest goes early if the store lacks it, and needs no hashing', () => {
    expect(earlyMember(entry(`blobs/sha256/${hex('a')}`, 2 * MIB), new Set([hex('a')]), false, hex('f'))).toEqual({ key: hex('a'), hex: hex('a') });
    expect(earlyMember(entry(`blobs/sha256/${hex('b')}`, 2 * MIB), new Set([hex('a')]), false, hex('f'))).toBeNull();
  });

  test('a legacy layer.tar goes early only on a first delivery, under a key named after the image and member', () => {
    const m = earlyMember(entry('abc/layer.tar', 2 * MIB), new Set(), true, hex('f'));
    expect(m?.hex).toBeNull();
    expect(m?.key).toMatch(/^m[0-9a-f]{24}$/);
    expect(earlyMember(entry('abc/layer.tar', 2 * MIB), new Set(), true, hex('f'))).toEqual(m);
    expect(earlyMember(entry('abc/layer.tar', 2 * MIB), new Set(), true, hex('e'))?.key).not.toBe(m?.key);
    expect(earlyMember(entry('abc/layer.tar', 2 * MIB), new Set(), false, hex('f'))).toBeNull();
  });

  test('small members wait for the end of the save', () => {
    expect(earlyMember(entry(`blobs/sha256/${hex('a')}`, 1000), new Set([hex('a')]), false, hex('f'))).toBeNull();
  });
});

/** A source whose save announces `members` one by one when `pass` is called, and records what happens to it. */
function fakeSource() {
  const dir = mkdtempSync(join(tmpdir(), 'rs-ahead-'));
  const tar = join(dir, 'image.tar');
  writeFileSync(tar, '');
  const log: string[] = [];
  let early: (e: TarEntry) => boolean = () => false;
  let finish: (img: SavedImage) => void = () => undefined;
  let fail: (e: Error) => void = () => undefined;
  const source: ImageSource = {
    digest: `sha256:${hex('f')}`,
    size: 0,
    blobHexes: [],
    load: async (cb) => {
      early = cb ?? early;
      const saved = new Promise<SavedImage>((res, rej) => {
        finish = res;
        fail = rej;
      });
      const saving: Saving = {
        bytes: await TarBytes.ofFile(tar),
        saving: true,
        saved,
        abort: () => {
          log.push('abort');
          fail(new Error('docker save was stopped.'));
        },
      };
      return saving;
    },
  };
  const image = (): SavedImage => ({
    archive: {} as SavedImage['archive'],
    tar,
    size: 0,
    cleanup: async () => {
      log.push('cleanup');
    },
  });
  return { source, log, pass: (e: TarEntry) => early(e), finish: () => finish(image()), tar };
}

describe('SaveAhead', () => {
  test('holds the large members that pass before the answer, hashing those not named by a digest; hands them over first, in order', async () => {
    const f = fakeSource();
    const ahead = new SaveAhead(f.source);
    await ahead.saving;
    expect(f.pass(entry('one/layer.tar', 2 * MIB))).toBe(true);
    expect(f.pass(entry(`blobs/sha256/${hex('a')}`, 3 * MIB))).toBe(false);
    expect(f.pass(entry('small.json', 100))).toBe(false);
    const seen: string[] = [];
    ahead.route((e) => (seen.push(e.name), e.name.endsWith('.tar')));
    expect(seen).toEqual(['one/layer.tar', `blobs/sha256/${hex('a')}`]);
    // From now on the choice is the upload's, member by member.
    expect(f.pass(entry('two/layer.tar', 2 * MIB))).toBe(true);
    expect(f.pass(entry('x.json', 10))).toBe(false);
    expect(seen).toEqual(['one/layer.tar', `blobs/sha256/${hex('a')}`, 'two/layer.tar', 'x.json']);
  });

  test('stop, while saving: the save is aborted and nothing waits on it', async () => {
    const f = fakeSource();
    const ahead = new SaveAhead(f.source);
    await ahead.stop();
    expect(f.log).toEqual(['abort']);
  });

  test('stop, after the save ended: its tar is removed', async () => {
    const f = fakeSource();
    const ahead = new SaveAhead(f.source);
    await ahead.saving;
    f.finish();
    await ahead.stop();
    expect(f.log).toEqual(['abort', 'cleanup']);
  });

  test('a save that could not start: stop is quiet', async () => {
    const ahead = new SaveAhead({ digest: 'sha256:x', size: 0, blobHexes: [], load: () => Promise.reject(new Error('no docker')) });
    await expect(ahead.stop()).resolves.toBeUndefined();
    await expect(ahead.saving).rejects.toThrow('no docker');
  });
});

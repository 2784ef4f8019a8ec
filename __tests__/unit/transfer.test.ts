// Sending blobs: whether compressing one pays (judged on samples read at its offset in the tar),
// and whole transfers into a real store, with the receive script run by bash in a temp dir
// through a stand-in for the SSH session.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ArchiveBlob } from '../../src/core/archive.js';
import type { Reporter } from '../../src/core/reporter.js';
import type { Session } from '../../src/core/session.js';
import { type ExecOptions, type ExecResult, type Remote, ScriptRemote, spawnScript } from '../../src/core/remote.js';
import { STORE, hexOf } from '../../src/core/layout.js';
import { prepareScript } from '../../src/core/store.js';
import { listTar } from '../../src/core/tar.js';
import { chooseCodec, sendBlobs, worthCompressing } from '../../src/core/transfer.js';
import { writeTar } from '../helpers/tarfixture.js';

const KIB = 1024;
const MIB = 1024 * KIB;
/** What worthCompressing samples: 256 KiB at the start, middle and end (one sample up to 768 KiB). */
const SAMPLE = 256 * KIB;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const zeros = (n: number) => Buffer.alloc(n);

/** `size` bytes of `fill`, with `windows` (start offsets) of SAMPLE bytes of `window` laid over it. */
function patched(size: number, fill: (n: number) => Buffer, window: (n: number) => Buffer, windows: number[]): Buffer {
  const out = fill(size);
  for (const at of windows) window(SAMPLE).copy(out, at);
  return out;
}
const sampleWindows = (size: number) => [0, Math.floor(size / 2), size - SAMPLE];

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const d = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  dirs.push(d);
  return d;
}

/** A tar of named members and, for each, the blob describing its bytes in it. */
async function fixture(members: { name: string; data: Buffer; mediaType?: ArchiveBlob['mediaType'] }[]) {
  const path = join(tempDir('transfer-tar-'), 'image.tar');
  await writeTar(
    path,
    members.map((m) => ({ name: m.name, data: m.data })),
  );
  const entries = await listTar(path);
  const blobs = new Map<string, ArchiveBlob>(
    members.map((m) => {
      const e = entries.find((x) => x.name === m.name)!;
      return [m.name, { digest: `sha256:${sha256(m.data)}`, member: e.name, offset: e.offset, size: e.size, mediaType: m.mediaType ?? 'layer' }];
    }),
  );
  return { path, blob: (name: string) => blobs.get(name)! };
}

describe('worthCompressing', () => {
  const big = 4 * MIB;
  const small = 700 * KIB; // one sample only
  let tar: Awaited<ReturnType<typeof fixture>>;
  beforeAll(async () => {
    tar = await fixture([
      { name: 'noise', data: randomBytes(600 * KIB) },
      // After the noise, so that reading at the wrong offset would see random bytes.
      { name: 'zeros', data: zeros(600 * KIB) },
      { name: 'noise-after-zeros', data: randomBytes(600 * KIB) },
      {
        name: 'text',
        data: Buffer.from(JSON.stringify({ rootfs: { diff_ids: Array.from({ length: 200 }, () => `sha256:${randomBytes(32).toString('hex')}`) } })),
      },
      { name: 'gzipped', data: gzipSync(zeros(600 * KIB)), mediaType: 'layer+gzip' },
      { name: 'gzip-of-text-as-layer', data: gzipSync(randomBytes(600 * KIB).toString('base64')) },
      { name: 'zeros-as-gzip', data: zeros(600 * KIB), mediaType: 'layer+gzip' },
      { name: 'tiny', data: zeros(1023) },
      { name: 'just-big-enough', data: zeros(1024) },
      { name: 'half-zeros-half-noise', data: Buffer.concat([zeros(big / 2), randomBytes(big / 2)]) },
      { name: 'zeros-with-noise-where-sampled', data: patched(big, zeros, randomBytes, sampleWindows(big)) },
      { name: 'noise-with-zeros-where-sampled', data: patched(big, randomBytes, zeros, sampleWindows(big)) },
      { name: 'noise-with-zeros-in-the-middle', data: patched(big, randomBytes, zeros, [sampleWindows(big)[1]]) },
      { name: 'noise-with-zeros-at-the-end', data: patched(big, randomBytes, zeros, [sampleWindows(big)[2]]) },
      { name: 'small-zeros-then-noise', data: Buffer.concat([zeros(SAMPLE), randomBytes(small - SAMPLE)]) },
      { name: 'small-noise-then-zeros', data: Buffer.concat([randomBytes(SAMPLE), zeros(small - SAMPLE)]) },
    ]);
  });

  test('random bytes: no', async () => {
    expect(await worthCompressing(tar.path, tar.blob('noise'))).toBe(false);
    expect(await worthCompressing(tar.path, tar.blob('noise-after-zeros'))).toBe(false);
  });

  test('zeros: yes (read at the blob offset, not the start of the tar)', async () => {
    expect(tar.blob('zeros').offset).toBeGreaterThan(600 * KIB);
    expect(await worthCompressing(tar.path, tar.blob('zeros'))).toBe(true);
  });

  test('a JSON config: yes', async () => {
    expect(tar.blob('text').size).toBeGreaterThan(1024);
    expect(await worthCompressing(tar.path, { ...tar.blob('text'), mediaType: 'config' })).toBe(true);
  });

  test("a 'layer+gzip' blob: no, whatever its bytes", async () => {
    expect(await worthCompressing(tar.path, tar.blob('gzipped'))).toBe(false);
    expect(await worthCompressing(tar.path, tar.blob('zeros-as-gzip'))).toBe(false);
    // The same bytes marked as a plain layer would be compressed: it is the media type that says no.
    expect(await worthCompressing(tar.path, { ...tar.blob('zeros-as-gzip'), mediaType: 'layer' })).toBe(true);
  });

  test('gzip data in a plain layer: no (it does not shrink)', async () => {
    expect(await worthCompressing(tar.path, tar.blob('gzip-of-text-as-layer'))).toBe(false);
  });

  test('under 1 KiB: no, not worth a look', async () => {
    expect(await worthCompressing(tar.path, tar.blob('tiny'))).toBe(false);
    expect(await worthCompressing(tar.path, tar.blob('just-big-enough'))).toBe(true);
  });

  test('mixed: half zeros, half random: yes', async () => {
    expect(await worthCompressing(tar.path, tar.blob('half-zeros-half-noise'))).toBe(true);
  });

  test('judged on samples at the start, middle and end, not on the whole blob', async () => {
    expect(await worthCompressing(tar.path, tar.blob('zeros-with-noise-where-sampled'))).toBe(false);
    expect(await worthCompressing(tar.path, tar.blob('noise-with-zeros-where-sampled'))).toBe(true);
    // One sample of three that shrinks to nothing is enough (1/3 of the bytes sampled stay < 0.9).
    expect(await worthCompressing(tar.path, tar.blob('noise-with-zeros-in-the-middle'))).toBe(true);
    expect(await worthCompressing(tar.path, tar.blob('noise-with-zeros-at-the-end'))).toBe(true);
  });

  test('up to three samples long: judged on its start', async () => {
    expect(await worthCompressing(tar.path, tar.blob('small-zeros-then-noise'))).toBe(true);
    expect(await worthCompressing(tar.path, tar.blob('small-noise-then-zeros'))).toBe(false);
  });
});

/** Whether this machine has a zstd command (Node 20 has no zstd of its own). */
const HAS_ZSTD = spawnSync('zstd', ['--version']).status === 0;

describe('chooseCodec', () => {
  test('incompressible: raw, whatever the cluster has', () => {
    expect(chooseCodec(false, false)).toBe('raw');
    expect(chooseCodec(false, true)).toBe('raw');
  });

  test('compressible: gzip unless the cluster has zstd (and so do we)', () => {
    expect(chooseCodec(true, false)).toBe('gzip');
    expect(chooseCodec(true, true)).toBe(HAS_ZSTD ? 'zstd' : 'gzip');
  });
});

// ---------------------------------------------------------------------------------------------
// Whole transfers into a real store.

interface Log {
  infos: string[];
  warnings: string[];
}

function reporter(): Reporter & Log {
  const log: Log = { infos: [], warnings: [] };
  return {
    ...log,
    info: (m) => void log.infos.push(m),
    output: (lines) => void log.infos.push(...lines),
    warning: (m) => void log.warnings.push(m),
    debug: () => undefined,
    group: () => undefined,
    endGroup: () => undefined,
    progress: () => undefined,
    secret: () => undefined,
  };
}

/** Runs scripts in `home` through the shared login-shell wrapper, as a transport does (sh playing sshd). */
function localRemote(home: string, scripts: string[]): Remote {
  return new (class extends ScriptRemote {
    readonly connected = true;
    exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
      scripts.push(script);
      return spawnScript(['sh', '-c'], script, opts, { PATH: process.env.PATH, HOME: home }, home);
    }
    close(): void {}
  })();
}

describe('sendBlobs', () => {
  const layers = {
    zeros: zeros(2 * MIB),
    noise: randomBytes(1 * MIB),
    text: Buffer.from(randomBytes(300 * KIB).toString('base64')),
  };
  let tar: Awaited<ReturnType<typeof fixture>>;
  beforeAll(async () => {
    tar = await fixture(Object.entries(layers).map(([name, data]) => ({ name, data })));
  });

  function setup() {
    const home = tempDir('transfer-home-');
    const scripts: string[] = [];
    const remote = localRemote(home, scripts);
    const session = { retry: <T>(_what: string, fn: (r: Remote) => Promise<T>) => fn(remote) } as unknown as Session;
    const script = prepareScript({
      remoteDir: 'rd',
      tmpdir: 'tmp',
      group: null,
      imageHex: 'e'.repeat(64),
      blobHexes: [],
      reuse: true,
      publishDir: null,
      publishMode: null,
      publishGroup: null,
      existingSif: null,
      run: '20261127-120000-abcdef',
    });
    return remote.exec(script).then((r) => {
      expect(r.code).toBe(0);
      const root = join(home, 'rd');
      const stored = (name: keyof typeof layers) => join(root, STORE, 'blobs', 'sha256', hexOf(tar.blob(name).digest));
      // An interrupted upload of the whole blob as one range.
      const partial = (name: keyof typeof layers) => join(root, STORE, 'incoming', `${hexOf(tar.blob(name).digest)}.0-${layers[name].length}.part`);
      return { home, root, session, scripts, stored, partial };
    });
  }

  const plan = (...names: (keyof typeof layers)[]) => names.map((n) => ({ blob: tar.blob(n), parts: [] }));
  /** A blob with the whole-blob range the cluster holds `have` bytes of. */
  const resuming = (name: keyof typeof layers, have: number) => [{ blob: tar.blob(name), parts: [{ start: 0, end: layers[name].length, have }] }];

  (HAS_ZSTD ? test : test.skip)('with zstd on both ends: compressible blobs go as zstd', async () => {
    const { root, session, scripts, stored } = await setup();
    const stats = await sendBlobs(session, root, tar.path, plan('zeros', 'noise', 'text'), true, reporter());
    for (const name of Object.keys(layers) as (keyof typeof layers)[]) {
      expect(readFileSync(stored(name)).equals(layers[name])).toBe(true);
    }
    const receives = scripts.filter((s) => s.includes('echo "ready $have"'));
    expect(receives.filter((s) => /^codec=zstd$/m.test(s))).toHaveLength(2);
    expect(receives.filter((s) => /^codec=gzip$/m.test(s))).toHaveLength(0);
    expect(stats.sent).toBeLessThan(layers.noise.length + layers.text.length);
  });

  test('every planned blob lands in the store, verified; zeros go gzipped, noise raw', async () => {
    const { root, session, scripts, stored } = await setup();
    const log = reporter();
    const stats = await sendBlobs(session, root, tar.path, plan('zeros', 'noise', 'text'), false, log);
    for (const name of Object.keys(layers) as (keyof typeof layers)[]) {
      expect(readFileSync(stored(name)).equals(layers[name])).toBe(true);
    }
    const total = layers.zeros.length + layers.noise.length + layers.text.length;
    expect(stats.raw).toBe(total);
    expect(stats.rawTotal).toBe(total);
    expect(stats.sent).toBeLessThan(total - layers.zeros.length / 2);
    expect(stats.sent).toBeGreaterThan(layers.noise.length);
    expect(scripts.filter((s) => /^codec=gzip$/m.test(s))).toHaveLength(2);
    expect(log.warnings).toEqual([]);
  });

  test('nothing planned: nothing run', async () => {
    const { root, session, scripts } = await setup();
    const before = scripts.length;
    expect(await sendBlobs(session, root, tar.path, [], false, reporter())).toEqual({ sent: 0, raw: 0, rawTotal: 0 });
    expect(scripts.length).toBe(before);
  });

  test('an interrupted upload is resumed from the bytes the cluster has', async () => {
    const { root, session, stored, partial } = await setup();
    writeFileSync(partial('noise'), layers.noise.subarray(0, 400_000));
    const log = reporter();
    const stats = await sendBlobs(session, root, tar.path, resuming('noise', 400_000), false, log);
    expect(readFileSync(stored('noise')).equals(layers.noise)).toBe(true);
    // Progress counts what is on the cluster; only the rest went over the wire (raw: noise).
    expect(stats).toEqual({ raw: layers.noise.length, rawTotal: layers.noise.length, sent: layers.noise.length - 400_000 });
    expect(log.infos.some((m) => m.startsWith(`Resuming ${hexOf(tar.blob('noise').digest).slice(0, 12)} at 400000 `))).toBe(true);
  });

  test('a compressed blob is resumed too (the rest gzipped on its own)', async () => {
    const { root, session, stored, partial } = await setup();
    writeFileSync(partial('zeros'), layers.zeros.subarray(0, 1_000_000));
    const log = reporter();
    const stats = await sendBlobs(session, root, tar.path, resuming('zeros', 1_000_000), false, log);
    expect(readFileSync(stored('zeros')).equals(layers.zeros)).toBe(true);
    expect(stats.raw).toBe(layers.zeros.length);
    expect(log.infos.some((m) => m.includes(' at 1000000 of '))).toBe(true);
  });

  test('a partial with wrong bytes: the digest check fails, it is sent again whole, with a warning', async () => {
    const { root, session, stored, partial } = await setup();
    writeFileSync(partial('text'), Buffer.alloc(5000, 0x21));
    const log = reporter();
    await sendBlobs(session, root, tar.path, resuming('text', 5000), false, log);
    expect(readFileSync(stored('text')).equals(layers.text)).toBe(true);
    expect(existsSync(partial('text'))).toBe(false);
    expect(log.warnings).toHaveLength(1);
    expect(log.warnings[0]).toContain('failed its digest check');
  });

  test('a complete but unverified partial: checked and stored without sending a byte', async () => {
    const { root, session, stored, partial } = await setup();
    writeFileSync(partial('noise'), layers.noise);
    const stats = await sendBlobs(session, root, tar.path, resuming('noise', layers.noise.length), false, reporter());
    expect(readFileSync(stored('noise')).equals(layers.noise)).toBe(true);
    expect(stats.sent).toBe(0);
  });

  test('a blob another delivery stored meanwhile: nothing sent', async () => {
    const { root, session, stored } = await setup();
    writeFileSync(stored('noise'), layers.noise);
    const stats = await sendBlobs(session, root, tar.path, plan('noise'), false, reporter());
    expect(stats).toEqual({ raw: layers.noise.length, rawTotal: layers.noise.length, sent: 0 });
  });

  test('a receiver that keeps failing: the error names the blob', async () => {
    const { root, session } = await setup();
    // No store under this root: the receive script cannot even cd there.
    await expect(sendBlobs(session, join(root, 'nowhere'), tar.path, plan('text'), false, reporter())).rejects.toThrow(
      new RegExp(`Receiving blob ${hexOf(tar.blob('text').digest).slice(0, 12)}`),
    );
  });
});

// Sending blobs: whether compressing one pays (judged on samples read at its offset in the tar),
// and whole transfers into a real store on the local stand-in cluster, through a real Session
// over the shared transport code (login-shell wrapper, preamble filter, stdin feed).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ArchiveBlob } from '../../src/core/archive.js';
import { Session } from '../../src/core/session.js';
import { STORE, hexOf } from '../../src/core/layout.js';
import { type BlobSend, prepareScript } from '../../src/core/store.js';
import type { Reporter } from '../../src/core/reporter.js';
import { listTar } from '../../src/core/tar.js';
import { type TransferStats, Transfer, chooseCodec, uploadOf, worthCompressing } from '../../src/core/transfer.js';
import { TarBytes } from '../../src/core/tarbytes.js';
import { FAST_RETRY, LOCAL_TARGET, LocalCluster } from '../helpers/localcluster.js';
import { fakeReporter } from '../helpers/reporter.js';
import { HAS_ZSTD, prepareParams } from '../helpers/store.js';
import { eventually } from '../helpers/wait.js';
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

describe('chooseCodec', () => {
  test('incompressible: raw, whatever either end has', () => {
    for (const remote of [false, true]) for (const local of [false, true]) expect(chooseCodec(false, remote, local)).toBe('raw');
  });

  test('compressible: zstd only where both ends have it, else gzip', () => {
    expect(chooseCodec(true, true, true)).toBe('zstd');
    expect(chooseCodec(true, false, true)).toBe('gzip');
    expect(chooseCodec(true, true, false)).toBe('gzip');
    expect(chooseCodec(true, false, false)).toBe('gzip');
  });
});

// ---------------------------------------------------------------------------------------------
// Whole transfers into a real store.

/** The receive scripts among those run (each carries one range). */
const receives = (scripts: string[]) => scripts.filter((s) => s.includes('echo "ready $have"'));

/** Send every planned blob of a complete tar, as a delivery does once its save has ended. */
async function sendBlobs(session: Session, root: string, tar: string, plan: BlobSend[], remoteZstd: boolean, reporter: Reporter): Promise<TransferStats> {
  if (plan.length === 0) return { sent: 0, raw: 0, rawTotal: 0 };
  const t = new Transfer(session, { root, zstd: remoteZstd, path: '' }, await TarBytes.ofFile(tar), reporter);
  for (const job of plan) t.add(uploadOf(job));
  return t.finish();
}

describe('sendBlobs', () => {
  const layers = {
    zeros: zeros(2 * MIB),
    noise: randomBytes(1 * MIB),
    text: Buffer.from(randomBytes(300 * KIB).toString('base64')),
  };
  type Layer = keyof typeof layers;
  let tar: Awaited<ReturnType<typeof fixture>>;
  beforeAll(async () => {
    tar = await fixture(Object.entries(layers).map(([name, data]) => ({ name, data })));
  });

  let cluster: LocalCluster;
  afterEach(() => cluster.remove());

  /** A cluster with a prepared store under `rd`, and a session to it (the prepare ran through it). */
  async function setup() {
    cluster = new LocalCluster('transfer-');
    const log = fakeReporter();
    const session = new Session(LOCAL_TARGET, log, FAST_RETRY, cluster.connect);
    const r = await session.retry('Preparing', (remote) => remote.exec(prepareScript(prepareParams())));
    expect(r.code).toBe(0);
    const root = join(cluster.home, 'rd');
    const stored = (name: Layer) => join(root, STORE, 'blobs', 'sha256', hexOf(tar.blob(name).digest));
    // An interrupted upload of the whole blob as one range.
    const partial = (name: Layer) => join(root, STORE, 'incoming', `${hexOf(tar.blob(name).digest)}.0-${layers[name].length}.part`);
    const send = (plan: Parameters<typeof sendBlobs>[3], remoteZstd = false, at = root) => sendBlobs(session, at, tar.path, plan, remoteZstd, log);
    return { root, session, log, stored, partial, send };
  }

  const plan = (...names: Layer[]) => names.map((n) => ({ blob: tar.blob(n), parts: [] }));
  /** A blob with the whole-blob range the cluster holds `have` bytes of. */
  const resuming = (name: Layer, have: number) => [{ blob: tar.blob(name), parts: [{ start: 0, end: layers[name].length, have }] }];
  const expectStored = (stored: (name: Layer) => string, ...names: Layer[]) => {
    for (const name of names) expect(readFileSync(stored(name)).equals(layers[name])).toBe(true);
  };
  const ALL = Object.keys(layers) as Layer[];

  (HAS_ZSTD ? test : test.skip)('with zstd on both ends: compressible blobs go as zstd', async () => {
    const { stored, send } = await setup();
    const stats = await send(plan(...ALL), true);
    expectStored(stored, ...ALL);
    expect(receives(cluster.scripts).filter((s) => /^codec=zstd$/m.test(s))).toHaveLength(2);
    expect(receives(cluster.scripts).filter((s) => /^codec=gzip$/m.test(s))).toHaveLength(0);
    expect(stats.sent).toBeLessThan(layers.noise.length + layers.text.length);
  });

  test('every planned blob lands in the store, verified; zeros go gzipped, noise raw', async () => {
    const { session, log, stored, send } = await setup();
    const stats = await send(plan(...ALL));
    expectStored(stored, ...ALL);
    const total = layers.zeros.length + layers.noise.length + layers.text.length;
    expect(stats.raw).toBe(total);
    expect(stats.rawTotal).toBe(total);
    expect(stats.sent).toBeLessThan(total - layers.zeros.length / 2);
    expect(stats.sent).toBeGreaterThan(layers.noise.length);
    expect(receives(cluster.scripts).filter((s) => /^codec=gzip$/m.test(s))).toHaveLength(2);
    expect(receives(cluster.scripts).filter((s) => /^codec=raw$/m.test(s))).toHaveLength(1);
    expect(log.warnings()).toEqual([]);
    // All on the one connection the prepare opened.
    expect(cluster.connections).toHaveLength(1);
    expect(session.reconnects).toBe(0);
  });

  test('nothing planned: nothing run', async () => {
    const { send } = await setup();
    const before = cluster.scripts.length;
    expect(await send([])).toEqual({ sent: 0, raw: 0, rawTotal: 0 });
    expect(cluster.scripts.length).toBe(before);
  });

  test('a connection lost at a receive: the session reconnects and the range goes again, whole', async () => {
    const { session, log, stored, send } = await setup();
    cluster.dropNext = 1;
    const stats = await send(plan('noise'));
    expectStored(stored, 'noise');
    expect(stats).toEqual({ raw: layers.noise.length, rawTotal: layers.noise.length, sent: layers.noise.length });
    expect(cluster.connections).toHaveLength(2);
    expect(session.reconnects).toBe(1);
    expect(receives(cluster.scripts)).toHaveLength(2);
    expect(log.warnings()).toEqual([expect.stringMatching(/The SSH connection was lost\. Reconnecting in \d+ s \(attempt 1 of 3\)\.$/)]);
  });

  test('an interrupted upload is resumed from the bytes the cluster has', async () => {
    const { log, stored, partial, send } = await setup();
    writeFileSync(partial('noise'), layers.noise.subarray(0, 400_000));
    const stats = await send(resuming('noise', 400_000));
    expectStored(stored, 'noise');
    // Progress counts what is on the cluster; only the rest went over the wire (raw: noise).
    expect(stats).toEqual({ raw: layers.noise.length, rawTotal: layers.noise.length, sent: layers.noise.length - 400_000 });
    expect(log.infos().some((m) => m.startsWith(`Resuming ${hexOf(tar.blob('noise').digest).slice(0, 12)} at 400000 `))).toBe(true);
  });

  test('a compressed blob is resumed too (the rest gzipped on its own)', async () => {
    const { log, stored, partial, send } = await setup();
    writeFileSync(partial('zeros'), layers.zeros.subarray(0, 1_000_000));
    const stats = await send(resuming('zeros', 1_000_000));
    expectStored(stored, 'zeros');
    expect(stats.raw).toBe(layers.zeros.length);
    expect(stats.sent).toBeLessThan(layers.zeros.length - 1_000_000);
    expect(log.infos().some((m) => m.includes(' at 1000000 of '))).toBe(true);
  });

  test('a partial with wrong bytes: the digest check fails, it is sent again whole, with a warning', async () => {
    const { log, stored, partial, send } = await setup();
    writeFileSync(partial('text'), Buffer.alloc(5000, 0x21));
    await send(resuming('text', 5000));
    expectStored(stored, 'text');
    expect(existsSync(partial('text'))).toBe(false);
    expect(log.warnings()).toHaveLength(1);
    expect(log.warnings()[0]).toContain('failed its digest check');
  });

  test('a complete but unverified partial: checked and stored without sending a byte', async () => {
    const { stored, partial, send } = await setup();
    writeFileSync(partial('noise'), layers.noise);
    const stats = await send(resuming('noise', layers.noise.length));
    expectStored(stored, 'noise');
    expect(stats.sent).toBe(0);
  });

  test('a blob another delivery stored meanwhile: nothing sent', async () => {
    const { stored, send } = await setup();
    writeFileSync(stored('noise'), layers.noise);
    const stats = await send(plan('noise'));
    expect(stats).toEqual({ raw: layers.noise.length, rawTotal: layers.noise.length, sent: 0 });
  });

  test('a blob another delivery joined under the same stand-in while this one lacked the digest: nothing sent, then confirmed by digest', async () => {
    const { session, log, root, stored } = await setup();
    const bytes = await TarBytes.ofFile(tar.path);
    const b = tar.blob('noise');
    const hex = hexOf(b.digest);
    const upload = (digest: () => string | null) => ({
      key: `m${'7'.repeat(24)}`,
      hex: digest,
      offset: b.offset,
      size: b.size,
      mediaType: b.mediaType,
      parts: [],
    });
    // Delivery A, its save ahead, joins the blob from its stand-in's parts.
    const a = new Transfer(session, { root, zstd: false, path: '' }, bytes, log);
    a.add(upload(() => hex));
    await a.finish();
    expectStored(stored, 'noise');
    // Delivery B sends its range before its own save has given the digest.
    const before = receives(cluster.scripts).length;
    let known = false;
    const t = new Transfer(session, { root, zstd: false, path: '' }, bytes, log);
    t.add(upload(() => (known ? hex : null)));
    await eventually(() => receives(cluster.scripts).length > before, 10_000, 'the receive under the stand-in', 10);
    known = true;
    const stats = await t.finish();
    expect(stats.sent).toBe(0);
    // The have said under the stand-in is checked by a receive naming the digest.
    const sent = receives(cluster.scripts).slice(before);
    expect(sent.map((x) => /^hex=(.*)$/m.exec(x)![1])).toEqual(["''", hex]);
  });

  test('a receiver that keeps failing: the error names the blob', async () => {
    const { root, send } = await setup();
    // No store under this root: the receive script cannot even cd there.
    await expect(send(plan('text'), false, join(root, 'nowhere'))).rejects.toThrow(new RegExp(`Receiving blob ${hexOf(tar.blob('text').digest).slice(0, 12)}`));
  });
});

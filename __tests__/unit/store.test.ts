// The store's cluster-side scripts, run for real by bash against a temp dir standing in for the
// cluster account (HOME is the temp dir, so relative paths resolve under it as they do over SSH),
// and the pure planning around them.
import { type ChildProcessWithoutNullStreams, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchiveBlob, ImageArchive } from '../../src/core/archive.js';
import { holdLock, killTrackedAfterEach, track } from '../helpers/processes.js';
import { REMOTE_MARKER, STORE, hexOf } from '../../src/core/layout.js';
import {
  type Codec,
  type GcParams,
  PREPARE_REFUSED,
  RECEIVE,
  type StoreReport,
  gcScript,
  imageBlobs,
  parsePrepare,
  planTransfer,
  prepareScript,
  receiveScript,
} from '../../src/core/store.js';
import { HOSTILE } from '../helpers/hostile.js';
import { HAS_ZSTD, prepareParams } from '../helpers/store.js';
import { eventually } from '../helpers/wait.js';

killTrackedAfterEach();

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const fakeHex = (c: string) => c.repeat(64);

const homes: string[] = [];
afterAll(() => {
  for (const d of homes) rmSync(d, { recursive: true, force: true });
});

/** A fresh stand-in for the cluster account's home directory (resolved: /tmp may be a link). */
function newHome(): string {
  const home = realpathSync(mkdtempSync(join(tmpdir(), 'store-')));
  homes.push(home);
  return home;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The lines prepare starts with on this machine. */
/** The lines prepare starts with: its tools and its (login shell's) PATH, here the one sh gives it. */
const tools = () => [...(HAS_ZSTD ? ['tool zstd'] : []), `path ${fakeSlurm}:${process.env.PATH}`];

/**
 * A PATH like a sparse cluster's: every command of /usr/bin and /bin but openssl and zstd
 * (symlinks in a temp dir), so the store falls back to sha256sum and reports no zstd.
 */
let barePath = '';
beforeAll(() => {
  const bin = join(newHome(), 'bin');
  mkdirSync(bin);
  for (const dir of ['/usr/bin', '/bin']) {
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      if (name === 'openssl' || name.startsWith('zstd') || existsSync(join(bin, name))) continue;
      symlinkSync(join(dir, name), join(bin, name));
    }
  }
  barePath = bin;
});

/**
 * Slurm's squeue as garbage collection asks it: it lists the job ids in HOME/.squeue (none if there
 * is no such file) and exits with the code in HOME/.squeue-rc (0 if none).
 */
let fakeSlurm = '';
beforeAll(() => {
  fakeSlurm = join(newHome(), 'bin');
  mkdirSync(fakeSlurm);
  writeFileSync(join(fakeSlurm, 'squeue'), '#!/bin/sh\ncat "$HOME/.squeue" 2>/dev/null\nexit "$(cat "$HOME/.squeue-rc" 2>/dev/null || echo 0)"\n', {
    mode: 0o755,
  });
});

/** Run a script as the SSH login would: `bash -c`, in HOME. */
function sh(home: string, script: string, input?: Buffer, path = process.env.PATH): Run {
  const r = spawnSync('bash', ['-c', script], {
    cwd: home,
    env: { PATH: `${fakeSlurm}:${path}`, HOME: home },
    input: input ?? Buffer.alloc(0),
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Garbage collection with no login modules (squeue is on PATH). */
const gc = (p: Omit<GcParams, 'loginModules'>) => gcScript({ loginModules: [], ...p });
/** The run prepare's hold is named for. */
const RUN = '20261127-120000-abcdef';

/** The same, as a running process whose stdin the test feeds. */
function shAsync(home: string, script: string, path = process.env.PATH) {
  const child = track(spawn('bash', ['-c', script], { cwd: home, env: { PATH: path, HOME: home }, detached: true }));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // The receiver may stop reading early (it has the blob already): that is no error here.
  child.stdin.on('error', () => undefined);
  const done = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Feed `data` in chunks with pauses, then close stdin. */
async function feed(child: ChildProcessWithoutNullStreams, data: Buffer, chunk = 16_384, pauseMs = 2): Promise<void> {
  for (let i = 0; i < data.length && child.stdin.writable; i += chunk) {
    child.stdin.write(data.subarray(i, i + chunk));
    await sleep(pauseMs);
  }
  child.stdin.end();
}

/**
 * Processes a test started (each spawned `detached`, as its own process group); any still running
 * when the test ends (it failed midway) are killed with their children.
 */
const modeOf = (path: string) => statSync(path).mode & 0o7777;

/** Every path under dir, recursively. */
function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? [p, ...walk(p)] : [p];
  });
}

const touchAgo = (path: string, ago: string) => execFileSync('touch', ['-d', ago, path]);

/** A blob with real content in the store; its hex. */
function putBlob(root: string, data: Buffer | string): string {
  const hex = sha256(data);
  writeFileSync(join(root, STORE, 'blobs', 'sha256', hex), data);
  return hex;
}

const IMAGE = fakeHex('e');

/** What prepare says after the paths (and the tools). */
const reportLines = (stdout: string) =>
  stdout
    .trimEnd()
    .split('\n')
    .filter((l) => !/^(tool|path|home|tmpdir|root|publish|existing) /.test(l));

/** The PATHs scripts run with: this machine's, and one without openssl and zstd. */
const PATHS: [string, () => string][] = [
  ['the full PATH', () => process.env.PATH!],
  ['neither openssl nor zstd', () => barePath],
];

function prepare(home: string, over: Partial<Parameters<typeof prepareScript>[0]> = {}, path?: string): Run {
  return sh(home, prepareScript(prepareParams({ remoteDir: 'work/riviera', tmpdir: 'scratch tmp', imageHex: IMAGE, run: RUN, ...over })), undefined, path);
}

/** A home with a prepared store under `rd`; its absolute root. */
function newStore(): { home: string; root: string } {
  const home = newHome();
  const r = prepare(home, { remoteDir: 'rd', tmpdir: 'tmp' });
  expect(r.code).toBe(0);
  return { home, root: join(home, 'rd') };
}

// ---------------------------------------------------------------------------------------------

describe('prepareScript', () => {
  test('creates remote-dir (0700), the tmpdir and the store; prints their resolved absolute paths', () => {
    const home = newHome();
    const r = prepare(home, { blobHexes: [fakeHex('a'), fakeHex('b')] });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const root = join(home, 'work/riviera');
    expect(r.stdout.split('\n')).toEqual([...tools(), `home ${home}`, `tmpdir ${join(home, 'scratch tmp')}`, `root ${root}`, 'sif build', '']);
    expect(modeOf(root)).toBe(0o700);
    expect(statSync(join(home, 'scratch tmp')).isDirectory()).toBe(true);
    for (const d of [`${STORE}/blobs/sha256`, `${STORE}/incoming`, `${STORE}/images`, 'sif', 'images', 'jobs']) {
      expect(statSync(join(root, d)).isDirectory()).toBe(true);
      expect(modeOf(join(root, d)) & 0o077).toBe(0);
    }
    // The image record lists its blobs, so garbage collection keeps them from now on.
    const record = join(root, STORE, 'images', IMAGE);
    expect(readFileSync(record, 'utf8')).toBe(`${fakeHex('a')}\n${fakeHex('b')}\n`);
    expect(modeOf(record)).toBe(0o600);
    expect(readdirSync(join(root, STORE, 'images'))).toEqual([IMAGE]); // no temp file left

    const report = parsePrepare(r.stdout);
    expect(report).toEqual({
      home,
      root,
      tmpdir: join(home, 'scratch tmp'),
      publishDir: null,
      existingSif: null,
      zstd: HAS_ZSTD,
      path: `${fakeSlurm}:${process.env.PATH}`,
      sifReusable: false,
      have: new Set(),
      bad: new Set(),
      parts: new Map(),
    });
  });

  test('resolves links in the printed paths, takes absolute paths as they are', () => {
    const home = newHome();
    mkdirSync(join(home, 'real'));
    execFileSync('ln', ['-s', 'real', join(home, 'link')]);
    const abs = join(home, 'abs dir');
    const r = prepare(home, { remoteDir: 'link/rd', tmpdir: abs });
    expect(r.code).toBe(0);
    expect(parsePrepare(r.stdout)).toMatchObject({ root: join(home, 'real/rd'), tmpdir: abs });
  });

  test('publishing: creates the publish directory and prints it resolved', () => {
    const home = newHome();
    mkdirSync(join(home, 'shared'));
    execFileSync('ln', ['-s', 'shared', join(home, 'proj')]);
    const r = prepare(home, { publishDir: `proj/images ${HOSTILE}`, publishMode: '0600' });
    expect(r.code).toBe(0);
    const dir = join(home, `shared/images ${HOSTILE}`);
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(r.stdout).toContain(`\npublish ${dir}\n`);
    expect(parsePrepare(r.stdout)).toMatchObject({ publishDir: dir, root: join(home, 'work/riviera') });
    expect(walk(home).filter((f) => f.endsWith('/PWNED'))).toEqual([]);
    // Not publishing: no such line.
    expect(prepare(newHome()).stdout).not.toContain('publish');
  });

  test('an existing .sif to test: prints it resolved; no image record, no sif or blob report', () => {
    const home = newHome();
    mkdirSync(join(home, 'sifs'));
    writeFileSync(join(home, 'sifs', `my ${HOSTILE}.sif`), 'SIF');
    execFileSync('ln', ['-s', 'sifs', join(home, 'via')]);
    const r = prepare(home, { existingSif: `via/my ${HOSTILE}.sif`, imageHex: null });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const root = join(home, 'work/riviera');
    expect(r.stdout.split('\n')).toEqual([
      ...tools(),
      `home ${home}`,
      `tmpdir ${join(home, 'scratch tmp')}`,
      `root ${root}`,
      `existing ${join(home, 'sifs', `my ${HOSTILE}.sif`)}`,
      '',
    ]);
    expect(parsePrepare(r.stdout)).toMatchObject({ existingSif: join(home, 'sifs', `my ${HOSTILE}.sif`), sifReusable: false });
    expect(readdirSync(join(root, STORE, 'images'))).toEqual([]);
    expect(statSync(join(root, 'jobs')).isDirectory()).toBe(true);
    // Absolute paths are taken as they are.
    const abs = prepare(home, { existingSif: join(home, 'sifs', `my ${HOSTILE}.sif`), imageHex: null });
    expect(parsePrepare(abs.stdout).existingSif).toBe(join(home, 'sifs', `my ${HOSTILE}.sif`));
    expect(walk(home).filter((f) => f.endsWith('/PWNED'))).toEqual([]);
  });

  test.each([
    ['missing', () => undefined],
    ['empty', (path: string) => writeFileSync(path, '')],
  ])('an existing .sif that is %s: exit 3 saying so', (_what, make) => {
    const home = newHome();
    make(join(home, 'x.sif'));
    const r = prepare(home, { existingSif: 'x.sif', imageHex: null });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('no .sif at ~/x.sif on the cluster');
    expect(r.stdout).not.toContain('existing');
  });

  test('makes an existing remote-dir of its own private again', () => {
    const home = newHome();
    mkdirSync(join(home, 'work/riviera'), { recursive: true, mode: 0o755 });
    writeFileSync(join(home, 'work/riviera', REMOTE_MARKER), '');
    execFileSync('chmod', ['755', join(home, 'work/riviera')]);
    expect(prepare(home).code).toBe(0);
    expect(modeOf(join(home, 'work/riviera'))).toBe(0o700);
  });

  test('group-shared: the store dirs are setgid, group-readable (2750), files 0640', () => {
    const home = newHome();
    const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
    const r = prepare(home, { group, blobHexes: [fakeHex('a')] });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const root = join(home, 'work/riviera');
    for (const d of ['.', STORE, `${STORE}/blobs`, `${STORE}/incoming`, `${STORE}/images`, 'sif', 'images', 'jobs']) {
      expect([d, modeOf(join(root, d)).toString(8)]).toEqual([d, '2750']);
    }
    expect(modeOf(join(root, STORE, 'images', IMAGE))).toBe(0o640);
  });

  // Known bug (src/core/store.ts, prepareScript `share`): chgrp/chmod name `.store/*` only, so
  // `.store/blobs/sha256` keeps mode 0750 (0700 if the store began private) without setgid, and
  // the `.store/lock` file is made 2750. Flip to `test` once the dirs are listed explicitly.
  test('group-shared: every store dir, blobs/sha256 too, is 2750', () => {
    const home = newHome();
    const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
    expect(prepare(home, { group }).code).toBe(0);
    expect(modeOf(join(home, 'work/riviera', STORE, 'blobs', 'sha256')).toString(8)).toBe('2750');
  });

  test('group-shared with a group that does not exist: fails saying so', () => {
    const home = newHome();
    const r = prepare(home, { group: 'no-such-group-riviera' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('cannot give the store to group no-such-group-riviera');
    expect(r.stdout).not.toContain('sif ');
  });

  test.each(PATHS)('reports the blobs it has (checked against their names), bad ones (removed) and partial uploads; %s', (_what, path) => {
    const { home, root } = newStore();
    const good = putBlob(root, randomBytes(5000));
    const bad = sha256('what it should be');
    writeFileSync(join(root, STORE, 'blobs', 'sha256', bad), 'what it is');
    const part = fakeHex('c');
    writeFileSync(join(root, STORE, 'incoming', `${part}.0-5000.part`), Buffer.alloc(1234));
    writeFileSync(join(root, STORE, 'incoming', `${part}.5000-9000.part`), Buffer.alloc(4000));
    const absent = fakeHex('d');
    const notInImage = putBlob(root, 'some other image');

    const r = prepare(home, { remoteDir: 'rd', tmpdir: 'tmp', blobHexes: [good, bad, part, absent] }, path());
    expect(r.code).toBe(0);
    expect(reportLines(r.stdout)).toEqual(['sif build', `blob ${good} have`, `blob ${bad} bad`, `part ${part} 0 5000 1234`, `part ${part} 5000 9000 4000`]);
    expect(existsSync(join(root, STORE, 'blobs', 'sha256', bad))).toBe(false);
    expect(existsSync(join(root, STORE, 'blobs', 'sha256', good))).toBe(true);
    expect(existsSync(join(root, STORE, 'blobs', 'sha256', notInImage))).toBe(true);

    const report = parsePrepare(r.stdout);
    expect(report.have).toEqual(new Set([good]));
    expect(report.bad).toEqual(new Set([bad]));
    expect(report.parts).toEqual(
      new Map([
        [
          part,
          [
            { start: 0, end: 5000, have: 1234 },
            { start: 5000, end: 9000, have: 4000 },
          ],
        ],
      ]),
    );
    expect(report.sifReusable).toBe(false);
  });

  /** A .sif of IMAGE with its digest file, as the job writes them. */
  function putSif(root: string, data = 'SIF'): string {
    const sif = join(root, 'sif', `${IMAGE}.sif`);
    writeFileSync(sif, data);
    writeFileSync(`${sif}.sha256`, `${sha256(data)}  ${IMAGE}.sif\n`);
    return sif;
  }

  test.each(PATHS)('sif ok only when the .sif and its digest verify and reuse is allowed; then no blob is checked; %s', (_what, path) => {
    const { home, root } = newStore();
    putSif(root);
    const good = putBlob(root, 'a blob');
    const r = prepare(home, { remoteDir: 'rd', tmpdir: 'tmp', blobHexes: [good] }, path());
    expect(r.code).toBe(0);
    expect(reportLines(r.stdout)).toEqual(['sif ok']);
    expect(parsePrepare(r.stdout).sifReusable).toBe(true);
    // The record is written either way, so the .sif and its blobs are kept.
    expect(readFileSync(join(root, STORE, 'images', IMAGE), 'utf8')).toBe(`${good}\n`);
  });

  test('reuse=false: sif build, even with an intact .sif', () => {
    const { home, root } = newStore();
    putSif(root);
    const r = prepare(home, { remoteDir: 'rd', tmpdir: 'tmp', reuse: false });
    expect(r.stdout).toContain('sif build');
    expect(r.stdout).not.toContain('sif ok');
    expect(parsePrepare(r.stdout).sifReusable).toBe(false);
  });

  test('an intact .sif: sif ok and nothing else, the image recorded (touched) so garbage collection keeps it', () => {
    const { home, root } = newStore();
    rmSync(join(root, STORE, 'images', IMAGE));
    putSif(root);
    const ok = prepare(home, { remoteDir: 'rd', tmpdir: 'tmp', blobHexes: [putBlob(root, 'a layer')] });
    expect(reportLines(ok.stdout)).toEqual(['sif ok']);
    expect(existsSync(join(root, STORE, 'images', IMAGE))).toBe(true);
  });

  test('a cluster without zstd: no tool line', () => {
    const home = newHome();
    const r = prepare(home, {}, barePath);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('tool');
    expect(parsePrepare(r.stdout).zstd).toBe(false);
  });

  test.each([
    ['its bytes changed', (sif: string) => writeFileSync(sif, 'SIF, truncated or changed')],
    ['no digest file', (sif: string) => rmSync(`${sif}.sha256`)],
    ['an empty .sif', (sif: string) => (writeFileSync(sif, ''), writeFileSync(`${sif}.sha256`, `${sha256('')}  ${IMAGE}.sif\n`))],
  ])('a .sif with %s: sif build', (_what, spoil) => {
    const { home, root } = newStore();
    spoil(putSif(root));
    const r = prepare(home, { remoteDir: 'rd', tmpdir: 'tmp' });
    expect(r.stdout).toContain('sif build');
    expect(parsePrepare(r.stdout).sifReusable).toBe(false);
  });

  describe('the .sif verification record (HEX.sif.verified)', () => {
    /** A PATH with no way to hash (neither openssl nor sha256sum): only the record can say "sif ok". */
    let noHash = '';
    /** Stores with an intact .sif whose ctime is over two seconds old (the age a record needs). */
    const stores: { home: string; root: string; sif: string }[] = [];
    beforeAll(async () => {
      noHash = join(newHome(), 'bin');
      mkdirSync(noHash);
      for (const name of readdirSync(barePath)) if (name !== 'sha256sum') symlinkSync(join(barePath, name), join(noHash, name));
      for (let i = 0; i < 6; i++) {
        const { home, root } = newStore();
        stores.push({ home, root, sif: putSif(root, `SIF ${i}`) });
      }
      await sleep(2100);
    });
    const opts = { remoteDir: 'rd', tmpdir: 'tmp' };
    const record = (sif: string) => `${sif}.verified`;

    test('a verified .sif is remembered; the next prepare reuses it without hashing it again', () => {
      const { home, sif } = stores[0];
      expect(reportLines(prepare(home, opts).stdout)).toEqual(['sif ok']);
      const st = statSync(sif);
      expect(readFileSync(record(sif), 'utf8')).toMatch(new RegExp(`^${st.dev}:${st.ino} ${st.size} \\S+ \\S+ \\S+ \\S+ \\S+ \\S+ ${sha256('SIF 0')}\n$`));
      expect(modeOf(record(sif))).toBe(0o600);
      const before = statSync(record(sif)).mtimeMs;
      expect(reportLines(prepare(home, opts, noHash).stdout)).toEqual(['sif ok']);
      // Not written again: nothing was hashed.
      expect(statSync(record(sif)).mtimeMs).toBe(before);
      expect(readdirSync(join(stores[0].root, 'sif')).sort()).toEqual([`${IMAGE}.sif`, `${IMAGE}.sif.sha256`, `${IMAGE}.sif.verified`]);
    });

    /** Three ways a remembered .sif (stores 1 to 3) stops being the one verified. */
    const changes: [string, number, (sif: string) => void][] = [
      [
        'rewritten in place, same size and mtime',
        1,
        (sif) => {
          const m = statSync(sif).mtime;
          writeFileSync(sif, 'SIX 1');
          execFileSync('touch', ['-d', m.toISOString(), sif]);
        },
      ],
      [
        'replaced by another file of the same size and mtime',
        2,
        (sif) => {
          const m = statSync(sif).mtime;
          writeFileSync(`${sif}.new`, 'SIX 2');
          execFileSync('touch', ['-d', m.toISOString(), `${sif}.new`]);
          execFileSync('mv', ['-f', `${sif}.new`, sif]);
        },
      ],
      ['given another digest file', 3, (sif) => writeFileSync(`${sif}.sha256`, `${sha256('SIX 3')}  ${IMAGE}.sif\n`)],
    ];
    test.each(changes)('a remembered .sif %s is hashed again, and fails', (_what, i, change) => {
      const { home, sif } = stores[i];
      expect(reportLines(prepare(home, opts).stdout)).toEqual(['sif ok']);
      expect(existsSync(record(sif))).toBe(true);
      change(sif);
      // With no way to hash, only a record could pass it: it must not.
      expect(reportLines(prepare(home, opts, noHash).stdout)[0]).toBe('sif build');
      expect(reportLines(prepare(home, opts).stdout)[0]).toBe('sif build');
    });

    test('a .sif changed in the last two seconds is verified but not remembered', () => {
      const { home } = newStore();
      const sif = putSif(join(home, 'rd'), 'SIF new');
      expect(reportLines(prepare(home, opts).stdout)).toEqual(['sif ok']);
      expect(existsSync(record(sif))).toBe(false);
      expect(reportLines(prepare(home, opts, noHash).stdout)).toEqual(['sif build']);
    });

    test('group sharing does not chmod (and so re-date) a .sif that is group-readable already', () => {
      const { home, sif } = stores[5];
      const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
      execFileSync('chmod', ['640', sif, `${sif}.sha256`]);
      const ctime = statSync(sif).ctimeMs;
      expect(reportLines(prepare(home, { ...opts, group }).stdout)).toEqual(['sif ok']);
      expect(statSync(sif).ctimeMs).toBe(ctime);
      expect(modeOf(sif)).toBe(0o640);
    });
  });

  test('hostile paths stay data', () => {
    const home = newHome();
    const r = prepare(home, { remoteDir: `rd ${HOSTILE}`, tmpdir: `tmp ${HOSTILE}` });
    expect(r.code).toBe(0);
    const report = parsePrepare(r.stdout);
    expect(report.root).toBe(join(home, `rd ${HOSTILE}`));
    expect(report.tmpdir).toBe(join(home, `tmp ${HOSTILE}`));
    expect(walk(home).filter((f) => f.endsWith('/PWNED'))).toEqual([]);
  });
});

describe('sha256 (cluster/lib-sha256.sh)', () => {
  test.each(PATHS)('the sha256 of stdin as bare hex; %s', (_what, path) => {
    const home = newHome();
    const data = randomBytes(100_000);
    const r = sh(home, `${readFileSync(new URL('../../src/core/cluster/lib-sha256.sh', import.meta.url), 'utf8')}\nsha256`, data, path());
    expect(r).toEqual({ code: 0, stdout: `${sha256(data)}\n`, stderr: '' });
  });
});

describe('parsePrepare', () => {
  test('ignores other lines (a login banner), keeps spaces in paths', () => {
    const r = parsePrepare(
      ['Welcome to Riviera', 'path /my bin:/usr/bin', 'home /h', 'tmpdir /s/my tmp', 'root /h/my dir', 'sif build', `part ${fakeHex('a')} 0 10 7`, ''].join(
        '\n',
      ),
    );
    expect(r).toEqual({
      path: '/my bin:/usr/bin',
      home: '/h',
      root: '/h/my dir',
      tmpdir: '/s/my tmp',
      publishDir: null,
      existingSif: null,
      zstd: false,
      sifReusable: false,
      have: new Set(),
      bad: new Set(),
      parts: new Map([[fakeHex('a'), [{ start: 0, end: 10, have: 7 }]]]),
    });
    expect(parsePrepare('root /r\ntmpdir /t\npublish /p/my images\n').publishDir).toBe('/p/my images');
    expect(parsePrepare('tool zstd\nroot /r\ntmpdir /t\nexisting /a b.sif\n')).toMatchObject({ zstd: true, existingSif: '/a b.sif' });
  });

  test('refuses a reply without the paths', () => {
    expect(() => parsePrepare('sif ok\n')).toThrow(/unexpected reply/);
    expect(() => parsePrepare('root /x\n')).toThrow(/unexpected reply/);
  });
});

// ---------------------------------------------------------------------------------------------

function blob(c: string, size: number, mediaType: ArchiveBlob['mediaType'] = 'layer'): ArchiveBlob {
  return { digest: `sha256:${fakeHex(c)}`, member: `${c}/layer.tar`, offset: 512, size, mediaType };
}

function archiveOf(config: ArchiveBlob, layers: ArchiveBlob[]): ImageArchive {
  return { path: '/x.tar', layout: 'legacy', repoTags: [], config, layers, imageId: config.digest, diffIds: layers.map((l) => l.digest) };
}

/** What parsePrepare makes of a reply about an empty store, with `over` laid on it. */
function report(over: Partial<StoreReport> = {}): StoreReport {
  return { ...parsePrepare('home /h\nroot /r\ntmpdir /t\n'), ...over };
}

describe('imageBlobs / planTransfer', () => {
  const config = blob('0', 1500, 'config');
  const [a, b, c, d] = [blob('a', 100), blob('b', 5000), blob('c', 2000, 'layer+gzip'), blob('d', 3000)];

  test('imageBlobs: config first, each blob once', () => {
    expect(imageBlobs(archiveOf(config, [a, b, a, c]))).toEqual([config, a, b, c]);
  });

  test('everything, largest first, when the store is empty', () => {
    const plan = planTransfer(archiveOf(config, [a, b, c, d]), report());
    expect(plan.map((p) => [hexOf(p.blob.digest)[0], p.parts])).toEqual([
      ['b', []],
      ['d', []],
      ['c', []],
      ['0', []],
      ['a', []],
    ]);
  });

  test('skips what the store has; a repeated layer is sent once', () => {
    const plan = planTransfer(archiveOf(config, [a, b, a, d, b]), report({ have: new Set([hexOf(d.digest), hexOf(config.digest)]) }));
    expect(plan.map((p) => p.blob)).toEqual([b, a]);
  });

  test('hands on the ranges of each blob the cluster holds, to resume', () => {
    const held = [{ start: 0, end: 4000, have: 1200 }];
    const plan = planTransfer(archiveOf(config, [a, b]), report({ parts: new Map([[hexOf(b.digest), held]]) }));
    expect(plan.map((p) => [p.blob, p.parts])).toEqual([
      [b, held],
      [config, []],
      [a, []],
    ]);
  });

  test('a blob reported bad is sent again, from the start', () => {
    const plan = planTransfer(archiveOf(config, [a]), report({ have: new Set([hexOf(config.digest)]), bad: new Set([hexOf(a.digest)]) }));
    expect(plan).toEqual([{ blob: a, parts: [] }]);
  });

  test('nothing when the .sif is reusable', () => {
    expect(planTransfer(archiveOf(config, [a, b]), report({ sifReusable: true }))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('receiveScript', () => {
  // Compressible but not trivial, so a cut gzip stream still yields some of it.
  const data = Buffer.from(randomBytes(300_000).toString('base64'));
  const hex = sha256(data);
  const gzipped = (b: Buffer) => execFileSync('gzip', ['-1', '-c'], { input: b, maxBuffer: 1 << 26 });
  const blobPath = (root: string) => join(root, STORE, 'blobs', 'sha256', hex);
  const partialPath = (root: string) => join(root, STORE, 'incoming', `${hex}.0-${data.length}.part`);

  /** A receiver; `ready` resolves with the offset it says to start from, or null if it never does. */
  function receiver(home: string, root: string, codec: Codec = 'raw', loginPath = '') {
    const r = shAsync(home, receiveScript({ root, key: hex, hex, size: data.length, start: 0, end: data.length, codec, path: loginPath }));
    const ready = new Promise<number | null>((resolve) => {
      let out = '';
      r.child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^ready (\d+)\n/m.exec(out);
        if (m) resolve(Number(m[1]));
      });
      void r.done.then(() => resolve(null));
    });
    return { ...r, ready };
  }

  /** Run a receiver, sending what `send` makes of the offset it says (as the sender does). */
  async function receive(
    home: string,
    root: string,
    send: (from: number) => Buffer,
    codec: Codec = 'raw',
    loginPath = '',
  ): Promise<Run & { from: number | null }> {
    const r = receiver(home, root, codec, loginPath);
    const from = await r.ready;
    if (from !== null) r.child.stdin.end(send(from));
    return { ...(await r.done), from };
  }

  const zstdOf = (b: Buffer) => execFileSync('zstd', ['-1', '-q', '-c'], { input: b, maxBuffer: 1 << 26 });
  const encode: Record<Codec, (b: Buffer) => Buffer> = { raw: (b) => b, gzip: gzipped, zstd: zstdOf };
  const codecs: Codec[] = HAS_ZSTD ? ['raw', 'gzip', 'zstd'] : ['raw', 'gzip'];

  test.each(codecs)('%s: says ready 0 and the blob lands in the store after its digest check, no partial left', async (codec) => {
    const { home, root } = newStore();
    const r = await receive(home, root, () => encode[codec](data), codec);
    expect(r).toEqual({ code: RECEIVE.ok, stdout: 'ready 0\nok\n', stderr: '', from: 0 });
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
    expect(existsSync(partialPath(root))).toBe(false);
  });

  test("runs its tools from the login shell's PATH it is given (it starts without the login profile)", async () => {
    const { home, root } = newStore();
    // A gzip only the login PATH has, as a module-less cluster's ~/bin might.
    const bin = join(home, 'login-bin');
    mkdirSync(bin);
    const gzip = execFileSync('sh', ['-c', 'command -v gzip']).toString().trim();
    writeFileSync(join(bin, 'gzip'), `#!/bin/sh\ntouch "$HOME/login-gzip-used"\nexec ${gzip} "$@"\n`, { mode: 0o755 });
    const r = await receive(home, root, () => gzipped(data), 'gzip', `${bin}:${process.env.PATH}`);
    expect([r.code, r.stdout]).toEqual([RECEIVE.ok, 'ready 0\nok\n']);
    expect(existsSync(join(home, 'login-gzip-used'))).toBe(true);
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
  });

  test('the blob is not in the store while it is still arriving', async () => {
    const { home, root } = newStore();
    const { child, done, ready } = receiver(home, root);
    expect(await ready).toBe(0);
    child.stdin.write(data.subarray(0, 100_000));
    await eventually(() => existsSync(partialPath(root)) && statSync(partialPath(root)).size === 100_000, 10_000, 'the first part to arrive', 10);
    expect(existsSync(blobPath(root))).toBe(false);
    child.stdin.end(data.subarray(100_000));
    expect((await done).code).toBe(RECEIVE.ok);
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
  });

  test('a short stream: exit 77 saying how far it got, prefix kept; the next receiver resumes there', async () => {
    const { home, root } = newStore();
    const r = await receive(home, root, () => data.subarray(0, 123_456));
    expect([r.code, r.stdout]).toEqual([RECEIVE.short, 'ready 0\nshort 123456\n']);
    expect(readFileSync(partialPath(root)).equals(data.subarray(0, 123_456))).toBe(true);
    expect(existsSync(blobPath(root))).toBe(false);

    const rest = await receive(home, root, (from) => data.subarray(from));
    expect(rest.from).toBe(123_456);
    expect([rest.code, rest.stdout]).toEqual([RECEIVE.ok, 'ready 123456\nok\n']);
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
    expect(existsSync(partialPath(root))).toBe(false);
  });

  test.each(codecs.filter((c) => c !== 'raw'))('a %s stream cut in the middle leaves a correct prefix; the rest, compressed, completes it', async (codec) => {
    const { home, root } = newStore();
    const packed = encode[codec](data);
    const r = await receive(home, root, () => packed.subarray(0, Math.floor(packed.length / 2)), codec);
    expect(r.code).toBe(RECEIVE.short);
    const n = Number(/^ready 0\nshort (\d+)\n$/.exec(r.stdout)![1]);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(data.length);
    const partial = readFileSync(partialPath(root));
    expect(partial.length).toBe(n);
    expect(partial.equals(data.subarray(0, n))).toBe(true);

    const rest = await receive(home, root, (from) => encode[codec](data.subarray(from)), codec);
    expect([rest.from, rest.code]).toEqual([n, RECEIVE.ok]);
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
  });

  test('a partial holding all the bytes: ready at its size, checked and stored on an empty stream', async () => {
    const { home, root } = newStore();
    writeFileSync(partialPath(root), data);
    const r = await receive(home, root, (from) => data.subarray(from));
    expect(r).toMatchObject({ code: RECEIVE.ok, stdout: `ready ${data.length}\nok\n`, from: data.length });
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
  });

  test('a partial longer than the blob is dropped: ready 0', async () => {
    const { home, root } = newStore();
    writeFileSync(partialPath(root), Buffer.concat([data, Buffer.from('more')]));
    const r = await receive(home, root, (from) => data.subarray(from));
    expect(r).toMatchObject({ code: RECEIVE.ok, stdout: 'ready 0\nok\n' });
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
  });

  test.each([
    // One bit flipped: always a change, whatever the (random) byte was.
    ['the right size, wrong bytes', () => Buffer.from(data).fill(data[1000] ^ 0x01, 1000, 1001)],
    ['too many bytes', () => Buffer.concat([data, Buffer.from('extra')])],
  ])('%s: exit 78, the partial removed, nothing stored; the next receiver starts over', async (_what, make) => {
    const { home, root } = newStore();
    const bad = make();
    expect(bad.equals(data)).toBe(false);
    const r = await receive(home, root, () => bad);
    expect([r.code, r.stdout]).toEqual([RECEIVE.corrupt, 'ready 0\ncorrupt\n']);
    expect(existsSync(partialPath(root))).toBe(false);
    expect(existsSync(blobPath(root))).toBe(false);
    expect((await receive(home, root, (from) => data.subarray(from))).stdout).toBe('ready 0\nok\n');
  });

  test('a partial with wrong bytes in it fails the digest check once complete, and is removed', async () => {
    const { home, root } = newStore();
    writeFileSync(partialPath(root), Buffer.alloc(1000, 0x41));
    const r = await receive(home, root, (from) => data.subarray(from));
    expect([r.from, r.code]).toEqual([1000, RECEIVE.corrupt]);
    expect(existsSync(partialPath(root))).toBe(false);
    expect(existsSync(blobPath(root))).toBe(false);
  });

  test('a blob already in the store: have, exit 0, stdin never read', async () => {
    const { home, root } = newStore();
    writeFileSync(blobPath(root), data);
    const { child, done } = shAsync(home, receiveScript({ root, key: hex, hex, size: data.length, start: 0, end: data.length, codec: 'raw', path: '' }));
    // stdin stays open: a receiver that read it would never end.
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([done, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 10_000)))]);
    clearTimeout(timer);
    child.stdin.destroy();
    expect(r).toEqual({ code: 0, stdout: 'have\n', stderr: '' });
    expect(existsSync(partialPath(root))).toBe(false);
  });

  test('under a stand-in: once another delivery joined the blob, a receiver still without the digest says have and sends for nothing', () => {
    const { home, root } = newStore();
    const key = `m${'5'.repeat(24)}`;
    const half = 150_000;
    const range = (start: number, end: number, h: string | null) => receiveScript({ root, key, hex: h, size: data.length, start, end, codec: 'raw', path: '' });
    // Delivery A sends both ranges before its save has told it the digest: they stay parts.
    expect(sh(home, range(0, half, null), data.subarray(0, half)).stdout).toBe('ready 0\npart\n');
    expect(sh(home, range(half, data.length, null), data.subarray(half)).stdout).toBe('ready 0\npart\n');
    // Once it knows the digest, an empty receive joins them.
    expect(sh(home, range(half, data.length, hex)).stdout).toBe(`ready ${data.length - half}\nok\n`);
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
    // Delivery B, its save behind A's, still goes by the stand-in alone.
    for (const [s, e] of [
      [0, half],
      [half, data.length],
    ])
      expect(sh(home, range(s, e, null), data.subarray(s, e))).toEqual({ code: 0, stdout: 'have\n', stderr: '' });
    const incoming = join(root, STORE, 'incoming');
    expect(readdirSync(incoming).filter((f) => f.endsWith('.part'))).toEqual([]);
    // The blob gone (garbage collection): the record no longer counts, the range goes as usual.
    rmSync(blobPath(root));
    expect(sh(home, range(0, half, null), data.subarray(0, half)).stdout).toBe('ready 0\npart\n');
  });

  test('a join elsewhere takes the complete part while this receiver holds it: have, not short', async () => {
    const { home, root } = newStore();
    writeFileSync(partialPath(root), data);
    const r = receiver(home, root);
    expect(await r.ready).toBe(data.length);
    // Another delivery's receiver of the blob's last range joined it, this part with it.
    writeFileSync(blobPath(root), data);
    rmSync(partialPath(root));
    r.child.stdin.end();
    expect(await r.done).toEqual({ code: 0, stdout: `ready ${data.length}\nhave\n`, stderr: '' });
    expect(existsSync(partialPath(root))).toBe(false);
  });

  test('two receivers of the same blob at once: both succeed, one stores it, the other finds it', async () => {
    const { home, root } = newStore();
    const receivers = [receiver(home, root), receiver(home, root)];
    // Each is fed, slowly, from where it says once it says so.
    const fed = receivers.map(async (r) => {
      const from = await r.ready;
      if (from !== null) await feed(r.child, data.subarray(from));
    });
    await Promise.all(fed);
    const results = await Promise.all(receivers.map((r) => r.done));
    expect(results.map((r) => r.code)).toEqual([0, 0]);
    expect(results.map((r) => r.stdout).sort()).toEqual(['have\n', 'ready 0\nok\n']);
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
    expect(existsSync(partialPath(root))).toBe(false);
  });

  test('waits while garbage collection holds the store, before saying ready', async () => {
    const { home, root } = newStore();
    const gc = await holdLock(join(root, STORE, 'lock'), '-x');
    let said: number | null | undefined;
    const r = receiver(home, root);
    void r.ready.then((n) => (said = n));
    await sleep(1000);
    expect(said).toBeUndefined();
    await gc.release();
    expect(await r.ready).toBe(0);
    r.child.stdin.end(data);
    expect((await r.done).code).toBe(RECEIVE.ok);
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
  });

  test('hostile root paths stay data', async () => {
    const home = newHome();
    expect(prepare(home, { remoteDir: `rd ${HOSTILE}`, tmpdir: 'tmp' }).code).toBe(0);
    const root = join(home, `rd ${HOSTILE}`);
    expect((await receive(home, root, () => data)).code).toBe(RECEIVE.ok);
    expect(readFileSync(blobPath(root)).equals(data)).toBe(true);
    expect(walk(home).filter((f) => f.endsWith('/PWNED'))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('gcScript', () => {
  const [A, B, C] = [fakeHex('a'), fakeHex('b'), fakeHex('c')];
  /** Run directories (the only job directories gc may remove), an old and a newer one. */
  const [OLD_RUN, NEW_RUN] = ['20201001-101010-aaaaaa', '20201002-101010-bbbbbb'];

  /** Three image records, oldest A; blobs only A uses, shared ones, a stray one; .sif files. */
  function populate() {
    const { home, root } = newStore();
    const s = (p: string) => join(root, STORE, p);
    const onlyA = putBlob(root, 'only A');
    const sharedAB = putBlob(root, 'A and B');
    const sharedAC = putBlob(root, 'A and C');
    const onlyB = putBlob(root, 'only B');
    const onlyC = putBlob(root, 'only C');
    const stray = putBlob(root, 'no image');
    const inFlight = putBlob(root, 'an image being prepared');
    rmSync(s(`images/${IMAGE}`)); // newStore's own record
    writeFileSync(s(`images/${A}`), [onlyA, sharedAB, sharedAC, ''].join('\n'));
    writeFileSync(s(`images/${B}`), [sharedAB, onlyB, ''].join('\n'));
    writeFileSync(s(`images/${C}`), [sharedAC, onlyC, ''].join('\n'));
    // A record a prepare is writing right now.
    writeFileSync(s(`images/${fakeHex('d')}.tmp.999`), `${inFlight}\n`);
    touchAgo(s(`images/${A}`), '3 hours ago');
    touchAgo(s(`images/${B}`), '2 hours ago');
    touchAgo(s(`images/${C}`), '1 hour ago');
    touchAgo(s(`images/${fakeHex('d')}.tmp.999`), '5 hours ago');
    for (const h of [A, B, C, fakeHex('9')]) {
      writeFileSync(join(root, 'sif', `${h}.sif`), `sif ${h}`);
      writeFileSync(join(root, 'sif', `${h}.sif.sha256`), `x  ${h}.sif\n`);
      writeFileSync(join(root, 'sif', `${h}.sif.verified`), `1:2 3 x x x x x x x\n`);
      // A record being written when a prepare was killed.
      writeFileSync(join(root, 'sif', `${h}.sif.verified.Ab12Cd`), '');
    }
    writeFileSync(s('incoming/old.partial'), 'old');
    touchAgo(s('incoming/old.partial'), '3 days ago');
    writeFileSync(s('incoming/new.partial'), 'new');
    touchAgo(s('incoming/new.partial'), '2 hours ago');
    for (const [job, ago] of [
      [OLD_RUN, '10 days ago'],
      [NEW_RUN, '2 days ago'],
    ]) {
      mkdirSync(join(root, 'jobs', job));
      writeFileSync(join(root, 'jobs', job, 'job.out'), 'out');
      touchAgo(join(root, 'jobs', job), ago);
    }
    return { home, root, blobs: { onlyA, sharedAB, sharedAC, onlyB, onlyC, stray, inFlight } };
  }

  const ls = (dir: string) => readdirSync(dir).sort();

  test('keeps the newest records, their blobs and .sif files; drops the rest, old partials and job dirs', () => {
    const { home, root, blobs } = populate();
    const r = sh(home, gc({ root, keepImages: 2, maxAgeDays: 7 }));
    expect(r.stderr).toBe('');
    expect(r).toEqual({ code: 0, stdout: 'gc removed 2 blob(s), 2 .sif file(s) and 1 job directory(ies)\n', stderr: '' });
    expect(ls(join(root, STORE, 'images'))).toEqual([B, C, `${fakeHex('d')}.tmp.999`].sort());
    const { onlyA, stray, ...kept } = blobs;
    expect(ls(join(root, STORE, 'blobs', 'sha256'))).toEqual(Object.values(kept).sort());
    expect(ls(join(root, 'sif'))).toEqual([B, C].flatMap((h) => [`${h}.sif`, `${h}.sif.sha256`, `${h}.sif.verified`, `${h}.sif.verified.Ab12Cd`]));
    expect(ls(join(root, STORE, 'incoming'))).toEqual(['new.partial']);
    expect(ls(join(root, 'jobs'))).toEqual([NEW_RUN]);
    // No temp file of its own left behind.
    expect(ls(join(root, STORE))).toEqual(['blobs', 'holds', 'images', 'incoming', 'lock', 'locks']);
  });

  test('records older than maxAgeDays go even when fewer than keepImages', () => {
    const { home, root, blobs } = populate();
    touchAgo(join(root, STORE, 'images', A), '9 days ago');
    const r = sh(home, gc({ root, keepImages: 10, maxAgeDays: 7 }));
    expect(r.stdout).toBe('gc removed 2 blob(s), 2 .sif file(s) and 1 job directory(ies)\n');
    expect(ls(join(root, STORE, 'images'))).toEqual([B, C, `${fakeHex('d')}.tmp.999`].sort());
    expect(existsSync(join(root, STORE, 'blobs', 'sha256', blobs.onlyA))).toBe(false);
    expect(existsSync(join(root, STORE, 'blobs', 'sha256', blobs.sharedAB))).toBe(true);
    expect(existsSync(join(root, 'sif', `${A}.sif`))).toBe(false);
  });

  test('nothing to do: keeps everything in use', () => {
    const { home, root } = populate();
    expect(sh(home, gc({ root, keepImages: 2, maxAgeDays: 7 })).code).toBe(0);
    const again = sh(home, gc({ root, keepImages: 2, maxAgeDays: 7 }));
    expect(again.stdout).toBe('gc removed 0 blob(s), 0 .sif file(s) and 0 job directory(ies)\n');
  });

  test('skipped, exit 0, while a delivery or a job holds the store lock', async () => {
    const { home, root } = populate();
    const reader = await holdLock(join(root, STORE, 'lock'), '-s');
    const before = walk(root).sort();
    try {
      const r = sh(home, gc({ root, keepImages: 1, maxAgeDays: 7 }));
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('gc skipped');
      expect(walk(root).sort()).toEqual(before);
    } finally {
      await reader.release();
    }
    expect(sh(home, gc({ root, keepImages: 1, maxAgeDays: 7 })).stdout).toMatch(/^gc removed [1-9]/);
  }, 30_000);

  test('no store yet: exit 0', () => {
    const home = newHome();
    expect(sh(home, gc({ root: join(home, 'nothing'), keepImages: 2, maxAgeDays: 7 })).code).toBe(0);
  });

  // Known bug (src/core/store.ts, gcScript): `find -mtime +N` matches files at least N+1 whole days
  // old, so a partial upload 36 hours old and a job dir 7.5 days old (maxAgeDays 7) are kept,
  // though both are "older than" the limit. Flip to `test` once gc compares minutes
  // (`-mmin +1440`, `-mmin +$((N*1440))`).
  test('a partial upload over 1 day old goes', () => {
    const { home, root } = populate();
    touchAgo(join(root, STORE, 'incoming', 'new.partial'), '36 hours ago');
    expect(sh(home, gc({ root, keepImages: 2, maxAgeDays: 7 })).code).toBe(0);
    expect(ls(join(root, STORE, 'incoming'))).toEqual([]);
  });

  test('a job dir over maxAgeDays old goes', () => {
    const { home, root } = populate();
    touchAgo(join(root, 'jobs', NEW_RUN), '7 days ago 12 hours ago');
    expect(sh(home, gc({ root, keepImages: 2, maxAgeDays: 7 })).code).toBe(0);
    expect(ls(join(root, 'jobs'))).toEqual([]);
  });

  /** A run's hold: the images its job uses, and its job id once submitted. */
  function hold(root: string, run: string, lines: string[]): string {
    const path = join(root, STORE, 'holds', run);
    writeFileSync(path, lines.map((l) => `${l}\n`).join(''));
    return path;
  }

  test('an image a queued or running job holds is kept whatever keep-images and max-age say; released once Slurm no longer knows the job', () => {
    const { home, root, blobs } = populate();
    touchAgo(join(root, STORE, 'images', A), '9 days ago');
    const held = hold(root, OLD_RUN, [`image ${A}`, 'job 4242']);
    writeFileSync(join(home, '.squeue'), '4241\n4242\n');
    expect(sh(home, gc({ root, keepImages: 1, maxAgeDays: 7 })).stdout).toMatch(/^gc removed /);
    expect(ls(join(root, STORE, 'images'))).toEqual([A, C, `${fakeHex('d')}.tmp.999`].sort());
    expect(existsSync(join(root, STORE, 'blobs', 'sha256', blobs.onlyA))).toBe(true);
    expect(existsSync(join(root, 'sif', `${A}.sif`))).toBe(true);
    // Its job directory too, however old.
    expect(ls(join(root, 'jobs'))).toEqual([OLD_RUN, NEW_RUN]);
    // The job ended: Slurm forgets it, the next collection releases the hold.
    writeFileSync(join(home, '.squeue'), '4241\n');
    sh(home, gc({ root, keepImages: 1, maxAgeDays: 7 }));
    expect(existsSync(held)).toBe(false);
    expect(ls(join(root, STORE, 'images'))).toEqual([C, `${fakeHex('d')}.tmp.999`].sort());
    expect(existsSync(join(root, 'sif', `${A}.sif`))).toBe(false);
    expect(ls(join(root, 'jobs'))).toEqual([NEW_RUN]);
  });

  test('a hold whose delivery has not submitted yet keeps its image for a day', () => {
    const { home, root } = populate();
    const held = hold(root, NEW_RUN, [`image ${A}`]);
    sh(home, gc({ root, keepImages: 1, maxAgeDays: 7 }));
    expect(existsSync(join(root, 'sif', `${A}.sif`))).toBe(true);
    touchAgo(held, '25 hours ago');
    sh(home, gc({ root, keepImages: 1, maxAgeDays: 7 }));
    expect(existsSync(held)).toBe(false);
    expect(existsSync(join(root, 'sif', `${A}.sif`))).toBe(false);
  });

  test('when Slurm does not answer, nothing is removed', () => {
    const { home, root } = populate();
    writeFileSync(join(home, '.squeue-rc'), '1');
    const before = walk(root).sort();
    const r = sh(home, gc({ root, keepImages: 1, maxAgeDays: 1 }));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('gc skipped: Slurm did not answer');
    expect(walk(root).sort()).toEqual(before);
  });

  test('an old job directory whose job Slurm still knows stays (queued for days)', () => {
    const { home, root } = populate();
    writeFileSync(join(root, 'jobs', OLD_RUN, 'submitted'), '4343;cluster\n');
    touchAgo(join(root, 'jobs', OLD_RUN), '10 days ago');
    writeFileSync(join(home, '.squeue'), '4343\n');
    sh(home, gc({ root, keepImages: 2, maxAgeDays: 7 }));
    expect(ls(join(root, 'jobs'))).toEqual([OLD_RUN, NEW_RUN]);
  });

  test('removes only what the tool names: not a folder or .sif of the user’s, however old; dangling job links go', () => {
    const { home, root } = populate();
    mkdirSync(join(root, 'jobs', '2023-paper-runs'));
    touchAgo(join(root, 'jobs', '2023-paper-runs'), '900 days ago');
    writeFileSync(join(root, 'sif', 'thesis-env.sif'), 'mine');
    execFileSync('ln', ['-s', join(root, 'jobs', OLD_RUN), join(root, 'jobs', 'job-77')]);
    execFileSync('ln', ['-s', join(root, 'jobs', NEW_RUN), join(root, 'jobs', 'job-78')]);
    sh(home, gc({ root, keepImages: 1, maxAgeDays: 7 }));
    expect(ls(join(root, 'jobs'))).toEqual([NEW_RUN, '2023-paper-runs', 'job-78']);
    expect(readFileSync(join(root, 'sif', 'thesis-env.sif'), 'utf8')).toBe('mine');
  });
});

describe('prepareScript: remote-dir is the tool’s own', () => {
  test('a new remote-dir gets the marker; the run holds its image from the first round trip', () => {
    const home = newHome();
    expect(prepare(home, { sifOnly: true }).code).toBe(0);
    const root = join(home, 'work/riviera');
    expect(existsSync(join(root, REMOTE_MARKER))).toBe(true);
    expect(readFileSync(join(root, STORE, 'holds', RUN), 'utf8')).toBe(`image ${IMAGE}\n`);
  });

  test.each([
    ['the home directory', (home: string) => home, /is your home directory/],
    ['a folder of the user’s', (home: string) => join(home, 'thesis'), /exists and was not made by riviera-singularity/],
  ])(
    '%s is refused (exit 4), and nothing in it is touched',
    (_what, dir, message) => {
      const home = newHome();
      mkdirSync(join(home, 'thesis', 'sif'), { recursive: true });
      mkdirSync(join(home, 'sif'));
      writeFileSync(join(home, 'thesis', 'sif', 'thesis-env.sif'), 'mine');
      const before = walk(home)
        .map((f) => `${f} ${modeOf(f)}`)
        .sort();
      const homeMode = modeOf(home);
      const r = prepare(home, { remoteDir: dir(home), group: execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim() });
      expect(r.code).toBe(PREPARE_REFUSED);
      expect(r.stderr).toMatch(message);
      expect(
        walk(home)
          .map((f) => `${f} ${modeOf(f)}`)
          .sort(),
      ).toEqual(before);
      expect(modeOf(home)).toBe(homeMode);
    },
    10_000,
  );

  test('a publish directory it makes gets the mode and group; an existing one is left as it is', () => {
    const home = newHome();
    const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
    expect(prepare(home, { publishDir: 'pub/new', publishMode: '0640', publishGroup: group }).code).toBe(0);
    expect(modeOf(join(home, 'pub/new'))).toBe(0o750);
    mkdirSync(join(home, 'lab'), { mode: 0o777 });
    execFileSync('chmod', ['2777', join(home, 'lab')]);
    expect(prepare(home, { publishDir: 'lab', publishMode: '0640', publishGroup: group }).code).toBe(0);
    expect(modeOf(join(home, 'lab'))).toBe(0o2777);
  });
});

#!/usr/bin/env node
// What happens to one remote-dir shared by ten deliveries of different images at once, with
// keep-images 2: the CPU partition runs two jobs at a time, so most wait in the queue while others
// finish and collect garbage. Prints, as markdown: how many passed, the wall time, and the store
// (image records, blobs, .sif files, bytes) at its fullest and after a last delivery once all ended.
// A report, not a test (issue 12): exits non-zero only if a delivery failed.
//
// Usage: node scripts/shared-store.mjs   (as root, with the stand-in up and dist/ built; hold
// /tmp/riviera-e2e.lock). Environment: SHARED_DELIVERIES (default 10), SHARED_KEEP (default 2),
// SHARED_CLI (another build's dist/cli/index.js, e.g. an older one to compare with).
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const STATE = process.env.ACC_STATE ?? '/var/lib/riviera-acceptance';
const N = Number(process.env.SHARED_DELIVERIES ?? 10) || 10;
const KEEP = Number(process.env.SHARED_KEEP ?? 2) || 2;
const REMOTE_DIR = `e2e/shared-store-${Date.now().toString(36)}`;
const STORE_ROOT = `/home/rivuser/${REMOTE_DIR}`;
// A snapshot of the CLI (others may rebuild dist/ meanwhile), or SHARED_CLI: another build to compare.
const CLI_DIR = mkdtempSync(join(tmpdir(), 'rs-shared-cli-'));
cpSync(process.env.SHARED_CLI ? dirname(process.env.SHARED_CLI) : join(ROOT, 'dist/cli'), CLI_DIR, { recursive: true });
const CLI = join(CLI_DIR, 'index.js');

/** A build context of busybox and a 2 MiB layer of its own: a different image per i. */
function context(i) {
  const ws = mkdtempSync(join(tmpdir(), 'rs-shared-ws-'));
  copyFileSync('/bin/busybox', join(ws, 'busybox'));
  writeFileSync(join(ws, 'own.bin'), Buffer.alloc(2 << 20, i + 1));
  writeFileSync(join(ws, 'smoke.sh'), 'echo smoke-ok\n');
  writeFileSync(
    join(ws, 'Dockerfile'),
    'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCOPY own.bin /data/own.bin\nENTRYPOINT ["/bin/sh"]\n',
  );
  return ws;
}

function deliver(i) {
  const args = [CLI, 'deliver', '--host', '127.0.0.1', '--port', '2222', '--username', 'rivuser', '--private-key-file', join(STATE, 'id_ed25519')];
  args.push(
    '--known-hosts-file',
    join(STATE, 'known_hosts'),
    '--image',
    `rs-shared/img${i}:v1`,
    '--smoke-test',
    'smoke.sh',
    '--gpus',
    '0',
    '--partition',
    'day-long-cpu',
  );
  args.push('--remote-dir', REMOTE_DIR, '--keep-images', String(KEEP), '--json');
  const t0 = Date.now();
  return new Promise((res) => {
    const child = spawn(process.execPath, args, {
      cwd: context(i),
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => res({ i, code, seconds: (Date.now() - t0) / 1000, out, err }));
  });
}

const count = (dir, re = /./) => (existsSync(dir) ? readdirSync(dir).filter((f) => re.test(f)).length : 0);
const du = (dir) => (existsSync(dir) ? Number(spawnSync('du', ['-sb', dir], { encoding: 'utf8' }).stdout.split('\t')[0]) : 0);
function store() {
  return {
    records: count(`${STORE_ROOT}/.store/images`, /^[0-9a-f]{64}$/),
    blobs: count(`${STORE_ROOT}/.store/blobs/sha256`),
    sifs: count(`${STORE_ROOT}/sif`, /^[0-9a-f]{64}\.sif$/),
    holds: count(`${STORE_ROOT}/.store/holds`),
    mib: +((du(`${STORE_ROOT}/.store`) + du(`${STORE_ROOT}/sif`)) / (1 << 20)).toFixed(1),
  };
}

const t0 = Date.now();
let peak = store();
const sampler = setInterval(() => {
  const s = store();
  if (s.mib >= peak.mib) peak = s;
}, 500);
const runs = await Promise.all(Array.from({ length: N }, (_, i) => deliver(i)));
clearInterval(sampler);
const wall = (Date.now() - t0) / 1000;
const afterAll = store();
// One more delivery once every job has ended: its garbage collection is the first that finds no job held.
const last = await deliver(N);
const settled = store();

const failed = [...runs, last].filter((r) => r.code !== 0);
console.log(`## ${N} deliveries of different images to one remote-dir, keep-images ${KEEP}\n`);
console.log(
  `- passed: ${runs.length - runs.filter((r) => r.code !== 0).length} of ${N}; wall time ${wall.toFixed(0)} s (each ${Math.min(...runs.map((r) => r.seconds)).toFixed(0)}–${Math.max(...runs.map((r) => r.seconds)).toFixed(0)} s)`,
);
console.log('\n| store | image records | blobs | .sif files | holds | MiB |\n| --- | --- | --- | --- | --- | --- |');
for (const [name, s] of [
  ['fullest, while jobs were queued', peak],
  ['when all ten had ended', afterAll],
  ['after one more delivery (its GC)', settled],
]) {
  console.log(`| ${name} | ${s.records} | ${s.blobs} | ${s.sifs} | ${s.holds} | ${s.mib} |`);
}
for (const r of failed) console.log(`\ndelivery ${r.i} failed (exit ${r.code}):\n${r.err.split('\n').slice(-15).join('\n')}`);
console.log(`\nremote-dir: ~/${REMOTE_DIR}`);
process.exitCode = failed.length > 0 ? 1 : 0;

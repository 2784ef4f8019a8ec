#!/usr/bin/env node
// Benchmarks of a delivery on the local stand-in cluster: bytes on the wire (through the
// byte-counting proxy) against the size of the saved image, upload time against scp over the same
// link, and the end-to-end time of an unchanged re-delivery. Prints one markdown table on stdout and
// writes the same results to .bench/results.json. A report, not a test: a missed target still exits
// 0; a delivery that fails exits non-zero with the tail of its log.
//
// Usage: npm run bench [-- --wan] [-- --memory] [-- --preflight]   (as root: it brings the stand-in cluster up and
// reads its side directly). No flag: every section. --wan: only the WAN section (a realistic image,
// busybox plus ~260 MiB of this machine's shared libraries, delivered through
// test-cluster/wanproxy.mjs at 40 ms RTT and 1 Gbit/s and 200 Mbit/s, beside `docker save` + `scp`
// and `docker save | zstd -3 -T0 | ssh cat` over the same link). --memory: only the peak RSS of
// the CLI delivering a ~1 GiB image. --preflight: only how long a delivery to a partition that
// does not exist takes to fail (preflight, before anything is saved). --transports: one delivery of
// 128 MiB of incompressible data per SSH client (builtin ssh2, system OpenSSH) over the 40 ms,
// 1 Gbit/s link. Flags combine.
// Environment: BENCH_RUNS (timing runs per image, default 3), BENCH_WAN_RUNS (runs per link,
// default 2), BENCH_KEEP_IMAGES=1 (keep the rs-bench/* images in the local Docker engine for a
// faster next run).
import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const STATE = process.env.ACC_STATE ?? '/var/lib/riviera-acceptance';
const KEY = join(STATE, 'id_ed25519');
const KNOWN_HOSTS = join(STATE, 'known_hosts');
const CLUSTER_HOME = '/home/rivuser';
const SSH_PORT = 2222;
const DIST_CLI = join(ROOT, 'dist/cli');
/** The CLI the deliveries run: a snapshot of dist/cli taken at the start (others rebuild dist/ concurrently). */
let CLI = join(DIST_CLI, 'index.js');
const LOGS = join(ROOT, '.bench/logs');
const MIB = 1 << 20;
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3) || 3);
const WAN_RUNS = Math.max(1, Number(process.env.BENCH_WAN_RUNS ?? 2) || 2);
const FLAGS = process.argv.slice(2);
for (const f of FLAGS)
  if (!['--wan', '--memory', '--preflight', '--transports'].includes(f))
    throw new Error(`unknown flag ${f} (known: --wan, --memory, --preflight, --transports)`);
/** The sections to run: the flags given, or all of them. */
const want = (section) => (FLAGS.length === 0 ? true : FLAGS.includes(`--${section}`));
/** A single delivery that takes longer than this is killed and counts as failed. */
const DELIVERY_TIMEOUT_MS = 5 * 60_000;
/** The whole benchmark is stopped (and cleaned up) after this. */
const GLOBAL_TIMEOUT_MS = 45 * 60_000;

const t0 = Date.now();
const ts = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
const log = (m) => process.stderr.write(`[bench +${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${m}\n`);

// ---------------------------------------------------------------- cleanup
const children = new Set();
const images = new Set();
let tmp = null;
let cleanedUp = false;

function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  rmSync(join(CLUSTER_HOME, 'bench'), { recursive: true, force: true });
  rmSync(join(CLUSTER_HOME, 'bench-scp.tar'), { force: true });
  rmSync(join(CLUSTER_HOME, 'bench-pipe.tar.zst'), { force: true });
  if (!process.env.BENCH_KEEP_IMAGES && images.size) spawnSync('docker', ['rmi', '-f', ...images], { stdio: 'ignore' });
}

class DeliveryFailed extends Error {}

process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: cleaning up`);
    cleanup();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  log(`the benchmark took over ${GLOBAL_TIMEOUT_MS / 60000} min: stopping`);
  cleanup();
  process.exit(124);
}, GLOBAL_TIMEOUT_MS);
watchdog.unref();

// ---------------------------------------------------------------- helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (n, d = 4) => Math.round(n * 10 ** d) / 10 ** d;
const mib = (n) => `${(n / MIB).toFixed(1)} MiB`;

/** Run a command to completion, its output collected; rejects on a non-zero exit or the timeout. */
function run(cmd, args, { cwd = ROOT, timeoutMs = 10 * 60_000, env = process.env, inherit = false } = {}) {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', inherit ? process.stderr : 'pipe', inherit ? process.stderr : 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => (stdout += d));
    child.stderr?.on('data', (d) => (stderr += d));
    const started = Date.now();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => (clearTimeout(timer), children.delete(child), rej(e)));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const r = { code, signal, stdout, stderr, seconds: (Date.now() - started) / 1000, timedOut };
      if (code === 0) res(r);
      else {
        const e = new Error(
          `${cmd} ${args.join(' ')} failed (${timedOut ? 'timed out' : (signal ?? `exit ${code}`)}):\n${(stderr || stdout).trim().split('\n').slice(-20).join('\n')}`,
        );
        e.result = r;
        rej(e);
      }
    });
  });
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function canConnect(port) {
  return new Promise((res) => {
    const s = createConnection(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), res(true)));
    s.once('error', () => res(false));
  });
}

/** The byte-counting (optionally cutting) proxy in front of the cluster's sshd. */
async function startProxy(name, { cutAfter, cutOnce } = {}) {
  const port = await freePort();
  const countFile = join(tmp, `proxy-${name}.json`);
  const args = [join(ROOT, 'test-cluster/byteproxy.mjs'), String(port), String(SSH_PORT), countFile];
  if (cutAfter !== undefined) args.push('--cut-after', String(cutAfter));
  if (cutOnce) args.push('--cut-once');
  const child = spawn(process.execPath, args, { stdio: 'ignore' });
  children.add(child);
  child.on('exit', () => children.delete(child));
  for (let i = 0; i < 50 && !(existsSync(countFile) && (await canConnect(port))); i++) await sleep(100);
  if (!(await canConnect(port))) throw new Error(`the byte proxy on port ${port} did not start`);
  const knownHosts = join(tmp, `known_hosts-${port}`);
  writeFileSync(knownHosts, readFileSync(KNOWN_HOSTS, 'utf8').replaceAll(`[127.0.0.1]:${SSH_PORT}`, `[127.0.0.1]:${port}`));
  log(`proxy ${name} on port ${port}${cutAfter !== undefined ? ` (cuts after ${cutAfter} bytes${cutOnce ? ', once' : ''})` : ''}`);
  return {
    port,
    knownHosts,
    counts: () => JSON.parse(readFileSync(countFile, 'utf8')),
    stop: () => {
      child.kill();
      children.delete(child);
    },
  };
}

/** Write `mib` MiB of deterministic "random" bytes (aes-128-ctr over zeros, keyed by the seed). */
function writeRandom(path, mibs, seed) {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const fd = openSync(path, 'w');
  const zeros = Buffer.alloc(16 * MIB);
  try {
    for (let left = mibs * MIB; left > 0; left -= zeros.length) writeSync(fd, cipher.update(left >= zeros.length ? zeros : zeros.subarray(0, left)));
  } finally {
    closeSync(fd);
  }
}

function writeZeros(path, mibs) {
  const fd = openSync(path, 'w');
  const zeros = Buffer.alloc(16 * MIB);
  try {
    for (let left = mibs * MIB; left > 0; left -= zeros.length) writeSync(fd, left >= zeros.length ? zeros : zeros.subarray(0, left));
  } finally {
    closeSync(fd);
  }
}

/**
 * A build context as the e2e harness makes them: the example GPU-check image (busybox copied in)
 * plus a layer of random data and one of zeros (each only if non-empty), and optionally one more
 * small layer on top.
 */
function makeContext(name, { randomMiB = 0, zerosMiB = 0, extra, seed = 'riviera' }) {
  const ws = join(tmp, `ctx-${name}`);
  mkdirSync(ws);
  for (const f of ['Dockerfile', 'gpu-check.sh']) copyFileSync(join(ROOT, 'examples/gpu-check', f), join(ws, f));
  copyFileSync('/bin/busybox', join(ws, 'busybox'));
  const lines = [readFileSync(join(ws, 'Dockerfile'), 'utf8').trimEnd()];
  if (randomMiB) {
    writeRandom(join(ws, 'random.bin'), randomMiB, seed);
    lines.push('COPY random.bin /data/random.bin');
  }
  if (zerosMiB) {
    writeZeros(join(ws, 'zeros.bin'), zerosMiB);
    lines.push('COPY zeros.bin /data/zeros.bin');
  }
  if (extra !== undefined) {
    writeFileSync(join(ws, 'extra.txt'), extra);
    lines.push('COPY extra.txt /data/extra.txt');
  }
  writeFileSync(join(ws, 'Dockerfile'), lines.join('\n') + '\n');
  return ws;
}

/** One delivery with the bundled CLI; exits the benchmark (non-zero) with the log tail if it fails. */
async function deliver(label, { context, image, remoteDir, port = SSH_PORT, knownHosts = KNOWN_HOSTS, extra = [] }) {
  const rssFile = join(tmp, 'rss.txt');
  rmSync(rssFile, { force: true });
  const args = [
    '--import',
    RSS_PRELOAD,
    CLI,
    'deliver',
    '--json',
    ...extra,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--username',
    'rivuser',
    '--private-key-file',
    KEY,
    '--known-hosts-file',
    knownHosts,
    '--image',
    image,
    '--smoke-test',
    'gpu-check.sh',
    '--partition',
    'short-gpu',
    '--gpus',
    '1',
    '--remote-dir',
    remoteDir,
  ];
  log(`${label}: delivering ${image} to ~/${remoteDir}${port !== SSH_PORT ? ` via port ${port}` : ''}`);
  let r;
  const logFile = join(LOGS, `${label.replace(/[^A-Za-z0-9_.-]+/g, '_')}.log`);
  try {
    r = await run(process.execPath, args, { cwd: context, timeoutMs: DELIVERY_TIMEOUT_MS, env: { ...process.env, BENCH_RSS_FILE: rssFile } });
    writeFileSync(logFile, r.stderr + '\n--- stdout ---\n' + r.stdout);
  } catch (e) {
    const res = e.result;
    if (!res) throw e;
    writeFileSync(logFile, res.stderr + '\n--- stdout ---\n' + res.stdout);
    process.stderr.write(
      `\n--- ${label}: the delivery failed (${res.timedOut ? `timed out after ${DELIVERY_TIMEOUT_MS / 1000} s` : `exit ${res.code}`}); log tail ---\n`,
    );
    process.stderr.write(res.stderr.trim().split('\n').slice(-40).join('\n') + '\n');
    if (res.stdout.trim()) process.stderr.write(`--- stdout ---\n${res.stdout.trim().split('\n').slice(-40).join('\n')}\n`);
    throw new DeliveryFailed(`delivery '${label}' failed`);
  }
  let result;
  try {
    result = JSON.parse(r.stdout);
  } catch {
    process.stderr.write(`\n--- ${label}: no JSON result on stdout; log tail ---\n${r.stderr.trim().split('\n').slice(-40).join('\n')}\n`);
    throw new DeliveryFailed(`delivery '${label}' printed no JSON result`);
  }
  if (!result.ok) {
    process.stderr.write(`\n--- ${label}: the delivery did not pass: ${result.message}; log tail ---\n${r.stderr.trim().split('\n').slice(-40).join('\n')}\n`);
    throw new DeliveryFailed(`delivery '${label}' did not pass`);
  }
  const phase = (p) => result.timings.find((t) => t.phase === p)?.seconds ?? 0;
  const peakRss = existsSync(rssFile) ? Number(readFileSync(rssFile, 'utf8')) * 1024 : NaN;
  log(
    `${label}: ok in ${phase('total').toFixed(1)} s (upload ${phase('upload').toFixed(2)} s), sent ${mib(result.bytesSent)} of ${mib(result.bytesTotal)}, ` +
      `sif reused ${result.sifReused}, reconnects ${result.reconnects}, peak RSS ${mib(peakRss)}`,
  );
  return { ...result, phase, peakRss, log: r.stderr };
}

/** Preloaded into the CLI: writes its own peak RSS (KiB, getrusage of the node process alone) when it exits. */
let RSS_PRELOAD = '';
function writeRssPreload() {
  const path = join(tmp, 'rss-preload.mjs');
  writeFileSync(
    path,
    `import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => { if (process.env.BENCH_RSS_FILE) writeFileSync(process.env.BENCH_RSS_FILE, String(process.resourceUsage().maxRSS)); });\n`,
  );
  RSS_PRELOAD = path;
}

/** Remove one delivery's remote dir (as root on the same machine): keeps the disk use of the timing runs bounded. */
function dropRemote(remoteDir) {
  rmSync(join(CLUSTER_HOME, remoteDir), { recursive: true, force: true });
}

// ---------------------------------------------------------------- loopback: bytes on the wire, upload vs scp
async function loopbackSection(row, raw) {
  // ---- bytes on the wire: first delivery, again, one new small layer
  log('making the 16 MiB random + 16 MiB zeros image contexts');
  const ctxBase = makeContext('data', { randomMiB: 16, zerosMiB: 16 });
  const ctxChanged = makeContext('data-changed', { randomMiB: 16, zerosMiB: 16, extra: 'one more small layer\n' });
  const IMG = 'rs-bench/data:v1';
  const IMG2 = 'rs-bench/data:v2';
  images.add(IMG).add(IMG2);

  const proxy = await startProxy('dedup');
  const dedupDir = `bench/dedup-${ts}`;
  let before = proxy.counts().up;
  const first = await deliver('first', { context: ctxBase, image: IMG, remoteDir: dedupDir, port: proxy.port, knownHosts: proxy.knownHosts });
  const firstUp = proxy.counts().up - before;
  before = proxy.counts().up;
  const again = await deliver('again', { context: ctxBase, image: IMG, remoteDir: dedupDir, port: proxy.port, knownHosts: proxy.knownHosts });
  const againUp = proxy.counts().up - before;
  before = proxy.counts().up;
  const changed = await deliver('new-layer', { context: ctxChanged, image: IMG2, remoteDir: dedupDir, port: proxy.port, knownHosts: proxy.knownHosts });
  const changedUp = proxy.counts().up - before;
  proxy.stop();

  const cutProxy = await startProxy('cut', { cutAfter: 10 * MIB, cutOnce: true });
  const cut = await deliver('first-with-cut', {
    context: ctxBase,
    image: IMG,
    remoteDir: `bench/cut-${ts}`,
    port: cutProxy.port,
    knownHosts: cutProxy.knownHosts,
  });
  const cutCounts = cutProxy.counts();
  cutProxy.stop();

  const wire = (up, r) => ({ up, bytesTotal: r.bytesTotal, bytesSent: r.bytesSent, ratio: up / r.bytesTotal });
  raw.wire = {
    first: wire(firstUp, first),
    again: wire(againUp, again),
    newLayer: wire(changedUp, changed),
    cut: { ...wire(cutCounts.up, cut), cuts: cutCounts.cuts, conns: cutCounts.conns, reconnects: cut.reconnects },
  };
  const ratioRow = (name, up, r, limit) =>
    row(`bytes on the wire / tar size: ${name}`, `${round(up / r.bytesTotal)} (${up} of ${r.bytesTotal} B)`, `≤ ${limit}`, up / r.bytesTotal <= limit, {
      ratio: round(up / r.bytesTotal, 6),
      limit,
    });
  ratioRow('first delivery (16 MiB random + 16 MiB zeros)', firstUp, first, 0.52);
  ratioRow('same image again', againUp, again, 0.005);
  ratioRow('after one new small layer', changedUp, changed, 0.01);
  const cutVsFirst = cutCounts.up / firstUp;
  row(
    'bytes on the wire / tar size: first delivery, connection cut once after 10 MiB',
    `${round(cutCounts.up / cut.bytesTotal)} (${cutCounts.up} B = ${round(cutVsFirst, 3)} × uncut; cuts ${cutCounts.cuts}, reconnects ${cut.reconnects})`,
    `≤ 1.1 × uncut (${round((1.1 * firstUp) / first.bytesTotal)})`,
    cutVsFirst <= 1.1 && cutCounts.cuts === 1,
    { ratio: round(cutCounts.up / cut.bytesTotal, 6), vsUncut: round(cutVsFirst, 6), cuts: cutCounts.cuts, reconnects: cut.reconnects },
  );

  // ---- upload time against scp of the same saved tar over the same link
  // Both go straight to sshd on port 2222 (no proxy in either path), each delivery to a fresh remote-dir.
  const timingImages = [
    { name: 'rand32', label: '32 MiB random', opts: { randomMiB: 32, seed: 'bench-rand32' }, limit: null },
    { name: 'rand512', label: '512 MiB random', opts: { randomMiB: 512, seed: 'bench-rand512' }, limit: 1.0, redeliver: true },
    { name: 'zeros512', label: '512 MiB zeros', opts: { zerosMiB: 512 }, limit: 0.5 },
  ];
  raw.upload = {};
  for (const ti of timingImages) {
    log(`making the ${ti.label} image`);
    const ctx = makeContext(ti.name, ti.opts);
    const image = `rs-bench/${ti.name}:v1`;
    images.add(image);
    await run('docker', ['build', '-q', '-t', image, ctx], { timeoutMs: 5 * 60_000 });
    const tar = join(tmp, `${ti.name}.tar`);
    await run('docker', ['save', '-o', tar, image], { timeoutMs: 5 * 60_000 });
    const tarSize = statSync(tar).size;
    const scp = [];
    const ours = [];
    const results = [];
    for (let i = 0; i < RUNS; i++) {
      rmSync(join(CLUSTER_HOME, 'bench-scp.tar'), { force: true });
      const s = await run(
        'scp',
        ['-q', '-P', String(SSH_PORT), '-i', KEY, '-o', `UserKnownHostsFile=${KNOWN_HOSTS}`, '-o', 'BatchMode=yes', tar, 'rivuser@127.0.0.1:bench-scp.tar'],
        {
          timeoutMs: 5 * 60_000,
        },
      );
      scp.push(s.seconds);
      log(`${ti.name} run ${i + 1}/${RUNS}: scp ${s.seconds.toFixed(2)} s`);
      const remoteDir = `bench/${ti.name}-${ts}-${i + 1}`;
      const r = await deliver(`${ti.name} run ${i + 1}/${RUNS}`, { context: ctx, image, remoteDir });
      ours.push(r.phase('upload'));
      results.push({ upload: r.phase('upload'), total: r.phase('total'), bytesSent: r.bytesSent, bytesTotal: r.bytesTotal, timings: r.timings });
      if (ti.redeliver && i === RUNS - 1) {
        // For contrast with the small 16+16 image: an unchanged re-delivery of a large one.
        const a = await deliver(`${ti.name} again`, { context: ctx, image, remoteDir });
        raw.bigRedelivery = { image: ti.label, first: r.timings, again: a.timings, ratio: a.phase('total') / r.phase('total'), sifReused: a.sifReused };
      }
      dropRemote(remoteDir);
    }
    rmSync(join(CLUSTER_HOME, 'bench-scp.tar'), { force: true });
    rmSync(tar, { force: true });
    rmSync(ctx, { recursive: true, force: true });
    const mOurs = median(ours);
    const mScp = median(scp);
    raw.upload[ti.name] = { tarSize, scpSeconds: scp, uploadSeconds: ours, medianScp: mScp, medianUpload: mOurs, ratio: mOurs / mScp, runs: results };
    row(
      `upload wall time vs scp of the saved tar: ${ti.label} (${mib(tarSize)}), median of ${RUNS}`,
      `${mOurs.toFixed(2)} s vs scp ${mScp.toFixed(2)} s (${(mOurs / mScp).toFixed(2)} × scp)`,
      ti.limit === null ? '—' : ti.limit === 1 ? '≤ scp' : `≤ ${ti.limit} × scp`,
      ti.limit === null ? '—' : mOurs <= ti.limit * mScp,
      { seconds: round(mOurs, 3), scpSeconds: round(mScp, 3), ratio: round(mOurs / mScp, 4), limit: ti.limit },
    );
  }

  // ---- end to end: unchanged re-delivery vs first delivery
  const e2eRatio = again.phase('total') / first.phase('total');
  row(
    'end-to-end wall time: unchanged re-delivery / first delivery (16+16 image)',
    `${round(e2eRatio, 3)} (${again.phase('total').toFixed(2)} s vs ${first.phase('total').toFixed(2)} s)`,
    '≤ 0.3',
    e2eRatio <= 0.3,
    { ratio: round(e2eRatio, 4), limit: 0.3 },
  );

  if (raw.bigRedelivery) {
    const b = raw.bigRedelivery;
    const tot = (t) => t.find((x) => x.phase === 'total').seconds;
    row(
      `end-to-end wall time: unchanged re-delivery / first delivery (${b.image} image, one sample)`,
      `${round(b.ratio, 3)} (${tot(b.again).toFixed(2)} s vs ${tot(b.first).toFixed(2)} s; sif reused ${b.sifReused})`,
      '≤ 0.3',
      b.ratio <= 0.3,
      { ratio: round(b.ratio, 4), limit: 0.3 },
    );
  }

  // ---- phase breakdown of the first delivery
  const listed = ['build', 'save', 'upload', 'sbatch-wait', 'assemble', 'sif-build', 'smoke-test', 'overhead', 'total'];
  const phases = [
    ...listed.filter((p) => p !== 'overhead' && p !== 'total'),
    ...first.timings.map((t) => t.phase).filter((p) => !listed.includes(p)),
    'overhead',
    'total',
  ];
  for (const p of phases) {
    const t = first.timings.find((x) => x.phase === p);
    row(`first delivery (16+16 image), phase ${p}`, t ? `${t.seconds.toFixed(2)} s` : 'n/a', '—', '—', { seconds: t?.seconds ?? null });
  }
  raw.firstDelivery = { timings: first.timings, again: again.timings, newLayer: changed.timings, cut: cut.timings };
}

// ---------------------------------------------------------------- WAN: a realistic image over 40 ms
/** The WAN link settings: 40 ms RTT, each direction shaped to RATE Mbit/s. */
const LINKS = [
  { name: '1 Gbit/s', rtt: 40, rate: 1000 },
  { name: '200 Mbit/s', rtt: 40, rate: 200 },
];
const LIB_MIB = 260;

/** Regular shared-library files under /usr/lib, in a stable order, until `mibs` MiB. */
function pickLibraries(mibs) {
  const out = spawnSync('find', ['/usr/lib', '-xdev', '-type', 'f', '-name', '*.so*'], { encoding: 'utf8', maxBuffer: 64 * MIB });
  const files = out.stdout.split('\n').filter(Boolean).sort();
  const picked = [];
  let total = 0;
  for (const f of files) {
    if (total >= mibs * MIB) break;
    const size = statSync(f).size;
    if (size < 4096) continue;
    picked.push({ path: f, size });
    total += size;
  }
  if (total < mibs * MIB * 0.9) throw new Error(`only ${mib(total)} of shared libraries under /usr/lib; the realistic image needs ~${mibs} MiB`);
  return picked;
}

/**
 * Busybox plus ~260 MiB of this machine's shared libraries (they compress like CUDA/PyTorch
 * layers), FROM scratch in several layers: busybox, its links, a ~200 MiB and a ~60 MiB library layer.
 */
function makeRealisticContext() {
  const ws = join(tmp, 'ctx-wan');
  mkdirSync(ws);
  for (const f of ['Dockerfile', 'gpu-check.sh']) copyFileSync(join(ROOT, 'examples/gpu-check', f), join(ws, f));
  copyFileSync('/bin/busybox', join(ws, 'busybox'));
  const libs = pickLibraries(LIB_MIB);
  let acc = 0;
  for (const l of libs) {
    const dir = acc < 200 * MIB ? 'libs1' : 'libs2';
    acc += l.size;
    const dest = join(ws, dir, l.path.slice(1));
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(l.path, dest);
  }
  writeFileSync(join(ws, 'Dockerfile'), readFileSync(join(ws, 'Dockerfile'), 'utf8').trimEnd() + '\nCOPY libs1/ /opt/libs/\nCOPY libs2/ /opt/libs/\n');
  return ws;
}

/** The WAN proxy in front of the cluster's sshd, and a known_hosts naming its port. */
async function startWan(link) {
  const port = await freePort();
  const countFile = join(tmp, `wan-${port}.json`);
  const child = spawn(
    process.execPath,
    [join(ROOT, 'test-cluster/wanproxy.mjs'), String(port), String(SSH_PORT), '--rtt', String(link.rtt), '--rate', String(link.rate), '--count', countFile],
    { stdio: 'ignore' },
  );
  children.add(child);
  child.on('exit', () => children.delete(child));
  for (let i = 0; i < 50 && !(await canConnect(port)); i++) await sleep(100);
  if (!(await canConnect(port))) throw new Error(`the WAN proxy on port ${port} did not start`);
  const knownHosts = join(tmp, `known_hosts-${port}`);
  writeFileSync(knownHosts, readFileSync(KNOWN_HOSTS, 'utf8').replaceAll(`[127.0.0.1]:${SSH_PORT}`, `[127.0.0.1]:${port}`));
  log(`WAN proxy ${link.name}, ${link.rtt} ms RTT on port ${port}`);
  return {
    port,
    knownHosts,
    counts: () => (existsSync(countFile) ? JSON.parse(readFileSync(countFile, 'utf8')) : { up: 0, down: 0, conns: 0 }),
    stop: () => {
      child.kill();
      children.delete(child);
    },
  };
}

const sshOpts = (wan) => ['-i', KEY, '-o', `UserKnownHostsFile=${wan.knownHosts}`, '-o', 'BatchMode=yes', '-o', 'ControlMaster=no', '-o', 'ControlPath=none'];

/** By hand, 1: `docker save -o` then `scp` (OpenSSH's scp speaks SFTP). Seconds for each. */
async function saveAndScp(image, wan) {
  const tar = join(tmp, 'wan-save.tar');
  rmSync(tar, { force: true });
  const save = await run('docker', ['save', '-o', tar, image], { timeoutMs: 5 * 60_000 });
  rmSync(join(CLUSTER_HOME, 'bench-scp.tar'), { force: true });
  const scp = await run('scp', ['-q', '-P', String(wan.port), ...sshOpts(wan), tar, 'rivuser@127.0.0.1:bench-scp.tar'], { timeoutMs: 10 * 60_000 });
  const size = statSync(tar).size;
  rmSync(tar, { force: true });
  rmSync(join(CLUSTER_HOME, 'bench-scp.tar'), { force: true });
  return { save: save.seconds, scp: scp.seconds, total: save.seconds + scp.seconds, tarSize: size };
}

/** By hand, 2: `docker save IMAGE | zstd -3 -T0 | ssh cat > file`. */
async function zstdPipe(image, wan) {
  rmSync(join(CLUSTER_HOME, 'bench-pipe.tar.zst'), { force: true });
  const ssh = ['ssh', '-p', String(wan.port), ...sshOpts(wan), 'rivuser@127.0.0.1', 'cat > bench-pipe.tar.zst']
    .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
    .join(' ');
  const r = await run('bash', ['-c', `set -o pipefail; docker save '${image}' | zstd -3 -T0 -q -c | ${ssh}`], { timeoutMs: 10 * 60_000 });
  const sent = statSync(join(CLUSTER_HOME, 'bench-pipe.tar.zst')).size;
  rmSync(join(CLUSTER_HOME, 'bench-pipe.tar.zst'), { force: true });
  return { total: r.seconds, sent };
}

async function wanSection(row, raw) {
  log('making the realistic image (busybox + ~260 MiB of shared libraries from /usr/lib)');
  const ctx = makeRealisticContext();
  const image = 'rs-bench/realistic:v1';
  images.add(image);
  await run('docker', ['build', '-q', '-t', image, ctx], { timeoutMs: 10 * 60_000 });
  raw.wan = { image: { libsMiB: LIB_MIB }, links: {} };
  for (const link of LINKS) {
    const wan = await startWan(link);
    const runs = [];
    try {
      for (let i = 0; i < WAN_RUNS; i++) {
        const tag = `${link.rate}-${i + 1}/${WAN_RUNS}`;
        const hand1 = await saveAndScp(image, wan);
        log(`WAN ${tag}: save ${hand1.save.toFixed(2)} s + scp ${hand1.scp.toFixed(2)} s (${mib(hand1.tarSize)})`);
        const hand2 = await zstdPipe(image, wan);
        log(`WAN ${tag}: docker save | zstd -3 -T0 | ssh cat ${hand2.total.toFixed(2)} s (${mib(hand2.sent)} sent)`);
        const remoteDir = `bench/wan-${link.rate}-${ts}-${i + 1}`;
        dropRemote(remoteDir);
        const upBefore = wan.counts().up;
        const first = await deliver(`wan ${tag} first`, { context: ctx, image, remoteDir, port: wan.port, knownHosts: wan.knownHosts });
        const firstUp = wan.counts().up - upBefore;
        const again = await deliver(`wan ${tag} again`, { context: ctx, image, remoteDir, port: wan.port, knownHosts: wan.knownHosts });
        dropRemote(remoteDir);
        // What the delivery spends getting the image there: connect, save, upload (the job follows).
        const product = (r) => r.phase('connect') + r.phase('save') + r.phase('upload');
        const one = {
          scp: hand1,
          pipe: hand2,
          first: {
            seconds: product(first),
            save: first.phase('save'),
            upload: first.phase('upload'),
            connect: first.phase('connect'),
            wireUp: firstUp,
            bytesSent: first.bytesSent,
            bytesTotal: first.bytesTotal,
            peakRss: first.peakRss,
            sifBuild: first.phase('assemble') + first.phase('sif-build'),
            timings: first.timings,
            remoteCalls: first.remoteCalls,
            total: first.phase('total'),
          },
          again: {
            seconds: product(again),
            upload: again.phase('upload'),
            connect: again.phase('connect'),
            peakRss: again.peakRss,
            sifReused: again.sifReused,
            timings: again.timings,
            remoteCalls: again.remoteCalls,
            total: again.phase('total'),
          },
        };
        log(
          `WAN ${tag}: product first ${one.first.seconds.toFixed(2)} s (save ${one.first.save.toFixed(2)}, upload ${one.first.upload.toFixed(2)}), again ${one.again.seconds.toFixed(2)} s`,
        );
        runs.push(one);
      }
    } finally {
      wan.stop();
    }
    const m = (f) => median(runs.map(f));
    const scp = m((r) => r.scp.total);
    const pipe = m((r) => r.pipe.total);
    const first = m((r) => r.first.seconds);
    const again = m((r) => r.again.seconds);
    const sif = m((r) => r.first.sifBuild);
    const rss = Math.max(...runs.map((r) => Math.max(r.first.peakRss, r.again.peakRss)));
    raw.wan.links[link.name] = { link, runs, medians: { scp, pipe, first, again, sifBuild: sif }, peakRss: rss };
    const n = `median of ${runs.length}`;
    row(
      `WAN ${link.name}, ${link.rtt} ms: docker save + scp (${mib(runs[0].scp.tarSize)} tar), ${n}`,
      `${scp.toFixed(2)} s (save ${m((r) => r.scp.save).toFixed(2)} + scp ${m((r) => r.scp.scp).toFixed(2)})`,
      '—',
      '—',
      { seconds: round(scp, 3) },
    );
    row(`WAN ${link.name}: docker save | zstd -3 -T0 | ssh cat, ${n}`, `${pipe.toFixed(2)} s (${mib(runs[0].pipe.sent)} sent)`, '—', '—', {
      seconds: round(pipe, 3),
    });
    row(
      `WAN ${link.name}: product, first delivery into an empty remote-dir (connect + save + upload), ${n}`,
      `${first.toFixed(2)} s = ${(first / scp).toFixed(2)}x scp, ${(first / pipe).toFixed(2)}x the pipe (save ${m((r) => r.first.save).toFixed(2)}, upload ${m((r) => r.first.upload).toFixed(2)}; ${mib(runs[0].first.wireUp)} up the wire)`,
      '≤ 0.4x scp and < the pipe',
      first <= 0.4 * scp && first < pipe,
      { seconds: round(first, 3), vsScp: round(first / scp, 3), vsPipe: round(first / pipe, 3) },
    );
    row(
      `WAN ${link.name}: product, unchanged re-delivery (connect + upload), ${n}`,
      `${again.toFixed(2)} s = ${(again / scp).toFixed(3)}x scp (whole re-delivery ${m((r) => r.again.total).toFixed(2)} s; ${runs[0].again.remoteCalls.connections} connection(s), ${runs[0].again.remoteCalls.commands} remote commands)`,
      '≤ 0.05x scp',
      again <= 0.05 * scp,
      { seconds: round(again, 3), vsScp: round(again / scp, 4) },
    );
    row(
      `WAN ${link.name}: first delivery's fixed path`,
      `${runs[0].first.remoteCalls.connections} connection(s), ${runs[0].first.remoteCalls.commands} remote commands; whole delivery ${m((r) => r.first.total).toFixed(2)} s`,
      '—',
      '—',
    );
    row(`WAN ${link.name}: .sif build on the cluster (assemble + build), ${n}`, `${sif.toFixed(2)} s`, '—', '—', { seconds: round(sif, 3) });
    row(`WAN ${link.name}: peak RSS of the CLI`, mib(rss), '—', '—', { bytes: rss });
  }
  rmSync(ctx, { recursive: true, force: true });
}

// ---------------------------------------------------------------- memory: a ~1 GiB image
// ---------------------------------------------------------------- the two SSH clients on one delivery
async function transportSection(row, raw) {
  const ctx = makeContext('transports', { randomMiB: 128, seed: 'transports' });
  const image = 'rs-bench/transports:v1';
  images.add(image);
  await run('docker', ['build', '-q', '-t', image, ctx], { timeoutMs: 10 * 60_000 });
  const wan = await startWan(LINKS[0]);
  // The proxy counts its start-up probes late: let them land before counting logins.
  await sleep(1500);
  raw.transports = { link: LINKS[0], runs: [] };
  try {
    for (let i = 0; i < WAN_RUNS; i++) {
      for (const client of ['builtin', 'openssh']) {
        const remoteDir = `bench/transport-${client}-${ts}-${i + 1}`;
        dropRemote(remoteDir);
        const before = wan.counts();
        const t = Date.now();
        const r = await deliver(`transport ${client} ${i + 1}/${WAN_RUNS}`, {
          context: ctx,
          image,
          remoteDir,
          port: wan.port,
          knownHosts: wan.knownHosts,
          extra: ['--ssh-client', client],
        });
        const wall = (Date.now() - t) / 1000;
        const after = wan.counts();
        dropRemote(remoteDir);
        raw.transports.runs.push({
          client,
          wall,
          connect: r.phase('connect'),
          upload: r.phase('upload'),
          total: r.phase('total'),
          bytesSent: r.bytesSent,
          uploadMBps: r.bytesSent / 1e6 / r.phase('upload'),
          // One TCP connection through the proxy per SSH login (a reconnection would add one).
          logins: after.conns - before.conns,
          commands: r.remoteCalls.commands,
          wireUp: after.up - before.up,
        });
      }
    }
  } finally {
    wan.stop();
  }
  for (const client of ['builtin', 'openssh']) {
    const runs = raw.transports.runs.filter((x) => x.client === client);
    const m = (f) => median(runs.map(f));
    row(
      `ssh-client ${client}, 40 ms / 1 Gbit/s: one delivery of ${mib(runs[0].bytesSent)} (median of ${runs.length})`,
      `${m((x) => x.total).toFixed(2)} s total (wall ${m((x) => x.wall).toFixed(2)} s), connect ${m((x) => x.connect).toFixed(2)} s, upload ${m((x) => x.upload).toFixed(2)} s = ${m((x) => x.uploadMBps).toFixed(0)} MB/s, ${m((x) => x.commands)} commands (one channel each) on ${m((x) => x.logins)} login(s)`,
      '—',
      '—',
      {
        seconds: round(
          m((x) => x.total),
          3,
        ),
      },
    );
  }
}

async function memorySection(row, raw) {
  log('making the ~1 GiB image (768 MiB random + ~260 MiB of shared libraries)');
  const ctx = makeContext('mem', { randomMiB: 768, seed: 'bench-mem' });
  const libs = pickLibraries(LIB_MIB);
  for (const l of libs) {
    const dest = join(ctx, 'libs', l.path.slice(1));
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(l.path, dest);
  }
  writeFileSync(join(ctx, 'Dockerfile'), readFileSync(join(ctx, 'Dockerfile'), 'utf8').trimEnd() + '\nCOPY libs/ /opt/libs/\n');
  const image = 'rs-bench/mem:v1';
  images.add(image);
  await run('docker', ['build', '-q', '-t', image, ctx], { timeoutMs: 10 * 60_000 });
  const remoteDir = `bench/mem-${ts}`;
  const r = await deliver('memory 1 GiB', { context: ctx, image, remoteDir });
  dropRemote(remoteDir);
  rmSync(ctx, { recursive: true, force: true });
  raw.memory = { bytesTotal: r.bytesTotal, peakRss: r.peakRss, timings: r.timings };
  row(`peak RSS of the CLI delivering a ${mib(r.bytesTotal)} image (loopback)`, mib(r.peakRss), '< 200 MB', r.peakRss < 200e6, { bytes: r.peakRss });
}

// ---------------------------------------------------------------- preflight: how fast a bad input fails
async function preflightSection(row, raw) {
  const ctx = makeContext('preflight', { randomMiB: 4, seed: 'bench-preflight' });
  const image = 'rs-bench/preflight:v1';
  images.add(image);
  await run('docker', ['build', '-q', '-t', image, ctx]);
  const remoteDir = `bench/preflight-${ts}`;
  const args = [
    CLI,
    'deliver',
    '--no-build',
    '--host',
    '127.0.0.1',
    '--port',
    String(SSH_PORT),
    '--username',
    'rivuser',
    '--private-key-file',
    KEY,
    '--known-hosts-file',
    KNOWN_HOSTS,
    '--image',
    image,
    '--smoke-test',
    'gpu-check.sh',
    '--gpus',
    '1',
    '--remote-dir',
    remoteDir,
    '--partition',
    'no-such-part',
  ];
  log('preflight: a delivery to a partition that does not exist');
  const r = await run(process.execPath, args, { cwd: ctx }).then(
    (ok) => ok,
    (e) => e.result ?? Promise.reject(e),
  );
  dropRemote(remoteDir);
  rmSync(ctx, { recursive: true, force: true });
  const named = /Preflight 'partition': No partition 'no-such-part'/.test(r.stderr);
  if (!named)
    process.stderr.write(`--- preflight: the delivery did not fail as expected; log tail ---\n${r.stderr.trim().split('\n').slice(-20).join('\n')}\n`);
  raw.preflight = { seconds: r.seconds, code: r.code, named };
  row(
    'a preflight failure (no such partition): time until the step fails, nothing sent or submitted',
    `${r.seconds.toFixed(1)} s (exit ${r.code})`,
    '< 10 s, exit 2, input named',
    r.seconds < 10 && r.code === 2 && named,
    { seconds: r.seconds },
  );
}

// ---------------------------------------------------------------- main
async function main() {
  log('bringing the stand-in cluster up');
  await run('bash', [join(ROOT, 'test-cluster/cluster-up.sh')], { inherit: true, timeoutMs: 5 * 60_000 });
  // dist/ may be in the middle of a rebuild by someone else (package.mjs removes it first): wait a bit.
  for (let i = 0; i < 60 && !existsSync(CLI); i++) await sleep(1000);
  if (!existsSync(CLI)) {
    log('dist/cli/index.js is missing: npm run package');
    await run('npm', ['run', '-s', 'package'], { inherit: true, timeoutMs: 5 * 60_000 });
  }
  tmp = mkdtempSync(join(tmpdir(), 'rs-bench-'));
  // Run a private copy of the bundle, so that a concurrent `npm run package` cannot pull it away mid-run.
  for (let attempt = 1; ; attempt++) {
    cpSync(DIST_CLI, join(tmp, 'cli'), { recursive: true });
    try {
      await run(process.execPath, [join(tmp, 'cli/index.js'), '--help'], { timeoutMs: 30_000 });
      break;
    } catch (e) {
      if (attempt >= 10) throw new Error(`the bundled CLI does not start: ${e.message}`, { cause: e });
      rmSync(join(tmp, 'cli'), { recursive: true, force: true });
      await sleep(3000);
    }
  }
  CLI = join(tmp, 'cli/index.js');
  writeRssPreload();
  rmSync(LOGS, { recursive: true, force: true });
  mkdirSync(LOGS, { recursive: true });
  rmSync(join(CLUSTER_HOME, 'bench'), { recursive: true, force: true });
  const rows = [];
  const raw = {};
  const row = (measurement, value, target, met, extra = {}) => rows.push({ measurement, value, target, met, ...extra });

  if (want('loopback')) await loopbackSection(row, raw);
  if (want('wan')) await wanSection(row, raw);
  if (want('memory')) await memorySection(row, raw);
  if (want('preflight')) await preflightSection(row, raw);
  if (want('transports')) await transportSection(row, raw);

  // ---- report
  const cell = (v) => String(v).replace(/\|/g, '\\|');
  const metText = (m) => (m === true ? 'yes' : m === false ? '**no**' : m);
  const table = [
    '| measurement | value | target | met |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${cell(r.measurement)} | ${cell(r.value)} | ${cell(r.target)} | ${metText(r.met)} |`),
  ].join('\n');
  process.stdout.write(table + '\n');
  mkdirSync(join(ROOT, '.bench'), { recursive: true });
  const out = {
    date: new Date().toISOString(),
    seconds: round((Date.now() - t0) / 1000, 1),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? null, node: process.version },
    notes: [
      'bytes on the wire: client-to-server bytes through test-cluster/byteproxy.mjs (SSH framing, store round trip, job submission and polling included) over the docker-save tar size',
      'WAN: through test-cluster/wanproxy.mjs; the product is timed by its own phases connect + save + upload (everything before the job is submitted, the build excepted); the hand methods by wall time, connection set-up included',
      'upload timings: the delivery\'s own "upload" phase (store round trip + blob transfer) and scp wall time of the same tar, both direct to sshd on 127.0.0.1:2222, each delivery to a fresh remote-dir',
    ],
    rows,
    raw,
  };
  // A partial run (flags) keeps its own file, so it does not overwrite the last full run's.
  const resultsFile = `.bench/results${FLAGS.length ? `-${FLAGS.map((f) => f.slice(2)).join('-')}` : ''}.json`;
  writeFileSync(join(ROOT, resultsFile), JSON.stringify(out, null, 2) + '\n');
  const missed = rows.filter((r) => r.met === false).length;
  log(`done in ${out.seconds} s; ${missed} target(s) missed; results in ${resultsFile}`);
}

try {
  await main();
  cleanup();
  process.exit(0);
} catch (e) {
  if (!(e instanceof DeliveryFailed)) process.stderr.write(`${e.stack ?? e}\n`);
  log(`FAILED: ${e.message.split('\n')[0]}`);
  cleanup();
  process.exit(1);
}

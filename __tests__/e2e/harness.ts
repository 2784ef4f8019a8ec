// Runs the bundled action as the GitHub runner does (INPUT_* variables, GITHUB_OUTPUT, GITHUB_STATE
// handed to post as STATE_*, GITHUB_STEP_SUMMARY, signals on cancel) against the stand-in cluster
// that test-cluster/cluster-up.sh brings up. Tests read the cluster's side directly: they run as
// root on the same machine.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually } from '../helpers/wait.js';

/** Re-exported: the e2e tests wait on the cluster through the same helper as the unit tests. */
export { eventually };

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const STATE_DIR = process.env.ACC_STATE ?? '/var/lib/riviera-acceptance';
export const CLUSTER_HOME = '/home/rivuser';
export const CALLS_LOG = '/var/log/riviera-standin/calls.jsonl';

/** Fail loudly (never skip) when the stand-in cluster is not up. */
export async function requireCluster(): Promise<void> {
  const up = await new Promise<boolean>((res) => {
    const s = createConnection(2222, '127.0.0.1');
    s.once('connect', () => (s.destroy(), res(true)));
    s.once('error', () => res(false));
  });
  if (!up || !existsSync(join(STATE_DIR, 'id_ed25519'))) {
    throw new Error('The stand-in cluster is not up: run `npm run cluster:up` (as root) first.');
  }
  if (!existsSync(join(ROOT, 'dist/action/index.js'))) throw new Error('dist/ is missing: run `npm run package`.');
}

export function clusterInputs(): Record<string, string> {
  return {
    host: '127.0.0.1',
    port: '2222',
    username: 'rivuser',
    'private-key': readFileSync(join(STATE_DIR, 'id_ed25519'), 'utf8'),
    'known-hosts': readFileSync(join(STATE_DIR, 'known_hosts'), 'utf8'),
  };
}

/** The same login as clusterInputs, as the CLI's flags (the key and known_hosts files apart). */
export const CLUSTER_FLAGS = ['--host', '127.0.0.1', '--port', '2222', '--username', 'rivuser'];

/** The example image's GPU check (examples/gpu-check, in a makeWorkspace) delivered as `image` on one GPU. */
export function gpuCheckInputs(image: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...clusterInputs(), image, context: '.', 'smoke-test': 'gpu-check.sh', partition: 'short-gpu', gpus: '1', ...extra };
}

/** What a test file needs first: the stand-in cluster up (else fail), then a workspace `make` makes. */
export async function clusterWorkspace(make: () => string = makeWorkspace): Promise<string> {
  await requireCluster();
  return make();
}

/** A workspace with the example image's build context (busybox copied in, as the image needs). */
export function makeWorkspace(): string {
  const ws = mkdtempSync(join(tmpdir(), 'rs-ws-'));
  for (const f of ['Dockerfile', 'gpu-check.sh']) copyFileSync(join(ROOT, 'examples/gpu-check', f), join(ws, f));
  copyFileSync('/bin/busybox', join(ws, 'busybox'));
  return ws;
}

/** A remote-dir name unique to one test, relative to the cluster user's home. */
export function uniqueRemoteDir(tag: string): string {
  return `e2e/${tag}-${process.pid}-${Date.now().toString(36)}`;
}

export interface StepRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  log: string;
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
  seconds: number;
  /** What the step left in RUNNER_TEMP. */
  leftInTemp: string[];
}

/** Parse the runner's file commands (`name<<DELIM\nvalue\nDELIM`) as in GITHUB_OUTPUT and GITHUB_STATE. */
export function parseFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<=]+)<<(.+)$/.exec(lines[i]);
    if (!m) continue;
    const value: string[] = [];
    for (i++; i < lines.length && lines[i] !== m[2]; i++) value.push(lines[i]);
    out[m[1]] = value.join('\n');
  }
  return out;
}

/**
 * The workflow commands the runner honours in a step's output (stdout and stderr): `::save-state`
 * and `::set-output` (deprecated, still honoured), except between `::stop-commands::TOKEN` and `::TOKEN::`.
 */
export function stdoutCommands(log: string): { outputs: Record<string, string>; state: Record<string, string> } {
  const outputs: Record<string, string> = {};
  const state: Record<string, string> = {};
  let stopped: string | null = null;
  for (const line of log.split(/\r?\n/)) {
    if (stopped !== null) {
      if (line.trim() === `::${stopped}::`) stopped = null;
      continue;
    }
    const m = /^::([a-z-]+)(?: name=([^:]*))?::(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === 'stop-commands') stopped = m[3];
    if (m[1] === 'save-state' && m[2]) state[m[2]] = m[3];
    if (m[1] === 'set-output' && m[2]) outputs[m[2]] = m[3];
  }
  return { outputs, state };
}

export interface StartedStep {
  child: ChildProcess;
  done: Promise<StepRun>;
  /** Resolves when the log contains `text`. */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  log(): string;
}

export interface StepOptions {
  workspace: string;
  /** State saved by main, for the post step. */
  state?: Record<string, string>;
  /** More runner variables (GITHUB_REF_TYPE, GITHUB_SHA, ...). */
  env?: Record<string, string>;
}

/** Start the bundled action as main (no state) or post (state from main). */
export function startStep(inputs: Record<string, string>, opts: StepOptions): StartedStep {
  const files = mkdtempSync(join(tmpdir(), 'rs-runner-'));
  const out = join(files, 'output');
  const st = join(files, 'state');
  const summary = join(files, 'summary');
  for (const f of [out, st, summary]) writeFileSync(f, '');
  const runnerTemp = join(files, 'temp');
  mkdirSync(runnerTemp);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GITHUB_ACTIONS: 'true',
    GITHUB_WORKSPACE: opts.workspace,
    GITHUB_OUTPUT: out,
    GITHUB_STATE: st,
    GITHUB_STEP_SUMMARY: summary,
    RUNNER_TEMP: runnerTemp,
    ...opts.env,
  };
  // The runner turns each input into INPUT_<NAME>, upper-cased, spaces to underscores, hyphens kept.
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase().replace(/ /g, '_')}`] = v;
  for (const [k, v] of Object.entries(opts.state ?? {})) env[`STATE_${k}`] = v;
  const t0 = Date.now();
  const child = spawn(process.execPath, [join(ROOT, 'dist/action/index.js')], { cwd: opts.workspace, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const waiters: { re: string | RegExp; resolve: () => void }[] = [];
  const onData = (d: Buffer) => {
    log += d.toString();
    for (const w of [...waiters]) {
      if (typeof w.re === 'string' ? log.includes(w.re) : w.re.test(log)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const done = new Promise<StepRun>((res) => {
    child.on('close', (code, signal) => {
      const commands = stdoutCommands(log);
      res({
        code,
        signal,
        log,
        outputs: { ...commands.outputs, ...parseFileCommands(readFileSync(out, 'utf8')) },
        state: { ...commands.state, ...parseFileCommands(readFileSync(st, 'utf8')) },
        summary: readFileSync(summary, 'utf8'),
        seconds: (Date.now() - t0) / 1000,
        leftInTemp: readdirSync(runnerTemp),
      });
    });
  });
  return {
    child,
    done,
    log: () => log,
    waitFor: (re, timeoutMs = 120_000) =>
      new Promise<void>((res, rej) => {
        if (typeof re === 'string' ? log.includes(re) : re.test(log)) return res();
        const t = setTimeout(() => rej(new Error(`timed out waiting for ${re} in the log:\n${log}`)), timeoutMs);
        waiters.push({ re, resolve: () => (clearTimeout(t), res()) });
      }),
  };
}

export function runStep(inputs: Record<string, string>, opts: StepOptions): Promise<StepRun> {
  return startStep(inputs, opts).done;
}

/** Slurm's view of a job, as root on the cluster host: '' once Slurm no longer lists it as active. */
export function activeJobState(jobId: string): string {
  try {
    return execFileSync('squeue', ['-h', '-j', jobId, '-o', '%T'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

export function jobState(jobId: string): string {
  try {
    return execFileSync('squeue', ['-h', '-t', 'all', '-j', jobId, '-o', '%T'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** Every singularity call on the cluster since `since` (epoch seconds). */
export function singularityCalls(since: number): {
  argv: string[];
  cwd: string;
  TMPDIR: string | null;
  SINGULARITY_TMPDIR: string | null;
  APPTAINER_TMPDIR: string | null;
  SLURM_JOB_ID: string | null;
  LOADEDMODULES: string | null;
  t: number;
}[] {
  if (!existsSync(CALLS_LOG)) return [];
  return readFileSync(CALLS_LOG, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((c) => c.t >= since);
}

/** All files below a directory (as root). */
export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return execFileSync('find', [dir, '-mindepth', '1'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/**
 * A build context for an image of busybox plus `randomMiB` of random data and `zerosMiB` of zeros,
 * each in its own layer; `extra` adds one more small layer on top (a changed image).
 */
export function makeDataImageContext(opts: { randomMiB: number; zerosMiB: number; extra?: string; seed?: string }): string {
  const ws = makeWorkspace();
  const mib = 1 << 20;
  // Deterministic "random" bytes, so that the same options give the same layers.
  const key = createHash('sha256')
    .update(opts.seed ?? 'riviera')
    .digest()
    .subarray(0, 16);
  writeFileSync(join(ws, 'random.bin'), createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(opts.randomMiB * mib)));
  writeFileSync(join(ws, 'zeros.bin'), Buffer.alloc(opts.zerosMiB * mib));
  const lines = [readFileSync(join(ws, 'Dockerfile'), 'utf8').trimEnd(), 'COPY random.bin /data/random.bin', 'COPY zeros.bin /data/zeros.bin'];
  if (opts.extra !== undefined) {
    writeFileSync(join(ws, 'extra.txt'), opts.extra);
    lines.push('COPY extra.txt /data/extra.txt');
  }
  writeFileSync(join(ws, 'Dockerfile'), lines.join('\n') + '\n');
  return ws;
}

export interface Proxy {
  port: number;
  counts(): { up: number; down: number; conns: number; cuts: number };
  /** Cut every open connection now. */
  cut(): void;
  stop(): void;
}

/** The byte-counting, connection-cutting proxy in front of the cluster's sshd. */
export async function startProxy(opts: { cutAfter?: number; cutOnce?: boolean } = {}): Promise<Proxy> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const countFile = join(mkdtempSync(join(tmpdir(), 'rs-proxy-')), 'counts.json');
  const args = [join(ROOT, 'test-cluster/byteproxy.mjs'), String(port), '2222', countFile];
  if (opts.cutAfter !== undefined) args.push('--cut-after', String(opts.cutAfter));
  if (opts.cutOnce) args.push('--cut-once');
  const child = spawn(process.execPath, args, { stdio: 'ignore' });
  await eventually(() => existsSync(countFile), 5000, 'the proxy to start');
  await new Promise((r) => setTimeout(r, 200));
  return {
    port,
    counts: () => JSON.parse(readFileSync(countFile, 'utf8')),
    cut: () => child.kill('SIGUSR1'),
    stop: () => child.kill(),
  };
}

/** Inputs that reach the cluster through a proxy port (known-hosts names that port). */
export function viaProxy(port: number): Record<string, string> {
  const base = clusterInputs();
  return { ...base, port: String(port), 'known-hosts': base['known-hosts'].replace('[127.0.0.1]:2222', `[127.0.0.1]:${port}`) };
}

export const CLI = join(ROOT, 'dist/cli/index.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface StartedCli {
  child: ChildProcess;
  done: Promise<CliRun>;
  /** Everything printed so far, stdout then stderr. */
  output: () => string;
}

/** The bundled CLI as a person runs it: in `cwd`, with only PATH, HOME (this one's unless given) and `env`. */
export function startCli(args: string[], opts: { cwd?: string; home?: string; env?: Record<string, string> } = {}): StartedCli {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH, HOME: opts.home ?? process.env.HOME, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<CliRun>((res) => child.on('close', (code) => res({ code, stdout, stderr })));
  return { child, done, output: () => stdout + stderr };
}

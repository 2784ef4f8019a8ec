// Running a local program (docker, git, zstd): the one place the core starts processes. Arguments
// are an argv, never a shell line.
import { spawn, spawnSync } from 'node:child_process';
import { Duplex, type Readable, type Writable } from 'node:stream';

export interface ProcessResult {
  /** Exit code; null if a signal ended the process. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Each complete line of stdout and stderr as it arrives (e.g. docker build's progress). */
  onLine?: (line: string) => void;
}

/** A line splitter for a stream of chunks; `flush` hands on a last line without a newline. */
function lines(onLine: (line: string) => void) {
  let pending = '';
  return {
    push(chunk: string) {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const l of parts) onLine(l.replace(/\r$/, ''));
    },
    flush() {
      if (pending) onLine(pending);
      pending = '';
    },
  };
}

/**
 * Run a program to its end and return its exit code and output, whatever the code. Rejects only if
 * it could not be started (not installed: the error's `code` is 'ENOENT').
 */
export function runProcess(command: string, args: string[], opts: RunOptions = {}): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const out = opts.onLine ? lines(opts.onLine) : null;
    const err = opts.onLine ? lines(opts.onLine) : null;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      out?.push(d);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      err?.push(d);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      out?.flush();
      err?.flush();
      resolve({ code, stdout, stderr });
    });
  });
}

/** A running program with its three streams piped, e.g. `ssh` carrying one remote command. */
export interface PipedProcess {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** Its exit code (null if a signal ended it) once its output is read; rejects if it could not start. */
  ended: Promise<number | null>;
  kill(): void;
}

export function startProcess(command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): PipedProcess {
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: 'pipe' });
  // The program may stop reading early (EPIPE); its exit code says how it went.
  child.stdin.on('error', () => undefined);
  const ended = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  return { stdin: child.stdin, stdout: child.stdout, stderr: child.stderr, ended, kill: () => child.kill() };
}

/**
 * A program whose stdout goes straight into an open file (no pass through this process, so it
 * writes at its own pace whatever else the event loop is doing); its stderr is piped.
 */
export function startProcessToFile(command: string, args: string[], fd: number): Pick<PipedProcess, 'stderr' | 'ended' | 'kill'> {
  const child = spawn(command, args, { stdio: ['ignore', fd, 'pipe'] });
  const ended = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  return { stderr: child.stderr!, ended, kill: () => child.kill() };
}

/** Whether a program is installed here and runs (`command --version` exits 0). */
export function commandWorks(command: string): boolean {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;
}

/** The environment a filter runs in: enough to run, nothing else (the step's env holds its inputs, secrets among them). */
function filterEnv(): NodeJS.ProcessEnv {
  const keep = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR'];
  return Object.fromEntries(keep.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]]));
}

/** Most of a failing filter's stderr that its error carries: the end, where the cause is. */
const STDERR_TAIL = 2000;

/**
 * A program as a filter stream: what is written goes to its stdin, its stdout is read. The readable
 * side ends only once the program has exited and closed its streams (its 'close' event, which comes
 * after both, in whatever order they happened): a non-zero exit or a signal then destroys the
 * stream with `<command> exited with N` and the end of its stderr, so a consumer that has read all
 * of stdout still learns the program failed. Destroying the stream kills the program.
 */
export function processFilter(command: string, args: string[]): Duplex {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: filterEnv() });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-STDERR_TAIL)));
  // A program that stops reading early (EPIPE) says why in its exit code, reported on 'close'.
  child.stdin.on('error', () => undefined);
  const d = new Duplex({
    write(chunk: Buffer, _encoding, done) {
      if (child.stdin.write(chunk)) done();
      else {
        // Wait for room, or for the program to be gone (then 'close' reports it).
        const go = () => {
          child.stdin.off('drain', go).off('close', go);
          done();
        };
        child.stdin.on('drain', go).on('close', go);
      }
    },
    final(done) {
      child.stdin.end();
      done();
    },
    read() {
      child.stdout.resume();
    },
    destroy(err, done) {
      if (child.exitCode === null && child.signalCode === null) child.kill();
      done(err);
    },
  });
  child.stdout.on('data', (chunk: Buffer) => {
    if (!d.push(chunk)) child.stdout.pause();
  });
  child.on('error', (e) => d.destroy(e));
  child.on('close', (code, signal) => {
    if (code === 0) {
      d.push(null);
      return;
    }
    const tail = stderr.trim();
    d.destroy(new Error(`${command} exited with ${code ?? signal}${tail ? `: ${tail}` : ''}`));
  });
  return d;
}

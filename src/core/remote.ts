// What the rest of the code needs from a connection to the cluster, whatever the transport (the
// built-in ssh2 client, the system's OpenSSH client, a local shell in tests), and the parts of
// running a script that every transport shares: the login-shell wrapper, dropping the profile's
// preamble, and feeding stdin once the script says where to start.
import type { Readable, Writable } from 'node:stream';
import { HostKeyError, RemoteCommandError } from './errors.js';
import { type JumpHop, formatHop } from './jumphosts.js';
import { type HostKeyVerdict, type KnownHostEntry, hostKeyName } from './knownhosts.js';
import { PreambleFilter, loginShellCommand } from './loginshell.js';
import { startProcess } from './process.js';

/** Which SSH client carries the connection; auto: OpenSSH where only it can log in (a certificate), else the built-in one. */
export type SshClientChoice = 'auto' | 'builtin' | 'openssh';

/** Where and as whom to connect, how to log in, and the only host keys accepted (on every hop). */
export interface SshTarget {
  host: string;
  port: number;
  username: string;
  /** Private key text; empty: the keys of the agent at `agent` (CLI). */
  privateKey: string;
  /** For an encrypted private key. */
  passphrase: string | null;
  /** OpenSSH user certificate text for the key (only the OpenSSH client can log in with one). */
  certificate: string | null;
  /** ProxyJump chain, first hop first. */
  jumpHosts: JumpHop[];
  knownHosts: KnownHostEntry[];
  sshClient: SshClientChoice;
  /** SSH agent socket (CLI, when no key file is given). */
  agent?: string | null;
  /** An OpenSSH ControlMaster socket already open and authenticated (CLI: the user did MFA once). */
  controlPath?: string | null;
}

/**
 * The refusal of a host key, naming the host it came from (the cluster or which jump host) and the
 * key it offered; the same words from every transport.
 */
export function hostKeyRefused(role: string, hop: JumpHop, reason: Exclude<HostKeyVerdict, { ok: true }>['reason'], offered: string): HostKeyError {
  const name = hostKeyName(hop.host, hop.port);
  const why = {
    'unknown-host': `known-hosts has no entry for ${name}`,
    changed: `the host key of ${name} does not match the one in known-hosts (it changed, or this is not the host you think)`,
    revoked: `the host key of ${name} is marked @revoked in known-hosts`,
  }[reason];
  const who = role === 'cluster' ? '' : ` for the ${role} (${formatHop(hop)})`;
  return new HostKeyError(
    `Host key refused${who}: ${why}. The server offered ${offered}.`,
    'Nothing was sent. If that host really changed its key, confirm the fingerprint with its administrators and update the known-hosts input.',
  );
}

export interface ExecResult {
  code: number | null;
  stdout: Buffer;
  stderr: Buffer;
}

export interface ExecOptions {
  /**
   * Feed stdin only once the command prints a line starting with `after`, from a stream made from
   * that line: the command can first take its locks and say where to start.
   */
  feed?: { after: string; stream: (line: string) => Readable };
  /** Run in a login shell (default); false for a script that needs no `module` and brings its PATH. */
  login?: boolean;
}

/**
 * A live connection to the cluster. Several exec calls may run at once (each on its own channel).
 * A connection lost during exec rejects with a ConnectionError, so that Session can reconnect and
 * retry; any other outcome of the script resolves, whatever its exit code.
 */
export interface Remote {
  readonly connected: boolean;
  /** Run a script in a login shell; returns its exit code and output (the login profile's preamble dropped). */
  exec(script: string, opts?: ExecOptions): Promise<ExecResult>;
  /** Run a script and return its stdout; a non-zero exit throws a RemoteCommandError naming `what`. */
  run(what: string, script: string, opts?: ExecOptions): Promise<string>;
  close(): void;
}

/** A Remote from its exec: run is the same for every transport. */
export abstract class ScriptRemote implements Remote {
  abstract readonly connected: boolean;
  abstract exec(script: string, opts?: ExecOptions): Promise<ExecResult>;
  abstract close(): void;

  async run(what: string, script: string, opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(script, opts);
    if (r.code !== 0) throw new RemoteCommandError(what, r.code, r.stderr.toString('utf8'));
    return r.stdout.toString('utf8');
  }
}

/** One running command as a transport carries it: an SSH channel, or a child process. */
export interface ScriptChannel {
  stdout: Readable;
  stderr: Readable;
  stdin: Writable;
  /** Resolves with the exit status (null if there was none) once the command ended and its output is read. */
  ended: Promise<number | null>;
  /** Stop the command (its stdin source failed). */
  abort(): void;
}

/** The first complete line of `out` that starts with `prefix`. */
function lineStarting(out: Buffer[], prefix: string): string | undefined {
  const lines = Buffer.concat(out).toString().split('\n');
  return lines.slice(0, -1).find((l) => l.startsWith(prefix));
}

/**
 * Collect a command's output (the preamble dropped) and its exit status; with `feed`, pipe the
 * stream into its stdin once the line appears, else close stdin at once.
 */
export function streamScript(ch: ScriptChannel, opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const errs: Buffer[] = [];
    let stdin: Readable | undefined;
    const preamble = new PreambleFilter();
    ch.stdout.on('data', (chunk: Buffer) => {
      const d = preamble.push(chunk);
      if (d.length === 0) return;
      out.push(d);
      if (!opts.feed || stdin) return;
      const line = lineStarting(out, opts.feed.after);
      if (line === undefined) return;
      stdin = opts.feed.stream(line);
      stdin.on('error', (e) => {
        ch.abort();
        reject(e);
      });
      stdin.pipe(ch.stdin);
    });
    ch.stderr.on('data', (d: Buffer) => errs.push(d));
    ch.ended.then((code) => {
      // The command may stop reading early: stop feeding it.
      if (stdin) {
        stdin.unpipe(ch.stdin);
        stdin.destroy();
      }
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(errs) });
    }, reject);
    if (!opts.feed) ch.stdin.end();
  });
}

/**
 * Run a script as a local program: `argv` followed by the login-shell command as its last word
 * (`ssh ... host --`, or `sh -c` in tests, where the shell plays sshd's part).
 */
export function spawnScript(argv: string[], script: string, opts: ExecOptions = {}, env?: NodeJS.ProcessEnv, cwd?: string): Promise<ExecResult> {
  const p = startProcess(argv[0], [...argv.slice(1), loginShellCommand(script, opts.login)], { env, cwd });
  return streamScript({ ...p, abort: p.kill }, opts);
}

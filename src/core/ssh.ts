// The SSH connection to the cluster: strict host-key checking, and commands run in a login shell
// (on Riviera, `module` and with it the Slurm clients exist only there).
import type { Readable } from 'node:stream';
import { NodeSSH } from 'node-ssh';
import { ConnectionError, HostKeyError, RemoteCommandError } from './errors.js';
import { type KnownHostEntry, checkHostKey, hostKeyName, recordedKeyTypes } from './knownhosts.js';
import { shq } from './quote.js';

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  privateKey: string;
  knownHosts: KnownHostEntry[];
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
}

/**
 * The remote command for a script: run by bash as a login shell, the script as one quoted word. The
 * script runs in a subshell: an `exit` in it would otherwise make the login shell run the user's
 * ~/.bash_logout, whose last status (with `set -e` on, its first failure) replaces the script's.
 */
export function loginShellCommand(script: string): string {
  return `bash -l -c ${shq(`printf '%s\\n' ${shq(OUTPUT_START)}
(
${script}
)`)}`;
}

/**
 * Printed before a script's own output: whatever a login profile prints first (a banner, a quota
 * warning) comes before it and is dropped, so that the parsers see only the script's output.
 */
export const OUTPUT_START = '::riviera-output-start::';

/** Drops stdout up to and including the OUTPUT_START line, chunk by chunk. */
export class PreambleFilter {
  private head: Buffer | null = Buffer.alloc(0);

  /** The part of `chunk` that belongs to the script (empty while still in the preamble). */
  push(chunk: Buffer): Buffer {
    if (this.head === null) return chunk;
    this.head = Buffer.concat([this.head, chunk]);
    const at = this.head.indexOf(`${OUTPUT_START}\n`);
    if (at < 0) return Buffer.alloc(0);
    const rest = this.head.subarray(at + OUTPUT_START.length + 1);
    this.head = null;
    return rest;
  }
}

export class Remote {
  private constructor(
    private readonly ssh: NodeSSH,
    readonly target: SshTarget,
  ) {}

  static async connect(target: SshTarget): Promise<Remote> {
    const ssh = new NodeSSH();
    let refused: HostKeyError | undefined;
    const types = recordedKeyTypes(target.knownHosts, target.host, target.port);
    try {
      await ssh.connect({
        host: target.host,
        port: target.port,
        username: target.username,
        privateKey: target.privateKey,
        readyTimeout: 20_000,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 4,
        // Offer the key types known_hosts records for this host first, as OpenSSH does.
        ...(types.length > 0 ? { algorithms: { serverHostKey: types as never } } : {}),
        hostVerifier: (key: Buffer) => {
          const verdict = checkHostKey(target.knownHosts, target.host, target.port, key);
          if (verdict.ok) return true;
          const name = hostKeyName(target.host, target.port);
          const why = {
            'unknown-host': `known-hosts has no entry for ${name}`,
            changed: `the host key of ${name} does not match the one in known-hosts (it changed, or this is not the host you think)`,
            revoked: `the host key of ${name} is marked @revoked in known-hosts`,
          }[verdict.reason];
          refused = new HostKeyError(
            `Host key refused: ${why}. The server offered ${verdict.keyType} ${verdict.fingerprint}.`,
            'Nothing was sent. If the cluster really changed its key, confirm the fingerprint with its administrators and update the known-hosts input.',
          );
          return false;
        },
      });
    } catch (err) {
      ssh.dispose();
      if (refused) throw refused;
      const e = err as Error & { level?: string };
      const hint =
        e.level === 'client-authentication'
          ? `The cluster refused the key for user '${target.username}': check the username and that the public key is in ~/.ssh/authorized_keys there.`
          : `Check host '${target.host}' and port ${target.port}, and that the cluster is reachable from here.`;
      throw new ConnectionError(`Could not connect to ${target.username}@${target.host}:${target.port}: ${e.message}.`, hint);
    }
    // node-ssh drops its error listener once connected; without ours a reset would crash the process.
    ssh.connection?.on('error', () => undefined);
    return new Remote(ssh, target);
  }

  get connected(): boolean {
    return this.ssh.isConnected();
  }

  /**
   * Run a script in a login shell; returns its exit code and output, whatever the code. A connection
   * lost meanwhile rejects with a ConnectionError (the caller may reconnect and retry).
   */
  exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const conn = this.ssh.connection;
    if (!conn || !this.connected) return Promise.reject(new ConnectionError('The SSH connection is closed.'));
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        conn.off('close', onLost);
        fn();
      };
      const onLost = () => finish(() => reject(new ConnectionError('The SSH connection was lost.')));
      conn.once('close', onLost);
      conn.exec(loginShellCommand(script), (err, channel) => {
        if (err) return finish(() => reject(new ConnectionError(`Could not open an SSH channel: ${err.message}`)));
        const out: Buffer[] = [];
        const errs: Buffer[] = [];
        let code: number | null = null;
        let stdin: Readable | undefined;
        const pipeIn = (s: Readable) => {
          stdin = s;
          s.on('error', (e) => {
            channel.close();
            finish(() => reject(e));
          });
          s.pipe(channel);
        };
        const preamble = new PreambleFilter();
        channel.on('data', (chunk: Buffer) => {
          const d = preamble.push(chunk);
          if (d.length === 0) return;
          out.push(d);
          if (opts.feed && !stdin) {
            const line = Buffer.concat(out).toString().split('\n').find((l, i, all) => i < all.length - 1 && l.startsWith(opts.feed!.after));
            if (line !== undefined) pipeIn(opts.feed.stream(line));
          }
        });
        channel.stderr.on('data', (d: Buffer) => {
          errs.push(d);
        });
        channel.on('exit', (c: number | null) => {
          code = c;
        });
        channel.on('close', () => {
          // The command may stop reading early: stop feeding it.
          if (stdin) {
            stdin.unpipe(channel);
            stdin.destroy();
          }
          if (code === null && !this.connected) return onLost();
          finish(() => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(errs) }));
        });
        channel.on('error', (e: Error) => finish(() => reject(new ConnectionError(`SSH channel failed: ${e.message}`))));
        if (!opts.feed) channel.end();
      });
    });
  }

  /** Run a script and return its stdout; a non-zero exit throws a RemoteCommandError naming `what`. */
  async run(what: string, script: string, opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(script, opts);
    if (r.code !== 0) throw new RemoteCommandError(what, r.code, r.stderr.toString('utf8'));
    return r.stdout.toString('utf8');
  }

  close(): void {
    this.ssh.dispose();
  }
}

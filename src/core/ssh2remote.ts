// The built-in transport: the ssh2 library, with strict host-key checking on every hop. A jump
// chain is a Client per hop, each carried over a forwarded channel of the one before (ssh2 README,
// "Connection hopping").
import type { Duplex } from 'node:stream';
import { Client, type ConnectConfig } from 'ssh2';
import { ConnectionError } from './errors.js';
import { type JumpHop, formatHop } from './jumphosts.js';
import { checkHostKey, recordedKeyTypes } from './knownhosts.js';
import { loginShellCommand } from './loginshell.js';
import { type ExecOptions, type ExecResult, ScriptRemote, type SshTarget, hostKeyRefused, streamScript } from './remote.js';

/**
 * How to log in: the key, or the agent's keys, and nothing else. ssh2 would first try `none` (a
 * round trip only to learn that publickey is wanted); OpenSSH, too, offers the key first.
 */
export function authOf(
  target: Pick<SshTarget, 'privateKey' | 'passphrase' | 'agent'>,
): Pick<ConnectConfig, 'privateKey' | 'passphrase' | 'agent' | 'authHandler'> {
  return target.privateKey
    ? { privateKey: target.privateKey, passphrase: target.passphrase ?? undefined, authHandler: ['publickey'] }
    : { agent: target.agent ?? undefined, authHandler: ['agent'] };
}

/** One SSH connection of the chain: to a hop, or to the cluster itself (the last). */
function connectHop(target: SshTarget, hop: JumpHop, role: string, sock: Duplex | undefined): Promise<Client> {
  const client = new Client();
  let refused: Error | undefined;
  const types = recordedKeyTypes(target.knownHosts, hop.host, hop.port);
  const config: ConnectConfig = {
    host: hop.host,
    port: hop.port,
    username: hop.user,
    ...authOf(target),
    sock,
    readyTimeout: 20_000,
    keepaliveInterval: 15_000,
    keepaliveCountMax: 4,
    // Offer the key types known_hosts records for this host first, as OpenSSH does.
    ...(types.length > 0 ? { algorithms: { serverHostKey: types as never } } : {}),
    hostVerifier: (key: Buffer) => {
      const verdict = checkHostKey(target.knownHosts, hop.host, hop.port, key);
      if (verdict.ok) return true;
      refused = hostKeyRefused(role, hop, verdict.reason, `${verdict.keyType} ${verdict.fingerprint}`);
      return false;
    },
  };
  return new Promise((resolve, reject) => {
    client.once('ready', () => {
      // Once connected, a reset surfaces as 'close' (and exec's ConnectionError); unhandled it would crash the process.
      client.on('error', () => undefined);
      resolve(client);
    });
    client.once('error', (err: Error & { level?: string }) => {
      client.end();
      if (refused) return reject(refused);
      const who = `${role} ${formatHop(hop)}`;
      const hint =
        err.level === 'client-authentication'
          ? `The ${role} refused the key for user '${hop.user}': check the username and that the public key (or its certificate) is accepted there.`
          : `Check ${role === 'cluster' ? `host '${hop.host}' and port ${hop.port}` : 'the jump-hosts input'}, and that it is reachable from here.`;
      reject(new ConnectionError(`Could not connect to the ${who}: ${err.message}.`, hint));
    });
    client.connect(config);
    // Each message as soon as it is written: with Nagle's algorithm a small one waits for the ACK
    // of the one before (a whole round trip, e.g. the service request behind NEWKEYS).
    client.setNoDelay(true);
  });
}

/** A channel from `via` to the next hop, as its socket. */
function forward(via: Client, hop: JumpHop, role: string): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    via.forwardOut('127.0.0.1', 0, hop.host, hop.port, (err, stream) =>
      err
        ? reject(
            new ConnectionError(
              `The jump host could not reach the ${role} ${formatHop(hop)}: ${err.message}.`,
              'Check the jump-hosts input and that the jump host may forward there.',
            ),
          )
        : resolve(stream),
    );
  });
}

export class Ssh2Remote extends ScriptRemote {
  private lost = false;

  private constructor(
    /** The hops, then the cluster's connection last. */
    private readonly chain: Client[],
  ) {
    super();
    this.conn.once('close', () => {
      this.lost = true;
    });
  }

  private get conn(): Client {
    return this.chain[this.chain.length - 1];
  }

  static async connect(target: SshTarget): Promise<Ssh2Remote> {
    const hops = [...target.jumpHosts, { user: target.username, host: target.host, port: target.port }];
    const chain: Client[] = [];
    try {
      for (const [i, hop] of hops.entries()) {
        const role = i < hops.length - 1 ? `jump host ${i + 1}` : 'cluster';
        const sock = i > 0 ? await forward(chain[i - 1], hop, role) : undefined;
        chain.push(await connectHop(target, hop, role, sock));
      }
    } catch (e) {
      for (const c of chain.reverse()) c.end();
      throw e;
    }
    return new Ssh2Remote(chain);
  }

  get connected(): boolean {
    return !this.lost;
  }

  exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const conn = this.conn;
    if (!this.connected) return Promise.reject(new ConnectionError('The SSH connection is closed.'));
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
      conn.exec(loginShellCommand(script, opts.login), (err, channel) => {
        if (err) return finish(() => reject(new ConnectionError(`Could not open an SSH channel: ${err.message}`)));
        channel.on('error', (e: Error) => finish(() => reject(new ConnectionError(`SSH channel failed: ${e.message}`))));
        const ended = new Promise<number | null>((done) => {
          let code: number | null = null;
          channel.on('exit', (c: number | null) => {
            code = c;
          });
          channel.on('close', () => done(code));
        });
        streamScript({ stdout: channel, stderr: channel.stderr, stdin: channel, ended, abort: () => channel.close() }, opts).then(
          (r) => (r.code === null && !this.connected ? onLost() : finish(() => resolve(r))),
          (e: unknown) => finish(() => reject(e)),
        );
      });
    });
  }

  close(): void {
    this.lost = true;
    for (const c of [...this.chain].reverse()) c.end();
  }
}

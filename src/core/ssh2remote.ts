// The built-in transport: the ssh2 library (through node-ssh), with strict host-key checking.
import { NodeSSH } from 'node-ssh';
import { ConnectionError, HostKeyError } from './errors.js';
import { checkHostKey, hostKeyName, recordedKeyTypes } from './knownhosts.js';
import { loginShellCommand } from './loginshell.js';
import { type ExecOptions, type ExecResult, ScriptRemote, type SshTarget, streamScript } from './remote.js';

export class Ssh2Remote extends ScriptRemote {
  private constructor(
    private readonly ssh: NodeSSH,
    readonly target: SshTarget,
  ) {
    super();
  }

  static async connect(target: SshTarget): Promise<Ssh2Remote> {
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
    return new Ssh2Remote(ssh, target);
  }

  get connected(): boolean {
    return this.ssh.isConnected();
  }

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
    this.ssh.dispose();
  }
}

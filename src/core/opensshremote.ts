// The system-OpenSSH transport: the `ssh` client on every runner and laptop, which can log in with a
// user certificate and reuse an open ControlMaster session (neither is possible with ssh2: its
// #551, #1167). It reads nothing from ~/.ssh: a private directory holds its config file, the
// known_hosts made from the known-hosts input, the key (0600) and its certificate, and the control
// socket of the one master connection that carries every command of the delivery. close() ends the
// master and removes the directory.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { ConnectionError } from './errors.js';
import { formatHop } from './jumphosts.js';
import { type PipedProcess, runProcess, startProcess } from './process.js';
import { type ExecOptions, type ExecResult, ScriptRemote, type SshTarget, hostKeyRefused, spawnScript } from './remote.js';
import { CLUSTER_ALIAS, explainSshFailure, renderKnownHosts, renderSshConfig } from './sshconfig.js';

const READY_POLL_MS = 20;
/** How long after an exit status 255 the master has to go, for it to count as a lost connection. */
const LOST_GRACE_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The private directory: under RUNNER_TEMP on a runner (wiped after the job), else the system's temp dir. */
function privateDir(): string {
  return mkdtempSync(join(process.env.RUNNER_TEMP || tmpdir(), 'riviera-ssh-'));
}

export class OpenSshRemote extends ScriptRemote {
  private lost = false;

  private constructor(
    private readonly config: string,
    /** Our own master, or null when reusing one the user opened. */
    private readonly master: PipedProcess | null,
    private readonly agent: PipedProcess | null,
    private readonly controlPath: string,
    private readonly onExit: () => void,
  ) {
    super();
    void master?.ended.then(() => {
      this.lost = true;
    });
  }

  static async connect(target: SshTarget): Promise<OpenSshRemote> {
    const dir = privateDir();
    const cleanup = () => rmSync(dir, { recursive: true, force: true });
    // Whatever way the process ends, the key does not stay behind.
    process.once('exit', cleanup);
    let agent: PipedProcess | null = null;
    let master: PipedProcess | null = null;
    try {
      const keyFile = target.privateKey ? join(dir, 'id') : null;
      if (keyFile) {
        writeFileSync(keyFile, target.privateKey, { mode: 0o600 });
        const parsed = ssh2.utils.parseKey(target.privateKey, target.passphrase ?? undefined);
        if (!(parsed instanceof Error)) writeFileSync(`${keyFile}.pub`, `${parsed.type} ${parsed.getPublicSSH().toString('base64')}\n`);
        // Beside the key, as ssh and ssh-add look for it.
        if (target.certificate) writeFileSync(`${keyFile}-cert.pub`, target.certificate.trim() + '\n');
      }
      if (keyFile && target.passphrase) agent = await privateAgent(dir, keyFile, target.passphrase);
      const knownHostsFile = join(dir, 'known_hosts');
      writeFileSync(knownHostsFile, renderKnownHosts(target.knownHosts));
      const controlPath = target.controlPath || join(dir, 'ctl');
      const config = join(dir, 'config');
      writeFileSync(
        config,
        renderSshConfig({
          ...target,
          knownHostsFile,
          identityFile: keyFile,
          certificateFile: keyFile && target.certificate ? `${keyFile}-cert.pub` : null,
          identityAgent: agent ? join(dir, 'agent') : keyFile ? null : (target.agent ?? null),
          controlPath,
        }),
      );
      if (target.controlPath) {
        const check = await runProcess('ssh', ['-F', config, '-O', 'check', CLUSTER_ALIAS]);
        if (check.code !== 0) {
          throw new ConnectionError(
            `No open SSH session at ${target.controlPath} to reuse (${check.stderr.trim() || `ssh -O check exited ${check.code}`}).`,
            `Open it first (e.g. \`ssh -fN ${target.host}\`, with ControlMaster and ControlPersist in ~/.ssh/config), then run this again.`,
          );
        }
      } else {
        master = await startMaster(config, controlPath, target);
      }
      return new OpenSshRemote(config, master, agent, controlPath, cleanup);
    } catch (e) {
      master?.kill();
      agent?.kill();
      cleanup();
      process.off('exit', cleanup);
      throw e;
    }
  }

  get connected(): boolean {
    return !this.lost && existsSync(this.controlPath);
  }

  async exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    if (!this.connected) throw new ConnectionError('The SSH connection is closed.');
    // Through the master only: should it be gone, ProxyCommand=false stops ssh from logging in anew.
    const r = await spawnScript(['ssh', '-F', this.config, '-o', 'ControlMaster=no', '-o', 'ProxyCommand=false', CLUSTER_ALIAS, '--'], script, opts);
    if (r.code === 255 && (await this.lostWithin(LOST_GRACE_MS))) throw new ConnectionError('The SSH connection was lost.');
    return r;
  }

  /** Whether the master connection goes within `ms` (a mux client may see the loss first). */
  private async lostWithin(ms: number): Promise<boolean> {
    if (!this.master) {
      this.lost ||= (await runProcess('ssh', ['-F', this.config, '-O', 'check', CLUSTER_ALIAS])).code !== 0;
      return this.lost;
    }
    await Promise.race([this.master.ended, sleep(ms)]);
    return this.lost;
  }

  close(): void {
    this.lost = true;
    this.master?.kill();
    this.agent?.kill();
    this.onExit();
    process.off('exit', this.onExit);
  }
}

/** Start the master connection and wait until its control socket is there (it is made after login). */
async function startMaster(config: string, controlPath: string, target: SshTarget): Promise<PipedProcess> {
  // -v: on failure, its log tells which hop offered which host key.
  const master = startProcess('ssh', ['-F', config, '-v', '-N', '-o', 'ControlMaster=yes', '-o', 'ControlPersist=no', CLUSTER_ALIAS], {});
  let log = '';
  const onLog = (d: Buffer) => {
    // Kept only until connected: afterwards it would grow for the whole delivery.
    if (log.length < 1 << 20) log += d.toString();
  };
  master.stderr.on('data', onLog);
  master.stdout.resume();
  let exited = false;
  const ended = master.ended.then(
    () => (exited = true),
    (e: Error) => {
      exited = true;
      log += `\n${e.message}`;
    },
  );
  while (!exited && !existsSync(controlPath)) await sleep(READY_POLL_MS);
  if (!exited) {
    master.stderr.off('data', onLog);
    master.stderr.resume();
    return master;
  }
  await ended;
  throw failureOf(log, target);
}

function failureOf(log: string, target: SshTarget): Error {
  const hops = [...target.jumpHosts, { user: target.username, host: target.host, port: target.port }];
  const role = (i: number) => (i < hops.length - 1 ? `jump host ${i + 1}` : 'cluster');
  const f = explainSshFailure(log);
  if (f.kind === 'host-key' && f.hop < hops.length) return hostKeyRefused(role(f.hop), hops[f.hop], f.reason, f.offered);
  if (f.kind === 'auth' && f.hop < hops.length) {
    const hop = hops[f.hop];
    return new ConnectionError(
      `Could not connect to the ${role(f.hop)} ${formatHop(hop)}: it refused the key${target.certificate ? ' and certificate' : ''} for user '${hop.user}'.`,
      'Check the username, and that the public key is in ~/.ssh/authorized_keys there or that the certificate is signed by a CA it trusts, for this user.',
    );
  }
  const message = f.kind === 'other' ? f.message : 'refused';
  return new ConnectionError(
    `Could not connect to ${formatHop(hops[hops.length - 1])} with the OpenSSH client: ${message}.`,
    `Check host '${target.host}', port ${target.port} and jump-hosts, and that they are reachable from here.`,
  );
}

/**
 * An ssh-agent of our own holding the decrypted key: the only way to hand OpenSSH a passphrase in
 * batch mode. ssh-add reads the passphrase from an askpass program that prints it from its
 * environment, never from an argument or a file.
 */
async function privateAgent(dir: string, keyFile: string, passphrase: string): Promise<PipedProcess> {
  const socket = join(dir, 'agent');
  const agent = startProcess('ssh-agent', ['-D', '-a', socket]);
  agent.stdout.resume();
  agent.stderr.resume();
  for (let waited = 0; !existsSync(socket); waited += READY_POLL_MS) {
    if (waited > 5000) {
      agent.kill();
      throw new ConnectionError(
        'ssh-agent did not start.',
        'It is needed to use an encrypted private key with the OpenSSH client; check that it is installed.',
      );
    }
    await sleep(READY_POLL_MS);
  }
  const askpass = join(dir, 'askpass');
  writeFileSync(askpass, '#!/bin/sh\nprintf \'%s\\n\' "$RIVIERA_KEY_PASSPHRASE"\n', { mode: 0o700 });
  const env = {
    ...process.env,
    SSH_AUTH_SOCK: socket,
    SSH_ASKPASS: askpass,
    SSH_ASKPASS_REQUIRE: 'force',
    RIVIERA_KEY_PASSPHRASE: passphrase,
  };
  const added = await runProcess('ssh-add', [keyFile], { env });
  if (added.code !== 0) {
    agent.kill();
    throw new ConnectionError(`ssh-add could not load the private key: ${added.stderr.trim()}.`, "Check the input 'private-key-passphrase'.");
  }
  return agent;
}

// A cluster on this machine for unit tests: a temp home directory, scripts run there by the same
// login-shell wrapper, preamble filter and stdin feed as a real transport (ScriptRemote and
// spawnScript, with sh playing sshd), stand-in Slurm commands on PATH, and connections that can be
// made to fail or drop, to test retry and reconnect.
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Connector } from '../../src/core/connect.js';
import { ConnectionError } from '../../src/core/errors.js';
import { type ExecOptions, type ExecResult, ScriptRemote, type SshTarget, spawnScript } from '../../src/core/remote.js';

/** Runs scripts in `home` through the shared login-shell wrapper, as a transport does. */
export class LocalRemote extends ScriptRemote {
  private open = true;

  constructor(
    private readonly cluster: LocalCluster,
    readonly id: number,
  ) {
    super();
  }

  get connected(): boolean {
    return this.open;
  }

  exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    if (!this.open) return Promise.reject(new ConnectionError('The SSH connection is closed.'));
    this.cluster.scripts.push(script);
    if (this.cluster.dropNext > 0) {
      this.cluster.dropNext--;
      this.open = false;
      return Promise.reject(new ConnectionError('The SSH connection was lost.'));
    }
    return spawnScript(['sh', '-c'], script, opts, this.cluster.env(), this.cluster.home);
  }

  /** The link went away: the next command finds the connection closed. */
  drop(): void {
    this.open = false;
  }

  close(): void {
    this.open = false;
  }
}

export class LocalCluster {
  readonly home: string;
  readonly bin: string;
  /** Every script run, in order. */
  readonly scripts: string[] = [];
  /** Every connection made. */
  readonly connections: LocalRemote[] = [];
  /** Connection attempts still to refuse (as an unreachable host would). */
  failConnects = 0;
  /** Commands still to lose their connection (as a dropped link would), one each. */
  dropNext = 0;

  /** `base`: where the home directory is made (a delivery refuses a remote-dir under /tmp). */
  constructor(prefix = 'cluster-', base = tmpdir()) {
    this.home = realpathSync(mkdtempSync(join(base, prefix)));
    this.bin = join(this.home, '.bin');
    mkdirSync(this.bin);
    // A login shell's /etc/profile sets its own PATH: the profile puts the stand-ins first, as a
    // cluster's profile (or `module load`) does for the real commands.
    this.profile('export PATH="$HOME/.bin:$PATH"');
  }

  /** Add a line to the login profile (~/.bash_profile), which every script's login shell reads. */
  profile(line: string): void {
    appendFileSync(join(this.home, '.bash_profile'), `${line}\n`);
  }

  env(): NodeJS.ProcessEnv {
    return { PATH: `${this.bin}:${process.env.PATH}`, HOME: this.home };
  }

  /** A stand-in command on the cluster's PATH (a shell script body). */
  command(name: string, body: string): void {
    writeFileSync(join(this.bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(this.bin, name), 0o755);
  }

  /** A file under the home directory, its directories made. */
  file(path: string, data: string | Buffer): string {
    const full = join(this.home, path);
    mkdirSync(join(full, '..'), { recursive: true });
    writeFileSync(full, data);
    return full;
  }

  /** What Session uses to connect: a new LocalRemote, or a refusal while failConnects lasts. */
  readonly connect: Connector = async (_target: SshTarget) => {
    if (this.failConnects > 0) {
      this.failConnects--;
      throw new ConnectionError('Could not connect to tester@127.0.0.1:22: connect ECONNREFUSED.');
    }
    const r = new LocalRemote(this, this.connections.length + 1);
    this.connections.push(r);
    return r;
  };

  remove(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** A target nothing connects to (the connector ignores it). */
export const LOCAL_TARGET: SshTarget = {
  host: '127.0.0.1',
  port: 22,
  username: 'tester',
  privateKey: '',
  passphrase: null,
  certificate: null,
  jumpHosts: [],
  knownHosts: [],
  sshClient: 'builtin',
};

/** A retry policy for tests: the real one's shape, without the waiting. */
export const FAST_RETRY = { attempts: 3, baseDelayMs: 1, maxDelayMs: 4 };

/**
 * What a test registers for src/core/connect.js (jest.unstable_mockModule) so that the code under
 * test, which connects on its own, reaches the local cluster `current()` returns.
 */
export function localConnectModule(current: () => LocalCluster) {
  return {
    connectRemote: (target: SshTarget) => current().connect(target),
    describeConnection: () => 'the local stand-in cluster',
    transportOf: () => 'builtin' as const,
  };
}

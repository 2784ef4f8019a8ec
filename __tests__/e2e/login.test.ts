// Logging in the way a site demands, through the stand-in's bastion (127.0.0.1:2223) and its
// certificate-only sshd (2224, user certuser), with both SSH clients: what each side's sshd log
// shows is the proof (a forward through the bastion, one authentication for a whole delivery).
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CLUSTER_FLAGS,
  CLUSTER_HOME,
  type CliRun,
  STATE_DIR,
  clusterInputs,
  makeWorkspace,
  requireCluster,
  runStep,
  startCli,
  uniqueRemoteDir,
} from './harness.js';

const BASTION_LOG = '/var/log/riviera-standin/bastion-sshd.log';
const CERT_LOG = '/var/log/riviera-standin/cert-sshd.log';
const CERTUSER = join(STATE_DIR, 'certuser');
const CERTUSER_HOME = '/home/certuser';
const IMAGE = 'rs-e2e/gpucheck:login';
let ws: string;

/** A CLI run's output as one text, stdout then stderr. */
const withOut = (r: CliRun) => ({ ...r, out: r.stdout + r.stderr });
/** `status` of a job with no delivery, which needs a login to find that out. */
const statusOfNoJob = (client: string) => ['status', '424242', ...CLUSTER_FLAGS, '--remote-dir', 'nothing-here', '--ssh-client', client];
let knownHosts: string;

/** What a log gained since `offset` (its size before). */
const sizeOf = (file: string) => statSync(file).size;
const since = (file: string, offset: number) => readFileSync(file).subarray(offset).toString();
const accepted = (log: string) => log.split('\n').filter((l) => l.startsWith('Accepted publickey for certuser'));
const fingerprint = (pub: string) => execFileSync('ssh-keygen', ['-lf', pub], { encoding: 'utf8' }).split(' ')[1];

beforeAll(async () => {
  await requireCluster();
  for (const port of [2223, 2224]) {
    const up = await new Promise<boolean>((res) => {
      const s = createConnection(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), res(true)));
      s.once('error', () => res(false));
    });
    if (!up) throw new Error(`Nothing listens on 127.0.0.1:${port}: run test-cluster/auth-up.sh (as root) after cluster-up.sh.`);
  }
  ws = makeWorkspace();
  knownHosts = readFileSync(join(STATE_DIR, 'known_hosts'), 'utf8') + readFileSync(join(STATE_DIR, 'known_hosts_auth'), 'utf8');
});

/** The action as certuser on the certificate sshd, through the bastion. */
function certInputs(extra: Record<string, string>): Record<string, string> {
  return {
    host: '127.0.0.1',
    port: '2224',
    username: 'certuser',
    'private-key': readFileSync(join(CERTUSER, 'id_ed25519'), 'utf8'),
    'known-hosts': knownHosts,
    'jump-hosts': '127.0.0.1:2223',
    image: IMAGE,
    'smoke-test': 'gpu-check.sh',
    ...extra,
  };
}

describe.each(['builtin', 'openssh'])('ssh-client %s, through the bastion', (client) => {
  test('an unknown bastion key is refused, naming the hop and the key it offered; nothing is written', async () => {
    const remoteDir = uniqueRemoteDir('jump-refused');
    const offset = sizeOf(BASTION_LOG);
    const run = await runStep(
      { ...clusterInputs(), 'jump-hosts': '127.0.0.1:2223', 'ssh-client': client, sif: 'x.sif', 'smoke-command': 'true', 'remote-dir': remoteDir },
      { workspace: ws },
    );
    expect(run.code).not.toBe(0);
    const offered = fingerprint(join(STATE_DIR, 'bastion/host_ed25519.pub'));
    expect(run.log).toContain(
      `Host key refused for the jump host 1 (rivuser@127.0.0.1:2223): known-hosts has no entry for [127.0.0.1]:2223. The server offered ssh-ed25519 ${offered}.`,
    );
    expect(existsSync(join(CLUSTER_HOME, remoteDir))).toBe(false);
    expect(since(BASTION_LOG, offset)).not.toMatch(/Accepted publickey|server_request_direct_tcpip/);
  });
});

test('ssh-client builtin: a delivery through the bastion (the bastion forwards to the login node)', async () => {
  const offset = sizeOf(BASTION_LOG);
  const remoteDir = uniqueRemoteDir('jump');
  const run = await runStep(
    {
      ...clusterInputs(),
      'known-hosts': knownHosts,
      'jump-hosts': '127.0.0.1:2223',
      'ssh-client': 'builtin',
      image: IMAGE,
      'smoke-test': 'gpu-check.sh',
      'remote-dir': remoteDir,
    },
    { workspace: ws },
  );
  if (run.code !== 0) throw new Error(run.log);
  expect(run.outputs['job-state']).toBe('COMPLETED');
  expect(run.log).toContain('Connected to rivuser@127.0.0.1:2222 via rivuser@127.0.0.1:2223 with the built-in SSH client.');
  expect(since(BASTION_LOG, offset)).toMatch(/server_request_direct_tcpip: originator \S+ port \d+, target 127\.0\.0\.1 port 2222/);
  expect(statSync(run.outputs['sif-path']).size).toBeGreaterThan(1000);
});

describe('certuser, whose sshd takes only certificates from its CA', () => {
  test('the valid certificate: a whole delivery through the bastion on one authentication, and the key gone after', async () => {
    const runnerTemp = mkdtempSync(join(tmpdir(), 'rs-runner-temp-'));
    const [bastion, cert] = [sizeOf(BASTION_LOG), sizeOf(CERT_LOG)];
    const run = await runStep(certInputs({ certificate: readFileSync(join(CERTUSER, 'valid-cert.pub'), 'utf8'), 'remote-dir': uniqueRemoteDir('cert') }), {
      workspace: ws,
      env: { RUNNER_TEMP: runnerTemp },
    });
    if (run.code !== 0) throw new Error(run.log);
    expect(run.outputs['job-state']).toBe('COMPLETED');
    expect(run.outputs['sif-path']).toMatch(new RegExp(`^${CERTUSER_HOME}/`));
    expect(run.log).toContain('Connected to certuser@127.0.0.1:2224 via certuser@127.0.0.1:2223 with the OpenSSH client.');
    expect(since(BASTION_LOG, bastion)).toMatch(/target 127\.0\.0\.1 port 2224/);
    const logins = accepted(since(CERT_LOG, cert));
    expect(logins).toHaveLength(1);
    expect(logins[0]).toMatch(/ED25519-CERT .* ID certuser-valid/);
    // The key, its certificate, config and control socket lived under RUNNER_TEMP, and are gone.
    expect(readdirSync(runnerTemp)).toEqual([]);
  });

  test('the expired certificate: refused before connecting, with its validity', async () => {
    const cert = sizeOf(CERT_LOG);
    const run = await runStep(certInputs({ certificate: readFileSync(join(CERTUSER, 'expired-cert.pub'), 'utf8'), sif: 'x.sif', image: '' }), {
      workspace: ws,
    });
    expect(run.code).not.toBe(0);
    expect(run.log).toContain('Input \'certificate\': "certuser-expired" has expired: valid from 2020-01-01T00:00:00Z to 2020-01-02T00:00:00Z');
    expect(since(CERT_LOG, cert)).toBe('');
  });

  test('no certificate: the bare key is refused, and the message says for whom', async () => {
    const cert = sizeOf(CERT_LOG);
    // Straight to the certificate sshd (the bastion, too, would want the certificate).
    const run = await runStep(certInputs({ 'ssh-client': 'openssh', 'jump-hosts': '', sif: 'x.sif', image: '' }), { workspace: ws });
    expect(run.code).not.toBe(0);
    expect(run.log).toContain("Could not connect to the cluster certuser@127.0.0.1:2224: it refused the key for user 'certuser'.");
    expect(since(CERT_LOG, cert)).toMatch(/Failed publickey for certuser/);
  });
});

describe('the CLI from a laptop: a Host alias of ~/.ssh/config', () => {
  let home: string;
  let cwd: string;
  const cli = async (...args: string[]) => withOut(await startCli(args, { cwd, home }).done);
  const ssh = (...args: string[]) =>
    execFileSync('ssh', ['-F', join(home, '.ssh/config'), ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, HOME: home },
      timeout: 30_000,
    });

  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), 'rs-home-'));
    cwd = makeWorkspace();
    const dot = join(home, '.ssh');
    mkdirSync(dot, { mode: 0o700 });
    copyFileSync(join(CERTUSER, 'id_ed25519'), join(dot, 'riviera'));
    chmodSync(join(dot, 'riviera'), 0o600);
    copyFileSync(join(CERTUSER, 'valid-cert.pub'), join(dot, 'riviera-cert.pub'));
    writeFileSync(join(dot, 'known_hosts'), knownHosts);
    writeFileSync(
      join(dot, 'config'),
      [
        'Host riviera',
        '  HostName 127.0.0.1',
        '  Port 2224',
        '  User certuser',
        '  ProxyJump certuser@127.0.0.1:2223',
        `  ControlPath ${join(dot, 'cm-%C')}`,
        '  ControlMaster auto',
        '  ControlPersist 120',
        // The jump host is reached with the same key, as a laptop's config says for every host.
        // (ssh itself takes ~ from the password database, not $HOME: absolute paths here.)
        'Host *',
        `  IdentityFile ${join(dot, 'riviera')}`,
        `  CertificateFile ${join(dot, 'riviera-cert.pub')}`,
        `  UserKnownHostsFile ${join(dot, 'known_hosts')}`,
        '',
      ].join('\n'),
    );
  });

  afterAll(() => {
    try {
      ssh('-O', 'exit', 'riviera');
    } catch {
      // no master left open
    }
    rmSync(home, { recursive: true, force: true });
  });

  test('--host riviera: host, user, port, jump host, key and certificate all from ssh -G', async () => {
    const [bastion, cert] = [sizeOf(BASTION_LOG), sizeOf(CERT_LOG)];
    const r = await cli('status', '424242', '--host', 'riviera', '--remote-dir', 'nothing-here');
    // It logged in and asked: no delivery of that job there.
    expect(r.out).toContain('no delivery of job 424242 under ~/nothing-here');
    expect(r.code).toBe(2);
    expect(since(BASTION_LOG, bastion)).toMatch(/target 127\.0\.0\.1 port 2224/);
    expect(accepted(since(CERT_LOG, cert))).toHaveLength(1);
  });

  test('an open ControlMaster session (the MFA of the morning) carries a whole delivery: no key needed, no new login', async () => {
    const cert = sizeOf(CERT_LOG);
    ssh('-fN', 'riviera');
    // From now on only the open session can log in: the key is gone and there is no agent.
    rmSync(join(home, '.ssh/riviera'));
    const r = await cli(
      'deliver',
      '--host',
      'riviera',
      '--image',
      IMAGE,
      '--smoke-test',
      'gpu-check.sh',
      '--remote-dir',
      uniqueRemoteDir('cli-session'),
      '--json',
    );
    if (r.code !== 0) throw new Error(r.out);
    expect(r.out).toContain('Output tensor device: cuda:0');
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, jobState: 'COMPLETED' });
    // One authentication in all: the session's own, before the delivery.
    expect(accepted(since(CERT_LOG, cert))).toHaveLength(1);
  });
});

describe('an encrypted private key', () => {
  const passphrase = 'correct horse battery';
  let keyFile: string;
  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), 'rs-enc-'));
    keyFile = join(dir, 'id_ed25519');
    copyFileSync(join(STATE_DIR, 'id_ed25519'), keyFile);
    chmodSync(keyFile, 0o600);
    execFileSync('ssh-keygen', ['-q', '-p', '-P', '', '-N', passphrase, '-f', keyFile]);
  });

  test.each(['builtin', 'openssh'])('ssh-client %s: logs in with its passphrase (the CLI reads RIVIERA_PRIVATE_KEY_PASSPHRASE)', async (client) => {
    const home = mkdtempSync(join(tmpdir(), 'rs-home-'));
    const keys = ['--private-key-file', keyFile, '--known-hosts-file', join(STATE_DIR, 'known_hosts')];
    const r = withOut(await startCli([...statusOfNoJob(client), ...keys], { home, env: { RIVIERA_PRIVATE_KEY_PASSPHRASE: passphrase } }).done);
    // It logged in and asked: no delivery of that job there.
    expect(r.out).toContain('no delivery of job 424242 under ~/nothing-here');
    expect(r.code).toBe(2);
    expect(r.out).not.toContain(passphrase);
  });

  test('the action masks the passphrase before it prints anything', async () => {
    const run = await runStep(
      {
        ...clusterInputs(),
        'private-key': readFileSync(keyFile, 'utf8'),
        'private-key-passphrase': passphrase,
        gpus: 'many',
        sif: 'x.sif',
        'smoke-command': 'true',
      },
      { workspace: ws },
    );
    expect(run.code).not.toBe(0);
    const lines = run.log.split('\n');
    const firstOther = lines.findIndex((l) => !l.startsWith('::add-mask::'));
    expect(lines.slice(0, firstOther)).toContain(`::add-mask::${passphrase}`);
    expect(lines.slice(firstOther).join('\n')).not.toContain(passphrase);
  });
});

test.each(['builtin', 'openssh'])("ssh-client %s: the CLI logs in with an SSH agent's key when there is no key file", async (client) => {
  const home = mkdtempSync(join(tmpdir(), 'rs-home-'));
  const socket = join(home, 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
    execFileSync('ssh-add', ['-q', join(STATE_DIR, 'id_ed25519')], { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: 'ignore' });
    const keys = ['--known-hosts-file', join(STATE_DIR, 'known_hosts')];
    const r = withOut(await startCli([...statusOfNoJob(client), ...keys], { home, env: { SSH_AUTH_SOCK: socket } }).done);
    expect(r.out).toContain('no delivery of job 424242 under ~/nothing-here');
    expect(r.code).toBe(2);
  } finally {
    agent.kill();
    rmSync(home, { recursive: true, force: true });
  }
});

// The OpenSSH transport's config file, read back by the real `ssh -G` (what ssh will do with it),
// known_hosts written from the input, `ssh -G` output of a user's alias, and ssh's -v log on failure.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseKnownHosts } from '../../src/core/knownhosts.js';
import { CLUSTER_ALIAS, explainSshFailure, parseSshG, renderKnownHosts, renderSshConfig } from '../../src/core/sshconfig.js';

const dir = mkdtempSync(join(tmpdir(), 'rs sshcfg-')); // a space, as a runner's temp dir may have

/** What ssh makes of `host` with this config file (`ssh -G`: keywords lower-case, one per line). */
function sshG(configText: string, host: string): Record<string, string> {
  const file = join(dir, 'config');
  writeFileSync(file, configText);
  const out = execFileSync('ssh', ['-G', '-F', file, host], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return Object.fromEntries(
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]),
  );
}

const params = {
  host: 'login.example.edu',
  port: 2222,
  username: 'alice',
  jumpHosts: [
    { user: 'gate', host: 'bastion.example.edu', port: 2200 },
    { user: 'alice', host: '10.0.0.5', port: 22 },
  ],
  knownHostsFile: join(dir, 'known_hosts'),
  identityFile: join(dir, 'id'),
  certificateFile: join(dir, 'id-cert.pub'),
  identityAgent: null,
  controlPath: join(dir, 'ctl'),
};

describe('renderSshConfig, as ssh reads it', () => {
  test('the cluster: its host, port, user, the whole jump chain, and the control socket', () => {
    const g = sshG(renderSshConfig(params), CLUSTER_ALIAS);
    expect(g).toMatchObject({
      hostname: 'login.example.edu',
      port: '2222',
      user: 'alice',
      proxyjump: 'gate@bastion.example.edu:2200,alice@[10.0.0.5]:22',
      controlpath: join(dir, 'ctl'),
    });
  });

  test('every host, hops included: strict host keys from our file only, only our key and certificate, never a prompt', () => {
    for (const host of [CLUSTER_ALIAS, 'bastion.example.edu']) {
      const g = sshG(renderSshConfig(params), host);
      expect(g).toMatchObject({
        stricthostkeychecking: 'true',
        userknownhostsfile: join(dir, 'known_hosts'),
        globalknownhostsfile: 'none',
        batchmode: 'yes',
        identitiesonly: 'yes',
        identityfile: join(dir, 'id'),
        certificatefile: join(dir, 'id-cert.pub'),
        identityagent: 'none',
        forwardagent: 'no',
        preferredauthentications: 'publickey',
      });
    }
  });

  test('a hop never multiplexes over the cluster connection (it has no control socket)', () => {
    expect(sshG(renderSshConfig(params), 'bastion.example.edu').controlpath).toBeUndefined();
  });

  test('without a key file: the agent named, and its keys allowed', () => {
    const g = sshG(renderSshConfig({ ...params, identityFile: null, certificateFile: null, identityAgent: '/run/agent.sock' }), CLUSTER_ALIAS);
    expect(g).toMatchObject({ identitiesonly: 'no', identityagent: '/run/agent.sock' });
    expect(g.identityfile).not.toBe(join(dir, 'id'));
  });

  test('no jump hosts: no ProxyJump', () => {
    expect(sshG(renderSshConfig({ ...params, jumpHosts: [] }), CLUSTER_ALIAS).proxyjump).toBeUndefined();
  });

  test('a value that cannot be written is refused, not mangled', () => {
    expect(() => renderSshConfig({ ...params, controlPath: '/tmp/a"b' })).toThrow(/cannot write/);
  });
});

test('renderKnownHosts writes the input back line for line: markers, patterns and hashed names kept', () => {
  const text = [
    '[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILQeAV5hwFNnySKcdKxJmdWLYEIOaTp9zM0jxN6E5oOo',
    '@revoked *.example.edu,!x.example.edu ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO7qUDJBnG0HXaIoDq7d67UBiZAPzLn+hbOfsTb4ENLW',
    '|1|cTnV38aTNQz2lDIQakLPdGg8THA=|Wq2wcCB2c7fPA7aIbeFqakrGu7U= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH9W0+0bwgewazHgx9rVCeIsKOrd+9DIgEvU8EijFloB',
  ];
  expect(renderKnownHosts(parseKnownHosts(['# comment', ...text].join('\n')))).toBe(text.join('\n') + '\n');
});

describe('parseSshG', () => {
  test("a user's alias, as ssh resolves it: ~ expanded, the ControlPath's tokens too, [host]:port jumps", () => {
    const cfg = [
      'Host riviera',
      '  HostName login.riviera.example',
      '  User alice',
      '  Port 2200',
      '  IdentityFile ~/.ssh/riviera',
      '  CertificateFile ~/.ssh/riviera-cert.pub',
      '  ProxyJump gate@[10.1.2.3]:2201',
      '  ControlPath ~/.ssh/cm-%r@%h:%p',
      '  UserKnownHostsFile ~/.ssh/kh_riviera ~/.ssh/kh2',
      '',
    ].join('\n');
    const file = join(dir, 'user-config');
    writeFileSync(file, cfg);
    const out = execFileSync('ssh', ['-G', '-F', file, 'riviera'], {
      encoding: 'utf8',
      env: { ...process.env, HOME: '/home/alice' },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    expect(parseSshG(out, '/home/alice')).toEqual({
      hostname: 'login.riviera.example',
      user: 'alice',
      port: 2200,
      identityFiles: ['/home/alice/.ssh/riviera'],
      certificateFiles: ['/home/alice/.ssh/riviera-cert.pub'],
      proxyJump: 'gate@[10.1.2.3]:2201',
      controlPath: expect.stringMatching(/\/\.ssh\/cm-alice@login\.riviera\.example:2200$/),
      // ssh expands ~ here itself, from the password database.
      userKnownHostsFiles: [expect.stringMatching(/\/\.ssh\/kh_riviera$/), expect.stringMatching(/\/\.ssh\/kh2$/)],
    });
  });

  test('a plain host name: no jump, no control path', () => {
    const r = parseSshG('hostname h\nuser u\nport 22\nproxyjump none\ncontrolpath none\n', '/home/u');
    expect(r).toMatchObject({ hostname: 'h', user: 'u', port: 22, proxyJump: '', controlPath: '', identityFiles: [] });
  });
});

describe("explainSshFailure, from ssh -v's log", () => {
  const unknownBastion = [
    "debug1: Setting implicit ProxyCommand from ProxyJump: ssh -l rivuser -p 2223 -F /tmp/x/config -v -W '[%h]:%p' 127.0.0.1",
    "debug1: Authenticating to 127.0.0.1:2223 as 'rivuser'",
    'debug1: Server host key: ssh-ed25519 SHA256:YAYgmBoO6Ste0gqgZQ9tCrLHaEdmQD2YfZThf5SK3qs',
    'No ED25519 host key is known for [127.0.0.1]:2223 and you have requested strict checking.',
    'Host key verification failed.',
    'kex_exchange_identification: Connection closed by remote host',
    'Connection closed by UNKNOWN port 65535',
  ].join('\r\n');

  test('an unknown first hop: hop 0, and the key it offered', () => {
    expect(explainSshFailure(unknownBastion)).toEqual({
      kind: 'host-key',
      hop: 0,
      reason: 'unknown-host',
      offered: 'ssh-ed25519 SHA256:YAYgmBoO6Ste0gqgZQ9tCrLHaEdmQD2YfZThf5SK3qs',
    });
  });

  test('a changed key behind a hop that let us in: hop 1', () => {
    const log = [
      'debug1: Server host key: ssh-ed25519 SHA256:aaaa',
      'debug1: Authenticated to 127.0.0.1 ([127.0.0.1]:2223) using "publickey".',
      'debug1: Server host key: ssh-ed25519 SHA256:bbbb',
      '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @',
      'Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.',
      'Host key verification failed.',
    ].join('\n');
    expect(explainSshFailure(log)).toEqual({ kind: 'host-key', hop: 1, reason: 'changed', offered: 'ssh-ed25519 SHA256:bbbb' });
  });

  test('a refused key: the hop after those it got into', () => {
    const log = ['debug1: Server host key: ssh-ed25519 SHA256:XRj3', 'certuser@127.0.0.1: Permission denied (publickey).'].join('\n');
    expect(explainSshFailure(log)).toEqual({ kind: 'auth', hop: 0 });
  });

  test("anything else: ssh's own last words", () => {
    expect(explainSshFailure('debug1: Connecting to h port 22.\nssh: connect to host h port 22: Connection refused\n')).toEqual({
      kind: 'other',
      message: 'ssh: connect to host h port 22: Connection refused',
    });
  });
});

// known_hosts parsing and matching, checked against real keys from ssh-keygen and, for host
// matching, against `ssh-keygen -F` itself.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import { InputError } from '../../src/core/errors.js';
import { checkHostKey, fingerprint, hostKeyName, parseKnownHosts, recordedKeyTypes, type KnownHostEntry } from '../../src/core/knownhosts.js';

interface Key {
  type: string;
  b64: string;
  blob: Buffer;
  file: string; // private key; the public one is `${file}.pub`
}
type KeyName = 'ed25519' | 'ecdsa' | 'rsa' | 'other' | 'ca';

let dir: string;
const keys = {} as Record<KeyName, Key>;

function keygen(name: KeyName, args: string[]): Key {
  const file = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-N', '', '-C', `${name}@test`, '-f', file, ...args]);
  const [type, b64] = readFileSync(`${file}.pub`, 'utf8').trim().split(' ') as [string, string];
  return { type, b64, blob: Buffer.from(b64, 'base64'), file };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'knownhosts-'));
  keys.ed25519 = keygen('ed25519', ['-t', 'ed25519']);
  keys.ecdsa = keygen('ecdsa', ['-t', 'ecdsa', '-b', '256']);
  keys.rsa = keygen('rsa', ['-t', 'rsa', '-b', '2048']);
  keys.other = keygen('other', ['-t', 'ed25519']);
  keys.ca = keygen('ca', ['-t', 'ed25519']);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const line = (hosts: string, k: KeyName, marker = '') => `${marker ? `${marker} ` : ''}${hosts} ${keys[k].type} ${keys[k].b64}`;
const check = (text: string, host: string, port: number, k: KeyName) => checkHostKey(parseKnownHosts(text), host, port, keys[k].blob);
const refused = (reason: string, k: KeyName) => ({
  ok: false,
  reason,
  keyType: keys[k].type,
  fingerprint: fingerprint(keys[k].blob),
});

function thrown(fn: () => unknown): InputError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return err as InputError;
  }
  throw new Error('expected an InputError');
}

describe('parseKnownHosts', () => {
  test('reads every key type, marker and line number, skipping comments, blank lines and CRLF', () => {
    const text = [
      '# cluster host keys',
      '',
      '   \t',
      `${line('cluster.example.org', 'ed25519')} root@cluster extra words\r`,
      '\t# an indented comment',
      line('[cluster.example.org]:2222,10.0.0.5', 'ecdsa'),
      line('*', 'rsa', '@revoked'),
      `  ${line('*.example.org', 'ca', '@cert-authority')}`,
      '',
    ].join('\n');
    const entry = (n: number, marker: KnownHostEntry['marker'], hosts: string, k: KeyName): KnownHostEntry => ({
      line: n,
      marker,
      hosts,
      keyType: keys[k].type,
      key: keys[k].blob,
    });
    expect(parseKnownHosts(text)).toEqual([
      entry(4, null, 'cluster.example.org', 'ed25519'),
      entry(6, null, '[cluster.example.org]:2222,10.0.0.5', 'ecdsa'),
      entry(7, 'revoked', '*', 'rsa'),
      entry(8, 'cert-authority', '*.example.org', 'ca'),
    ]);
    expect(keys.ecdsa.type).toBe('ecdsa-sha2-nistp256');
    expect(keys.rsa.type).toBe('ssh-rsa');
  });

  test.each(['', '\n\n', '# only a comment\n   \n'])('refuses a file with no entries: %j', (text) => {
    const err = thrown(() => parseKnownHosts(text));
    expect(err.input).toBe('known-hosts');
    expect(err.message).toMatch(/empty/);
    expect(err.message).toMatch(/ssh-keyscan -p PORT HOST/);
  });

  // Each bad line sits at line 3, between valid lines, so the error must name exactly that line.
  test.each<[string, () => string, RegExp]>([
    ['a host alone', () => 'cluster.example.org', /missing key type/],
    ['no key after the type', () => 'cluster.example.org ssh-ed25519', /missing the base64 ssh-ed25519 key/],
    ['a marker alone', () => '@revoked', /missing host patterns/],
    ['a marker and host alone', () => '@cert-authority *', /missing key type/],
    ['an unknown marker', () => line('cluster', 'ed25519', '@trusted'), /unknown marker '@trusted'/],
    ['base64 with junk in it', () => `cluster ssh-ed25519 ${keys.ed25519.b64.slice(0, 20)}$%${keys.ed25519.b64.slice(20)}`, /not valid base64/],
    ['base64 with a stray trailing character', () => `cluster ssh-ed25519 ${keys.ed25519.b64.replace(/=*$/, 'A')}`, /not valid base64/],
    ['a key type that differs from the blob', () => `cluster ssh-rsa ${keys.ed25519.b64}`, /says ssh-rsa but the key itself is ssh-ed25519/],
    ['an ecdsa curve that differs from the blob', () => `cluster ecdsa-sha2-nistp384 ${keys.ecdsa.b64}`, /says ecdsa-sha2-nistp384 but .* ecdsa-sha2-nistp256/],
    ['a truncated key blob', () => `cluster ssh-ed25519 ${keys.ed25519.blob.subarray(0, -4).toString('base64')}`, /does not parse/],
    ['a blob that is not a key', () => `cluster ssh-ed25519 ${Buffer.from('not a key at all').toString('base64')}`, /does not parse/],
    ['a malformed hashed host', () => `|1|c2FsdA==|aGFzaA== ${keys.ed25519.type} ${keys.ed25519.b64}`, /malformed hashed host/],
    ['a legacy RSA1 line', () => 'cluster 2048 35 1234567890123', /line 3/],
  ])('refuses %s, naming known-hosts and the line', (_name, bad, problem) => {
    const text = ['# keys', line('cluster', 'ecdsa'), bad(), line('other', 'ed25519')].join('\n');
    const err = thrown(() => parseKnownHosts(text));
    expect(err.input).toBe('known-hosts');
    expect(err.message).toMatch(/^Input 'known-hosts': line 3: /);
    expect(err.message).toMatch(problem);
  });
});

describe('hostKeyName', () => {
  test.each<[string, number, string]>([
    ['Cluster.Example.ORG', 22, 'cluster.example.org'],
    ['cluster.example.org', 2222, '[cluster.example.org]:2222'],
    ['10.0.0.5', 22, '10.0.0.5'],
    ['::1', 2200, '[::1]:2200'],
  ])('%s port %i → %s', (host, port, name) => {
    expect(hostKeyName(host, port)).toBe(name);
  });
});

describe('fingerprint', () => {
  test.each<KeyName>(['ed25519', 'ecdsa', 'rsa'])('matches ssh-keygen -lf for %s', (k) => {
    const printed = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${keys[k].file}.pub`], { encoding: 'utf8' });
    expect(fingerprint(keys[k].blob)).toBe(printed.split(' ')[1]);
  });
});

describe('checkHostKey', () => {
  test('accepts every recorded key of a plain host, case-insensitively, at port 22 only', () => {
    const text = [line('cluster.example.org', 'ed25519'), line('cluster.example.org', 'ecdsa'), line('cluster.example.org', 'rsa')].join('\n');
    for (const k of ['ed25519', 'ecdsa', 'rsa'] as const) {
      expect(check(text, 'cluster.example.org', 22, k)).toEqual({ ok: true });
      expect(check(text, 'CLUSTER.example.Org', 22, k)).toEqual({ ok: true });
      expect(check(text, 'cluster.example.org', 2222, k)).toEqual(refused('unknown-host', k));
    }
  });

  test('a [host]:port entry matches that port only; [host]:22 also matches port 22', () => {
    const text = [line('[cluster.example.org]:2222', 'ed25519'), line('[login.example.org]:22', 'ecdsa')].join('\n');
    expect(check(text, 'cluster.example.org', 2222, 'ed25519')).toEqual({ ok: true });
    expect(check(text, 'cluster.example.org', 22, 'ed25519')).toEqual(refused('unknown-host', 'ed25519'));
    expect(check(text, 'cluster.example.org', 2200, 'ed25519')).toEqual(refused('unknown-host', 'ed25519'));
    expect(check(text, 'login.example.org', 22, 'ecdsa')).toEqual({ ok: true });
  });

  test('a host with lines but not the presented key is changed; a host without lines is unknown', () => {
    const text = [line('cluster.example.org', 'ed25519'), line('cluster.example.org', 'ecdsa')].join('\n');
    const changed = check(text, 'cluster.example.org', 22, 'other');
    expect(changed).toEqual(refused('changed', 'other'));
    expect(changed).toMatchObject({ keyType: 'ssh-ed25519' });
    expect(check(text, 'cluster.example.org', 22, 'rsa')).toMatchObject({ reason: 'changed', keyType: 'ssh-rsa' });
    expect(check(text, 'elsewhere.example.org', 22, 'ed25519')).toEqual(refused('unknown-host', 'ed25519'));
  });

  test('matches entries hashed by ssh-keygen -H, at the right port only', () => {
    const file = join(dir, 'known_hosts_hashed');
    writeFileSync(file, [line('cluster.example.org,10.0.0.5', 'ed25519'), line('[login.example.org]:2222', 'ecdsa')].join('\n') + '\n');
    execFileSync('ssh-keygen', ['-q', '-H', '-f', file], { stdio: 'pipe' });
    const text = readFileSync(file, 'utf8');
    const entries = parseKnownHosts(text);
    expect(entries).toHaveLength(3); // ssh-keygen -H puts each name on its own line
    for (const e of entries) expect(e.hosts).toMatch(/^\|1\|[^|]+\|[^|]+$/);
    expect(text).not.toMatch(/example\.org|10\.0\.0\.5/);

    const verdict = (host: string, port: number, k: KeyName) => checkHostKey(entries, host, port, keys[k].blob);
    expect(verdict('cluster.example.org', 22, 'ed25519')).toEqual({ ok: true });
    expect(verdict('Cluster.Example.ORG', 22, 'ed25519')).toEqual({ ok: true });
    expect(verdict('10.0.0.5', 22, 'ed25519')).toEqual({ ok: true });
    expect(verdict('login.example.org', 2222, 'ecdsa')).toEqual({ ok: true });
    expect(verdict('cluster.example.org', 22, 'other')).toEqual(refused('changed', 'other'));
    expect(verdict('cluster.example.org', 2222, 'ed25519')).toEqual(refused('unknown-host', 'ed25519'));
    expect(verdict('login.example.org', 22, 'ecdsa')).toEqual(refused('unknown-host', 'ecdsa'));
    expect(verdict('cluster.example.net', 22, 'ed25519')).toEqual(refused('unknown-host', 'ed25519'));
  });

  // `expected` is asserted both for checkHostKey and for `ssh-keygen -F`, so the table itself is checked against OpenSSH.
  test.each<[string, string, number, boolean]>([
    ['*.example.org', 'node1.example.org', 22, true],
    ['*.example.org', 'example.org', 22, false],
    ['node?.example.org', 'node7.example.org', 22, true],
    ['node?.example.org', 'node10.example.org', 22, false],
    ['a.example.org', 'axexample.org', 22, false],
    ['10.0.0.*', '10.0.0.5', 22, true],
    ['[*.example.org]:2222', 'login.example.org', 2222, true],
    ['*.example.org', 'login.example.org', 2222, false],
    ['*', 'anything.example.net', 2222, true],
    ['other.example.org,LOGIN.example.org', 'login.example.org', 22, true],
    ['*.example.org,!bastion.example.org', 'bastion.example.org', 22, false],
    ['!bastion.example.org,*.example.org', 'bastion.example.org', 22, false],
    ['*.example.org,!bastion.example.org', 'login.example.org', 22, true],
    ['!bastion.example.org', 'login.example.org', 22, false],
    ['*,![*]:2222', 'login.example.org', 2222, false],
    ['*,![*]:2222', 'login.example.org', 2200, true],
  ])('pattern %s vs %s port %i → %s', (patterns, host, port, expected) => {
    const text = line(patterns, 'ed25519');
    expect(check(text, host, port, 'ed25519')).toEqual(expected ? { ok: true } : refused('unknown-host', 'ed25519'));
    const file = join(dir, 'known_hosts_patterns');
    writeFileSync(file, `${text}\n`);
    const openssh = spawnSync('ssh-keygen', ['-F', hostKeyName(host, port), '-f', file], { encoding: 'utf8' });
    expect(openssh.stdout.includes(keys.ed25519.b64)).toBe(expected);
  });

  test('a revoked key is refused even when another line accepts it, in either order', () => {
    const accept = line('cluster.example.org', 'ed25519');
    const revoke = line('*', 'ed25519', '@revoked');
    expect(check(`${accept}\n${revoke}`, 'cluster.example.org', 22, 'ed25519')).toEqual(refused('revoked', 'ed25519'));
    expect(check(`${revoke}\n${accept}`, 'cluster.example.org', 22, 'ed25519')).toEqual(refused('revoked', 'ed25519'));
    // Revoking another key, or revoking for another host, leaves the accepted key alone.
    expect(check(`${accept}\n${line('*', 'other', '@revoked')}`, 'cluster.example.org', 22, 'ed25519')).toEqual({ ok: true });
    expect(check(`${accept}\n${line('old.example.org', 'ed25519', '@revoked')}`, 'cluster.example.org', 22, 'ed25519')).toEqual({
      ok: true,
    });
  });

  test('a host with only @revoked lines is unknown for any other key', () => {
    const text = line('cluster.example.org', 'ed25519', '@revoked');
    expect(check(text, 'cluster.example.org', 22, 'ed25519')).toEqual(refused('revoked', 'ed25519'));
    expect(check(text, 'cluster.example.org', 22, 'other')).toEqual(refused('unknown-host', 'other'));
  });

  test('@cert-authority lines never accept a key, not even the CA key itself', () => {
    const ca = line('*.example.org', 'ca', '@cert-authority');
    expect(check(ca, 'cluster.example.org', 22, 'ca')).toEqual(refused('unknown-host', 'ca'));
    expect(check(line('cluster.example.org', 'ed25519', '@cert-authority'), 'cluster.example.org', 22, 'ed25519')).toEqual(refused('unknown-host', 'ed25519'));
    expect(check(`${ca}\n${line('cluster.example.org', 'ecdsa')}`, 'cluster.example.org', 22, 'ca')).toEqual(refused('changed', 'ca'));
  });
});

describe('recordedKeyTypes', () => {
  const RSA = ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

  test('lists the recorded types in file order, expanding ssh-rsa to its signature algorithms', () => {
    const text = [
      line('cluster.example.org', 'rsa'),
      line('*.example.org', 'ed25519'),
      line('cluster.example.org', 'other'), // a second ed25519 key: listed once
      line('[cluster.example.org]:2222', 'ecdsa'),
    ].join('\n');
    const entries = parseKnownHosts(text);
    expect(recordedKeyTypes(entries, 'cluster.example.org', 22)).toEqual([...RSA, 'ssh-ed25519']);
    expect(recordedKeyTypes(entries, 'login.example.org', 22)).toEqual(['ssh-ed25519']);
    expect(recordedKeyTypes(entries, 'cluster.example.org', 2222)).toEqual(['ecdsa-sha2-nistp256']);
    expect(recordedKeyTypes(entries, 'cluster.example.net', 22)).toEqual([]);
  });

  test('ignores @revoked and @cert-authority lines', () => {
    const entries = parseKnownHosts([line('cluster.example.org', 'rsa', '@revoked'), line('*', 'ca', '@cert-authority')].join('\n'));
    expect(recordedKeyTypes(entries, 'cluster.example.org', 22)).toEqual([]);
  });

  // An in-memory ssh2 server offering ed25519 and ecdsa host keys, for a client whose known_hosts records only the ecdsa key.
  test('lets ssh2 negotiate the recorded key type that the default order would skip', async () => {
    const entries = parseKnownHosts(line('cluster.example.org', 'ecdsa'));
    const connect = (serverHostKey?: string[]) =>
      new Promise<Buffer>((resolve, reject) => {
        const server = new ssh2.Server({ hostKeys: [readFileSync(keys.ed25519.file), readFileSync(keys.ecdsa.file)] }, (conn) => {
          conn.on('authentication', (ctx) => ctx.accept()).on('error', () => {});
        });
        const [clientSide, serverSide] = duplexPair();
        server.injectSocket(serverSide as never);
        let presented: Buffer | undefined;
        const client = new ssh2.Client();
        client
          .on('ready', () => {
            client.end();
            resolve(presented!);
          })
          .on('error', reject)
          .connect({
            sock: clientSide,
            username: 'ci',
            algorithms: serverHostKey ? { serverHostKey: serverHostKey as never } : undefined,
            hostVerifier: (key: Buffer) => {
              presented = key;
              return checkHostKey(entries, 'cluster.example.org', 22, key).ok;
            },
          });
      });

    const key = await connect(recordedKeyTypes(entries, 'cluster.example.org', 22));
    expect(key.equals(keys.ecdsa.blob)).toBe(true);
    await expect(connect()).rejects.toThrow(/verification failed/i);
  });
});

function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const end = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _encoding, done) {
        peer().push(chunk);
        done();
      },
      final(done) {
        peer().push(null);
        done();
      },
    });
  ends.push(
    end(() => ends[1]!),
    end(() => ends[0]!),
  );
  return [ends[0]!, ends[1]!];
}

// OpenSSH user certificates made by the real ssh-keygen, read locally: validity, principals, the
// certified key, and the login identity checked as a whole before anything connects.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { certificateProblem, parseCertificate, validity } from '../../src/core/certificate.js';
import { InputError } from '../../src/core/errors.js';
import { keyIsEncrypted, parseIdentity } from '../../src/core/identity.js';

const dir = mkdtempSync(join(tmpdir(), 'rs-cert-'));
const keygen = (...args: string[]) => execFileSync('ssh-keygen', ['-q', ...args], { stdio: 'pipe' });
const read = (name: string) => readFileSync(join(dir, name), 'utf8');

/** A key of `type` and a certificate for it signed by the CA; `opts` are ssh-keygen -s options. */
function certified(name: string, type: string, opts: string[]): { key: string; cert: string } {
  keygen('-t', type, '-N', '', '-f', join(dir, name));
  keygen('-s', join(dir, 'ca'), '-I', `${name}-id`, ...opts, join(dir, `${name}.pub`));
  return { key: read(name), cert: read(`${name}-cert.pub`) };
}

const at = (iso: string) => Date.parse(iso) / 1000;

// The CA, made before the describe blocks below certify keys with it.
keygen('-t', 'ed25519', '-N', '', '-f', join(dir, 'ca'));

describe('parseCertificate', () => {
  test.each(['ed25519', 'rsa', 'ecdsa'])('a %s user certificate: key ID, principals, validity and the certified key', (type) => {
    const { key, cert } = certified(`u-${type}`, type, ['-n', 'alice,bob', '-V', '20300101000000Z:20300102120000Z']);
    const c = parseCertificate(cert);
    expect(c.keyId).toBe(`u-${type}-id`);
    expect(c.principals).toEqual(['alice', 'bob']);
    expect(c.validAfter).toBe(at('2030-01-01T00:00:00Z'));
    expect(c.validBefore).toBe(at('2030-01-02T12:00:00Z'));
    const parsed = ssh2.utils.parseKey(key);
    if (parsed instanceof Error) throw parsed;
    expect(c.publicKey.equals(parsed.getPublicSSH())).toBe(true);
    expect(validity(c)).toBe('valid from 2030-01-01T00:00:00Z to 2030-01-02T12:00:00Z');
  });

  test('without -V a certificate is valid forever, and without -n for any principal', () => {
    const c = parseCertificate(certified('forever', 'ed25519', []).cert);
    expect(c.validBefore).toBeNull();
    expect(c.principals).toEqual([]);
    expect(validity(c)).toMatch(/to forever$/);
    expect(certificateProblem(c, 'anyone')).toBeNull();
  });

  test('a host certificate, a plain public key and garbage are refused', () => {
    keygen('-t', 'ed25519', '-N', '', '-f', join(dir, 'host'));
    keygen('-s', join(dir, 'ca'), '-h', '-I', 'host', join(dir, 'host.pub'));
    expect(() => parseCertificate(read('host-cert.pub'))).toThrow(/host certificate/);
    expect(() => parseCertificate(read('host.pub'))).toThrow(/not an OpenSSH certificate/);
    expect(() => parseCertificate('ssh-ed25519-cert-v01@openssh.com AAAA')).toThrow(/does not parse/);
  });
});

describe('certificateProblem', () => {
  const c = parseCertificate(certified('window', 'ed25519', ['-n', 'alice', '-V', '20300101000000Z:20300102000000Z']).cert);
  test.each([
    ['2029-12-31T23:59:59Z', 'alice', /is not valid yet: valid from 2030-01-01T00:00:00Z to 2030-01-02T00:00:00Z \(now 2029-12-31T23:59:59Z\)/],
    ['2030-01-02T00:00:00Z', 'alice', /has expired: valid from 2030-01-01T00:00:00Z to 2030-01-02T00:00:00Z/],
    ['2030-01-01T12:00:00Z', 'bob', /is for alice, not for username 'bob'/],
  ])('at %s for %s', (now, user, problem) => {
    expect(certificateProblem(c, user, at(now))).toMatch(problem);
  });

  test('inside its window, for its principal, there is none', () => {
    expect(certificateProblem(c, 'alice', at('2030-01-01T00:00:00Z'))).toBeNull();
  });
});

describe('parseIdentity', () => {
  const expectInputError = (fn: () => unknown, input: string, message: RegExp) => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      expect((e as InputError).input).toBe(input);
      expect((e as InputError).message).toMatch(message);
      return;
    }
    throw new Error('no error');
  };

  test('an expired certificate is refused before connecting, with its validity', () => {
    const { key, cert } = certified('old', 'ed25519', ['-n', 'alice', '-V', '20200101000000Z:20200102000000Z']);
    expectInputError(
      () => parseIdentity({ privateKey: key, passphrase: '', certificate: cert, username: 'alice' }),
      'certificate',
      /"old-id" has expired: valid from 2020-01-01T00:00:00Z to 2020-01-02T00:00:00Z/,
    );
  });

  test('a certificate for another key is refused', () => {
    const { cert } = certified('other', 'ed25519', []);
    keygen('-t', 'ed25519', '-N', '', '-f', join(dir, 'mine'));
    expectInputError(
      () => parseIdentity({ privateKey: read('mine'), passphrase: '', certificate: cert, username: 'alice' }),
      'certificate',
      /certifies another key/,
    );
  });

  test('a valid certificate for the key and user passes, kept as text', () => {
    const { key, cert } = certified('good', 'ed25519', ['-n', 'alice']);
    expect(parseIdentity({ privateKey: key, passphrase: '', certificate: cert, username: 'alice' })).toEqual({
      privateKey: key.trim() + '\n',
      passphrase: null,
      certificate: cert.trim() + '\n',
    });
  });

  test('an encrypted key needs its passphrase, and the right one', () => {
    keygen('-t', 'ed25519', '-N', 'open sesame', '-f', join(dir, 'locked'));
    const key = read('locked');
    expect(keyIsEncrypted(key)).toBe(true);
    expect(keyIsEncrypted(read('mine'))).toBe(false);
    expectInputError(() => parseIdentity({ privateKey: key, passphrase: '', certificate: '', username: 'alice' }), 'private-key-passphrase', /is required/);
    expectInputError(
      () => parseIdentity({ privateKey: key, passphrase: 'wrong', certificate: '', username: 'alice' }),
      'private-key-passphrase',
      /does not decrypt/,
    );
    expect(parseIdentity({ privateKey: key, passphrase: 'open sesame', certificate: '', username: 'alice' }).passphrase).toBe('open sesame');
  });

  test('a key that is no key names private-key', () => {
    expectInputError(
      () => parseIdentity({ privateKey: 'garbage', passphrase: '', certificate: '', username: 'alice' }),
      'private-key',
      /does not parse as an SSH private key/,
    );
  });
});

// The login identity: the private key (decrypted with its passphrase to check it), and the user
// certificate for it, if any, checked here against the key, the username and the clock.
import ssh2 from 'ssh2';
import { type UserCertificate, certificateProblem, parseCertificate } from './certificate.js';
import { InputError } from './errors.js';

export interface Identity {
  /** Key text; empty when the agent's keys are used (CLI). */
  privateKey: string;
  passphrase: string | null;
  certificate: string | null;
}

export interface IdentityInputs {
  privateKey: string;
  passphrase: string;
  certificate: string;
  username: string;
}

/** Validate the key, passphrase and certificate together; throws an InputError naming the input at fault. */
export function parseIdentity(i: IdentityInputs, nowSeconds = Date.now() / 1000): Identity {
  const keyText = i.privateKey.trim() ? i.privateKey.trim() + '\n' : '';
  const passphrase = i.passphrase === '' ? null : i.passphrase;
  let publicKey: Buffer | null = null;
  if (keyText) {
    const parsed = ssh2.utils.parseKey(keyText, passphrase ?? undefined);
    if (parsed instanceof Error) {
      const encrypted = keyIsEncrypted(keyText);
      if (encrypted && !passphrase) throw new InputError('private-key-passphrase', 'is required: the private key is encrypted');
      if (encrypted) throw new InputError('private-key-passphrase', 'does not decrypt the private key');
      throw new InputError(
        'private-key',
        `does not parse as an SSH private key (${parsed.message}); pass the whole key file, e.g. \${{ secrets.CLUSTER_KEY }}`,
      );
    }
    publicKey = parsed.getPublicSSH();
  }
  let certificate: UserCertificate | null = null;
  if (i.certificate.trim()) {
    try {
      certificate = parseCertificate(i.certificate);
    } catch (e) {
      throw new InputError('certificate', (e as Error).message);
    }
    if (publicKey && !certificate.publicKey.equals(publicKey)) {
      throw new InputError(
        'certificate',
        `certifies another key than private-key (key ID "${certificate.keyId}")`,
        'Pass the certificate issued for this private key (its -cert.pub file).',
      );
    }
    const problem = certificateProblem(certificate, i.username, nowSeconds);
    if (problem) throw new InputError('certificate', `"${certificate.keyId}" ${problem}`);
  }
  return { privateKey: keyText, passphrase, certificate: certificate ? i.certificate.trim() + '\n' : null };
}

/** Whether the key text is a key that needs a passphrase. */
export function keyIsEncrypted(text: string): boolean {
  const parsed = ssh2.utils.parseKey(text.trim() + '\n');
  return parsed instanceof Error && /encrypted|passphrase/i.test(parsed.message);
}

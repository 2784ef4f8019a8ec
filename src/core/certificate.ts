// OpenSSH user certificates (`id_ed25519-cert.pub`), read locally: the server never says why it
// refused one, so an expired certificate, one for other principals, or one for another key is told
// here, with what the certificate says. Format: openssh-portable PROTOCOL.certkeys.

export interface UserCertificate {
  /** e.g. ssh-ed25519-cert-v01@openssh.com */
  type: string;
  keyId: string;
  /** Empty: valid for any principal. */
  principals: string[];
  /** Seconds since the epoch; validBefore is null for "forever". */
  validAfter: number;
  validBefore: number | null;
  /** The certified public key, in SSH wire format (what the private key's public half must equal). */
  publicKey: Buffer;
}

/** Public-key fields after the nonce, per base key type (they are encoded as in the plain key). */
const KEY_FIELDS: Record<string, number> = {
  'ssh-rsa': 2,
  'ssh-dss': 4,
  'ecdsa-sha2-nistp256': 2,
  'ecdsa-sha2-nistp384': 2,
  'ecdsa-sha2-nistp521': 2,
  'ssh-ed25519': 1,
  'sk-ecdsa-sha2-nistp256@openssh.com': 3,
  'sk-ssh-ed25519@openssh.com': 2,
};

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  get offset(): number {
    return this.at;
  }
  get done(): boolean {
    return this.at >= this.buf.length;
  }
  bytes(): Buffer {
    const n = this.uint32();
    if (this.at + n > this.buf.length) throw new Error('truncated');
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  string(): string {
    return this.bytes().toString('utf8');
  }
  uint32(): number {
    if (this.at + 4 > this.buf.length) throw new Error('truncated');
    const n = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return n;
  }
  uint64(): bigint {
    if (this.at + 8 > this.buf.length) throw new Error('truncated');
    const n = this.buf.readBigUInt64BE(this.at);
    this.at += 8;
    return n;
  }
}

function wireString(s: string | Buffer): Buffer {
  const b = Buffer.from(s);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/** Parse the text of a `-cert.pub` file. Throws an Error saying what it is not. */
export function parseCertificate(text: string): UserCertificate {
  const [type, b64] = text.trim().split(/\s+/);
  const base = type?.replace(/-cert-v01@openssh\.com$/, '');
  if (!type || !b64 || base === type || !(base in KEY_FIELDS)) {
    throw new Error(
      `is not an OpenSSH certificate (the text of a file such as id_ed25519-cert.pub, starting with a type such as ssh-ed25519-cert-v01@openssh.com)`,
    );
  }
  const blob = Buffer.from(b64, 'base64');
  try {
    const r = new Reader(blob);
    if (r.string() !== type) throw new Error('its type field does not match');
    r.bytes(); // nonce
    const start = r.offset;
    for (let i = 0; i < KEY_FIELDS[base]; i++) r.bytes();
    const publicKey = Buffer.concat([wireString(base), blob.subarray(start, r.offset)]);
    r.uint64(); // serial
    const kind = r.uint32();
    if (kind !== 1) throw new Error('it is a host certificate, not a user certificate');
    const keyId = r.string();
    const packed = new Reader(r.bytes());
    const principals: string[] = [];
    while (!packed.done) principals.push(packed.string());
    const after = r.uint64();
    const before = r.uint64();
    return {
      type,
      keyId,
      principals,
      validAfter: Number(after),
      validBefore: before === 0xffffffffffffffffn ? null : Number(before),
      publicKey,
    };
  } catch (e) {
    throw new Error(`does not parse as an OpenSSH certificate: ${(e as Error).message}`, { cause: e });
  }
}

function when(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

/** The validity as `ssh-keygen -L` says it, in UTC. */
export function validity(cert: UserCertificate): string {
  return `valid from ${when(cert.validAfter)} to ${cert.validBefore === null ? 'forever' : when(cert.validBefore)}`;
}

/**
 * Why the certificate cannot log `username` in now (null: it can, as far as we can tell here): not
 * yet valid, expired, or not for that principal.
 */
export function certificateProblem(cert: UserCertificate, username: string, nowSeconds = Date.now() / 1000): string | null {
  if (nowSeconds < cert.validAfter)
    return `is not valid yet: ${validity(cert)} (now ${when(Math.floor(nowSeconds))}); check this machine's clock or ask for a new certificate`;
  if (cert.validBefore !== null && nowSeconds >= cert.validBefore)
    return `has expired: ${validity(cert)} (now ${when(Math.floor(nowSeconds))}); ask the cluster's CA for a new one`;
  if (cert.principals.length > 0 && !cert.principals.includes(username)) {
    return `is for ${cert.principals.join(', ')}, not for username '${username}'`;
  }
  return null;
}

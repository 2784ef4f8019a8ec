// known_hosts parsing and host-key checking, following sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT" and
// openssh hostfile.c, so the action pins the cluster's host key instead of trusting on first use.
import { createHash, createHmac } from 'node:crypto';
import ssh2 from 'ssh2';
import { InputError } from './errors.js';

const { utils } = ssh2;

export interface KnownHostEntry {
  line: number;
  marker: 'cert-authority' | 'revoked' | null;
  hosts: string;
  keyType: string;
  key: Buffer;
}

export type HostKeyVerdict = { ok: true } | { ok: false; reason: 'unknown-host' | 'changed' | 'revoked'; keyType: string; fingerprint: string };

const LINE_HINT =
  'Each line must read `[@cert-authority|@revoked] hostpatterns keytype base64-key [comment]`, ' + 'e.g. a line printed by `ssh-keyscan -p PORT HOST`.';
const MARKERS: Partial<Record<string, 'cert-authority' | 'revoked'>> = { '@cert-authority': 'cert-authority', '@revoked': 'revoked' };
// ssh2 negotiates RSA host keys under these three signature algorithm names, strongest first.
const RSA_ALGOS = ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
const HASH_SIZE = 20; // HMAC-SHA1 salt and digest length, as hostfile.c's extract_salt requires

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const trimmed = raw.trim(); // also drops the '\r' of CRLF text pasted into a secret
    if (trimmed === '' || trimmed.startsWith('#')) return;
    entries.push(parseLine(trimmed.split(/[ \t]+/), i + 1));
  });
  if (entries.length === 0) {
    throw new InputError('known-hosts', 'is empty (no host key lines)', "Add the cluster's host key, e.g. the output of `ssh-keyscan -p PORT HOST`.");
  }
  return entries;
}

function parseLine(fields: string[], line: number): KnownHostEntry {
  const fail = (problem: string): never => {
    throw new InputError('known-hosts', `line ${line}: ${problem}`, LINE_HINT);
  };
  let marker: KnownHostEntry['marker'] = null;
  if (fields[0]!.startsWith('@')) {
    const word = fields.shift()!;
    marker = MARKERS[word] ?? fail(`unknown marker '${word}' (only @cert-authority and @revoked exist)`);
  }
  const [hosts, keyType, b64] = fields;
  if (!hosts) return fail('missing host patterns, key type and key');
  if (!keyType) return fail('missing key type and key');
  if (!b64) return fail(`missing the base64 ${keyType} key`);
  if (hosts.startsWith('|') && !parseHashed(hosts)) fail(`malformed hashed host name '${hosts}' (expected |1|salt|hash)`);
  // Buffer.from ignores junk characters, so require that the text round-trips.
  const key = Buffer.from(b64, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || key.toString('base64').replace(/=+$/, '') !== b64.replace(/=+$/, '')) {
    fail('the key is not valid base64');
  }
  // ssh2 must be able to use the key anyway, and its parsed type is the one embedded in the blob.
  const parsed = utils.parseKey(key);
  if (parsed instanceof Error) return fail(`the ${keyType} key does not parse (${parsed.message})`);
  if (parsed.type !== keyType) fail(`the key type field says ${keyType} but the key itself is ${parsed.type}`);
  return { line, marker, hosts, keyType, key };
}

/** '|1|salt|hmac' → decoded salt and digest, or undefined when it is not that shape. */
function parseHashed(hosts: string): { salt: Buffer; hash: Buffer } | undefined {
  const parts = hosts.split('|');
  if (parts.length !== 4 || parts[0] !== '' || parts[1] !== '1') return undefined;
  const [salt, hash] = [Buffer.from(parts[2]!, 'base64'), Buffer.from(parts[3]!, 'base64')];
  return salt.length === HASH_SIZE && hash.length === HASH_SIZE ? { salt, hash } : undefined;
}

export function hostKeyName(host: string, port: number): string {
  return (port === 22 ? host : `[${host}]:${port}`).toLowerCase();
}

export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

export function checkHostKey(entries: KnownHostEntry[], host: string, port: number, key: Buffer): HostKeyVerdict {
  const forHost = linesFor(entries, host, port);
  const plain = forHost.filter((e) => e.marker === null);
  // A revoked key stays refused even when a plain line also lists it.
  const reason = forHost.some((e) => e.marker === 'revoked' && e.key.equals(key))
    ? 'revoked'
    : plain.some((e) => e.key.equals(key))
      ? undefined
      : plain.length > 0
        ? 'changed'
        : 'unknown-host';
  if (!reason) return { ok: true };
  const parsed = utils.parseKey(key);
  return { ok: false, reason, keyType: parsed instanceof Error ? 'unknown' : parsed.type, fingerprint: fingerprint(key) };
}

export function recordedKeyTypes(entries: KnownHostEntry[], host: string, port: number): string[] {
  const types = linesFor(entries, host, port)
    .filter((e) => e.marker === null)
    .flatMap((e) => (e.keyType === 'ssh-rsa' ? RSA_ALGOS : [e.keyType]));
  return [...new Set(types)];
}

/** Lines whose host patterns match. Callers skip @cert-authority lines: ssh2 has no host certificates. */
function linesFor(entries: KnownHostEntry[], host: string, port: number): KnownHostEntry[] {
  const name = hostKeyName(host, port);
  const names = port === 22 ? [name, `[${name}]:22`] : [name];
  return entries.filter((e) => hostsMatch(e.hosts, names));
}

function hostsMatch(hosts: string, names: string[]): boolean {
  // A hashed field is one whole name, never a pattern list (hostfile.c match_maybe_hashed).
  if (hosts.startsWith('|')) {
    const hashed = parseHashed(hosts)!;
    return names.some((n) => createHmac('sha1', hashed.salt).update(n).digest().equals(hashed.hash));
  }
  let positive = false;
  for (const pattern of hosts.toLowerCase().split(',')) {
    const negated = pattern.startsWith('!');
    if (!names.some((n) => glob(negated ? pattern.slice(1) : pattern, n))) continue;
    if (negated) return false; // a negated match rejects the whole line (match_pattern_list)
    positive = true;
  }
  return positive;
}

function glob(pattern: string, name: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(name);
}

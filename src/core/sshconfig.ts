// The OpenSSH client's side of the system-ssh transport, as text: the config file the action writes
// for it (everything it needs, nothing from ~/.ssh), the known_hosts file made from the known-hosts
// input, and reading `ssh -G ALIAS` (a laptop's ~/.ssh/config, as ssh itself resolves it).
import { type JumpHop, formatHop } from './jumphosts.js';
import type { KnownHostEntry } from './knownhosts.js';

/** The Host name the config file gives the cluster (never a real host, so hops cannot match it). */
export const CLUSTER_ALIAS = 'riviera-singularity-cluster';

export interface SshConfigParams {
  host: string;
  port: number;
  username: string;
  jumpHosts: JumpHop[];
  knownHostsFile: string;
  /** The key file, or null to use the agent's keys. */
  identityFile: string | null;
  certificateFile: string | null;
  /** Agent socket: a private agent holding a decrypted key, or the user's (CLI). */
  identityAgent: string | null;
  controlPath: string;
}

/** A value as ssh_config reads it: double-quoted when it holds a space; a quote itself cannot be written. */
function value(v: string): string {
  if (/["\r\n]/.test(v)) throw new Error(`cannot write ${JSON.stringify(v)} into an ssh config file`);
  return /[\s#]/.test(v) ? `"${v}"` : v;
}

/**
 * The config file given with -F. Jump hops read it too (ssh hands -F on to them), so everything that
 * checks host keys and picks the key is under `Host *`; only the cluster's own block holds the
 * control socket, so that a hop's ssh never tries to multiplex over the cluster's connection.
 */
export function renderSshConfig(p: SshConfigParams): string {
  const lines = [
    '# Written by riviera-singularity for one delivery, and removed after it.',
    `Host ${CLUSTER_ALIAS}`,
    `  HostName ${value(p.host)}`,
    `  Port ${p.port}`,
    `  User ${value(p.username)}`,
    ...(p.jumpHosts.length > 0 ? [`  ProxyJump ${p.jumpHosts.map(formatHop).join(',')}`] : []),
    `  ControlPath ${value(p.controlPath)}`,
    'Host *',
    `  UserKnownHostsFile ${value(p.knownHostsFile)}`,
    '  GlobalKnownHostsFile none',
    '  StrictHostKeyChecking yes',
    '  CheckHostIP no',
    '  UpdateHostKeys no',
    '  BatchMode yes',
    '  PreferredAuthentications publickey',
    // Only the key given (and its certificate): never whatever else an agent or ~/.ssh holds.
    `  IdentitiesOnly ${p.identityFile ? 'yes' : 'no'}`,
    ...(p.identityFile ? [`  IdentityFile ${value(p.identityFile)}`] : []),
    ...(p.certificateFile ? [`  CertificateFile ${value(p.certificateFile)}`] : []),
    `  IdentityAgent ${p.identityAgent ? value(p.identityAgent) : 'none'}`,
    '  ForwardAgent no',
    '  ForwardX11 no',
    '  RequestTTY no',
    '  ServerAliveInterval 15',
    '  ServerAliveCountMax 4',
    '  ConnectTimeout 20',
    '  LogLevel ERROR',
  ];
  return lines.join('\n') + '\n';
}

/** The known-hosts input as a known_hosts file, line for line (hashed names and markers kept). */
export function renderKnownHosts(entries: KnownHostEntry[]): string {
  return entries.map((e) => `${e.marker ? `@${e.marker} ` : ''}${e.hosts} ${e.keyType} ${e.key.toString('base64')}\n`).join('');
}

/** What a delivery takes from `ssh -G ALIAS`. */
export interface ResolvedHost {
  hostname: string;
  user: string;
  port: number;
  /** Every IdentityFile, in order, `~` expanded. */
  identityFiles: string[];
  certificateFiles: string[];
  /** The ProxyJump spec, or '' for none. */
  proxyJump: string;
  /** The ControlPath (tokens expanded by ssh), or '' for none. */
  controlPath: string;
  userKnownHostsFiles: string[];
}

/** Parse `ssh -G` output (`keyword value` lines, keywords lower-case). */
export function parseSshG(text: string, home: string): ResolvedHost {
  const all = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(.*?)\s*$/.exec(line);
    if (!m) continue;
    const key = m[1].toLowerCase();
    all.set(key, [...(all.get(key) ?? []), m[2]]);
  }
  const one = (k: string) => all.get(k)?.[0] ?? '';
  const path = (p: string) => p.replace(/^~(?=\/|$)/, home);
  const none = (v: string) => (v === 'none' ? '' : v);
  return {
    hostname: one('hostname'),
    user: one('user'),
    port: Number(one('port') || '22'),
    identityFiles: (all.get('identityfile') ?? []).map(path),
    certificateFiles: (all.get('certificatefile') ?? []).map(path),
    proxyJump: none(one('proxyjump')),
    controlPath: path(none(one('controlpath'))),
    userKnownHostsFiles: one('userknownhostsfile').split(/\s+/).filter(Boolean).map(path),
  };
}

/** Why the OpenSSH client could not connect, read from its -v output; `hop` indexes the chain (the cluster last). */
export type SshFailure =
  | { kind: 'host-key'; hop: number; reason: 'unknown-host' | 'changed' | 'revoked'; offered: string }
  | { kind: 'auth'; hop: number }
  | { kind: 'other'; message: string };

/**
 * Each connection of the chain prints its own "Server host key" line, hop after hop, and
 * "Authenticated to" once in: their counts tell which hop failed.
 */
export function explainSshFailure(stderr: string): SshFailure {
  const lines = stderr.split(/\r?\n/);
  const offered = lines.map((l) => /^debug1: Server host key: (\S+ \S+)/.exec(l)?.[1]).filter((k): k is string => !!k);
  const authenticated = lines.filter((l) => l.startsWith('debug1: Authenticated to ')).length;
  const text = lines.filter((l) => l && !l.startsWith('debug')).join('\n');
  if (/Host key verification failed/.test(stderr) && offered.length > 0) {
    const reason = /revoked/i.test(text) ? 'revoked' : /has changed|HOST IDENTIFICATION HAS CHANGED/.test(text) ? 'changed' : 'unknown-host';
    return { kind: 'host-key', hop: offered.length - 1, reason, offered: offered[offered.length - 1] };
  }
  if (/Permission denied/.test(text)) return { kind: 'auth', hop: authenticated };
  // The last words that say why, not the closing notices that follow them.
  const said = text.split('\n').filter((l) => !/^(Connection closed by|kex_exchange_identification)/.test(l));
  return { kind: 'other', message: said.pop() ?? (text.split('\n').pop() || 'ssh exited without saying why') };
}

// Connecting to the cluster with the transport the settings ask for.
import { formatHop } from './jumphosts.js';
import { OpenSshRemote } from './opensshremote.js';
import type { Remote, SshTarget } from './remote.js';
import { Ssh2Remote } from './ssh2remote.js';

export type Connector = (target: SshTarget) => Promise<Remote>;

/**
 * The transport for a target: auto takes the system's OpenSSH client only where the built-in one
 * cannot log in (a certificate, an open ControlMaster session to reuse), and ssh2 otherwise: a
 * delivery takes about as long with either (npm run bench -- --transports), and ssh2 needs no ssh
 * binary on the runner, keeps the key in memory rather than in a file, and starts no process per
 * command.
 */
export function transportOf(target: SshTarget): 'builtin' | 'openssh' {
  if (target.sshClient !== 'auto') return target.sshClient;
  return target.certificate || target.controlPath ? 'openssh' : 'builtin';
}

export const connectRemote: Connector = (target) => (transportOf(target) === 'openssh' ? OpenSshRemote.connect(target) : Ssh2Remote.connect(target));

/** For the log: where a target connects, through which hops, with which client. */
export function describeConnection(target: SshTarget): string {
  const via = target.jumpHosts.length > 0 ? ` via ${target.jumpHosts.map(formatHop).join(', ')}` : '';
  const client = transportOf(target) === 'openssh' ? `the OpenSSH client${target.controlPath ? ', reusing the open session' : ''}` : 'the built-in SSH client';
  return `${formatHop({ user: target.username, host: target.host, port: target.port })}${via} with ${client}`;
}

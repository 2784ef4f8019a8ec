// A host as the user's own OpenSSH setup knows it (a terminal, not CI): `--host` may be a Host alias
// of ~/.ssh/config, resolved by `ssh -G` exactly as ssh would, and an open ControlMaster session
// for it (the user logged in once, with MFA) is reused rather than logging in again.
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { runProcess } from './process.js';
import { type ResolvedHost, parseSshG } from './sshconfig.js';

export interface SshAlias extends ResolvedHost {
  /** The ControlPath of a master that `ssh -O check` says is running; null for none. */
  openSession: string | null;
}

/**
 * `ssh -G host` and `ssh -O check host`; null where there is no OpenSSH client. ssh reads the config
 * of the home in the password database; when $HOME says otherwise, $HOME's is the one meant.
 */
export async function resolveSshAlias(host: string, home: string): Promise<SshAlias | null> {
  const own = join(home, '.ssh', 'config');
  const config = home !== userInfo().homedir && existsSync(own) ? ['-F', own] : [];
  const g = await runProcess('ssh', [...config, '-G', host]).catch(() => null);
  if (!g || g.code !== 0) return null;
  const resolved = parseSshG(g.stdout, home);
  const open = resolved.controlPath && existsSync(resolved.controlPath) && (await runProcess('ssh', [...config, '-O', 'check', host])).code === 0;
  return { ...resolved, openSession: open ? resolved.controlPath : null };
}

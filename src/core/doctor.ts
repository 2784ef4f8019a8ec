// `doctor` (and the action's preflight-only): the preflight checks on their own, one round trip,
// with what connecting itself found first. Nothing is created, built, sent or submitted.
import { ConnectionError, HostKeyError, RemoteCommandError } from './errors.js';
import { type Check, evaluatePreflight, parsePreflight, preflightScript, wantsOf } from './preflight.js';
import type { Reporter } from './reporter.js';
import { Session } from './session.js';
import { type RawInputs, type Settings, parseSettings } from './settings.js';

/** Settings for checking a setup: as the action's, with preflight-only set (no image needed yet). */
export function doctorSettings(raw: RawInputs, options: { keyOptional?: boolean } = {}): Settings {
  return parseSettings({ ...raw, 'preflight-only': 'true' }, null, options);
}

const MARK = { pass: 'pass', warn: 'WARN', fail: 'FAIL' } as const;

/** The checks as a plain-text table: status, check, input, what was found, and the fix. */
export function checksTable(checks: Check[]): string {
  const w = Math.max(...checks.map((c) => c.id.length), 5);
  return checks.map((c) => `${MARK[c.status]}  ${c.id.padEnd(w)}  ${c.detail}${c.fix ? `\n${' '.repeat(w + 8)}fix: ${c.fix}` : ''}`).join('\n');
}

export async function doctor(s: Settings, reporter: Reporter): Promise<Check[]> {
  const session = new Session(s, reporter);
  try {
    const where = `${s.username}@${s.host}:${s.port}`;
    try {
      await session.remote();
    } catch (e) {
      if (!(e instanceof ConnectionError || e instanceof HostKeyError)) throw e;
      const hostKey = e instanceof HostKeyError;
      return [
        {
          id: 'connection',
          input: hostKey ? 'known-hosts' : 'host',
          status: 'fail',
          detail: e.message,
          fix: hostKey
            ? "Put the cluster's host key line in 'known-hosts' (`ssh-keyscan -p PORT HOST` from a trusted machine)."
            : "Check 'host', 'port', 'username' and that the key is authorised on the cluster.",
        },
      ];
    }
    const r = await session.retry('Preflight', (remote) => remote.exec(preflightScript(s)));
    const facts = parsePreflight(r.stdout.toString());
    if (!facts) throw new RemoteCommandError('Preflight', r.code, r.stderr.toString());
    const connected: Check = { id: 'connection', input: 'host', status: 'pass', detail: `${where}: host key matches known-hosts, key accepted.`, fix: '' };
    return [connected, ...evaluatePreflight(facts, wantsOf(s, null))];
  } finally {
    session.close();
  }
}

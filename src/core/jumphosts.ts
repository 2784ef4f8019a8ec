// A ProxyJump chain in `ssh -J` syntax: `[user@]host[:port]`, comma-separated, in the order the
// connection goes through them. `ssh -G` prints IPv6 and other hosts as `[host]:port`.

export interface JumpHop {
  user: string;
  host: string;
  port: number;
}

const HOST = /^[A-Za-z0-9._-]+$/;
const USER = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** Parse one hop; `defaultUser` when it names none. Throws an Error saying what is wrong with it. */
function parseHop(spec: string, defaultUser: string): JumpHop {
  const at = spec.lastIndexOf('@');
  const user = at >= 0 ? spec.slice(0, at) : defaultUser;
  const rest = at >= 0 ? spec.slice(at + 1) : spec;
  // [host]:port, [v6addr], host:port or host.
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(rest);
  const port = m?.[2] === undefined ? 22 : Number(m[2]);
  const host = m?.[1] ?? '';
  if (!m || !(HOST.test(host) || /^[0-9A-Fa-f:.]+$/.test(host)) || !(port >= 1 && port <= 65535)) {
    throw new Error(`'${spec}' is not a jump host ([user@]host[:port])`);
  }
  if (!USER.test(user)) throw new Error(`'${spec}' names no valid user`);
  return { user, host, port };
}

/** The hops of a chain; empty for none (`none` is what `ssh -G` prints then). */
export function parseJumpHosts(spec: string, defaultUser: string): JumpHop[] {
  const t = spec.trim();
  if (t === '' || t === 'none') return [];
  return t.split(',').map((s) => parseHop(s.trim(), defaultUser));
}

/** A hop as `ssh -J` and ProxyJump take it (IPv6 addresses in brackets). */
export function formatHop(hop: JumpHop): string {
  const host = hop.host.includes(':') ? `[${hop.host}]` : hop.host;
  return `${hop.user}@${host}:${hop.port}`;
}

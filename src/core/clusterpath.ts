// Path inputs on the cluster (remote-dir, tmpdir, publish-dir, sif, bind sources) mean one thing
// everywhere: a relative path is under the home directory; `~`, `~/x`, `$HOME` and `$USER` are
// expanded as a shell would, and nothing else is. Pure: the home directory itself is only known on
// the cluster, so a path under it stays relative here (the cluster side starts from the home).

/** A path as the cluster side takes it: absolute (`/...`), or relative to the home (`.` is the home itself). */
export type ClusterPath = string;

/**
 * The canonical form of a path input: `~`, `~/`, `$HOME`/`${HOME}` at the start mean the home;
 * `$USER`/`${USER}` anywhere is the user name; `.` and `..` are resolved (so checks see through
 * them); repeated and trailing slashes are dropped. Throws on what a user could expect to be
 * expanded but is not (`~other`, any other `$VAR`).
 */
export function clusterPath(input: string, username: string): ClusterPath {
  let p = input.trim().replace(/\$\{USER\}|\$USER(?![A-Za-z0-9_])/g, username);
  p = p.replace(/^(~|\$\{HOME\}|\$HOME(?![A-Za-z0-9_]))(?=\/|$)/, '.');
  if (p.startsWith('~')) throw new Error(`'${input}': only ~ (your home) is expanded, not ~user: write the path out`);
  const v = /\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/.exec(p);
  if (v || p.includes('$')) {
    throw new Error(`'${input}': only $HOME and $USER (at the start, or ~) are expanded${v ? `, not ${v[0]}` : ''}: write the path out`);
  }
  return normalise(p);
}

/** Resolve `.`, `..` and repeated slashes lexically; `..` above `/` stays at `/`, above the home is kept. */
function normalise(p: string): ClusterPath {
  const absolute = p.startsWith('/');
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..' && out.length > 0 && out[out.length - 1] !== '..') out.pop();
    else if (seg === '..' && absolute) continue;
    else out.push(seg);
  }
  return absolute ? `/${out.join('/')}` : out.join('/') || '.';
}

/** Whether a canonical path is the home directory itself (as far as can be told here). */
export function isHome(p: ClusterPath): boolean {
  return p === '.';
}

/** Whether an absolute path is in /tmp or /var/tmp (small, node-local on the compute nodes). */
export function isUnderTmp(p: ClusterPath): boolean {
  return /^\/(var\/)?tmp(\/|$)/.test(p);
}

/** A cluster path joined with a relative part. */
export function joinPath(base: ClusterPath, rel: string): ClusterPath {
  return base === '.' ? rel : `${base}/${rel}`;
}

/** How a path reads to the user: `~/x` for a path under the home. */
export function displayPath(p: ClusterPath): string {
  return p.startsWith('/') ? p : p === '.' ? '~' : `~/${p}`;
}

/** The absolute path on the cluster, given its home directory. */
export function absolutePath(p: ClusterPath, home: string): string {
  return p.startsWith('/') ? p : p === '.' ? home : `${home}/${p}`;
}

/** A bind spec (`src[:dest[:mode]]`, src a ClusterPath) with its source made absolute. */
export function absoluteBind(bind: string, home: string): string {
  const [src, ...rest] = bind.split(':');
  return [absolutePath(src, home), ...rest].join(':');
}

// Files the delivery reads from the runner (smoke-test, archive) must lie in the workspace, after
// resolving symlinks: `smoke-test: /proc/self/environ` would otherwise upload the runner's
// environment, private key included.
import { realpath, stat } from 'node:fs/promises';
import { relative, resolve, sep } from 'node:path';
import { InputError } from './errors.js';

/** The real path of a regular file inside `workspace` (default: the working directory), or an InputError naming `input`. */
export async function workspaceFile(input: string, path: string, workspace = process.cwd()): Promise<{ path: string; size: number }> {
  const root = await realpath(workspace);
  const real = await realpath(resolve(root, path)).catch(() => null);
  const st = real ? await stat(real).catch(() => null) : null;
  if (!real || !st?.isFile()) throw new InputError(input, `file '${path}' not found (paths are relative to the workspace; for the CLI, the current directory)`);
  const rel = relative(root, real);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || resolve(root, rel) !== real) {
    throw new InputError(
      input,
      `'${path}' is outside the workspace (${root}${real !== resolve(root, path) ? `; it resolves to ${real}` : ''}): only files of the workspace are sent`,
    );
  }
  return { path: real, size: st.size };
}

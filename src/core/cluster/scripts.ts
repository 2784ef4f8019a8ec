// The scripts that run on the cluster are the .sh files beside this module. Each gets its
// parameters as a generated header of assignments quoted by shq (the one escaping layer), then
// the libraries (lib-*.sh) it uses, then its own body; nothing else is spliced into them.
import { readFileSync } from 'node:fs';
import { shq } from '../quote.js';

// One readFileSync of a literal URL per file: ncc (scripts/package.mjs) finds these and copies the
// files into dist/ beside the bundle; a computed file name would not be found there.
const SHA256 = readFileSync(new URL('./lib-sha256.sh', import.meta.url), 'utf8');
const LOGIN_MODULES = readFileSync(new URL('./lib-login-modules.sh', import.meta.url), 'utf8');
const FIND_JOB = readFileSync(new URL('./lib-find-job.sh', import.meta.url), 'utf8');
const SCRIPTS = {
  job: { text: readFileSync(new URL('./job.sh', import.meta.url), 'utf8'), libs: [SHA256, LOGIN_MODULES] },
  'store-prepare': { text: readFileSync(new URL('./store-prepare.sh', import.meta.url), 'utf8'), libs: [SHA256] },
  'store-receive': { text: readFileSync(new URL('./store-receive.sh', import.meta.url), 'utf8'), libs: [SHA256] },
  'store-gc': { text: readFileSync(new URL('./store-gc.sh', import.meta.url), 'utf8'), libs: [LOGIN_MODULES] },
  submit: { text: readFileSync(new URL('./submit.sh', import.meta.url), 'utf8'), libs: [LOGIN_MODULES, FIND_JOB] },
  cancel: { text: readFileSync(new URL('./cancel.sh', import.meta.url), 'utf8'), libs: [LOGIN_MODULES, FIND_JOB] },
  poll: { text: readFileSync(new URL('./poll.sh', import.meta.url), 'utf8'), libs: [LOGIN_MODULES] },
  preflight: { text: readFileSync(new URL('./preflight.sh', import.meta.url), 'utf8'), libs: [] },
  accounting: { text: readFileSync(new URL('./accounting.sh', import.meta.url), 'utf8'), libs: [LOGIN_MODULES] },
};

export type ScriptName = keyof typeof SCRIPTS;

/** A parameter: a string or number, a flag (1 or 0), a list (a bash array); null is ''. */
export type ShellValue = string | number | boolean | null | readonly string[];

/** `name=value` lines, every value quoted by shq; lists become bash arrays. */
export function shellAssignments(params: Record<string, ShellValue>): string {
  return Object.entries(params)
    .map(([name, v]) => {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a shell variable name: ${name}`);
      if (Array.isArray(v)) return `${name}=(${v.map(shq).join(' ')})\n`;
      if (v === null) return `${name}=''\n`;
      if (typeof v === 'boolean') return `${name}=${v ? 1 : 0}\n`;
      return `${name}=${shq(String(v))}\n`;
    })
    .join('');
}

/**
 * The script `name` with its parameters: its opening comment block (the shebang, what it does and
 * which parameters it takes), the generated assignments, its libraries, then the rest of it.
 */
export function renderScript(name: ScriptName, params: Record<string, ShellValue>): string {
  const { text, libs } = SCRIPTS[name];
  const lines = text.split('\n');
  const start = lines.findIndex((l) => !l.startsWith('#'));
  const head = lines.slice(0, start).join('\n');
  const body = lines.slice(start).join('\n');
  const parts = [`${head}\n# --- Parameters (generated)\n${shellAssignments(params)}`, ...libs, body];
  return parts.map((p) => p.trim()).join('\n\n') + '\n';
}

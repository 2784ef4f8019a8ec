// Every input, validated in one place before anything is built, connected or written. The action
// and the CLI both hand in the same raw name → string map (input names as in action.yml).
import { z } from 'zod';
import { type ClusterPath, clusterPath, isHome, isUnderTmp, joinPath } from './clusterpath.js';
import { InputError } from './errors.js';
import { parseIdentity } from './identity.js';
import { type JumpHop, parseJumpHosts } from './jumphosts.js';
import { JOB_FILES, isJobFileName } from './layout.js';
import { type KnownHostEntry, parseKnownHosts } from './knownhosts.js';
import { splitWords } from './quote.js';
import type { SshClientChoice, SshTarget } from './remote.js';

export type RawInputs = Readonly<Record<string, string | undefined>>;

export type SmokeTest =
  | { kind: 'script'; /** local path of the script, passed to the image's entrypoint */ path: string }
  | { kind: 'command'; /** argv run with `singularity exec` */ argv: string[] };

/** How to reach the cluster (host, login, host keys: the one SshTarget) and where the delivery lives there. */
export interface ConnectionSettings extends SshTarget {
  /** Working directory on the cluster, created by the delivery (never the home directory itself). */
  remoteDir: ClusterPath;
  /** Modules loaded on the login node to reach sbatch, squeue and scancel. */
  loginModules: string[];
}

export interface Settings extends ConnectionSettings {
  /** Image reference `name:tag` (tag defaults to latest); empty when testing an existing `sif`. */
  image: string;
  /** Build the image with the local engine (false: it must already be there). */
  build: boolean;
  /** A .sif already on the cluster to smoke-test instead of delivering an image. */
  sif: ClusterPath | null;
  /** An image already saved as a tar (docker save, or an OCI layout) to deliver instead of one in the engine. */
  archive: string | null;
  context: string;
  dockerfile: string | null;
  /** KEY=VALUE pairs for `docker build --build-arg`. */
  buildArgs: string[];
  smoke: SmokeTest;
  partition: string;
  gpus: number;
  /** CPUs the job asks for (--cpus-per-task), for the .sif build; lowered to the partition's largest node. */
  buildCpus: number;
  /** Slurm time limit, in a format sbatch accepts; null: the partition's default. */
  time: string | null;
  /** Modules the job loads, in order. */
  modules: string[];
  /** Build temp dir on the cluster (never under /tmp). */
  tmpdir: ClusterPath;
  jobName: string;
  /** Extra sbatch options as argv. */
  sbatchArgs: string[];
  /** Singularity --bind specs, one per bind; each source a ClusterPath. */
  binds: string[];
  /** Limit on the whole wait for the job, in seconds. */
  timeoutSeconds: number;
  /** Only check the inputs against the cluster (doctor); deliver nothing. */
  preflightOnly: boolean;
  /** The job cancels itself when no delivery has followed it for this many seconds; null: never. */
  watchdogSeconds: number | null;
  /** Build the .sif even if an intact one of the same image exists. */
  forceRebuild: boolean;
  /** Garbage collection keeps the blobs and .sif files of this many most recent images. */
  keepImages: number;
  /** ...and drops image records, partial uploads and job directories older than this many days. */
  maxAgeDays: number;
  /** Unix group to share remote-dir with; null keeps it private (0700). */
  group: string | null;
  /** Container runtime the job uses; auto: whichever the loaded modules provide (apptainer first). */
  runtime: 'auto' | 'singularity' | 'apptainer';
  /** Where and how to publish the tested .sif; null: not published in this run. */
  publish: PublishSettings | null;
}

export interface PublishSettings {
  /** Directory on the cluster. */
  dir: ClusterPath;
  name: string;
  version: string;
  /** Versions of this name kept; older ones are removed. */
  keep: number;
  group: string | null;
  /** File mode of published files (directories get the matching x bits). */
  mode: string;
  provenance: RunContext;
}

/** Where the run comes from, for publication: the action reads it from GitHub, the CLI from git. */
export interface RunContext {
  repository: string;
  commit: string;
  /** The git tag the run is for, if any. */
  tag: string | null;
}

export const DEFAULT_MODULES = ['slurm', 'singularity', 'cuda12.2/blas', 'cuda12.2/fft', 'cuda12.2/toolkit'];

// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL = /[\u0000-\u001f\u007f]/;
const noControl = (what: string) => [(s: string) => !CONTROL.test(s), { message: `${what} must not contain control characters or newlines` }] as const;

/** Split a list input: one item per line or separated by commas (or spaces, if `spaces`). */
export function listInput(value: string, spaces = false): string[] {
  return value
    .split(spaces ? /[\n,\s]+/ : /[\n,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Slurm's --time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]]. */
const SLURM_TIME = /^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}|\d+-\d{1,2}:\d{1,2}|\d+-\d{1,2}:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE)$/i;
const IMAGE_REF =
  /^(?:[a-zA-Z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;
/** Not starting with '-', which `module load` would take as an option. */
const MODULE_NAME = /^[A-Za-z0-9_.+][A-Za-z0-9_.+/-]*$/;
/** sbatch options the delivery sets itself and relies on. */
const RESERVED_LONG = ['--wrap', '--chdir', '--output', '--error', '--parsable', '--wait'];
const RESERVED_SHORT = ['D', 'o', 'e', 'W'];
/**
 * sbatch's short options that take no value, so that getopt reads the next letter of the same word
 * as another option (`-HD/x` is `-H -D /x`). `-k` takes an optional value: counted here, so that a
 * reserved letter after it is refused too.
 */
const SHORT_NO_VALUE = new Set(['H', 'k', 'O', 'Q', 's', 'v', 'h', 'u', 'V']);
/** sbatch options that take no value, or one only after '=': a word after them would be taken as the script. */
const SBATCH_NO_VALUE = new Set([
  '--contiguous',
  '--exclusive',
  '--get-user-env',
  '--hold',
  '-H',
  '--ignore-pbs',
  '--kill-on-invalid-dep',
  '--nice',
  '--no-kill',
  '-k',
  '--no-requeue',
  '--overcommit',
  '-O',
  '--oversubscribe',
  '-s',
  '--quiet',
  '-Q',
  '--reboot',
  '--requeue',
  '--spread-job',
  '--test-only',
  '--use-min-nodes',
  '--verbose',
  '-v',
]);

/**
 * sbatch-args as argv: options, each value either after '=' or as the next word. Refuses words that
 * sbatch would take as the job script, and the options the delivery sets itself (also abbreviated,
 * as sbatch accepts unambiguous prefixes, and short ones with the value attached).
 */
export function parseSbatchArgs(line: string): string[] {
  const argv = splitWords(line);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-') || a === '-' || a === '--') {
      throw new Error(`'${a}' is not an option: sbatch-args takes options only (the job script is generated)`);
    }
    if (a.includes('\0')) throw new Error('must not contain a NUL byte');
    const name = a.split('=')[0];
    if (a.startsWith('--')) {
      const reserved = RESERVED_LONG.find((r) => name.length >= 4 && r.startsWith(name));
      if (reserved) throw new Error(`'${reserved}' is set by riviera-singularity and cannot be overridden`);
      if (!a.includes('=') && !SBATCH_NO_VALUE.has(name) && i + 1 < argv.length && !argv[i + 1].startsWith('-')) i++;
      continue;
    }
    // Short options as getopt reads them: letters that take no value may be grouped in one word.
    for (let j = 1; j < a.length; j++) {
      const letter = a[j];
      if (RESERVED_SHORT.includes(letter)) throw new Error(`'-${letter}' (in '${a}') is set by riviera-singularity and cannot be overridden`);
      if (SHORT_NO_VALUE.has(letter)) continue;
      // The rest of the word is this option's value; without one, the next word is.
      if (j === a.length - 1 && i + 1 < argv.length && !argv[i + 1].startsWith('-')) i++;
      break;
    }
  }
  return argv;
}

function parseBool(s: string): boolean | undefined {
  if (/^(true|yes|1)$/i.test(s)) return true;
  if (/^(false|no|0)$/i.test(s)) return false;
  return undefined;
}

function parseDuration(s: string): number | undefined {
  const m = /^(\d+)\s*(s|m|h|d)?$/i.exec(s.trim());
  if (!m) return undefined;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's').toLowerCase() as 's'];
  return Number(m[1]) * unit;
}

function trimmed(def?: string) {
  return z
    .string()
    .optional()
    .transform((v) => {
      const t = v?.trim() ?? '';
      return t === '' ? (def ?? '') : t;
    });
}

const intIn = (min: number, max: number, def: string) =>
  trimmed(def)
    .refine((s) => /^\d+$/.test(s), { message: 'must be a whole number' })
    .transform(Number)
    .refine((n) => n >= min && n <= max, { message: `must be between ${min} and ${max}` });

/** A module list input: empty means the default, `none` means no modules. */
const moduleList = (def: string[]) =>
  z
    .string()
    .optional()
    .transform((v) => (!v?.trim() ? def : v.trim() === 'none' ? [] : listInput(v, true)))
    .superRefine((mods, ctx) => {
      for (const m of mods.filter((m) => !MODULE_NAME.test(m))) {
        ctx.addIssue({ code: 'custom', message: `'${m}' is not a module name (letters, digits, . _ + - /)` });
      }
    });

/** Published file names: never an option (no leading '-') nor hidden. */
const SAFE_NAME = /^[A-Za-z0-9_+][A-Za-z0-9._+-]*$/;
const groupName = () => trimmed().refine((s) => s === '' || /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(s), { message: 'is not a valid group name' });

const bool = (def: string) =>
  trimmed(def).transform((s, ctx) => {
    const b = parseBool(s);
    if (b === undefined) ctx.addIssue({ code: 'custom', message: 'must be true or false' });
    return b ?? false;
  });

const schema = z.object({
  host: trimmed()
    .refine((s) => s !== '', { message: 'is required: the cluster login host', abort: true })
    .refine((s) => /^[A-Za-z0-9._:-]+$/.test(s) && s.length <= 253, { message: 'is not a host name or IP address' }),
  port: intIn(1, 65535, '22'),
  username: trimmed()
    .refine((s) => s !== '', { message: 'is required: your account on the cluster', abort: true })
    .refine((s) => /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(s), { message: 'is not a valid user name' }),
  'private-key': z
    .string()
    .optional()
    .transform((v) => v ?? ''), // parsed with its passphrase and certificate: parseIdentity
  'private-key-passphrase': z
    .string()
    .optional()
    .transform((v) => v ?? ''),
  certificate: z
    .string()
    .optional()
    .transform((v) => v ?? ''),
  'known-hosts': z
    .string()
    .optional()
    .transform((v) => v ?? ''),
  'jump-hosts': trimmed().refine(...noControl('jump-hosts')),
  'ssh-client': trimmed('auto').refine((s) => ['auto', 'builtin', 'openssh'].includes(s), { message: 'must be auto, builtin or openssh' }),
  image: trimmed()
    .refine((s) => s === '' || IMAGE_REF.test(s), { message: 'is not a valid image reference (name:tag, lower-case name)' })
    .transform((s) => (s === '' || /:[^/]+$/.test(s) ? s : `${s}:latest`)),
  archive: trimmed().refine(...noControl('archive')),
  sif: trimmed().refine(...noControl('sif')),
  build: bool('true'),
  'force-rebuild': bool('false'),
  'preflight-only': bool('false'),
  'keep-images': intIn(1, 1000, '5'),
  'max-age': intIn(1, 3650, '30'),
  group: groupName(),
  runtime: trimmed('auto').refine((s) => ['auto', 'singularity', 'apptainer'].includes(s), { message: 'must be auto, singularity or apptainer' }),
  publish: trimmed('auto').refine((s) => /^(auto|true|false)$/i.test(s), { message: 'must be auto (publish on a tag), true or false' }),
  'publish-dir': trimmed().refine(...noControl('publish-dir')),
  'publish-name': trimmed().refine((s) => s === '' || SAFE_NAME.test(s), {
    message: 'may hold only letters, digits and . _ + -, and must start with a letter, digit, _ or +',
  }),
  'publish-version': trimmed().refine((s) => s === '' || SAFE_NAME.test(s), {
    message: 'may hold only letters, digits and . _ + -, and must start with a letter, digit, _ or +',
  }),
  'keep-versions': intIn(1, 1000, '5'),
  'publish-group': groupName(),
  'publish-mode': trimmed()
    .refine((s) => s === '' || /^0?[0-7]{3}$/.test(s), { message: 'must be an octal file mode such as 0640' })
    .refine((s) => !/^0?[0-7]{3}$/.test(s) || (parseInt(s, 8) & 0o022) === 0, {
      message: 'must not let the group or others write (e.g. 0640 or 0644): anyone who may write a published .sif can change what everybody runs',
    }),
  context: trimmed('.')
    .refine(...noControl('context'))
    .refine((s) => !s.startsWith('-'), { message: "must not start with '-' (docker would take it as an option): write ./-name" }),
  dockerfile: trimmed().refine(...noControl('dockerfile')),
  'build-args': z
    .string()
    .optional()
    .transform((v) =>
      (v ?? '')
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .refine((a) => a.every((s) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(s)), { message: 'each line must be KEY=VALUE' }),
  'smoke-test': trimmed()
    .refine(...noControl('smoke-test'))
    .superRefine((s, ctx) => {
      const name = s.split('/').pop() ?? '';
      if (s !== '' && isJobFileName(name)) {
        ctx.addIssue({
          code: 'custom',
          message: `'${name}' is the name of one of the job's own files (${Object.values(JOB_FILES).join(', ')}, ...) or starts with '.' or '-': rename the script`,
        });
      }
    }),
  'smoke-command': trimmed(),
  partition: trimmed('short-gpu').refine((s) => /^[A-Za-z0-9_.-]+$/.test(s), { message: 'is not a valid partition name' }),
  gpus: trimmed('1')
    .refine((s) => /^-?\d+$/.test(s), { message: 'must be a whole number of GPUs' })
    .transform(Number)
    .refine((n) => n >= 0 && n <= 64, { message: 'must be between 0 and 64' }),
  'build-cpus': intIn(1, 1024, '4'),
  time: trimmed('30:00').refine((s) => SLURM_TIME.test(s), {
    message: 'is not a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)',
  }),
  modules: moduleList(DEFAULT_MODULES),
  'login-modules': moduleList(['slurm']),
  'remote-dir': trimmed('riviera-singularity').refine(...noControl('remote-dir')),
  tmpdir: trimmed().refine(...noControl('tmpdir')),
  'job-name': trimmed().refine(...noControl('job-name')),
  'sbatch-args': trimmed(),
  binds: z
    .string()
    .optional()
    .transform((v) => listInput(v ?? ''))
    .superRefine((binds, ctx) => {
      for (const b of binds) {
        if (CONTROL.test(b) || !/^[^:]+(:[^:]+(:(ro|rw))?)?$/.test(b)) {
          ctx.addIssue({ code: 'custom', message: `'${b}' is not a bind spec (src[:dest[:ro|rw]])` });
        }
      }
    }),
  watchdog: trimmed('10m').transform((s, ctx) => {
    if (/^off$/i.test(s)) return null;
    const n = parseDuration(s);
    if (n === undefined || n < 10) ctx.addIssue({ code: 'custom', message: "must be a duration of at least 10 s, such as 10m, or 'off'" });
    return n ?? null;
  }),
  timeout: trimmed('2h').transform((s, ctx) => {
    const n = parseDuration(s);
    if (n === undefined || n <= 0) ctx.addIssue({ code: 'custom', message: 'must be a duration such as 3600, 90m or 2h' });
    return n ?? 0;
  }),
});

/** Every input name, as in action.yml. */
export const INPUT_NAMES = Object.keys(schema.shape);

/** Mark every line of the private key secret, before anything could print it. */
export function maskPrivateKey(key: string | undefined, secret: (value: string) => void): void {
  if (!key) return;
  secret(key);
  for (const line of key.split(/\r?\n/)) if (line.trim().length > 0) secret(line.trim());
}

type Problem = { input: string; message: string };

/** One InputError naming every bad input. */
function inputError(problems: Problem[]): InputError {
  const first = problems[0] ?? { input: 'inputs', message: 'are invalid' };
  const err = new InputError(first.input, first.message);
  if (problems.length > 1) err.message = problems.map((p) => `Input '${p.input}': ${p.message}`).join('\n');
  return err;
}

/** What `fn` returns; or undefined, its error listed against `input` (or the input an InputError names). */
function collect<T>(problems: Problem[], input: string, fn: () => T): T | undefined {
  try {
    return fn();
  } catch (e) {
    problems.push({ input: e instanceof InputError ? e.input : input, message: e instanceof InputError ? e.problem : (e as Error).message });
    return undefined;
  }
}

function knownHostsOf(raw: RawInputs): KnownHostEntry[] {
  if (!(raw['known-hosts'] ?? '').trim()) {
    throw new Error("is required: the cluster's host key line(s), e.g. from `ssh-keyscan -p PORT HOST` run once from a trusted machine");
  }
  return parseKnownHosts(raw['known-hosts'] ?? '');
}

/** Each issue of a failed schema parse, listed against its input. */
function schemaProblems<T>(problems: Problem[], result: z.ZodSafeParseResult<T>): T | undefined {
  if (result.success) return result.data;
  for (const issue of result.error.issues) problems.push({ input: String(issue.path[0]), message: issue.message });
  return undefined;
}

/**
 * The key and known-hosts, checked alike for a delivery and for a connection, so each problem is
 * worded once. Not `required` (a dry run, which connects to nothing): they may be missing, and
 * known-hosts is checked only if given; `keyOptional`: an agent or an open session may log in.
 */
function credentialsOf(raw: RawInputs, problems: Problem[], { required = true, keyOptional = false } = {}): KnownHostEntry[] | undefined {
  if (required && !keyOptional && !raw['private-key']?.trim()) {
    problems.push({ input: 'private-key', message: 'is required: the SSH private key (from a secret, or for the CLI a key file)' });
  }
  return collect(problems, 'known-hosts', () => (required || raw['known-hosts']?.trim() ? knownHostsOf(raw) : []));
}

type LoginField = 'privateKey' | 'passphrase' | 'certificate' | 'jumpHosts' | 'sshClient';

/** The inputs that say how to reach the cluster and where the delivery lives; the rest are the delivery's own. */
const CONNECTION_INPUTS = {
  host: true,
  port: true,
  username: true,
  'private-key': true,
  'private-key-passphrase': true,
  certificate: true,
  'known-hosts': true,
  'jump-hosts': true,
  'ssh-client': true,
  'remote-dir': true,
  'login-modules': true,
} as const;
const connectionSchema = schema.pick(CONNECTION_INPUTS);
const deliverySchema = schema.omit(CONNECTION_INPUTS);

/** How to log in: key, passphrase and certificate checked together, the jump chain, the transport. */
function loginOf(ok: z.infer<typeof connectionSchema>): Pick<SshTarget, LoginField> {
  const identity = parseIdentity({
    privateKey: ok['private-key'],
    passphrase: ok['private-key-passphrase'],
    certificate: ok.certificate,
    username: ok.username,
  });
  let jumpHosts: JumpHop[];
  try {
    jumpHosts = parseJumpHosts(ok['jump-hosts'], ok.username);
  } catch (e) {
    throw new InputError('jump-hosts', (e as Error).message);
  }
  const sshClient = ok['ssh-client'] as SshClientChoice;
  if (sshClient === 'builtin' && identity.certificate) {
    throw new InputError(
      'ssh-client',
      'builtin cannot log in with a certificate (the ssh2 library cannot send one)',
      'Use auto or openssh (the system OpenSSH client).',
    );
  }
  return { ...identity, jumpHosts, sshClient };
}

/**
 * How to reach the cluster, each problem listed against its input: the one check a delivery and a
 * command about an existing job share. `required` and `keyOptional` as for credentialsOf.
 */
function connectionProblems(raw: RawInputs, problems: Problem[], opts: { required?: boolean; keyOptional?: boolean }): ConnectionSettings | undefined {
  const ok = schemaProblems(problems, connectionSchema.safeParse(raw));
  const knownHosts = credentialsOf(raw, problems, opts);
  const remoteDir = collect(problems, 'remote-dir', () => remoteDirOf(raw));
  const login = ok && collect(problems, 'private-key', () => loginOf(ok));
  if (!ok || !knownHosts || !remoteDir || !login) return undefined;
  return {
    host: ok.host,
    port: ok.port,
    username: ok.username,
    ...login,
    knownHosts,
    remoteDir,
    loginModules: ok['login-modules'],
  };
}

/** What commands about an existing job need. With `keyOptional`, the key may be missing: an SSH agent's keys or an open session are used (CLI). */
export function parseConnection(raw: RawInputs, { keyOptional = false } = {}): ConnectionSettings {
  const problems: Problem[] = [];
  const connection = connectionProblems(raw, problems, { keyOptional });
  if (!connection || problems.length > 0) throw inputError(problems);
  return connection;
}

/** A path input in its canonical form (see clusterpath.ts); '' when not given. */
function pathInput(raw: RawInputs, name: string): ClusterPath {
  const v = (raw[name] ?? '').trim();
  return v ? clusterPath(v, (raw.username ?? '').trim()) : '';
}

/** remote-dir: a folder of the delivery's own, so never the home directory itself, nor under /tmp. */
function remoteDirOf(raw: RawInputs): ClusterPath {
  const p = pathInput(raw, 'remote-dir') || 'riviera-singularity';
  if (isHome(p)) {
    throw new Error('is your home directory: give a folder of its own, e.g. riviera-singularity (the delivery creates it and keeps to it)');
  }
  if (isUnderTmp(p)) throw new Error('must not be under /tmp: node-local /tmp is small and not shared with the login node');
  return p;
}

/** tmpdir: never under /tmp (also through `..`); the default is remote-dir/tmp. */
function tmpdirOf(raw: RawInputs, remoteDir: ClusterPath): ClusterPath {
  const p = pathInput(raw, 'tmpdir') || joinPath(remoteDir, 'tmp');
  if (isUnderTmp(p)) throw new Error('must not be under /tmp: the compute node’s /tmp is too small to build an image in');
  return p;
}

/** Each bind's source as a cluster path (its destination is a path in the container, as given). */
function bindsOf(binds: string[], raw: RawInputs): string[] {
  return binds.map((b) => {
    const [src, ...rest] = b.split(':');
    return [clusterPath(src, (raw.username ?? '').trim()), ...rest].join(':');
  });
}

/**
 * A repository address fit for a record others read: no user name, password or token
 * (`https://user:token@host/...`), no query or fragment. scp-like `git@host:path` keeps its user,
 * which is no secret.
 */
export function withoutCredentials(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*@)?([^?#]*)/.exec(url);
  return m ? m[1] + m[3] : url;
}

function publishSettings(ok: z.infer<typeof deliverySchema>, imageName: string, context: RunContext | null, dir: ClusterPath): PublishSettings | null {
  const mode = ok.publish.toLowerCase();
  const provenance = context ? { ...context, repository: withoutCredentials(context.repository) } : { repository: '', commit: '', tag: null };
  // auto publishes what a tag run delivered; a run that only tests an existing .sif does not republish it.
  if (mode === 'false' || (mode === 'auto' && (!provenance.tag || ok.sif))) return null;
  const version =
    ok['publish-version'] ||
    provenance.tag?.replace(/[^A-Za-z0-9._+-]/g, '_').replace(/^[.-]+/, '') ||
    provenance.commit.slice(0, 12) ||
    new Date().toISOString().slice(0, 10);
  const group = ok['publish-group'] || null;
  return {
    dir,
    name:
      ok['publish-name'] ||
      imageName
        .split('/')
        .pop()!
        .replace(/[^A-Za-z0-9._+-]/g, '_'),
    version,
    keep: ok['keep-versions'],
    group,
    mode: ok['publish-mode'] || (group ? '0640' : '0600'),
    provenance,
  };
}

/**
 * Validate all inputs; throws one InputError that lists every bad input, each by name. With `credentials: false` (a dry run, which connects to nothing) the key and
 * known-hosts may be missing, and are checked only if given.
 */
export function parseSettings(raw: RawInputs, context: RunContext | null = null, { credentials = true, keyOptional = false } = {}): Settings {
  const given = (name: string) => !!raw[name]?.trim();
  // Checking a setup needs no image or smoke test yet: placeholders stand in (they reach no check).
  if (parseBool((raw['preflight-only'] ?? '').trim()) === true) {
    if (!given('image') && !given('sif') && !given('archive')) return parseSettings({ ...raw, image: 'preflight:only' }, context, { credentials, keyOptional });
    if (!given('smoke-test') && !given('smoke-command')) return parseSettings({ ...raw, 'smoke-command': 'true' }, context, { credentials, keyOptional });
  }
  const problems: Problem[] = [];
  const connection = connectionProblems(raw, problems, { required: credentials, keyOptional });
  const ok = schemaProblems(problems, deliverySchema.safeParse(raw));
  const check = <T>(input: string, fn: () => T): T | undefined => collect(problems, input, fn);

  const sbatchArgs = check('sbatch-args', () => parseSbatchArgs(raw['sbatch-args'] ?? ''));
  // remote-dir's own problem is listed with the connection's; the default stands in for the paths under it.
  const remoteDir = connection?.remoteDir;
  const tmpdir = check('tmpdir', () => tmpdirOf(raw, remoteDir ?? 'riviera-singularity'));
  const publishDir = check('publish-dir', () => pathInput(raw, 'publish-dir') || joinPath(remoteDir ?? 'riviera-singularity', 'published'));
  const sif = check('sif', () => pathInput(raw, 'sif'));
  const binds = check('binds', () => bindsOf(ok?.binds ?? [], raw));
  const smokeArgv = check('smoke-command', () => {
    if ((raw['smoke-command'] ?? '').includes('\0')) throw new Error('must not contain a NUL byte');
    return splitWords(raw['smoke-command'] ?? '');
  });

  // These checks read the raw values, so they are listed even when other inputs failed the schema.
  const rawOf = (name: string) => (raw[name] ?? '').trim();
  if (!rawOf('image') && !rawOf('sif') && !rawOf('archive')) {
    problems.push({
      input: 'image',
      message: 'is required: the image reference, e.g. myimage:tag (or archive, a saved image tar; or sif, to test a .sif already on the cluster)',
    });
  } else if (rawOf('sif') && (rawOf('image') || rawOf('archive'))) {
    problems.push({ input: 'sif', message: 'give either image or archive (to deliver), or sif (to test a .sif already on the cluster), not both' });
  }
  let smoke: SmokeTest | undefined;
  if (rawOf('smoke-test') && rawOf('smoke-command')) {
    problems.push({ input: 'smoke-test', message: 'give either smoke-test or smoke-command, not both' });
  } else if (rawOf('smoke-test')) {
    smoke = { kind: 'script', path: rawOf('smoke-test') };
  } else if (smokeArgv && smokeArgv.length > 0) {
    smoke = { kind: 'command', argv: smokeArgv };
  } else if (smokeArgv) {
    problems.push({ input: 'smoke-test', message: 'is required (or smoke-command): what to run in the image on the GPU node' });
  }

  if (problems.length > 0 || !connection || !ok || !sbatchArgs || !smoke || !tmpdir || !publishDir || sif === undefined || !binds) {
    throw inputError(problems);
  }

  // What names the job and the published file: the image name, or the tested .sif's.
  const imageName = ok.image
    ? ok.image.replace(/:[^/:]+$/, '')
    : ok.archive
      ? (ok.archive.split('/').pop() ?? 'image')
          .toLowerCase()
          .replace(/\.tar$/, '')
          .replace(/[^a-z0-9._-]+/g, '-')
      : (sif.split('/').pop() ?? 'image').replace(/(_latest)?\.sif$/, '');
  return {
    ...connection,
    build: ok.build && !ok.sif && !ok.archive,
    sif: sif || null,
    archive: ok.archive || null,
    image: ok.image || (ok.archive ? `${imageName}:latest` : ''),
    context: ok.context,
    dockerfile: ok.dockerfile || null,
    buildArgs: ok['build-args'],
    smoke,
    partition: ok.partition,
    gpus: ok.gpus,
    buildCpus: ok['build-cpus'],
    time: ok.time,
    modules: ok.modules,
    tmpdir,
    jobName: ok['job-name'] || `riviera-${imageName.split('/').pop()}`,
    sbatchArgs,
    binds,
    timeoutSeconds: ok.timeout,
    preflightOnly: ok['preflight-only'],
    watchdogSeconds: ok.watchdog,
    forceRebuild: ok['force-rebuild'],
    keepImages: ok['keep-images'],
    maxAgeDays: ok['max-age'],
    group: ok.group || null,
    runtime: ok.runtime as Settings['runtime'],
    publish: publishSettings(ok, imageName, context, publishDir),
  };
}

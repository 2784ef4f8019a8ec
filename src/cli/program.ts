// The command line over the same core as the action: deliver, status, logs, cancel. A thin shell:
// flags into the core's raw inputs, the core's results onto stdout, its errors into exit codes.
import { existsSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { Command, CommanderError } from 'commander';
import pkg from '../../package.json' with { type: 'json' };
import { CONFIG_FILE, loadConfig, mergeInputs } from '../core/config.js';
import { cancelDelivered, cancelOnNewSession, followOutput, jobOutput, jobStatus } from '../core/control.js';
import { deliver } from '../core/deliver.js';
import { checksTable, doctor, doctorSettings } from '../core/doctor.js';
import { describePlan, planDelivery } from '../core/plan.js';
import { EXIT_CODE_MEANINGS, ExitCode, InputError, exitCodeOf } from '../core/errors.js';
import { keyIsEncrypted } from '../core/identity.js';
import type { Reporter } from '../core/reporter.js';
import {
  type ConnectionSettings,
  INPUT_NAMES,
  type RawInputs,
  type RunContext,
  type Settings,
  maskPrivateKey,
  parseConnection,
  parseSettings,
} from '../core/settings.js';
import { resolveSshAlias } from '../core/sshalias.js';
import { runProcess } from '../core/process.js';
import { Session } from '../core/session.js';
import type { JobRef } from '../core/submit.js';
import { CONNECTION_INPUTS, FLAG_INPUTS, addInputOptions, envName, optionTerm } from './options.js';
import { cliReporter } from './reporter.js';

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function readFileInput(input: string, path: string, optional = false): string {
  // The key itself given where its path belongs: say so without printing it.
  if (/PRIVATE KEY|[\r\n]/.test(path) || path.length > 4096) {
    throw new InputError(
      input,
      `--${input}-file (or ${envName(input)}_FILE) must be the path of a file, and this looks like the file's content (not printed)`,
      `Pass the path, e.g. --${input}-file ~/.ssh/id_ed25519.`,
    );
  }
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if (optional) return '';
    throw new InputError(input, `cannot read ${path}: ${(e as Error).message}`, `Pass --${input}-file PATH.`);
  }
}

type Opts = Record<string, string | boolean | undefined>;

/** What only a terminal has for logging in: an SSH agent, an open session of the user's own ssh. */
type TerminalLogin = Pick<Settings, 'agent' | 'controlPath'>;

/** The key files ssh tries when none is configured, in its order (`ssh -G` lists them all). */
const SSH_DEFAULT_KEYS = ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'];

/**
 * Flags (and RIVIERA_* variables, which commander folds into them) over .riviera.yml: the same raw
 * map the action builds from INPUT_*. The key and known_hosts come from files: by default the
 * user's own ~/.ssh/id_ed25519 and ~/.ssh/known_hosts, checked as strictly as in CI. `--host` may
 * be a Host alias of ~/.ssh/config: what it sets (HostName, User, Port, ProxyJump, IdentityFile,
 * CertificateFile, UserKnownHostsFile) fills what no flag or settings file gives, and a session it
 * has open (ControlMaster) is reused. Without a key file, an agent's keys are used.
 */
export async function rawInputs(opts: Opts, env: NodeJS.ProcessEnv = process.env): Promise<{ raw: RawInputs; login: TerminalLogin }> {
  const flags: Record<string, string> = {};
  for (const name of INPUT_NAMES) {
    const v = opts[camel(name)] ?? (FLAG_INPUTS.includes(name) ? env[envName(name)] : undefined);
    if (v !== undefined) flags[name] = String(v);
  }
  const file = await loadConfig(typeof opts.config === 'string' ? opts.config : CONFIG_FILE, typeof opts.config === 'string');
  const raw: Record<string, string | undefined> = { ...mergeInputs(file, flags) };
  const home = homedir();
  const alias = raw.host?.trim() ? await resolveSshAlias(raw.host.trim(), home) : null;
  if (alias) {
    raw.host = alias.hostname || raw.host;
    // ssh -G names the local user and port 22 when the config sets neither: those are no settings.
    if (alias.user !== userInfo().username) raw.username ||= alias.user;
    if (alias.port !== 22) raw.port ||= String(alias.port);
    raw['jump-hosts'] ||= alias.proxyJump || undefined;
  }
  const configured = (alias?.identityFiles ?? []).filter((f) => !SSH_DEFAULT_KEYS.some((k) => f === join(home, '.ssh', k)));
  const keyFile =
    typeof opts.privateKeyFile === 'string'
      ? opts.privateKeyFile
      : [...configured, ...['id_ed25519', 'id_ecdsa', 'id_rsa'].map((k) => join(home, '.ssh', k))].find((f) => existsSync(f));
  const agent = env.SSH_AUTH_SOCK && existsSync(env.SSH_AUTH_SOCK) ? env.SSH_AUTH_SOCK : null;
  const controlPath = alias?.openSession ?? null;
  // A dry run connects to nothing: missing key or known_hosts files are no reason to refuse it.
  const optional = !!opts.dryRun || ((!!agent || !!controlPath) && typeof opts.privateKeyFile !== 'string');
  raw['private-key'] = env.RIVIERA_PRIVATE_KEY || readFileInput('private-key', keyFile ?? join(home, '.ssh', 'id_ed25519'), optional);
  raw['private-key-passphrase'] = env.RIVIERA_PRIVATE_KEY_PASSPHRASE;
  if (raw['private-key'] && !raw['private-key-passphrase'] && keyIsEncrypted(raw['private-key']) && !opts.dryRun) {
    // As ssh does: the agent's copy of the key, else ask.
    if (agent) raw['private-key'] = '';
    else if (process.stdin.isTTY) raw['private-key-passphrase'] = await promptHidden(`Passphrase for ${keyFile}: `);
  }
  const certFile =
    typeof opts.certificateFile === 'string'
      ? opts.certificateFile
      : [...(alias?.certificateFiles ?? []), ...(keyFile ? [`${keyFile}-cert.pub`] : [])].find((f) => existsSync(f));
  if (certFile && raw['private-key'] !== '') raw.certificate ||= readFileInput('certificate', certFile);
  const hostsFile =
    typeof opts.knownHostsFile === 'string'
      ? opts.knownHostsFile
      : ((alias?.userKnownHostsFiles ?? []).find((f) => existsSync(f)) ?? join(home, '.ssh', 'known_hosts'));
  raw['known-hosts'] ||= readFileInput('known-hosts', hostsFile, !!opts.dryRun);
  return { raw, login: { agent: raw['private-key'] ? null : agent, controlPath } };
}

/** Read a line from the terminal without echoing it (the line editor writes to nowhere). */
function promptHidden(question: string): Promise<string> {
  process.stderr.write(question);
  const rl = createInterface({ input: process.stdin, output: new Writable({ write: (_c, _e, done) => done() }), terminal: true });
  return new Promise((resolve) =>
    rl.question('', (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    }),
  );
}

/** Where this checkout comes from, for publication: the tag at HEAD, if any, publishes by default. */
export async function gitContext(cwd = process.cwd()): Promise<RunContext> {
  const git = async (...args: string[]) => {
    const r = await runProcess('git', args, { cwd }).catch(() => null);
    return r?.code === 0 ? r.stdout.trim() : '';
  };
  const [repository, commit, tag] = await Promise.all([
    git('config', '--get', 'remote.origin.url'),
    git('rev-parse', 'HEAD'),
    git('describe', '--exact-match', '--tags', 'HEAD'),
  ]);
  return { repository, commit, tag: tag || null };
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text + '\n');
}

/** Run `fn` with a retrying session to the cluster the flags name, closed afterwards. */
async function withSession(opts: Opts, fn: (conn: ConnectionSettings, session: Session, reporter: Reporter) => Promise<void>): Promise<void> {
  const reporter = cliReporter();
  const { raw, login } = await rawInputs(opts);
  maskLogin(raw, reporter);
  const conn = { ...parseConnection(raw, { keyOptional: !raw['private-key'] }), ...login };
  const session = new Session(conn, reporter);
  try {
    await fn(conn, session, reporter);
  } finally {
    session.close();
  }
}

function maskLogin(raw: RawInputs, reporter: Reporter): void {
  maskPrivateKey(raw['private-key'], reporter.secret);
  if (raw['private-key-passphrase']) reporter.secret(raw['private-key-passphrase']);
}

/** doctor, and deliver with preflight-only: the checks as a table (or JSON); exit 2 when one fails. */
async function printChecks(settings: Settings, opts: Opts, reporter: Reporter, outcome: { code: number }): Promise<void> {
  const checks = await doctor(settings, reporter);
  print(!!opts.json, checks, checksTable(checks));
  if (checks.some((c) => c.status === 'fail')) outcome.code = ExitCode.input;
}

/** The program; a delivery that ran but did not pass sets `outcome.code` (its error's exit code). */
export function buildProgram(outcome: { code: number } = { code: ExitCode.ok }): Command {
  const program = new Command('riviera-singularity')
    .description('Deliver a Docker image to a Slurm cluster as a Singularity image and smoke-test it on a GPU.')
    .version(pkg.version)
    .showHelpAfterError()
    .exitOverride()
    .configureHelp({ optionTerm, showGlobalOptions: false });
  program.addHelpText(
    'after',
    `
Exit codes: ${Object.entries(EXIT_CODE_MEANINGS)
      .map(([code, meaning]) => `${code} ${meaning}`)
      .join(', ')}.
Every option can also be set as RIVIERA_<NAME> (e.g. RIVIERA_HOST) or in ${CONFIG_FILE}.`,
  );

  const d = addInputOptions(program.command('deliver').description('build, ship, submit and follow one delivery, as the action does'))
    .optionsGroup('Output:')
    .option('--dry-run', 'print the plan and the job script; build, connect and write nothing')
    .option('--json', 'print the result as JSON on stdout');
  d.action(async (opts: Opts) => {
    const reporter = cliReporter();
    const { raw, login } = await rawInputs(opts);
    maskLogin(raw, reporter);
    const settings = { ...parseSettings(raw, await gitContext(), { credentials: !opts.dryRun, keyOptional: !raw['private-key'] }), ...login };
    if (settings.preflightOnly && !opts.dryRun) return printChecks(settings, opts, reporter, outcome);
    if (opts.dryRun) {
      const plan = await planDelivery(settings);
      print(!!opts.json, plan, describePlan(plan, settings));
      return;
    }
    // First Ctrl-C cancels the job (as the action's post step would); a second one cancels it on a
    // session of its own and quits; a third quits at once.
    const controller = new AbortController();
    let job: JobRef | null = null;
    let hold: string | undefined;
    let interrupts = 0;
    const onSignal = () => {
      interrupts++;
      if (interrupts === 1) {
        reporter.warning('Interrupted: cancelling the job (press Ctrl-C again to quit sooner).');
        return controller.abort();
      }
      if (interrupts > 2 || !job) process.exit(130);
      const what = job.jobId ? `job ${job.jobId}` : job.jobDir ? `the job of ${job.jobDir}` : 'the delivery';
      reporter.warning(`Cancelling ${what} and quitting (press Ctrl-C again to quit without waiting for that).`);
      cancelOnNewSession(settings, job, reporter)
        .then(
          (id) => reporter.info(id ? `cancelled job ${id}` : "no job had been submitted; released the run's hold on the image"),
          (e: Error) => reporter.warning(`Could not cancel ${what} (${e.message.split('\n')[0]}): scancel it on the cluster.`),
        )
        .finally(() => process.exit(130));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const result = await deliver(settings, reporter, {
      signal: controller.signal,
      onRunNamed: (run) => void (job = { jobDir: null, hold: (hold = run.hold) }),
      onJobPrepared: ({ jobDir }) => void (job = { jobDir, hold }),
      onJobSubmitted: (submitted) => void (job = submitted),
    });
    const { error, ...data } = result;
    if (!opts.json) for (const t of result.timings) reporter.info(`  ${t.phase.padEnd(12)} ${t.seconds.toFixed(2)} s`);
    print(
      !!opts.json,
      { ...data, error: error?.message ?? null },
      `${result.ok ? 'passed' : 'FAILED'}: ${result.message} (job ${result.jobId}, ${result.jobState}, ${result.sifPath})`,
    );
    if (error) {
      outcome.code = error.exitCode;
      if (!opts.json) reporter.info(`error: ${error.message}`);
    }
  });

  addInputOptions(program.command('status').argument('<job>', 'Slurm job id').description("a delivered job's state and result"), CONNECTION_INPUTS)
    .optionsGroup('Output:')
    .option('--json', 'print as JSON')
    .action(async (jobId: string, opts: Opts) => {
      await withSession(opts, async (conn, session) => {
        const r = await jobStatus(session, conn, jobId);
        print(!!opts.json, r, `job ${jobId}: ${r.state}${r.node ? ` on ${r.node}` : ''}${r.phase ? ` (${r.phase} exited ${r.exitCode})` : ''}`);
      });
    });

  addInputOptions(program.command('logs').argument('<job>', 'Slurm job id').description("a delivered job's output"), CONNECTION_INPUTS)
    .optionsGroup('Output:')
    .option('-f, --follow', 'keep streaming until the job ends')
    .action(async (jobId: string, opts: Opts) => {
      await withSession(opts, async (conn, session) => {
        if (opts.follow)
          await followOutput(
            session,
            conn,
            jobId,
            cliReporter((s) => process.stdout.write(s)),
          );
        else process.stdout.write(await jobOutput(session, conn, jobId));
      });
    });

  addInputOptions(program.command('cancel').argument('<job>', 'Slurm job id').description('cancel a job (scancel)'), CONNECTION_INPUTS).action(
    async (jobId: string, opts: Opts) => {
      await withSession(opts, async (conn, session, reporter) => {
        await cancelDelivered(session, conn, jobId);
        reporter.info(`cancelled job ${jobId}`);
      });
    },
  );
  addInputOptions(
    program
      .command('doctor')
      .description(
        'check a setup against the cluster before the first push: connection, partition, GPUs, time, modules, runtime, sbatch --test-only, directories',
      ),
    INPUT_NAMES.filter((n) => n !== 'preflight-only'),
  )
    .option('--json', 'print the checks as JSON')
    .action(async (opts: Opts) => {
      const reporter = cliReporter();
      const { raw, login } = await rawInputs(opts);
      maskLogin(raw, reporter);
      await printChecks({ ...doctorSettings(raw, { keyOptional: !raw['private-key'] }), ...login }, opts, reporter, outcome);
    });
  return program;
}

/** Run the CLI on `argv` (as process.argv); resolves with the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  try {
    const outcome = { code: ExitCode.ok as number };
    await buildProgram(outcome).parseAsync(argv);
    return outcome.code;
  } catch (e) {
    // Help and version are not errors; a usage error is bad input.
    if (e instanceof CommanderError) return e.exitCode === 0 ? ExitCode.ok : ExitCode.input;
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return exitCodeOf(e);
  }
}

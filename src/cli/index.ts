// The command line over the same core as the action: `riviera-singularity deliver ...`.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { deliver } from '../core/deliver.js';
import { ExitCode, InputError, exitCodeOf } from '../core/errors.js';
import { INPUT_NAMES, type RawInputs, maskPrivateKey, parseSettings } from '../core/settings.js';
import { cliReporter } from './reporter.js';

/** Inputs read from files on a terminal rather than passed as text. */
const FILE_INPUTS: Record<string, string> = {
  'private-key': 'private-key-file',
  'known-hosts': 'known-hosts-file',
};

function envName(input: string): string {
  return `RIVIERA_${input.toUpperCase().replace(/-/g, '_')}`;
}

function readFileInput(input: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(input, `cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Flags, then RIVIERA_* variables, then defaults: the same raw map the action builds from INPUT_*. */
export function rawInputsFromOptions(opts: Record<string, string | undefined>, env: NodeJS.ProcessEnv): RawInputs {
  const raw: Record<string, string | undefined> = {};
  for (const name of INPUT_NAMES) {
    const key = camel(name);
    raw[name] = opts[key] ?? env[envName(name)];
  }
  if (raw['private-key'] === undefined) {
    const path = opts.privateKeyFile ?? env.RIVIERA_PRIVATE_KEY_FILE ?? join(homedir(), '.ssh', 'id_ed25519');
    raw['private-key'] = readFileInput('private-key', path);
  }
  if (raw['known-hosts'] === undefined) {
    const path = opts.knownHostsFile ?? env.RIVIERA_KNOWN_HOSTS_FILE ?? join(homedir(), '.ssh', 'known_hosts');
    raw['known-hosts'] = readFileInput('known-hosts', path);
  }
  return raw;
}

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function buildProgram(): Command {
  const program = new Command('riviera-singularity')
    .description('Deliver a Docker image to a Slurm cluster as a Singularity image and smoke-test it on a GPU.')
    .showHelpAfterError();

  const d = program.command('deliver').description('build, ship, submit and follow one delivery (like the action)');
  for (const name of INPUT_NAMES) {
    if (FILE_INPUTS[name]) continue;
    d.addOption(new Option(`--${name} <value>`, `the action's '${name}' input`).env(envName(name)));
  }
  d.option('--private-key-file <path>', 'SSH private key (default ~/.ssh/id_ed25519)');
  d.option('--known-hosts-file <path>', 'known_hosts to check the host key against (default ~/.ssh/known_hosts)');
  d.action(async (opts: Record<string, string | undefined>) => {
    const reporter = cliReporter();
    const raw = rawInputsFromOptions(opts, process.env);
    maskPrivateKey(raw['private-key'], reporter.secret);
    const settings = parseSettings(raw);
    const controller = new AbortController();
    process.on('SIGINT', () => controller.abort());
    process.on('SIGTERM', () => controller.abort());
    const result = await deliver(settings, reporter, { signal: controller.signal });
    for (const t of result.timings) reporter.info(`  ${t.phase.padEnd(12)} ${t.seconds.toFixed(2)} s`);
    if (result.error) throw result.error;
    reporter.info(`${result.message} job ${result.jobId} on ${result.node}; ${result.sifPath}`);
  });
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
    process.exit(ExitCode.ok);
  } catch (e) {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(exitCodeOf(e));
  }
}

await main();

// The CLI's options: one per action input (the key and known_hosts as files instead), grouped as the
// help shows them (options.yml), each saying what it does and its default. Defaults are stated for
// the reader only: commander sets none, so that .riviera.yml still fills what no flag gives.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { parse } from 'yaml';
import { z } from 'zod';
import { CONFIG_FILE } from '../core/config.js';

const InputOption = z.strictObject({
  /** The action input this option sets (its flag is --NAME, its variable RIVIERA_NAME). */
  input: z.string(),
  help: z.string(),
  /** As the help states it; none for inputs without a default. */
  default: z.string().optional(),
  /** A true/false input, given as --NAME / --no-NAME. */
  flag: z.literal(true).optional(),
});
type InputOption = z.infer<typeof InputOption>;

/** The options by group, in the order the help shows them (the text is in options.yml). */
export const OPTION_GROUPS: { title: string; options: InputOption[] }[] = z
  .array(z.strictObject({ title: z.string(), options: z.array(InputOption) }))
  .parse(parse(readFileSync(new URL('./options.yml', import.meta.url), 'utf8')));

/**
 * Inputs not given as options on a terminal: the key, known_hosts and certificate come from files,
 * the passphrase from a prompt or RIVIERA_PRIVATE_KEY_PASSPHRASE (never from the command line).
 */
export const FILE_INPUTS = ['private-key', 'known-hosts', 'certificate', 'private-key-passphrase'];

/** What the commands about an existing job need. */
export const CONNECTION_INPUTS = ['host', 'port', 'username', 'jump-hosts', 'ssh-client', 'remote-dir', 'login-modules'];

export function envName(input: string): string {
  return `RIVIERA_${input.toUpperCase().replace(/-/g, '_')}`;
}

/** The true/false inputs, given as --NAME / --no-NAME. */
export const FLAG_INPUTS = OPTION_GROUPS.flatMap((g) => g.options.filter((o) => o.flag).map((o) => o.input));

const described = (o: InputOption) => `${o.help}${o.default ? ` (default: ${o.default})` : ''}`;

/** Add the options of `inputs` (all by default), grouped, then the settings and key files. */
export function addInputOptions(cmd: Command, inputs?: string[]): Command {
  for (const group of OPTION_GROUPS) {
    for (const o of group.options.filter((x) => !inputs || inputs.includes(x.input))) {
      if (o.flag) {
        // commander's env() would make any value of RIVIERA_BUILD mean true: rawInputs reads it instead.
        cmd.addOption(new Option(`--${o.input}`, `${described(o)} (env: ${envName(o.input)}=true|false)`).helpGroup(`${group.title}:`));
        cmd.addOption(new Option(`--no-${o.input}`).hideHelp());
      } else {
        cmd.addOption(new Option(`--${o.input} <value>`, described(o)).env(envName(o.input)).helpGroup(`${group.title}:`));
      }
    }
  }
  return cmd
    .addHelpOption(new Option('-h, --help', 'display help for command').helpGroup('Output:'))
    .optionsGroup('Settings and keys:')
    .option('--config <path>', `settings file whose keys are the input names; flags and variables win (default: ${CONFIG_FILE}, if present)`)
    .addOption(
      new Option('--private-key-file <path>', 'SSH private key (default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa, the first that exists)').env(
        'RIVIERA_PRIVATE_KEY_FILE',
      ),
    )
    .addOption(
      new Option('--known-hosts-file <path>', 'known_hosts, checked strictly: an unlisted host key is refused (default: ~/.ssh/known_hosts)').env(
        'RIVIERA_KNOWN_HOSTS_FILE',
      ),
    )
    .addOption(
      new Option('--certificate-file <path>', 'OpenSSH user certificate for the key (default: KEY-cert.pub, if there)').env('RIVIERA_CERTIFICATE_FILE'),
    );
}

/** The help shows a true/false input as one term, --NAME/--no-NAME. */
export function optionTerm(option: Option): string {
  const name = option.long?.slice(2);
  return name && !option.negate && FLAG_INPUTS.includes(name) ? `--${name}/--no-${name}` : option.flags;
}

// The CLI's options: one per action input (the key and known_hosts as files instead), grouped as the
// help shows them, each saying what it does and its default. Defaults are stated for the reader
// only: commander sets none, so that .riviera.yml still fills what no flag gives.
import { Command, Option } from 'commander';
import { CONFIG_FILE } from '../core/config.js';

interface InputOption {
  /** The action input this option sets (its flag is --NAME, its variable RIVIERA_NAME). */
  input: string;
  help: string;
  /** As the help states it; none for inputs without a default. */
  default?: string;
  /** A true/false input, given as --NAME / --no-NAME. */
  flag?: true;
}

export const OPTION_GROUPS: { title: string; options: InputOption[] }[] = [
  {
    title: 'Cluster',
    options: [
      { input: 'host', help: 'SSH login host of the cluster (required, here or in the settings file)' },
      { input: 'port', help: 'SSH port', default: '22' },
      { input: 'username', help: 'your account on the cluster (required, here or in the settings file)' },
      { input: 'jump-hosts', help: 'jump hosts to go through, [user@]host[:port], comma-separated (as ssh -J)' },
      { input: 'ssh-client', help: 'builtin (ssh2), openssh (the system ssh) or auto (openssh for a certificate or an open session)', default: 'auto' },
      { input: 'remote-dir', help: 'working directory on the cluster, relative to your home; created private (0700)', default: 'riviera-singularity' },
      { input: 'login-modules', help: "modules loaded on the login node for sbatch, squeue and scancel ('none' if they are on PATH)", default: 'slurm' },
      { input: 'group', help: 'Unix group to share remote-dir with (setgid, group-readable); without one it is private to you (0700)' },
    ],
  },
  {
    title: 'Image',
    options: [
      { input: 'image', help: 'image reference, name:tag (the tag defaults to latest); required unless --archive or --sif' },
      { input: 'archive', help: 'deliver this saved image tar (docker save, buildx type=docker/oci) instead of one in the local engine; nothing is built' },
      { input: 'sif', help: 'smoke-test this .sif already on the cluster (relative to your home) instead of delivering an image' },
      { input: 'build', flag: true, help: 'build the image with the local Docker engine, or use the one it already has', default: '--build' },
      { input: 'context', help: 'Docker build context', default: '.' },
      { input: 'dockerfile', help: 'path to the Dockerfile', default: 'context/Dockerfile' },
      { input: 'build-args', help: 'build arguments, one KEY=VALUE per line' },
      { input: 'force-rebuild', flag: true, help: 'build the .sif even when an intact one of the same image is on the cluster', default: '--no-force-rebuild' },
    ],
  },
  {
    title: 'Job',
    options: [
      { input: 'smoke-test', help: "a local file, copied to the cluster and passed to the image's entrypoint (singularity run --nv image.sif FILE)" },
      { input: 'smoke-command', help: 'a command run in the image (singularity exec --nv), split into words like a shell would, no expansion' },
      { input: 'partition', help: 'Slurm partition', default: 'short-gpu' },
      { input: 'gpus', help: 'GPUs to request (--gres=gpu:N); 0 for none (and no --nv)', default: '1' },
      { input: 'build-cpus', help: 'CPUs for the job (--cpus-per-task), used by the .sif build; at most what a node of the partition has', default: '4' },
      { input: 'time', help: 'Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)', default: '30:00' },
      { input: 'timeout', help: 'limit on the whole wait for the job (e.g. 3600, 90m, 2h); the job is cancelled when it runs out', default: '2h' },
      { input: 'watchdog', help: "the job cancels itself when this delivery has not followed it for this long (e.g. 10m); 'off' disables it", default: '10m' },
      {
        input: 'modules',
        help: 'modules the job loads, in order (spaces, commas or lines)',
        default: 'slurm singularity cuda12.2/blas cuda12.2/fft cuda12.2/toolkit',
      },
      { input: 'runtime', help: 'container runtime: auto (whichever the modules provide, apptainer first), singularity or apptainer', default: 'auto' },
      { input: 'job-name', help: 'Slurm job name', default: 'riviera-IMAGE' },
      { input: 'sbatch-args', help: 'extra sbatch options, e.g. "--mem=16G --account=mygroup", split into words' },
      { input: 'binds', help: 'Singularity binds, src[:dest[:ro|rw]], one per line or comma-separated' },
      { input: 'tmpdir', help: 'build temp dir on the cluster; never /tmp, which is small on the nodes', default: 'remote-dir/tmp' },
      {
        input: 'preflight-only',
        flag: true,
        help: 'only check the inputs against the cluster (as the doctor command does); deliver nothing',
        default: '--no-preflight-only',
      },
    ],
  },
  {
    title: 'Publishing',
    options: [
      {
        input: 'publish',
        help: 'publish the tested .sif as NAME_VERSION.sif and point NAME_latest.sif at it: auto (when HEAD has a tag), true or false',
        default: 'auto',
      },
      { input: 'publish-dir', help: 'publish directory on the cluster', default: 'remote-dir/published' },
      { input: 'publish-name', help: 'name of the published image', default: 'the image name without registry and path' },
      { input: 'publish-version', help: 'version of the published image', default: 'the tag, else the first 12 digits of the commit' },
      { input: 'keep-versions', help: 'published versions of this name to keep; older ones are removed', default: '5' },
      { input: 'publish-group', help: 'Unix group for the published files', default: 'none' },
      { input: 'publish-mode', help: 'file mode of the published files', default: '0640 with publish-group, else 0600' },
    ],
  },
  {
    title: 'Garbage collection',
    options: [
      { input: 'keep-images', help: 'keep the layers and .sif files of this many most recently delivered images', default: '5' },
      { input: 'max-age', help: 'drop images, interrupted uploads and job directories older than this many days', default: '30' },
    ],
  },
];

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

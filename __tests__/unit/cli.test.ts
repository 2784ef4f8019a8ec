// The CLI program as a terminal runs it (runCli on an argv): commander's parsing, the help, flags
// and RIVIERA_* variables into the core's raw inputs, results on stdout, errors as exit codes. The
// delivery is stood in for (it is tested on its own); status, logs and cancel run for real against
// a local stand-in cluster through the retrying session.
import { jest } from '@jest/globals';
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DeliveryHooks, DeliveryResult } from '../../src/core/deliver.js';
import type { Settings } from '../../src/core/settings.js';
import { testKeys } from '../helpers/keys.js';
import { deliveryResult } from '../helpers/result.js';
import type { LocalCluster } from '../helpers/localcluster.js';

const keys = testKeys('[127.0.0.1]:2222');
let cluster: LocalCluster;
const deliver = jest.fn<(s: Settings, r: unknown, hooks: DeliveryHooks) => Promise<DeliveryResult>>();
jest.unstable_mockModule('../../src/core/deliver.js', () => ({ deliver }));
jest.unstable_mockModule('../../src/core/connect.js', async () => (await import('../helpers/localcluster.js')).localConnectModule(() => cluster));

const { runCli, rawInputs } = await import('../../src/cli/program.js');
const { LocalCluster: Cluster } = await import('../helpers/localcluster.js');
const { JobInterruptedError } = await import('../../src/core/errors.js');

let stdout: string;
let stderr: string;
let files: { key: string; hosts: string };
beforeEach(() => {
  deliver.mockReset();
  cluster = new Cluster('cli-');
  files = { key: join(cluster.home, 'id'), hosts: join(cluster.home, 'known_hosts') };
  writeFileSync(files.key, keys.privateKey);
  writeFileSync(files.hosts, keys.knownHosts);
  stdout = '';
  stderr = '';
  jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
});
afterEach(() => {
  jest.restoreAllMocks();
  cluster.remove();
});

const cli = (...args: string[]) => runCli(['node', 'riviera-singularity', ...args]);
const connection = () => [
  '--host',
  '127.0.0.1',
  '--port',
  '2222',
  '--username',
  'u',
  '--remote-dir',
  'rs',
  '--login-modules',
  'none',
  '--private-key-file',
  files.key,
  '--known-hosts-file',
  files.hosts,
];

describe('help and usage', () => {
  test('--help: exit 0, the commands and the exit codes', async () => {
    expect(await cli('--help')).toBe(0);
    expect(stdout).toMatch(/deliver \[options\]/);
    expect(stdout).toContain('Exit codes: 0 passed, 1 other failure, 2 bad input, 3 connection, 4 host key refused');
  });

  test('deliver --help: every option grouped, with what it does and its default; booleans as --flag/--no-flag', async () => {
    expect(await cli('deliver', '--help')).toBe(0);
    for (const group of ['Cluster:', 'Image:', 'Job:', 'Publishing:', 'Garbage collection:', 'Settings and keys:', 'Output:'])
      expect(stdout).toContain(`\n${group}\n`);
    const help = stdout.replace(/\s+/g, ' ');
    expect(help).toContain(
      '--build/--no-build build the image with the local Docker engine, or use the one it already has (default: --build) (env: RIVIERA_BUILD=true|false)',
    );
    expect(help).toContain('--partition <value> Slurm partition (default: short-gpu) (env: RIVIERA_PARTITION)');
    expect(stdout).not.toContain("the action's");
    expect(stdout).not.toMatch(/^\s+--no-build/m);
  });

  test('an unknown flag is bad usage: exit 2', async () => {
    expect(await cli('deliver', '--no-such-flag')).toBe(2);
    expect(stderr).toContain("unknown option '--no-such-flag'");
  });

  test('--version: exit 0', async () => {
    expect(await cli('--version')).toBe(0);
    expect(stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

describe('flags and variables into raw inputs', () => {
  const hosts = () => ({ privateKeyFile: files.key, knownHostsFile: files.hosts, config: join(cluster.home, 'none.yml') });
  test('--no-build and --force-rebuild become the strings the core reads', async () => {
    writeFileSync(join(cluster.home, 'none.yml'), '');
    const { raw } = await rawInputs({ ...hosts(), build: false, forceRebuild: true, partition: 'p1' }, {});
    expect(raw).toMatchObject({ build: 'false', 'force-rebuild': 'true', partition: 'p1', 'private-key': keys.privateKey, 'known-hosts': keys.knownHosts });
  });

  test('RIVIERA_BUILD=false still means false; a flag wins over the variable', async () => {
    writeFileSync(join(cluster.home, 'none.yml'), '');
    expect((await rawInputs(hosts(), { RIVIERA_BUILD: 'false' })).raw.build).toBe('false');
    expect((await rawInputs({ ...hosts(), build: true }, { RIVIERA_BUILD: 'false' })).raw.build).toBe('true');
  });

  test('flags win over the settings file', async () => {
    writeFileSync(join(cluster.home, 'none.yml'), 'partition: from-file\ngpus: 2\n');
    expect((await rawInputs({ ...hosts(), partition: 'from-flag' }, {})).raw).toMatchObject({ partition: 'from-flag', gpus: '2' });
  });
});

describe('deliver', () => {
  const result = (over: Partial<DeliveryResult> = {}) => deliveryResult({ sifPath: '/s.sif', ...over });

  test('--json: the result on stdout, exit 0', async () => {
    deliver.mockResolvedValue(result());
    expect(await cli('deliver', ...connection(), '--image', 'img:1', '--smoke-command', 'true', '--json')).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ ok: true, jobId: '77', error: null });
    expect(deliver.mock.calls[0][0]).toMatchObject({ image: 'img:1', smoke: { kind: 'command', argv: ['true'] }, build: true });
  });

  test("a job that did not pass exits with its error's code, after printing the result", async () => {
    deliver.mockResolvedValue(result({ ok: false, jobState: 'CANCELLED', message: 'Job CANCELLED', error: new JobInterruptedError('Job CANCELLED') }));
    expect(await cli('deliver', ...connection(), '--image', 'img:1', '--smoke-command', 'true', '--no-build')).toBe(6);
    expect(stdout).toBe('FAILED: Job CANCELLED (job 77, CANCELLED, /s.sif)\n');
    expect(deliver.mock.calls[0][0].build).toBe(false);
  });

  test('bad input: exit 2 naming it, nothing delivered', async () => {
    expect(await cli('deliver', ...connection(), '--image', 'img:1', '--smoke-command', 'true', '--gpus', '-1')).toBe(2);
    expect(stderr).toContain("Input 'gpus': must be between 0 and 64");
    expect(deliver).not.toHaveBeenCalled();
  });

  test('the private key never reaches the terminal', async () => {
    expect(await cli('deliver', ...connection(), '--smoke-command', 'true', '--gpus', 'x')).toBe(2);
    for (const line of keys.privateKey.split('\n').filter((l) => l.length > 20)) expect(stderr + stdout).not.toContain(line);
  });
});

describe('status, logs and cancel against the cluster', () => {
  function delivered(id: string, squeue: string, out = '') {
    cluster.file(`rs/jobs/run-${id}/job.out`, out);
    symlinkSync(join(cluster.home, `rs/jobs/run-${id}`), join(cluster.home, `rs/jobs/job-${id}`));
    cluster.command('squeue', `printf '%s\\n' '${squeue}'`);
  }

  test('status --json', async () => {
    delivered('41', 'RUNNING|None|gpu-01');
    expect(await cli('status', '41', ...connection(), '--json')).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ jobId: '41', state: 'RUNNING', reason: '', node: 'gpu-01', phase: null, exitCode: null });
  });

  test('status as text', async () => {
    delivered('42', 'PENDING|Priority|');
    expect(await cli('status', '42', ...connection())).toBe(0);
    expect(stdout).toBe('job 42: PENDING\n');
  });

  test('logs prints the output as it is', async () => {
    delivered('43', 'RUNNING|None|n', 'hello\nworld\n');
    expect(await cli('logs', '43', ...connection())).toBe(0);
    expect(stdout).toBe('hello\nworld\n');
  });

  test('cancel', async () => {
    delivered('44', 'RUNNING|None|n');
    cluster.command('scancel', 'echo "$@" > "$HOME/scancel.args"');
    expect(await cli('cancel', '44', ...connection())).toBe(0);
    expect(stderr).toContain('cancelled job 44');
  });

  test('a job this remote-dir never delivered: exit 2', async () => {
    cluster.command('squeue', 'exit 1');
    expect(await cli('status', '45', ...connection())).toBe(2);
    expect(stderr).toContain("error: Input 'JOB': no delivery of job 45 under ~/rs on the cluster");
  });

  test('not a job id: exit 2 before connecting', async () => {
    expect(await cli('cancel', '45;reboot', ...connection())).toBe(2);
    expect(cluster.connections).toHaveLength(0);
  });

  test('an unreachable cluster: exit 3 after the retries', async () => {
    cluster.failConnects = 100;
    // The CLI's policy, without its waits: one retry after 1 ms.
    const { DEFAULT_RETRY } = await import('../../src/core/session.js');
    const real = { ...DEFAULT_RETRY };
    Object.assign(DEFAULT_RETRY, { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 });
    try {
      expect(await cli('status', '46', ...connection())).toBe(3);
    } finally {
      Object.assign(DEFAULT_RETRY, real);
    }
    expect(cluster.failConnects).toBe(98);
    expect(stderr).toContain('Could not connect');
  });
});

// The CLI as a researcher runs it from a checkout: settings in .riviera.yml, key and known_hosts from
// files, against the stand-in cluster. Exit codes as documented in the README.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLUSTER_HOME, STATE_DIR, type StartedCli, activeJobState, clusterWorkspace, eventually, startCli, uniqueRemoteDir } from './harness.js';

const KEYS = ['--private-key-file', join(STATE_DIR, 'id_ed25519'), '--known-hosts-file', join(STATE_DIR, 'known_hosts')];
let ws: string;

beforeAll(async () => {
  ws = await clusterWorkspace();
  writeFileSync(join(ws, 'slow.sh'), 'echo started-slow-smoke-test\nsleep 300\n');
  // Settings CI and the terminal share; the flags add only what differs.
  writeFileSync(
    join(ws, '.riviera.yml'),
    [
      'host: 127.0.0.1',
      'port: 2222',
      'username: rivuser',
      'image: rs-e2e/gpucheck:cli',
      'partition: short-gpu',
      'gpus: 1',
      'modules: [slurm, singularity, cuda12.2/toolkit]',
      '',
    ].join('\n'),
  );
});

/** The CLI run in the workspace, where .riviera.yml is. */
const start = (args: string[], env: Record<string, string> = {}) => startCli(args, { cwd: ws, env });
const cli = (...args: string[]) => start(args).done;

async function waitForOutput(run: StartedCli, text: string, ms = 60_000): Promise<void> {
  await eventually(() => run.output().includes(text), ms, `'${text}' in the CLI output:\n${run.output()}`);
}

test('deliver: settings from .riviera.yml, a JSON result on stdout, exit 0', async () => {
  const r = await cli('deliver', ...KEYS, '--smoke-test', 'gpu-check.sh', '--remote-dir', uniqueRemoteDir('cli'), '--json');
  if (r.code !== 0) throw new Error(r.stderr);
  const result = JSON.parse(r.stdout);
  expect(result).toMatchObject({ ok: true, jobState: 'COMPLETED', exitCode: 0, image: 'rs-e2e/gpucheck:cli', error: null });
  expect(r.stderr).toContain('Output tensor device: cuda:0');
  expect(r.stderr).toContain('==> Job: smoke-test');
});

test('the key text given where its file belongs is refused without being printed', async () => {
  const key = readFileSync(join(STATE_DIR, 'id_ed25519'), 'utf8');
  const lines = key.split('\n').filter((l) => l.length > 20);
  const flag = await cli('deliver', '--private-key-file', key, '--known-hosts-file', join(STATE_DIR, 'known_hosts'), '--smoke-test', 'gpu-check.sh');
  const env = start(['deliver', '--known-hosts-file', join(STATE_DIR, 'known_hosts'), '--smoke-test', 'gpu-check.sh'], { RIVIERA_PRIVATE_KEY_FILE: key });
  for (const r of [flag, await env.done]) {
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Input 'private-key'");
    for (const l of lines) expect(r.stdout + r.stderr).not.toContain(l);
  }
});

test('deliver --dry-run prints the plan and job script, building and connecting nothing', async () => {
  const image = `rs-e2e/dry-run:${process.pid}`;
  const r = await cli('deliver', ...KEYS, '--smoke-test', 'gpu-check.sh', '--image', image, '--port', '1', '--dry-run');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('#!/bin/bash -l');
  expect(r.stdout).toMatch(/sbatch --parsable .*--gres=gpu:1/);
  expect(() => execFileSync('docker', ['image', 'inspect', image], { stdio: 'ignore' })).toThrow();
});

test('a new user can --dry-run before having a key or known_hosts; a missing smoke test is still caught', async () => {
  const home = mkdtempSync(join(tmpdir(), 'rs-newuser-'));
  const run = (...args: string[]) =>
    startCli(['deliver', '--host', 'riviera.example.edu', '--username', 'me', '--image', 'myimg:dev', ...args], { cwd: ws, home }).done;
  const ok = await run('--smoke-test', 'gpu-check.sh', '--dry-run');
  expect(ok.code).toBe(0);
  expect(ok.stdout).toContain('me@riviera.example.edu:22');
  const missing = await run('--smoke-test', 'pytorch-cuda.py', '--dry-run');
  expect(missing.code).toBe(2);
  expect(missing.stderr).toMatch(/Input 'smoke-test': file 'pytorch-cuda.py' not found/);
  const real = await run('--smoke-test', 'gpu-check.sh');
  expect(real.code).toBe(2);
  expect(real.stderr).toMatch(/Input 'private-key': cannot read .*id_ed25519/);
});

test('status, logs and cancel a running job; deliver then exits 6 (cancelled)', async () => {
  const remoteDir = uniqueRemoteDir('cli-ctl');
  const run = start(['deliver', ...KEYS, '--smoke-test', 'slow.sh', '--remote-dir', remoteDir]);
  await waitForOutput(run, 'started-slow-smoke-test');
  const jobId = /Submitted job (\d+)/.exec(run.output())![1];
  const where = ['--remote-dir', remoteDir, ...KEYS];

  const status = await cli('status', jobId, ...where, '--json');
  expect(status.code).toBe(0);
  expect(JSON.parse(status.stdout)).toMatchObject({ jobId, state: 'RUNNING' });

  const logs = await cli('logs', jobId, ...where);
  expect(logs.code).toBe(0);
  expect(logs.stdout).toContain('started-slow-smoke-test');

  const cancel = await cli('cancel', jobId, ...where);
  expect(cancel.code).toBe(0);
  const result = await run.done;
  expect(result.code).toBe(6);
  expect(result.stdout).toMatch(/FAILED: Job CANCELLED/);
  await eventually(() => activeJobState(jobId) === '', 20_000, `job ${jobId} to leave the queue`);

  const after = await cli('status', jobId, ...where);
  expect(after.stdout).toMatch(new RegExp(`job ${jobId}: (CANCELLED|FAILED)`));
});

test('Ctrl-C while the job runs cancels it and exits 6', async () => {
  const run = start(['deliver', ...KEYS, '--smoke-test', 'slow.sh', '--remote-dir', uniqueRemoteDir('cli-int')]);
  await waitForOutput(run, 'started-slow-smoke-test');
  const jobId = /Submitted job (\d+)/.exec(run.output())![1];
  run.child.kill('SIGINT');
  const result = await run.done;
  expect(result.code).toBe(6);
  expect(result.stderr).toContain('Interrupted: cancelling the job');
  await eventually(() => activeJobState(jobId) === '', 20_000, `job ${jobId} to leave the queue`);
});

test("SIGTERM before the job is submitted releases the run's hold on the image (exit 6)", async () => {
  const remoteDir = uniqueRemoteDir('cli-hold');
  const run = start(['deliver', ...KEYS, '--smoke-test', 'slow.sh', '--remote-dir', remoteDir]);
  await waitForOutput(run, 'Connected; host key matches');
  run.child.kill('SIGTERM');
  const result = await run.done;
  expect(result.code).toBe(6);
  expect(result.stderr).toContain('cancelled before a job was submitted');
  // The store was prepared (the image recorded, so it was held), and the hold is gone.
  expect(readdirSync(`${CLUSTER_HOME}/${remoteDir}/.store/images`)).toHaveLength(1);
  expect(readdirSync(`${CLUSTER_HOME}/${remoteDir}/.store/holds`)).toEqual([]);
});

test('a second Ctrl-C still cancels the job before quitting (exit 130)', async () => {
  const run = start(['deliver', ...KEYS, '--smoke-test', 'slow.sh', '--remote-dir', uniqueRemoteDir('cli-int2')]);
  await waitForOutput(run, 'started-slow-smoke-test');
  const jobId = /Submitted job (\d+)/.exec(run.output())![1];
  run.child.kill('SIGINT');
  // The second one the moment the first is being handled: a fixed pause can outlast the first
  // cancel, which then ends the CLI (exit 6) before the second arrives.
  await new Promise<void>((resolve) => {
    const seen = () => {
      if (!run.output().includes('Interrupted: cancelling the job')) return;
      run.child.stderr!.off('data', seen);
      resolve();
    };
    run.child.stderr!.on('data', seen);
    seen();
  });
  run.child.kill('SIGINT');
  const result = await run.done;
  expect(result.code).toBe(130);
  expect(result.stderr).toContain(`Cancelling job ${jobId} and quitting`);
  await eventually(() => activeJobState(jobId) === '', 20_000, `job ${jobId} to leave the queue`);
});

test('logs --follow streams a job to its end', async () => {
  const remoteDir = uniqueRemoteDir('cli-follow');
  writeFileSync(join(ws, 'count.sh'), 'for i in 1 2 3; do echo tick-$i; sleep 1; done\n');
  const run = start(['deliver', ...KEYS, '--smoke-test', 'count.sh', '--remote-dir', remoteDir]);
  await waitForOutput(run, 'Submitted job');
  const jobId = /Submitted job (\d+)/.exec(run.output())![1];
  const follow = await cli('logs', jobId, '--follow', '--remote-dir', remoteDir, ...KEYS);
  expect(follow.code).toBe(0);
  expect(follow.stdout).toMatch(/tick-1[\s\S]*tick-2[\s\S]*tick-3/);
  expect((await run.done).code).toBe(0);
});

describe('exit codes', () => {
  test('2: bad input, named', async () => {
    const r = await cli('deliver', ...KEYS, '--smoke-test', 'gpu-check.sh', '--gpus', '-1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Input 'gpus'/);
  });

  test('2: an unknown flag', async () => {
    expect((await cli('deliver', '--no-such-flag')).code).toBe(2);
  });

  test('3: nothing listening on the port', async () => {
    const r = await cli('deliver', ...KEYS, '--smoke-test', 'gpu-check.sh', '--port', '1', '--remote-dir', uniqueRemoteDir('cli-conn'));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/Could not connect to the cluster rivuser@127\.0\.0\.1:1/);
  });

  test('4: a host key that known_hosts does not hold', async () => {
    const other = join(ws, 'other_known_hosts');
    const pub = execFileSync('bash', ['-c', 'd=$(mktemp -d); ssh-keygen -q -t ed25519 -N "" -f $d/k; cut -d" " -f1,2 $d/k.pub'], { encoding: 'utf8' }).trim();
    writeFileSync(other, `[127.0.0.1]:2222 ${pub}\n`);
    const r = await cli('deliver', '--private-key-file', join(STATE_DIR, 'id_ed25519'), '--known-hosts-file', other, '--smoke-test', 'gpu-check.sh');
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/Host key refused/);
  });

  test('5: a failing smoke test', async () => {
    const r = await cli(
      'deliver',
      ...KEYS,
      '--smoke-test',
      'gpu-check.sh',
      '--gpus',
      '0',
      '--partition',
      'day-long-cpu',
      '--remote-dir',
      uniqueRemoteDir('cli-fail'),
    );
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('smoke test failed: no GPU visible in the container');
  });

  test('a private key in .riviera.yml is refused (it would sit in the repository)', async () => {
    const cfg = join(ws, 'bad.yml');
    writeFileSync(cfg, 'private-key: nope\n');
    const r = await cli('deliver', ...KEYS, '--config', cfg);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/must not hold 'private-key'/);
    expect(existsSync(cfg)).toBe(true);
  });
});

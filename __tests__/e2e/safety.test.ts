// A shared, busy cluster (issue 12): what the tool may touch, how path inputs read, and that no
// credentials reach a record. The stand-in has what Riviera has and a quiet machine lacks
// (test-cluster/cluster-up.sh): a colleague whose GPU job makes ours queue, a lab group with a
// group-writable directory and a member who plants symlinks in it, and the user's own sif/ and jobs/
// in the home directory and in a folder of theirs.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLUSTER_HOME, ROOT, type StepRun, clusterInputs, makeWorkspace, requireCluster, runStep, uniqueRemoteDir } from './harness.js';

let ws: string;
beforeAll(async () => {
  await requireCluster();
  ws = makeWorkspace();
  writeFileSync(join(ws, 'quick.sh'), 'echo quick-ok\n');
});

/** A delivery on the CPU partition with a smoke test that needs no GPU: the quickest there is. */
const ON_CPU = { gpus: '0', partition: 'day-long-cpu', 'smoke-test': 'quick.sh' };

function inputs(remoteDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...clusterInputs(), image: 'rs-e2e/gpucheck:safety', 'smoke-test': 'gpu-check.sh', 'remote-dir': remoteDir, ...extra };
}

function expectPassed(run: StepRun): void {
  if (run.code !== 0) throw new Error(`the delivery failed:\n${run.log}`);
}

describe('path inputs', () => {
  test('tmpdir ~/x is the folder x in the home directory, not one named ~', async () => {
    const remoteDir = uniqueRemoteDir('tilde');
    const run = await runStep(inputs(remoteDir, { tmpdir: `~/${remoteDir}-tmp`, ...ON_CPU }), { workspace: ws });
    expectPassed(run);
    expect(statSync(`${CLUSTER_HOME}/${remoteDir}-tmp`).isDirectory()).toBe(true);
    expect(existsSync(`${CLUSTER_HOME}/~`)).toBe(false);
  });

  test.each([
    ['tmpdir', '/scratch/../tmp/x', /Input 'tmpdir': must not be under \/tmp/],
    ['remote-dir', '~', /Input 'remote-dir': is your home directory/],
    ['remote-dir', '$HOME', /Input 'remote-dir': is your home directory/],
    ['publish-dir', '$LAB/x', /Input 'publish-dir': .*only \$HOME and \$USER/],
  ])('%s %s is refused before anything is built or sent', async (input, value, message) => {
    const run = await runStep(inputs(uniqueRemoteDir('refused'), { [input]: value, publish: 'true' }), { workspace: ws });
    expect(run.code).toBe(1);
    expect(run.log).toMatch(message);
    expect(run.log).not.toContain('::group::Build');
  });
});

test('a CLI run from a checkout whose remote holds a token records the repository without it', () => {
  const repo = mkdtempSync(join(tmpdir(), 'rs-cred-'));
  const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { stdio: 'ignore' });
  git('init', '-q');
  git('remote', 'add', 'origin', 'https://someone:ghp_SECRET0123456789@github.com/lab/gpu-check.git');
  git('-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-q', '--allow-empty', '-m', 'x');
  git('tag', 'v9.9.9');
  writeFileSync(join(repo, 'gpu-check.sh'), readFileSync(join(ws, 'gpu-check.sh')));
  const out = execFileSync(process.execPath, [join(ROOT, 'dist/cli/index.js'), 'deliver', '--host', 'h.example.edu', '--username', 'me', '--image', 'x:1', '--smoke-test', 'gpu-check.sh', '--dry-run'], {
    cwd: repo,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: repo },
  });
  expect(out).toContain('https://github.com/lab/gpu-check.git');
  expect(out).not.toContain('SECRET');
  expect(out).not.toContain('someone');
});


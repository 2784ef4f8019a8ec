// The verdict against a cluster with accounting: the stand-in's accounting variant (slurmdbd and
// MariaDB, memory limits by cgroups; test-cluster/accounting-up.sh), put back to the default
// (no accounting) afterwards. A passing job is read from sacct too; a smoke test whose memory
// hog is killed by the kernel while the script itself exits 0 does not pass.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, clusterInputs, makeWorkspace, requireCluster, runStep, uniqueRemoteDir } from './harness.js';

const IMAGE = 'rs-e2e/gpucheck:accounting';
const remoteDir = uniqueRemoteDir('accounting');
let ws: string;

const accounting = (what: 'up' | 'down') => execFileSync('bash', [join(ROOT, 'test-cluster/accounting-up.sh'), what], { encoding: 'utf8', timeout: 600_000 });

beforeAll(async () => {
  await requireCluster();
  ws = makeWorkspace();
  accounting('up');
}, 660_000);

afterAll(() => {
  accounting('down');
}, 120_000);

const inputs = (extra: Record<string, string>) => ({
  ...clusterInputs(),
  image: IMAGE,
  context: '.',
  partition: 'short-gpu',
  gpus: '1',
  'remote-dir': remoteDir,
  ...extra,
});

test('a passing job: preflight finds sacct, the verdict reads the job and its steps', async () => {
  const run = await runStep(inputs({ 'smoke-test': 'gpu-check.sh' }), { workspace: ws });
  expect(run.code).toBe(0);
  const id = run.outputs['job-id'];
  expect(run.log).toMatch(new RegExp(`Slurm accounting: ${id} COMPLETED 0:0, ${id}\\.batch COMPLETED 0:0.*`));
});

test('out of memory with exit 0 never passes', async () => {
  // The .sif of the same image is reused (no build under the limit); dd's 400 MiB buffer is over
  // the job's 200 MiB: the kernel kills dd, and the smoke command still exits 0.
  const run = await runStep(
    inputs({ build: 'false', 'smoke-command': 'sh -c "dd if=/dev/zero of=/dev/null bs=400M count=1; echo dd exited $?; exit 0"', 'sbatch-args': '--mem=200M' }),
    { workspace: ws },
  );
  expect(run.log).toMatch(/dd exited 137/);
  expect(run.code).not.toBe(0);
  expect(run.outputs['job-state']).toBe('OUT_OF_MEMORY');
  expect(run.log).toMatch(/::error::Slurm's accounting records \d+\.batch as OUT_OF_MEMORY.*ran out of memory/);
  // What sacct said, for the record (the unit tests hold a copy).
  console.log(
    execFileSync('sacct', ['-j', run.outputs['job-id'], '-D', '-P', '-n', '-o', 'JobID,State,ExitCode,DerivedExitCode,Reason,NodeList'], { encoding: 'utf8' }),
  );
});

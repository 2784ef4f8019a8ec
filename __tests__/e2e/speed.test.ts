// What makes a first delivery fast on a real link, end to end against the stand-in: a large blob
// goes in ranges on several channels at once and is joined and verified on the cluster, and the
// job asks Slurm for the CPUs the .sif build uses. (Speeds themselves are measured by npm run bench.)
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { CLUSTER_HOME, clusterInputs, filesUnder, makeDataImageContext, requireCluster, runStep, uniqueRemoteDir } from './harness.js';

beforeAll(async () => {
  await requireCluster();
});

function inputs(remoteDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...clusterInputs(), 'smoke-test': 'gpu-check.sh', 'remote-dir': remoteDir, ...extra };
}

test('a large blob goes in ranges on several channels, which the cluster joins and checks into one blob', async () => {
  const remoteDir = uniqueRemoteDir('ranges');
  const ws = makeDataImageContext({ randomMiB: 48, zerosMiB: 1, seed: 'ranges' });
  const run = await runStep(inputs(remoteDir, { image: 'rs-e2e/data:ranges' }), { workspace: ws });
  if (run.code !== 0) throw new Error(`the delivery failed:\n${run.log}`);
  expect(run.outputs['job-state']).toBe('COMPLETED');

  const dir = `${CLUSTER_HOME}/${remoteDir}/.store/blobs/sha256`;
  const blobs = filesUnder(dir).map((f) => ({ hex: f.split('/').pop()!, size: statSync(f).size }));
  const big = blobs.sort((a, b) => b.size - a.size)[0];
  expect(big.size).toBeGreaterThan(48 * 2 ** 20);
  // Stored under its digest, and that is what it holds.
  expect(execFileSync('sha256sum', [join(dir, big.hex)], { encoding: 'utf8' }).split(' ')[0]).toBe(big.hex);

  // The ranges it went in (the transfer says so in the debug log): several, tiling the blob.
  const said = new RegExp(`blob ${big.hex.slice(0, 12)}: in the store, sent in ranges ([\\d,-]+)`).exec(run.log);
  expect(said).not.toBeNull();
  const ranges = said![1]
    .split(',')
    .map((r) => r.split('-').map(Number))
    .sort((a, b) => a[0] - b[0]);
  expect(ranges.length).toBeGreaterThanOrEqual(4);
  let pos = 0;
  for (const [start, end] of ranges) {
    expect(start).toBe(pos);
    pos = end;
  }
  expect(pos).toBe(big.size);
  // Nothing half-received is left behind.
  expect(filesUnder(`${CLUSTER_HOME}/${remoteDir}/.store/incoming`).filter((f) => /\.part$|\.join\./.test(f))).toEqual([]);
});

test('build-cpus reaches sbatch (--cpus-per-task), lowered to what a node of the partition has', async () => {
  const nodeCpus = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  const remoteDir = uniqueRemoteDir('cpus');
  const ws = makeDataImageContext({ randomMiB: 1, zerosMiB: 1, seed: 'cpus' });
  const one = await runStep(inputs(remoteDir, { image: 'rs-e2e/data:cpus', 'build-cpus': '1' }), { workspace: ws });
  if (one.code !== 0) throw new Error(`the delivery failed:\n${one.log}`);
  // The job reports what Slurm gave it (SLURM_CPUS_PER_TASK), and the summary the build's CPUs.
  expect(one.log).toContain('riviera-singularity: the .sif build has 1 CPU(s) of the node');
  expect(one.summary).toMatch(/\.sif build<\/td><td>[\d.]+ s on 1 CPU</);
  expect(one.summary).toContain('```mermaid\ngantt');

  const many = await runStep(inputs(uniqueRemoteDir('cpus-many'), { image: 'rs-e2e/data:cpus', 'build-cpus': String(nodeCpus + 6) }), { workspace: ws });
  if (many.code !== 0) throw new Error(`the delivery failed:\n${many.log}`);
  expect(many.log).toContain(`build-cpus ${nodeCpus + 6} is more than a node of partition short-gpu has: asking for ${nodeCpus}`);
  expect(many.log).toContain(`riviera-singularity: the .sif build has ${nodeCpus} CPU(s) of the node`);
});

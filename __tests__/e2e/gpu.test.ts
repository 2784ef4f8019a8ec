// The GPU report against the stand-in, with an image that declares CUDA 12.4 (as NVIDIA's images
// do, in CUDA_VERSION) and the node's driver set to a new, an old and the default one
// (/etc/riviera-standin-driver, put back afterwards): the outputs and summary name the node's GPU,
// driver and CUDA, and the image's; a driver too old for the image's CUDA major version stops the
// job before the smoke test with one line; a newer minor version only warns.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { makeWorkspace, requireCluster, runStep, clusterInputs, singularityCalls, uniqueRemoteDir } from './harness.js';

const DRIVER_FILE = '/etc/riviera-standin-driver';
const IMAGE = `rs-e2e/cuda124:${process.pid}`;
let original: string;
let ws: string;
const remoteDir = uniqueRemoteDir('gpu');

beforeAll(async () => {
  await requireCluster();
  original = readFileSync(DRIVER_FILE, 'utf8');
  ws = makeWorkspace();
  appendFileSync(`${ws}/Dockerfile`, 'ENV CUDA_VERSION=12.4.0\n');
  execFileSync('docker', ['build', '-q', '-t', IMAGE, ws], { stdio: 'ignore' });
});

afterAll(() => {
  if (original !== undefined) writeFileSync(DRIVER_FILE, original);
  spawnSync('docker', ['rmi', '-f', IMAGE], { stdio: 'ignore' });
});

async function deliverWithDriver(driver: string) {
  writeFileSync(DRIVER_FILE, `${driver}\n`);
  const since = Date.now() / 1000;
  try {
    const run = await runStep(
      { ...clusterInputs(), image: IMAGE, build: 'false', 'smoke-test': 'gpu-check.sh', partition: 'short-gpu', gpus: '1', 'remote-dir': remoteDir },
      { workspace: ws },
    );
    return { run, smokeCalls: singularityCalls(since).filter((c) => c.SLURM_JOB_ID === run.outputs['job-id'] && c.argv[0] === 'run') };
  } finally {
    writeFileSync(DRIVER_FILE, original);
  }
}

test('a new driver: passes, and the outputs and summary say what it ran on', async () => {
  const { run } = await deliverWithDriver('550.54.15 12.4');
  expect(run.log).not.toMatch(/::(error|warning)::/);
  expect(run.code).toBe(0);
  expect(run.outputs).toMatchObject({
    'gpu-name': 'NVIDIA A100-SXM4-40GB',
    'gpu-count': '1',
    'driver-version': '550.54.15',
    'driver-cuda': '12.4',
    'image-cuda': '12.4.0',
  });
  expect(run.log).toMatch(
    /GPU report: 1× NVIDIA A100-SXM4-40GB on \S+, driver 550\.54\.15 \(CUDA 12\.4\); 1 GPU\(s\) inside the container; image CUDA 12\.4\.0\./,
  );
  expect(run.summary).toContain('Image CUDA');
  expect(run.summary).toContain('550.54.15 (CUDA 12.4) / 550.54.15 (CUDA 12.4)');
  expect(run.summary).toMatch(/gpu-check/);
});

test('an old driver: the job stops before the smoke test; one line names both versions and the driver needed', async () => {
  const { run, smokeCalls } = await deliverWithDriver('470.82.01 11.4');
  expect(run.code).not.toBe(0);
  const errors = run.log.split('\n').filter((l) => l.startsWith('::error::'));
  expect(errors).toEqual(["::error::The image's CUDA 12.4.0 needs NVIDIA driver >= 525.60.13, but the node has driver 470.82.01 (CUDA 11.4)."]);
  expect(smokeCalls).toEqual([]);
  expect(run.outputs).toMatchObject({ 'job-state': 'FAILED', 'driver-version': '470.82.01', 'driver-cuda': '11.4', 'image-cuda': '12.4.0' });
});

test('the default driver (CUDA 12.2) runs the CUDA 12.4 image with a warning (minor version compatibility)', async () => {
  const { run, smokeCalls } = await deliverWithDriver('535.104.05 12.2');
  expect(run.code).toBe(0);
  expect(run.log).toMatch(/::warning::The image's CUDA 12\.4\.0 is newer than the 12\.2 that driver 535\.104\.05 reports/);
  expect(smokeCalls).toHaveLength(1);
});

// Publication on tag and runtime selection, through the bundled action against the stand-in cluster.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { CLUSTER_HOME, type StepRun, clusterInputs, clusterWorkspace, runStep, singularityCalls, uniqueRemoteDir } from './harness.js';

let ws: string;
beforeAll(async () => {
  ws = await clusterWorkspace();
});

const tagEnv = (tag: string) => ({
  GITHUB_REF_TYPE: 'tag',
  GITHUB_REF_NAME: tag,
  GITHUB_SHA: '0123456789abcdef0123456789abcdef01234567',
  GITHUB_REPOSITORY: 'lab/gpu-check',
  GITHUB_SERVER_URL: 'https://github.com',
});

function inputs(remoteDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...clusterInputs(), image: 'rs-e2e/gpucheck:pub', 'smoke-test': 'gpu-check.sh', 'remote-dir': remoteDir, ...extra };
}

function expectPassed(run: StepRun): void {
  if (run.code !== 0) throw new Error(`the delivery failed:\n${run.log}`);
}

describe('publication on a tag', () => {
  const remoteDir = uniqueRemoteDir('publish');
  const pub = `${CLUSTER_HOME}/${remoteDir}/published`;

  test('a tag run publishes the tested .sif with its sha256, a provenance record and a latest link', async () => {
    const run = await runStep(inputs(remoteDir, { 'keep-versions': '2' }), { workspace: ws, env: tagEnv('v1.0.0') });
    expectPassed(run);
    expect(run.outputs['published-path']).toBe(`${pub}/gpucheck_v1.0.0.sif`);
    execFileSync('sha256sum', ['-c', '--status', 'gpucheck_v1.0.0.sif.sha256'], { cwd: pub });
    const record = JSON.parse(readFileSync(`${pub}/gpucheck_v1.0.0.json`, 'utf8'));
    expect(record).toMatchObject({
      name: 'gpucheck',
      version: 'v1.0.0',
      image: 'rs-e2e/gpucheck:pub',
      digest: run.outputs['image-digest'],
      repository: 'https://github.com/lab/gpu-check',
      commit: '0123456789abcdef0123456789abcdef01234567',
      tag: 'v1.0.0',
      job: run.outputs['job-id'],
    });
    expect(record.date).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(record.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(readlinkSync(`${pub}/gpucheck_latest.sif`)).toBe('gpucheck_v1.0.0.sif');
    expect(statSync(`${pub}/gpucheck_v1.0.0.sif`).mode & 0o777).toBe(0o600);
    expect(run.summary).toContain(`${pub}/gpucheck_v1.0.0.sif`);
  });

  test('a failing smoke test on a tag publishes nothing', async () => {
    const before = readdirSync(pub).sort();
    const run = await runStep(inputs(remoteDir, { gpus: '0', partition: 'day-long-cpu' }), { workspace: ws, env: tagEnv('v1.0.1-broken') });
    expect(run.code).toBe(1);
    expect(run.outputs['published-path']).toBe('');
    expect(readdirSync(pub).sort()).toEqual(before);
    expect(readlinkSync(`${pub}/gpucheck_latest.sif`)).toBe('gpucheck_v1.0.0.sif');
  });

  test('later tags move latest, and only keep-versions versions stay', async () => {
    for (const tag of ['v1.1.0', 'v1.2.0']) {
      const run = await runStep(inputs(remoteDir, { 'keep-versions': '2' }), { workspace: ws, env: tagEnv(tag) });
      expectPassed(run);
      expect(readlinkSync(`${pub}/gpucheck_latest.sif`)).toBe(`gpucheck_${tag}.sif`);
    }
    const sifs = readdirSync(pub)
      .filter((f) => f.endsWith('.sif') && !f.includes('latest'))
      .sort();
    expect(sifs).toEqual(['gpucheck_v1.1.0.sif', 'gpucheck_v1.2.0.sif']);
    expect(existsSync(`${pub}/gpucheck_v1.0.0.json`)).toBe(false);
    expect(existsSync(`${pub}/gpucheck_v1.0.0.sif.sha256`)).toBe(false);
  });

  test('two publications at once leave a consistent latest', async () => {
    const runs = await Promise.all(
      ['v2.0.0', 'v2.1.0'].map((tag) => runStep(inputs(remoteDir, { 'keep-versions': '5' }), { workspace: ws, env: tagEnv(tag) })),
    );
    for (const run of runs) expectPassed(run);
    const latest = readlinkSync(`${pub}/gpucheck_latest.sif`);
    expect(['gpucheck_v2.0.0.sif', 'gpucheck_v2.1.0.sif']).toContain(latest);
    execFileSync('sha256sum', ['-c', '--status', `${latest}.sha256`], { cwd: pub });
    expect(readdirSync(pub).filter((f) => f.includes('.tmp.'))).toEqual([]);
  });

  test('a push (not a tag) publishes nothing; publish: true does, with a group mode', async () => {
    const push = await runStep(inputs(remoteDir), {
      workspace: ws,
      env: { GITHUB_REF_TYPE: 'branch', GITHUB_REF_NAME: 'main', GITHUB_SHA: 'feedfacefeedfacefeedfacefeedfacefeedface' },
    });
    expectPassed(push);
    expect(push.outputs['published-path']).toBe('');
    const group = execFileSync('id', ['-gn', 'rivuser'], { encoding: 'utf8' }).trim();
    const forced = await runStep(inputs(remoteDir, { publish: 'true', 'publish-group': group, 'publish-dir': `${remoteDir}/shared` }), {
      workspace: ws,
      env: { GITHUB_REF_TYPE: 'branch', GITHUB_REF_NAME: 'main', GITHUB_SHA: 'feedfacefeedfacefeedfacefeedfacefeedface' },
    });
    expectPassed(forced);
    expect(forced.outputs['published-path']).toBe(`${CLUSTER_HOME}/${remoteDir}/shared/gpucheck_feedfacefeed.sif`);
    expect(statSync(forced.outputs['published-path']).mode & 0o777).toBe(0o640);
    expect(statSync(`${CLUSTER_HOME}/${remoteDir}/shared`).mode & 0o777).toBe(0o750);
  });
});

describe('smoke-testing a published .sif (the nightly run)', () => {
  const remoteDir = uniqueRemoteDir('nightly');
  beforeAll(async () => {
    expectPassed(await runStep(inputs(remoteDir), { workspace: ws, env: tagEnv('v3.0.0') }));
  });

  test('tests the published latest without building, saving or sending anything', async () => {
    const { image: _image, ...rest } = inputs(remoteDir, { sif: `${remoteDir}/published/gpucheck_latest.sif` });
    void _image;
    const run = await runStep(rest, { workspace: ws });
    expectPassed(run);
    expect(run.outputs['sif-reused']).toBe('true');
    expect(run.outputs['bytes-sent']).toBe('0');
    expect(run.outputs['sif-path']).toBe(`${CLUSTER_HOME}/${remoteDir}/published/gpucheck_v3.0.0.sif`);
    expect(run.log).not.toContain('::group::Build');
    expect(run.log).not.toContain('::group::Save');
    const calls = singularityCalls(0).filter((c) => c.SLURM_JOB_ID === run.outputs['job-id']);
    // The runtime's version, the GPU report's look inside the container, the smoke test.
    expect(calls.map((c) => c.argv[0])).toEqual(['--version', 'exec', 'run']);
  });

  test('a .sif that is not there fails before anything is submitted, naming it', async () => {
    const { image: _image, ...rest } = inputs(remoteDir, { sif: `${remoteDir}/published/nope_latest.sif` });
    void _image;
    const run = await runStep(rest, { workspace: ws });
    expect(run.code).toBe(1);
    expect(run.log).toContain(`no .sif at ~/${remoteDir}/published/nope_latest.sif on the cluster`);
    expect(run.state.jobId).toBeUndefined();
  });
});

describe('runtime', () => {
  test('auto picks apptainer when the modules provide it', async () => {
    const run = await runStep(inputs(uniqueRemoteDir('apptainer'), { modules: 'slurm apptainer cuda12.2/toolkit' }), { workspace: ws });
    expectPassed(run);
    const calls = singularityCalls(0).filter((c) => c.SLURM_JOB_ID === run.outputs['job-id']) as { prog?: string; argv: string[] }[];
    expect(calls.map((c) => c.prog)).toEqual(['apptainer', 'apptainer', 'apptainer', 'apptainer']);
    expect(run.log).toContain('apptainer version 1.3.6-standin');
  });

  test('auto picks singularity with the default modules', async () => {
    const run = await runStep(inputs(uniqueRemoteDir('singularity')), { workspace: ws });
    expectPassed(run);
    const calls = singularityCalls(0).filter((c) => c.SLURM_JOB_ID === run.outputs['job-id']) as { prog?: string }[];
    expect(new Set(calls.map((c) => c.prog))).toEqual(new Set(['singularity']));
  });

  test('asking for a runtime the modules do not provide fails in preflight with what to do, submitting nothing', async () => {
    const run = await runStep(inputs(uniqueRemoteDir('noruntime'), { modules: 'slurm apptainer', runtime: 'singularity' }), { workspace: ws });
    expect(run.code).toBe(1);
    expect(run.log).toMatch(/No singularity after loading the modules/);
    expect(run.log).toMatch(/Add the module that provides singularity to 'modules'/);
    expect(run.state.jobId).toBeUndefined();
  });
});

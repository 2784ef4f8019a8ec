// Shipping only what the cluster lacks, end to end through the byte-counting proxy: dedup, resume
// after a cut, a corrupted blob, concurrent deliveries, .sif reuse and garbage collection.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLUSTER_HOME,
  type Proxy,
  type StepRun,
  clusterInputs,
  filesUnder,
  makeDataImageContext,
  makeWorkspace,
  requireCluster,
  runStep,
  singularityCalls,
  startProxy,
  startStep,
  uniqueRemoteDir,
  viaProxy,
} from './harness.js';

const IMAGE = 'rs-e2e/data:v1';
let ws: string;
let wsChanged: string;

beforeAll(async () => {
  await requireCluster();
  ws = makeDataImageContext({ randomMiB: 16, zerosMiB: 16 });
  wsChanged = makeDataImageContext({ randomMiB: 16, zerosMiB: 16, extra: 'one more small layer\n' });
});

function inputs(remoteDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...clusterInputs(), image: IMAGE, 'smoke-test': 'gpu-check.sh', 'remote-dir': remoteDir, ...extra };
}

function builtInJob(run: StepRun): boolean {
  return singularityCalls(0).some((c) => c.SLURM_JOB_ID === run.outputs['job-id'] && c.argv[0] === 'build');
}

function storeBlobs(remoteDir: string): string[] {
  const dir = `${CLUSTER_HOME}/${remoteDir}/.store/blobs/sha256`;
  return existsSync(dir) ? readdirSync(dir) : [];
}

function expectPassed(run: StepRun): void {
  if (run.code !== 0) throw new Error(`the delivery failed:\n${run.log}`);
  expect(run.outputs['job-state']).toBe('COMPLETED');
}

describe('dedup and reuse', () => {
  const remoteDir = uniqueRemoteDir('dedup');
  let proxy: Proxy;
  let first: StepRun;
  let firstUp: number;
  beforeAll(async () => {
    proxy = await startProxy();
    first = await runStep({ ...inputs(remoteDir), ...viaProxy(proxy.port) }, { workspace: ws });
    firstUp = proxy.counts().up;
  });
  afterAll(() => proxy.stop());

  test('the first delivery sends the layers compressed where that pays: about half the tar for 16 MiB random + 16 MiB zeros', () => {
    expectPassed(first);
    const total = Number(first.outputs['bytes-total']);
    expect(total).toBeGreaterThan(33 * 2 ** 20);
    expect(first.outputs['sif-reused']).toBe('false');
    expect(firstUp / total).toBeLessThan(0.55);
    expect(Number(first.outputs['bytes-sent'])).toBeLessThan(firstUp);
    expect(builtInJob(first)).toBe(true);
  });

  test('the same image again sends almost nothing and reuses the .sif', async () => {
    const before = proxy.counts().up;
    const again = await runStep({ ...inputs(remoteDir), ...viaProxy(proxy.port) }, { workspace: ws });
    expectPassed(again);
    const up = proxy.counts().up - before;
    expect(again.outputs['sif-reused']).toBe('true');
    expect(again.outputs['bytes-sent']).toBe('0');
    expect(up / Number(again.outputs['bytes-total'])).toBeLessThan(0.005);
    expect(builtInJob(again)).toBe(false);
    expect(again.outputs['sif-path']).toBe(first.outputs['sif-path']);
    expect(again.summary).toContain('yes (image unchanged)');
  });

  test('one new small layer sends only that layer and its config', async () => {
    const before = proxy.counts().up;
    const changed = await runStep({ ...inputs(remoteDir), ...viaProxy(proxy.port) }, { workspace: wsChanged });
    expectPassed(changed);
    const up = proxy.counts().up - before;
    expect(changed.outputs['sif-reused']).toBe('false');
    expect(up / Number(changed.outputs['bytes-total'])).toBeLessThan(0.01);
    expect(changed.log).toMatch(/sending 2 \(/);
    expect(builtInJob(changed)).toBe(true);
  });

  test('force-rebuild builds the .sif again without sending anything', async () => {
    const run = await runStep(inputs(remoteDir, { 'force-rebuild': 'true' }), { workspace: ws });
    expectPassed(run);
    expect(run.outputs['sif-reused']).toBe('false');
    expect(run.outputs['bytes-sent']).toBe('0');
    expect(builtInJob(run)).toBe(true);
  });

  test('a corrupted blob in the store is detected and sent again', async () => {
    const blobs = storeBlobs(remoteDir);
    const victim = blobs.map((b) => ({ b, size: statSync(`${CLUSTER_HOME}/${remoteDir}/.store/blobs/sha256/${b}`).size })).sort((x, y) => x.size - y.size)[0];
    // Same size, different bytes: only the digest check can tell.
    const fd = openSync(`${CLUSTER_HOME}/${remoteDir}/.store/blobs/sha256/${victim.b}`, 'r+');
    writeSync(fd, Buffer.from('CORRUPT!'), 0, 8, 0);
    closeSync(fd);
    const run = await runStep(inputs(remoteDir, { 'force-rebuild': 'true' }), { workspace: ws });
    expectPassed(run);
    expect(run.log).toContain(`Blob ${victim.b.slice(0, 12)} on the cluster failed its digest check`);
    expect(Number(run.outputs['bytes-sent'])).toBeGreaterThan(0);
    const sum = execFileSync('sha256sum', [`${CLUSTER_HOME}/${remoteDir}/.store/blobs/sha256/${victim.b}`], { encoding: 'utf8' }).split(' ')[0];
    expect(sum).toBe(victim.b);
  });
});

test.each(['builtin', 'openssh'])('ssh-client %s: a connection cut after 10 MiB is resumed, not restarted', async (client) => {
  const remoteDir = uniqueRemoteDir('cut');
  const proxy = await startProxy({ cutAfter: 10 * 2 ** 20, cutOnce: true });
  try {
    const run = await runStep({ ...inputs(remoteDir, { 'ssh-client': client }), ...viaProxy(proxy.port) }, { workspace: ws });
    expectPassed(run);
    const c = proxy.counts();
    expect(c.cuts).toBe(1);
    expect(c.conns).toBeGreaterThanOrEqual(2);
    expect(run.log).toMatch(/Reconnecting in \d+ s/);
    // A range resumed from the bytes the cluster had of it (named by digest, or by a stand-in while being saved).
    expect(run.log).toMatch(/Resuming m?[0-9a-f]{11,12} at [1-9]\d* of \d+ bytes/);
    // Starting over would cost an uncut delivery (about half the tar) plus the 10 MiB sent before
    // the cut; resuming costs only what was in flight when the link dropped (a few MiB of window).
    const total = Number(run.outputs['bytes-total']);
    expect(c.up).toBeLessThan(0.51 * total + 8 * 2 ** 20);
    expect(filesUnder(`${CLUSTER_HOME}/${remoteDir}`).filter((f) => /\.part$|\.join\.|\.tmp\./.test(f))).toEqual([]);
  } finally {
    proxy.stop();
  }
});

test('three concurrent deliveries of one image to one remote-dir all succeed, each .sif intact', async () => {
  const remoteDir = uniqueRemoteDir('concurrent');
  const runs = await Promise.all([0, 1, 2].map(() => runStep(inputs(remoteDir), { workspace: ws })));
  for (const run of runs) expectPassed(run);
  expect(new Set(runs.map((r) => r.outputs['job-id'])).size).toBe(3);
  const sif = runs[0].outputs['sif-path'];
  execFileSync('sha256sum', ['-c', '--status', `${sif.split('/').pop()}.sha256`], { cwd: sif.replace(/\/[^/]+$/, '') });
  expect(filesUnder(`${CLUSTER_HOME}/${remoteDir}`).filter((f) => /\.part$|\.join\.|\.tmp\./.test(f))).toEqual([]);
  // Each blob went over the wire once at most, not three times.
  const sent = runs.reduce((a, r) => a + Number(r.outputs['bytes-sent']), 0);
  expect(sent).toBeLessThan(Number(runs[0].outputs['bytes-total']) * 0.6);
});

test('garbage collection keeps the newest keep-images images and drops the rest', async () => {
  const remoteDir = uniqueRemoteDir('gc');
  const a = await runStep(inputs(remoteDir, { 'keep-images': '1' }), { workspace: ws });
  expectPassed(a);
  const blobsA = storeBlobs(remoteDir);
  const b = await runStep(
    { ...inputs(remoteDir, { 'keep-images': '1' }), image: 'rs-e2e/gpucheck:gc' },
    { workspace: makeDataImageContext({ randomMiB: 1, zerosMiB: 1, seed: 'gc' }) },
  );
  expectPassed(b);
  const blobsB = storeBlobs(remoteDir);
  const records = readdirSync(`${CLUSTER_HOME}/${remoteDir}/.store/images`);
  expect(records).toEqual([b.outputs['image-digest'].slice(7)]);
  // A's own data layers are gone; what B shares with A (busybox) stays.
  expect(blobsA.filter((x) => !blobsB.includes(x)).length).toBeGreaterThan(0);
  expect(blobsB.filter((x) => blobsA.includes(x)).length).toBeGreaterThan(0);
  expect(existsSync(a.outputs['sif-path'])).toBe(false);
  expect(existsSync(b.outputs['sif-path'])).toBe(true);
  expect(statSync(`${CLUSTER_HOME}/${remoteDir}/.store`).mode & 0o077).toBe(0);
});

test.each(['builtin', 'openssh'])('ssh-client %s: a connection lost while the job is followed is re-established, and following goes on', async (client) => {
  const remoteDir = uniqueRemoteDir('follow-cut');
  const slowWs = makeWorkspace();
  writeFileSync(join(slowWs, 'slow.sh'), 'echo before-cut\nsleep 6\necho after-cut\n');
  const proxy = await startProxy();
  try {
    const step = startStep(
      { ...inputs(remoteDir, { 'smoke-test': 'slow.sh', image: 'rs-e2e/gpucheck:cut', 'ssh-client': client }), ...viaProxy(proxy.port) },
      { workspace: slowWs },
    );
    await step.waitFor('before-cut');
    proxy.cut();
    const run = await step.done;
    expectPassed(run);
    expect(proxy.counts().cuts).toBeGreaterThanOrEqual(1);
    expect(run.log).toMatch(/Following the job: .*Reconnecting|The SSH connection was lost; reconnecting/);
    expect(run.log).toContain('after-cut');
    // The output after the cut continues where it was: nothing is shown twice.
    expect(run.log.split('before-cut').length - 1).toBe(1);
  } finally {
    proxy.stop();
  }
});

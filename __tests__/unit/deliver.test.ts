// One delivery end to end in-process, against a local stand-in cluster: the real store, transfer,
// submission and follow scripts run in a temp home through the retrying session; Slurm is stood in
// for by an sbatch that records the job's result as a passing (or failing) job would, and a squeue
// that reports it. The job script itself is tested on its own (jobscript.test.ts).
import { jest } from '@jest/globals';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isUnderTmp } from '../../src/core/clusterpath.js';
import type { LocalCluster } from '../helpers/localcluster.js';
import { testKeys } from '../helpers/keys.js';
import { fakeReporter } from '../helpers/reporter.js';
import { writeSavedImage } from '../helpers/tarfixture.js';

let cluster: LocalCluster;
jest.unstable_mockModule('../../src/core/connect.js', async () => (await import('../helpers/localcluster.js')).localConnectModule(() => cluster));
const { deliver } = await import('../../src/core/deliver.js');
const { parseSettings } = await import('../../src/core/settings.js');
const { LocalCluster: Cluster } = await import('../helpers/localcluster.js');
const { JOB_MARKER } = await import('../../src/core/jobscript.js');

const keys = testKeys('[127.0.0.1]:2222');
const sha = (d: string | Buffer) => createHash('sha256').update(d).digest('hex');

/** A one-layer `docker save` tar in the workspace. */
function savedImage(): { path: string; id: string; layer: Buffer } {
  const layer = Buffer.alloc(300_000, 7);
  return { ...writeSavedImage(join(workspace, 'image.tar'), layer, 'demo:1'), layer };
}

/**
 * Slurm as the delivery sees it: the partition and its GPUs (preflight), sbatch --test-only
 * accepting the job, and an sbatch that "runs" it at once, writing its output and status as the job
 * script would; squeue reports its end. A `singularity` on PATH is the runtime preflight looks for.
 */
function slurm(smokeExit: number) {
  cluster.command('scontrol', "echo 'PartitionName=short-gpu MaxTime=04:00:00 State=UP TotalCPUs=2 TotalNodes=1'");
  cluster.command('sinfo', "echo 'short-gpu|gpu:1'");
  cluster.command('singularity', 'exit 0');
  cluster.command(
    'sbatch',
    `case " $* " in *" --test-only "*) echo "sbatch: Job 4242 to start at 2026-11-27T15:04:15 using 1 processors on nodes vm in partition short-gpu" >&2; exit 0;; esac
for a; do last=$a; done
dir=$(dirname "$last")
# The job's markers carry the delivery's token, as its script's header gives it.
m=$(sed -n "s/^marker='\\(.*\\)'$/\\1/p" "$last")
case $m in "${JOB_MARKER} "?*) ;; *) echo "no marker with a token in the job script" >&2; exit 1;; esac
printf '%s\\n' "$m phase smoke-test 10" 'Output tensor device: cuda:0' "$m phase end 12" > "$dir/job.out"
echo 'smoke-test ${smokeExit}' > "$dir/status"
echo '${smokeExit === 0 ? 'COMPLETED' : 'FAILED'}|None|gpu-01' > "$HOME/squeue.state"
printf '%s\\n' "$@" > "$HOME/sbatch.args"
echo 4242`,
  );
  // Nothing listed before sbatch (submit.sh first looks for an earlier attempt's job).
  cluster.command('squeue', '[ ! -f "$HOME/squeue.state" ] || cat "$HOME/squeue.state"');
}

/** Where the archive must be: in the working directory (the workspace). */
let workspace: string;
beforeEach(() => {
  // Not under /tmp, where a delivery refuses a remote-dir (node-local /tmp is not shared): beside
  // the checkout, or in the home directory if the checkout itself is under /tmp.
  cluster = new Cluster('.riviera-deliver-test-', isUnderTmp(process.cwd()) ? homedir() : process.cwd());
  workspace = mkdtempSync(join(process.cwd(), '.riviera-deliver-ws-'));
});
afterEach(() => {
  cluster.remove();
  rmSync(workspace, { recursive: true, force: true });
});

const settingsFor = (image: { path: string }, over: Record<string, string> = {}) =>
  parseSettings({
    host: '127.0.0.1',
    port: '2222',
    username: 'u',
    'private-key': keys.privateKey,
    'known-hosts': keys.knownHosts,
    archive: image.path,
    'smoke-command': 'python3 check.py',
    'login-modules': 'none',
    modules: 'none',
    runtime: 'singularity',
    'remote-dir': 'rs',
    partition: 'short-gpu',
    ...over,
  });

test('a passing delivery: the layer lands in the store, the job is submitted and followed, the result says so', async () => {
  const image = savedImage();
  slurm(0);
  const reporter = fakeReporter();
  const submitted: string[] = [];
  const r = await deliver(settingsFor(image), reporter, { pollMs: 10, onJobSubmitted: ({ jobId }) => void submitted.push(jobId) });

  expect(r).toMatchObject({
    ok: true,
    jobId: '4242',
    jobState: 'COMPLETED',
    exitCode: 0,
    imageDigest: image.id,
    sifReused: false,
    node: 'gpu-01',
    error: null,
  });
  expect(r.sifPath).toBe(join(cluster.home, 'rs/sif', `${image.id.slice(7)}.sif`));
  expect(submitted).toEqual(['4242']);
  expect(readFileSync(join(cluster.home, 'rs/.store/blobs/sha256', sha(image.layer))).equals(image.layer)).toBe(true);
  expect(r.bytesSent).toBeGreaterThan(0);
  expect(r.bytesSent).toBeLessThan(image.layer.length / 10); // a layer of one byte value compresses
  expect(r.outputTail).toEqual(['Output tensor device: cuda:0']);
  const args = readFileSync(join(cluster.home, 'sbatch.args'), 'utf8').split('\n');
  expect(args).toEqual(expect.arrayContaining(['--parsable', '--partition=short-gpu', '--gres=gpu:1']));
  const jobDir = readlinkSync(join(cluster.home, 'rs/jobs/job-4242'));
  expect(readdirSync(jobDir).sort()).toEqual(['heartbeat', 'job.out', 'job.sh', 'manifest.json', 'status', 'submit.lock', 'submitted']);
  expect(r.timings.map((t) => t.phase)).toEqual(expect.arrayContaining(['upload', 'sbatch-wait', 'smoke-test', 'total']));
});

test('the same image again: nothing sent, the existing .sif is tested', async () => {
  const image = savedImage();
  slurm(0);
  await deliver(settingsFor(image), fakeReporter(), { pollMs: 10 });
  // The job would have built the .sif: put one there as it would.
  const sif = join(cluster.home, 'rs/sif', `${image.id.slice(7)}.sif`);
  writeFileSync(sif, 'sif');
  writeFileSync(`${sif}.sha256`, `${sha('sif')}  ${sif}\n`);
  const reporter = fakeReporter();
  const r = await deliver(settingsFor(image), reporter, { pollMs: 10 });
  expect(r).toMatchObject({ ok: true, sifReused: true, bytesSent: 0 });
  expect(reporter.infos()).toContain('The cluster has an intact .sif of this image: nothing to save or send.');
});

test('a failing smoke test: the result carries the error and its exit code; the step fails with it', async () => {
  const image = savedImage();
  slurm(3);
  const r = await deliver(settingsFor(image), fakeReporter(), { pollMs: 10 });
  expect(r).toMatchObject({ ok: false, jobState: 'FAILED', exitCode: 3 });
  expect(r.error?.exitCode).toBe(5);
  expect(r.message).toBe('The smoke test exited with code 3: see its output above.');
});

test('a dropped connection during the delivery is survived', async () => {
  const image = savedImage();
  slurm(0);
  cluster.dropNext = 2;
  const r = await deliver(settingsFor(image), fakeReporter(), { pollMs: 10 });
  expect(r.ok).toBe(true);
  expect(r.reconnects).toBeGreaterThanOrEqual(1);
}, 20_000);

test('aborted before submitting: nothing is submitted, an interruption error', async () => {
  const image = savedImage();
  slurm(0);
  const controller = new AbortController();
  controller.abort();
  await expect(deliver(settingsFor(image), fakeReporter(), { signal: controller.signal })).rejects.toThrow('cancelled before a job was submitted');
  expect(existsSync(join(cluster.home, 'sbatch.args'))).toBe(false);
});

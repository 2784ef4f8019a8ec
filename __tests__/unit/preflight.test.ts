// Preflight: the facts the cluster-side script reports, and the checks made of them.
import { type PreflightWants, evaluatePreflight, parsePreflight, preflightFailureMessage } from '../../src/core/preflight.js';

// Recorded on the stand-in: cluster/preflight.sh with modules slurm ... nosuch/1, a remote-dir to be
// created under the home directory and a tmpdir under an unwritable /.
const P = (s: string) => `pf ${s}`;
const RECORDED = [
  'Welcome to Riviera (a profile banner: not a fact)',
  P('slurm 0'),
  P(
    'scontrol PartitionName=short-gpu AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=04:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=2 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=4000M,node=1,billing=2',
  ),
  P(
    'scontrol PartitionName=day-long-cpu AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=1-00:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=2 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=4000M,node=1,billing=2',
  ),
  P('sinfo short-gpu|gpu:2'),
  P('sinfo day-long-cpu*|gpu:2'),
  P('testonly sbatch: Job 56 to start at 2026-11-27T15:04:15 using 1 processors on nodes vm in partition short-gpu'),
  P('testonly-rc 0'),
  P('sacct 1'),
  P('module slurm 0'),
  P('module singularity 0'),
  P('module cuda12.2/blas 0'),
  P('module nosuch/1 1'),
  P('modload 1'),
  P('runtime -'),
  P('dir remote-dir 1 81095864 16277285 16777216 /home/rivuser'),
  P('dir tmpdir 0 81095812 16277276 16777216 /'),
  'root /home/rivuser/riviera-singularity',
].join('\n');

const wants = (w: Partial<PreflightWants> = {}): PreflightWants => ({
  partition: 'short-gpu',
  gpus: 1,
  time: '30:00',
  runtime: 'auto',
  imageBytes: 4 << 20,
  ...w,
});

/** A passing cluster's facts, with lines replaced or added. */
function facts(extra: string[] = []) {
  const keep = RECORDED.split('\n').filter((l) => !/^pf (module nosuch|modload|runtime|dir tmpdir)/.test(l));
  return parsePreflight(
    [...keep, P('modload 0'), P('runtime /opt/singularity/bin/singularity'), P('dir tmpdir 1 81095812 16277276 16777216 /home/rivuser'), ...extra].join('\n'),
  )!;
}
const byId = (checks: ReturnType<typeof evaluatePreflight>) => Object.fromEntries(checks.map((c) => [c.id, c]));

test('parsePreflight reads the recorded facts and ignores other lines', () => {
  const f = parsePreflight(RECORDED)!;
  expect(f.slurm).toBe(true);
  expect(f.partitions.map((p) => [p.name, p.maxTime, p.gpusPerNode])).toEqual([
    ['short-gpu', 14400, 2],
    ['day-long-cpu', 86400, 2],
  ]);
  expect(f.testOnly).toEqual({ code: 0, out: 'sbatch: Job 56 to start at 2026-11-27T15:04:15 using 1 processors on nodes vm in partition short-gpu' });
  expect([...f.modules]).toEqual([
    ['slurm', true],
    ['singularity', true],
    ['cuda12.2/blas', true],
    ['nosuch/1', false],
  ]);
  expect(f.moduleLoad).toBe(1);
  expect(f.runtime).toBeNull();
  expect(f.accounting).toBe(false);
  expect(f.dirs.get('remote-dir')).toEqual({ path: '/home/rivuser', writable: true, availKiB: 81095864, freeInodes: 16277285, totalInodes: 16777216 });
  expect(f.dirs.get('tmpdir')?.writable).toBe(false);
  expect(parsePreflight('root /x\ntmpdir /y\n')).toBeNull();
});

test('the recorded failures: a missing module and an unwritable tmpdir, each naming its input', () => {
  const checks = evaluatePreflight(parsePreflight(RECORDED)!, wants());
  const c = byId(checks);
  expect(c.modules).toMatchObject({ status: 'fail', input: 'modules', detail: "No module named 'nosuch/1' on the cluster." });
  expect(c.runtime).toBeUndefined(); // not judged while a module is missing
  expect(c['tmpdir-writable']).toMatchObject({ status: 'fail', input: 'tmpdir', detail: '/ is not writable.' });
  expect(c.partition.status).toBe('pass');
  expect(c.sbatch.status).toBe('pass');
  const msg = preflightFailureMessage(checks)!;
  expect(msg.split('\n')).toEqual([
    expect.stringMatching(/^Preflight 'modules': No module named 'nosuch\/1'/),
    expect.stringMatching(/^Preflight 'tmpdir': \/ is not writable/),
  ]);
});

test('a passing cluster passes every check', () => {
  const checks = evaluatePreflight(facts(), wants());
  expect(checks.filter((c) => c.status !== 'pass')).toEqual([]);
  expect(checks.map((c) => c.id)).toEqual([
    'partition',
    'gpus',
    'time',
    'sbatch',
    'modules',
    'runtime',
    'remote-dir-space',
    'remote-dir-inodes',
    'tmpdir-space',
    'tmpdir-inodes',
    'accounting',
  ]);
  expect(preflightFailureMessage(checks)).toBeNull();
});

test('an unknown partition lists the partitions there are', () => {
  const c = byId(evaluatePreflight(facts(), wants({ partition: 'no-such-part' })));
  expect(c.partition).toMatchObject({ status: 'fail', input: 'partition' });
  expect(c.sbatch).toBeUndefined();
  expect(c.partition.detail).toBe(
    "No partition 'no-such-part' on the cluster. It has: short-gpu: max 04:00:00, 2 GPU(s) per node; day-long-cpu (default): max 1-00:00:00, 2 GPU(s) per node.",
  );
});

test('more GPUs than a node has says the most it has', () => {
  const c = byId(evaluatePreflight(facts(), wants({ gpus: 3 })));
  expect(c.gpus).toMatchObject({ status: 'fail', detail: '3 GPU(s) requested, but nodes of short-gpu have at most 2.' });
  expect(c.gpus.fix).toMatch(/at most 2/);
});

test("a time over the partition's limit", () => {
  const c = byId(evaluatePreflight(facts(), wants({ time: '5:00:00' })));
  expect(c.time).toMatchObject({ status: 'fail', detail: '05:00:00 requested; short-gpu allows 04:00:00.' });
  expect(byId(evaluatePreflight(facts(), wants({ time: null }))).time).toBeUndefined();
});

test('sbatch --test-only refusing the job fails with its words', () => {
  const f = facts();
  f.testOnly = { code: 1, out: 'sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified' };
  expect(byId(evaluatePreflight(f, wants())).sbatch).toMatchObject({
    status: 'fail',
    detail: expect.stringContaining('Invalid account or account/partition combination specified'),
  });
});

test('no runtime after loading the modules, and modules that do not load together', () => {
  const f = facts();
  f.runtime = null;
  expect(byId(evaluatePreflight(f, wants())).runtime).toMatchObject({ status: 'fail', detail: 'No apptainer or singularity after loading the modules.' });
  f.moduleLoad = 1;
  expect(byId(evaluatePreflight(f, wants())).runtime.detail).toBe('Loading the modules failed (exit 1).');
});

test('no Slurm after the login modules', () => {
  const f = parsePreflight(P('slurm 97'))!;
  expect(byId(evaluatePreflight(f, wants()))).toMatchObject({ slurm: { status: 'fail', input: 'login-modules' } });
});

test('space: less than the image fails, less than 3x warns; few inodes warn', () => {
  const f = facts();
  f.dirs.set('tmpdir', { path: '/scratch', writable: true, availKiB: 2048, freeInodes: 500, totalInodes: 1000000 });
  const c = byId(evaluatePreflight(f, wants({ imageBytes: 4 << 20 })));
  expect(c['tmpdir-space']).toMatchObject({ status: 'fail', detail: '/scratch has 2.0 MiB free, less than the 4.0 MiB image.' });
  expect(c['tmpdir-inodes']).toMatchObject({ status: 'warn', detail: '500 free inodes under /scratch.' });
  f.dirs.set('tmpdir', { path: '/scratch', writable: true, availKiB: 8192, freeInodes: null, totalInodes: null });
  const d = byId(evaluatePreflight(f, wants({ imageBytes: 4 << 20 })));
  expect(d['tmpdir-space'].status).toBe('warn');
  expect(d['tmpdir-inodes']).toBeUndefined();
  expect(byId(evaluatePreflight(f, wants({ imageBytes: null })))['tmpdir-space'].status).toBe('pass');
});

test('accounting is reported, never failed', () => {
  expect(byId(evaluatePreflight(facts([P('sacct 0')]), wants())).accounting).toMatchObject({ status: 'pass', detail: expect.stringMatching(/sacct answers/) });
});

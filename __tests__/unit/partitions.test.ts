// Partitions, GPUs per node, time limits and sbatch --test-only, on outputs recorded from Slurm.
import { gpusInGres, parsePartitions, parseTestOnly, slurmDuration, slurmSeconds } from '../../src/core/partitions.js';

// Recorded on the stand-in (Slurm 22.05.8).
const SCONTROL = `PartitionName=short-gpu AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=04:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=2 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=4000M,node=1,billing=2
PartitionName=day-long-cpu AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=1-00:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=2 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=4000M,node=1,billing=2
`;
const SINFO = 'short-gpu|gpu:2\nday-long-cpu*|gpu:2\n';

test('the stand-in: two partitions, limits, default, GPUs per node', () => {
  expect(parsePartitions(SCONTROL, SINFO)).toEqual([
    { name: 'short-gpu', maxTime: 4 * 3600, state: 'UP', isDefault: false, allowAccounts: 'ALL', gpusPerNode: 2 },
    { name: 'day-long-cpu', maxTime: 86400, state: 'UP', isDefault: true, allowAccounts: 'ALL', gpusPerNode: 2 },
  ]);
});

test('a site with mixed node groups, typed GPUs, an unlimited and a drained partition', () => {
  const scontrol = [
    'PartitionName=gpu AllowAccounts=proj1,proj2 Default=NO MaxTime=2-00:00:00 State=UP',
    'PartitionName=cpu AllowAccounts=ALL Default=YES MaxTime=UNLIMITED State=UP',
    'PartitionName=old AllowAccounts=ALL Default=NO MaxTime=30 State=DRAIN',
  ].join('\n');
  const sinfo = 'gpu|gpu:a100:4(S:0-1)\ngpu|gpu:v100:2,mps:200\ncpu*|(null)\nold|gpu:1\n';
  const p = parsePartitions(scontrol, sinfo);
  expect(p.map((x) => [x.name, x.maxTime, x.gpusPerNode, x.state, x.allowAccounts])).toEqual([
    ['gpu', 2 * 86400, 4, 'UP', 'proj1,proj2'],
    ['cpu', null, 0, 'UP', 'ALL'],
    ['old', 30 * 60, 1, 'DRAIN', 'ALL'],
  ]);
});

test.each([
  ['gpu:2', 2],
  ['gpu:a100:4(S:0-1)', 4],
  ['gpu:tesla:2,mps:100', 2],
  ['gpu:a100:2(S:0),gpu:v100:1(S:1)', 3],
  ['(null)', 0],
  ['mps:100', 0],
])('gpusInGres(%j) = %d', (g, n) => expect(gpusInGres(g)).toBe(n));

test.each([
  ['30', 1800],
  ['30:00', 1800],
  ['4:00:00', 14400],
  ['1-00:00:00', 86400],
  ['2-12', 2 * 86400 + 12 * 3600],
  ['1-02:03', 86400 + 2 * 3600 + 180],
  ['UNLIMITED', null],
  ['INFINITE', null],
])('slurmSeconds(%j) = %j', (t, s) => expect(slurmSeconds(t)).toBe(s));

test('slurmSeconds refuses what is not a time', () => {
  expect(slurmSeconds('1h')).toBeUndefined();
});

test('slurmDuration writes a limit as Slurm does', () => {
  expect(slurmDuration(14400)).toBe('04:00:00');
  expect(slurmDuration(86400 + 90)).toBe('1-00:01:30');
  expect(slurmDuration(null)).toBe('UNLIMITED');
});

describe('parseTestOnly (recorded on the stand-in)', () => {
  test('accepted: the estimated start', () => {
    const t = parseTestOnly('sbatch: Job 12 to start at 2026-11-27T15:00:02 using 1 processors on nodes vm in partition short-gpu\n', 0);
    expect(t).toEqual({ accepted: true, lines: ['Job 12 to start at 2026-11-27T15:00:02 using 1 processors on nodes vm in partition short-gpu'] });
  });
  test('an invalid partition', () => {
    const t = parseTestOnly('sbatch: error: invalid partition specified: no-such\nallocation failure: Invalid partition name specified\n', 1);
    expect(t.accepted).toBe(false);
    expect(t.lines).toEqual(['invalid partition specified: no-such', 'allocation failure: Invalid partition name specified']);
  });
  test('more GPUs than a node has', () => {
    expect(parseTestOnly('allocation failure: Requested node configuration is not available\n', 1)).toEqual({
      accepted: false,
      lines: ['allocation failure: Requested node configuration is not available'],
    });
  });
  test("a site's submit filter, and an unknown account (with accounting)", () => {
    const t = parseTestOnly('sbatch: error: You must specify an account (--account)\nsbatch: error: Batch job submission failed: Unspecified error\n', 1);
    expect(t.lines).toEqual(['You must specify an account (--account)', 'Batch job submission failed: Unspecified error']);
    expect(parseTestOnly('sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n', 1).accepted).toBe(false);
  });
  test('exit 0 without a start line is not an acceptance', () => {
    expect(parseTestOnly('', 0).accepted).toBe(false);
  });
});

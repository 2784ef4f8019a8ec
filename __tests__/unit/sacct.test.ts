// sacct -j ID -D -P -n -o JobID,State,ExitCode,DerivedExitCode,Reason,NodeList, and what it means.
import { applyAccounting, describeAccounting, parseSacct, readAccounting } from '../../src/core/sacct.js';
import type { Verdict } from '../../src/core/slurm.js';

const read = (out: string, id = '41') => readAccounting(parseSacct(out), id);

test('a passing job and its steps', () => {
  const a = read('41|COMPLETED|0:0|0:0|None|vm\n41.batch|COMPLETED|0:0||None|vm\n41.extern|COMPLETED|0:0||None|vm\n');
  expect(a).toMatchObject({ job: { jobId: '41', state: 'COMPLETED', exit: 0, signal: 0, nodes: 'vm' }, requeues: 0, failure: null, warnings: [] });
  expect(a!.steps.map((s) => s.jobId)).toEqual(['41.batch', '41.extern']);
});

test('OUT_OF_MEMORY on .batch fails even when the script exited 0', () => {
  const a = read('41|OUT_OF_MEMORY|0:125|0:0|OutOfMemory|vm\n41.batch|OUT_OF_MEMORY|0:125||OutOfMemory|vm\n41.extern|COMPLETED|0:0||None|vm\n');
  expect(a!.failure).toMatchObject({ state: 'OUT_OF_MEMORY', message: expect.stringMatching(/41\.batch.*OUT_OF_MEMORY.*--mem/) });
});

test('recorded on the accounting variant: a real OOM kill under --mem=200M, the script exiting 0', () => {
  const a = readAccounting(parseSacct('205|OUT_OF_MEMORY|0:125|0:0|None|vm\n205.batch|OUT_OF_MEMORY|0:125|||vm\n'), '205');
  expect(a).toMatchObject({ job: { state: 'OUT_OF_MEMORY', exit: 0, signal: 125 }, steps: [{ jobId: '205.batch', reason: '', derivedExit: null }] });
  expect(a!.failure).toMatchObject({ state: 'OUT_OF_MEMORY', message: expect.stringContaining('205.batch') });
});

test('OUT_OF_MEMORY on a numbered step fails, though the job says COMPLETED with exit 0', () => {
  const a = read('41|COMPLETED|0:0|0:0|None|vm\n41.batch|COMPLETED|0:0||None|vm\n41.0|OUT_OF_MEMORY|0:125||None|vm\n');
  expect(a!.failure?.state).toBe('OUT_OF_MEMORY');
});

test('OUT_OF_MEMORY on .extern alone only warns', () => {
  const a = read('41|COMPLETED|0:0|0:0|None|vm\n41.batch|COMPLETED|0:0||None|vm\n41.extern|OUT_OF_MEMORY|0:125||None|vm\n');
  expect(a!.failure).toBeNull();
  expect(a!.warnings).toEqual([expect.stringMatching(/41\.extern.*OUT_OF_MEMORY/)]);
});

test('CANCELLED by a uid', () => {
  const rows = parseSacct('41|CANCELLED by 1000|0:15|0:0|None|vm\n41.batch|CANCELLED|0:15||None|vm\n');
  expect(rows[0]).toMatchObject({ state: 'CANCELLED', cancelledBy: '1000', exit: 0, signal: 15 });
  expect(readAccounting(rows, '41')!.failure).toEqual({ state: 'CANCELLED', message: expect.stringContaining('cancelled by uid 1000') });
});

test('0:9 is a signal: a COMPLETED record with a killed batch step fails', () => {
  const a = read('41|COMPLETED|0:0|0:0|None|vm\n41.batch|COMPLETED|0:9||None|vm\n');
  expect(a!.failure).toEqual({ state: 'FAILED', message: expect.stringMatching(/41\.batch.*signal 9.*0:9/) });
});

test('FAILED and TIMEOUT are named with exit and reason', () => {
  expect(read('41|FAILED|1:0|0:0|NonZeroExitCode|vm\n41.batch|FAILED|1:0||None|vm\n')!.failure).toEqual({
    state: 'FAILED',
    message: expect.stringContaining('FAILED (exit 1:0, NonZeroExitCode)'),
  });
  expect(read('41|TIMEOUT|0:0|0:0|TimeLimit|vm\n')!.failure?.state).toBe('TIMEOUT');
});

test('a requeued job: the last run counts, the earlier ones are told', () => {
  const out = '41|NODE_FAIL|0:0|0:0|None|vm1\n41.batch|CANCELLED|0:15||None|vm1\n41|COMPLETED|0:0|0:0|None|vm2\n41.batch|COMPLETED|0:0||None|vm2\n';
  const a = read(out);
  expect(a).toMatchObject({ job: { state: 'COMPLETED', nodes: 'vm2' }, requeues: 1, failure: null });
  expect(a!.steps).toEqual([expect.objectContaining({ jobId: '41.batch', state: 'COMPLETED' })]);
  expect(a!.warnings).toEqual([expect.stringMatching(/requeued 1 time.*NODE_FAIL/)]);
});

test('not recorded yet, or not final yet: ask again', () => {
  expect(read('')).toBeNull();
  expect(read('41|RUNNING|0:0|0:0|None|vm\n')).toBeNull();
  expect(read('41|COMPLETING|0:0|0:0|None|vm\n')).toBeNull();
  expect(read('42|COMPLETED|0:0|0:0|None|vm\n')).toBeNull();
});

test('lines that are not rows are skipped; truncated states lose the +', () => {
  const rows = parseSacct('sacct: error: slurmdbd: Getting response to message type: DBD_GET_JOBS_COND\n41|OUT_OF_ME+|0:125|0:0|None|vm\n');
  expect(rows).toHaveLength(1);
  expect(rows[0].state).toBe('OUT_OF_ME');
});

describe('applyAccounting', () => {
  const passed: Verdict = { ok: true, state: 'COMPLETED', exitCode: 0 };
  const smokeFailed: Verdict = {
    ok: false,
    state: 'FAILED',
    exitCode: 2,
    interrupted: false,
    message: 'The smoke test exited with code 2: see its output above.',
  };
  const lost: Verdict = { ok: false, state: 'LOST', exitCode: null, interrupted: true, message: 'The job ended without recording a result' };
  const oom = read('41|OUT_OF_MEMORY|0:125|0:0|OutOfMemory|vm\n41.batch|OUT_OF_MEMORY|0:125||OutOfMemory|vm\n');
  const clean = read('41|COMPLETED|0:0|0:0|None|vm\n41.batch|COMPLETED|0:0||None|vm\n');

  test('an OOM with exit 0 never passes', () => {
    expect(applyAccounting(passed, oom)).toMatchObject({ ok: false, state: 'OUT_OF_MEMORY', interrupted: true, exitCode: 0 });
  });
  test('an OOM explains a failed smoke test too', () => {
    expect(applyAccounting(smokeFailed, oom)).toMatchObject({ state: 'OUT_OF_MEMORY', message: expect.stringContaining('ran out of memory') });
  });
  test('a lost job gets the state accounting knows', () => {
    const nodeFail = read('41|NODE_FAIL|0:0|0:0|NodeDown|vm\n');
    expect(applyAccounting(lost, nodeFail)).toMatchObject({ state: 'NODE_FAIL', message: expect.stringContaining('NODE_FAIL') });
  });
  test('clean accounting, or none, leaves the verdict as it is', () => {
    expect(applyAccounting(passed, clean)).toBe(passed);
    expect(applyAccounting(smokeFailed, clean)).toBe(smokeFailed);
    expect(applyAccounting(passed, null)).toBe(passed);
  });
  test('a failed smoke test keeps its own message over a FAILED record', () => {
    expect(applyAccounting(smokeFailed, read('41|FAILED|2:0|0:0|NonZeroExitCode|vm\n'))).toBe(smokeFailed);
  });
});

test('describeAccounting: the job and its steps in one line', () => {
  expect(describeAccounting(read('41|CANCELLED by 1000|0:15|0:0|None|vm\n41.batch|CANCELLED|0:15||None|vm\n')!)).toBe(
    'Slurm accounting: 41 CANCELLED by 1000 0:15, 41.batch CANCELLED 0:15 on vm.',
  );
});

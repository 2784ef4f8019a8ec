// What Slurm says, and what a finished job means.
import { JOB_PHASES } from '../../src/core/jobscript.js';
import { type JobStatus, isFinalState, judgeJob, parseSbatchOutput, parseSlurmAnswer, parseSqueueLine, parseStatusLine } from '../../src/core/slurm.js';

describe('parseSbatchOutput', () => {
  test.each([
    ['123', '123'],
    ['123\n', '123'],
    ['  456  \n', '456'],
    ['123;cluster', '123'],
    ['789;gpu-cluster\n', '789'],
    ['sbatch: warning: something\n321\n', '321'],
    ['12_3', '12_3'],
  ])('%j → %s', (out, id) => {
    expect(parseSbatchOutput(out)).toBe(id);
  });

  test.each(['', 'garbage', 'Submitted batch job 123', '123abc', ';cluster', 'sbatch: error: Batch job submission failed', '-1', '12 34'])(
    '%j throws',
    (out) => {
      expect(() => parseSbatchOutput(out)).toThrow(/no job id/);
    },
  );
});

describe('parseSqueueLine', () => {
  test('RUNNING|None|node1: no reason, the node', () => {
    expect(parseSqueueLine('RUNNING|None|node1')).toEqual({ state: 'RUNNING', reason: '', nodes: 'node1' });
  });

  test('PENDING|Resources|(null): the reason, no node', () => {
    expect(parseSqueueLine('PENDING|Resources|(null)')).toEqual({ state: 'PENDING', reason: 'Resources', nodes: '' });
  });

  test('surrounding blanks and a newline are ignored', () => {
    expect(parseSqueueLine('  COMPLETED|None|gpu[01-02]\n')).toEqual({ state: 'COMPLETED', reason: '', nodes: 'gpu[01-02]' });
  });

  test('(null) reason and missing fields are empty', () => {
    expect(parseSqueueLine('COMPLETING|(null)|n1')).toEqual({ state: 'COMPLETING', reason: '', nodes: 'n1' });
    expect(parseSqueueLine('OUT_OF_MEMORY')).toEqual({ state: 'OUT_OF_MEMORY', reason: '', nodes: '' });
  });

  test.each(['UNKNOWN', '', '   ', '\n', 'garbage', 'slurm_load_jobs error: Invalid job id specified', 'running|None|n1', '123|x|y'])(
    '%j → null (Slurm no longer knows the job)',
    (line) => {
      expect(parseSqueueLine(line)).toBeNull();
    },
  );
});

describe('isFinalState', () => {
  test.each(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'PREEMPTED', 'BOOT_FAIL', 'DEADLINE', 'OUT_OF_MEMORY'])('%s is final', (s) => {
    expect(isFinalState(s)).toBe(true);
  });

  test.each(['PENDING', 'RUNNING', 'COMPLETING', 'CONFIGURING', 'SUSPENDED', 'REQUEUED', 'RESIZING', 'STOPPED', 'UNKNOWN', '', 'completed'])(
    '%j is not final',
    (s) => {
      expect(isFinalState(s)).toBe(false);
    },
  );
});

describe('parseStatusLine', () => {
  test.each<[string, JobStatus]>([
    ['smoke-test 0', { phase: 'smoke-test', code: 0 }],
    ['smoke-test 3\n', { phase: 'smoke-test', code: 3 }],
    ['sif-build 2', { phase: 'sif-build', code: 2 }],
    ['modules 127', { phase: 'modules', code: 127 }],
    ['start 143', { phase: 'start', code: 143 }],
  ])('%j', (line, status) => {
    expect(parseStatusLine(line)).toEqual(status);
  });

  test('every phase the job script names parses', () => {
    for (const phase of JOB_PHASES) expect(parseStatusLine(`${phase} 1`)).toEqual({ phase, code: 1 });
  });

  test.each(['', 'smoke-test', 'smoke-test -1', 'smoke-test x', 'SMOKE 0', 'smoke-test 0 extra', 'smoke-test  0', '0'])('%j → null', (line) => {
    expect(parseStatusLine(line)).toBeNull();
  });
});

describe('judgeJob', () => {
  const st = (phase: string, code: number): JobStatus => ({ phase, code });

  test('COMPLETED + smoke-test 0 → ok', () => {
    expect(judgeJob('COMPLETED', st('smoke-test', 0))).toEqual({ ok: true, state: 'COMPLETED', exitCode: 0 });
  });

  test('FAILED + smoke-test 3 → failed with code 3, not interrupted', () => {
    const v = judgeJob('FAILED', st('smoke-test', 3));
    expect(v).toMatchObject({ ok: false, state: 'FAILED', exitCode: 3, interrupted: false });
    if (!v.ok) expect(v.message).toMatch(/smoke test exited with code 3/);
  });

  test('FAILED + sif-build 2 → a .sif build failure', () => {
    const v = judgeJob('FAILED', st('sif-build', 2));
    expect(v).toMatchObject({ ok: false, state: 'FAILED', exitCode: 2, interrupted: false });
    if (!v.ok) {
      expect(v.message).toMatch(/Building the \.sif failed \(exit 2\)/);
      expect(v.message).not.toMatch(/smoke test/);
    }
  });

  test('FAILED + modules 127 → a module failure pointing at the modules input', () => {
    const v = judgeJob('FAILED', st('modules', 127));
    expect(v).toMatchObject({ ok: false, state: 'FAILED', exitCode: 127, interrupted: false });
    if (!v.ok) expect(v.message).toMatch(/'modules' input/);
  });

  test('FAILED + 143 (killed by a signal the job saw) stays a failure, not an interruption', () => {
    expect(judgeJob('FAILED', st('smoke-test', 143))).toMatchObject({ ok: false, state: 'FAILED', exitCode: 143, interrupted: false });
  });

  test('status 143 without a FAILED state → interrupted by a signal, in that phase', () => {
    const v = judgeJob(null, st('sif-build', 143));
    expect(v).toMatchObject({ ok: false, state: 'CANCELLED', exitCode: 143, interrupted: true });
    if (!v.ok) expect(v.message).toContain('sif-build');
    expect(judgeJob('COMPLETED', st('smoke-test', 143))).toMatchObject({ state: 'COMPLETED', interrupted: true });
  });

  test.each<[string, RegExp]>([
    ['CANCELLED', /cancel/i],
    ['TIMEOUT', /'time' input/],
    ['OUT_OF_MEMORY', /--mem/],
    ['NODE_FAIL', /node/i],
    ['PREEMPTED', /preempt/i],
    ['BOOT_FAIL', /boot/i],
    ['DEADLINE', /deadline/i],
  ])('%s → interrupted, state kept, message says what to try', (state, hint) => {
    for (const status of [null, st('smoke-test', 0), st('smoke-test', 1), st('sif-build', 143)]) {
      const v = judgeJob(state, status);
      expect(v.ok).toBe(false);
      if (v.ok) continue;
      expect(v.state).toBe(state);
      expect(v.interrupted).toBe(true);
      expect(v.exitCode).toBe(status?.code ?? null);
      expect(v.message).toContain(state);
      expect(v.message).toMatch(hint);
    }
  });

  test('the interruption messages differ (each names its own remedy)', () => {
    const msgs = ['CANCELLED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL', 'PREEMPTED'].map((s) => {
      const v = judgeJob(s, null);
      return v.ok ? '' : v.message;
    });
    expect(new Set(msgs).size).toBe(msgs.length);
  });

  test.each<[string | null]>([[null], ['RUNNING'], ['COMPLETING'], ['PENDING']])('state %j + status → judged from the status', (state) => {
    expect(judgeJob(state, st('smoke-test', 0))).toEqual({ ok: true, state: 'COMPLETED', exitCode: 0 });
    expect(judgeJob(state, st('smoke-test', 4))).toMatchObject({ ok: false, state: 'FAILED', exitCode: 4, interrupted: false });
    expect(judgeJob(state, st('sif-build', 1))).toMatchObject({ ok: false, state: 'FAILED', exitCode: 1, interrupted: false });
  });

  test('null state + no status → LOST, interrupted, no exit code', () => {
    const v = judgeJob(null, null);
    expect(v).toMatchObject({ ok: false, state: 'LOST', exitCode: null, interrupted: true });
    if (!v.ok) expect(v.message).toMatch(/without recording a result/);
  });

  test('a non-final state + no status is LOST too (the state is not kept)', () => {
    expect(judgeJob('RUNNING', null)).toMatchObject({ ok: false, state: 'LOST', exitCode: null });
  });

  test('a final state without a status keeps the state but is not ok', () => {
    expect(judgeJob('COMPLETED', null)).toMatchObject({ ok: false, state: 'COMPLETED', exitCode: null, interrupted: true });
    expect(judgeJob('FAILED', null)).toMatchObject({ ok: false, state: 'FAILED', exitCode: null, interrupted: true });
  });

  test("FAILED in Slurm is never a pass, whatever the job's status file says", () => {
    for (const status of [st('smoke-test', 0), st('publish', 0)]) {
      const v = judgeJob('FAILED', status);
      expect(v).toMatchObject({ ok: false, state: 'FAILED', interrupted: false });
      if (!v.ok) expect(v.message).toMatch(/Slurm reports the job FAILED, although its status file says/);
    }
  });

  test('smoke-test 0 is the only pass; sif-build 0 or modules 0 are not', () => {
    expect(judgeJob('COMPLETED', st('sif-build', 0)).ok).toBe(false);
    expect(judgeJob('COMPLETED', st('modules', 0)).ok).toBe(false);
  });
});

describe('parseSlurmAnswer', () => {
  test('a listed job', () => {
    expect(parseSlurmAnswer('OK RUNNING|None|node1')).toEqual({ kind: 'listed', info: { state: 'RUNNING', reason: '', nodes: 'node1' } });
  });

  test('Slurm answered and does not know the job: nothing listed, or an invalid job id', () => {
    expect(parseSlurmAnswer('OK ')).toEqual({ kind: 'unknown' });
    expect(parseSlurmAnswer('OK')).toEqual({ kind: 'unknown' });
    expect(parseSlurmAnswer('ERR slurm_load_jobs error: Invalid job id specified')).toEqual({ kind: 'unknown' });
  });

  test.each([
    'slurm_load_jobs error: Unable to contact slurm controller (connect failure)',
    'slurm_load_jobs error: Socket timed out on send/recv operation',
    'squeue: error: Invalid user for SlurmUser',
    '',
  ])('Slurm did not answer: %j', (message) => {
    const a = parseSlurmAnswer(`ERR ${message}`);
    expect(a.kind).toBe('silent');
    if (a.kind === 'silent') expect(a.message).toBe(message || 'squeue failed without a message');
  });
});

// Following a job: the poll script (checked and run by bash with a fake squeue), the reply parser,
// the output stream (phase groups, tail, timings) and the fold of polls into the follow state.
import { execFileSync, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutputStream, type Poll, applyPoll, initialFollowState, parsePoll, pollScript } from '../../src/core/poll.js';
import { jobMarker } from '../../src/core/jobscript.js';
import { sleep } from '../../src/core/follow.js';
import { fakeReporter } from '../helpers/reporter.js';

const CHUNK = 1 << 20;

const reply = (squeue: string, status: string, output: Buffer | string = ''): Buffer =>
  Buffer.concat([Buffer.from(`${squeue}\n${status}\n`), Buffer.isBuffer(output) ? output : Buffer.from(output)]);

const poll = (squeue: string, status = '', output: Buffer | string = ''): Poll => ({
  squeue,
  status,
  output: Buffer.isBuffer(output) ? output : Buffer.from(output),
});

const marker = (phase: string, at: number | string) => `${jobMarker('tok')} phase ${phase} ${at}\n`;

describe('pollScript', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'follow-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('passes bash -n, with and without login modules and with a hostile job dir', () => {
    for (const script of [pollScript('123', '/home/me/jobs/1', 0, []), pollScript('123', "/home/me/jobs/it's $(touch PWNED)", 4096, ['slurm', 'x/1.0'])]) {
      execFileSync('bash', ['-n'], { input: script, stdio: ['pipe', 'pipe', 'pipe'] });
    }
  });

  /**
   * Run the poll script with bash in a job dir, with a fake squeue on PATH and a fake module
   * function that logs each call's arguments on a line.
   */
  function runPoll(
    jobDir: string,
    offset: number,
    squeueOut: string | null,
    modules: string[] = [],
    moduleRc = 0,
    { fails = 'Invalid job id specified', heartbeat = false } = {},
  ) {
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(
      join(bin, 'squeue'),
      `#!/bin/sh\nprintf '%s\\n' "$@" > "$SQUEUE_ARGS"\n${squeueOut === null ? `echo "slurm_load_jobs error: ${fails}" >&2; exit 1` : `printf '%s\\n' '${squeueOut}'`}\n`,
    );
    chmodSync(join(bin, 'squeue'), 0o755);
    rmSync(join(dir, 'module.log'), { force: true });
    const script = `module() { echo "$*" >> "$MODULE_LOG"; return ${moduleRc}; }\n${pollScript('77', jobDir, offset, modules, { heartbeat })}`;
    return spawnSync('bash', ['-c', script], {
      env: { PATH: `${bin}:${process.env.PATH}`, SQUEUE_ARGS: join(dir, 'squeue.args'), MODULE_LOG: join(dir, 'module.log') },
      maxBuffer: 4 * CHUNK,
    });
  }

  test('run for real: squeue line, status line, then the output from the offset', () => {
    const jobDir = join(dir, "job it's $(touch PWNED)");
    mkdirSync(jobDir, { recursive: true });
    writeFileSync(join(jobDir, 'status'), 'smoke-test 0\nignored\n');
    const out = Buffer.from('first line\nsecond ✓ line\n');
    writeFileSync(join(jobDir, 'job.out'), out);
    const r = runPoll(jobDir, 6, 'RUNNING|None|node1');
    expect(r.status).toBe(0);
    const p = parsePoll(r.stdout);
    expect(p).toEqual({ squeue: 'OK RUNNING|None|node1', status: 'smoke-test 0', output: out.subarray(6) });
    const args = readFileSync(join(dir, 'squeue.args'), 'utf8');
    expect(args).toBe('-h\n-t\nall\n-j\n77\n-o\n%T|%r|%N\n');
  });

  test('run for real: Slurm does not know the job, no status, no output yet → its error, empty, nothing', () => {
    const jobDir = join(dir, 'empty-job');
    mkdirSync(jobDir, { recursive: true });
    const r = runPoll(jobDir, 0, null);
    expect(r.status).toBe(0);
    expect(parsePoll(r.stdout)).toEqual({ squeue: 'ERR slurm_load_jobs error: Invalid job id specified', status: '', output: Buffer.alloc(0) });
  });

  test("run for real: the controller not answering comes back as ERR with squeue's message, on one line", () => {
    const jobDir = join(dir, 'silent-job');
    mkdirSync(jobDir, { recursive: true });
    const r = runPoll(jobDir, 0, null, [], 0, { fails: 'Unable to contact slurm controller (connect failure)' });
    expect(r.status).toBe(0);
    expect(parsePoll(r.stdout).squeue).toBe('ERR slurm_load_jobs error: Unable to contact slurm controller (connect failure)');
  });

  test('run for real: a following poll touches the heartbeat (the watchdog compares it), a status query does not', () => {
    const jobDir = join(dir, 'watched-job');
    mkdirSync(jobDir, { recursive: true });
    runPoll(jobDir, 0, 'RUNNING|None|n');
    expect(existsSync(join(jobDir, 'heartbeat'))).toBe(false);
    runPoll(jobDir, 0, 'RUNNING|None|n', [], 0, { heartbeat: true });
    expect(Date.now() - statSync(join(jobDir, 'heartbeat')).mtimeMs).toBeLessThan(5000);
  });

  test('run for real: the output from the byte after the offset, at most one chunk', () => {
    const jobDir = join(dir, 'big-job');
    mkdirSync(jobDir, { recursive: true });
    const out = Buffer.alloc(CHUNK + 4000);
    for (let i = 0; i < out.length; i++) out[i] = i % 251;
    writeFileSync(join(jobDir, 'job.out'), out);
    expect(parsePoll(runPoll(jobDir, 0, 'RUNNING|None|n').stdout).output.equals(out.subarray(0, CHUNK))).toBe(true);
    expect(parsePoll(runPoll(jobDir, 1000, 'RUNNING|None|n').stdout).output.equals(out.subarray(1000, 1000 + CHUNK))).toBe(true);
    expect(parsePoll(runPoll(jobDir, CHUNK + 10, 'RUNNING|None|n').stdout).output.equals(out.subarray(CHUNK + 10))).toBe(true);
  });

  test('run for real: loads the login modules first in one module load, only when there are some', () => {
    const jobDir = join(dir, 'empty-job');
    mkdirSync(jobDir, { recursive: true });
    expect(runPoll(jobDir, 0, 'RUNNING|None|n', [], 1).status).toBe(0);
    expect(existsSync(join(dir, 'module.log'))).toBe(false);
    expect(runPoll(jobDir, 0, 'RUNNING|None|n', ['slurm', 'a b']).status).toBe(0);
    expect(readFileSync(join(dir, 'module.log'), 'utf8')).toBe('load slurm a b\n');
    const failed = runPoll(jobDir, 0, 'RUNNING|None|n', ['slurm', 'a b'], 1);
    expect(failed.stderr.toString()).toContain('module load slurm a b failed on the login node');
    expect(failed.stdout.toString()).toBe('');
  });

  test('run for real: a missing job dir exits 98, a failing module load 97', () => {
    expect(runPoll(join(dir, 'nope'), 0, 'RUNNING|None|n').status).toBe(98);
    const jobDir = join(dir, 'empty-job');
    mkdirSync(jobDir, { recursive: true });
    expect(runPoll(jobDir, 0, 'RUNNING|None|n', ['slurm'], 1).status).toBe(97);
  });
});

describe('parsePoll', () => {
  test('splits two header lines from the raw output bytes', () => {
    const out = Buffer.from([0x61, 0x0a, 0xff, 0x00, 0x62]);
    expect(parsePoll(reply('PENDING|Priority|(null)', 'sif-build 2', out))).toEqual({
      squeue: 'PENDING|Priority|(null)',
      status: 'sif-build 2',
      output: out,
    });
  });

  test('empty header lines are kept as empty strings', () => {
    expect(parsePoll(Buffer.from('\n\n'))).toEqual({ squeue: '', status: '', output: Buffer.alloc(0) });
  });

  test('output newlines are not headers', () => {
    expect(parsePoll(reply('RUNNING|None|n', '', 'x\ny\n')).output.toString()).toBe('x\ny\n');
  });

  test.each(['', 'RUNNING|None|n', 'RUNNING|None|n\nsmoke-test 0'])('a reply without two lines throws: %j', (s) => {
    expect(() => parsePoll(Buffer.from(s))).toThrow(/unexpected reply/);
  });

  test('a multibyte character split across two polls is reassembled by OutputStream', () => {
    const text = 'naïve ✓ 🚀 done\n';
    const bytes = Buffer.from(text);
    const cut = bytes.indexOf(Buffer.from('✓')) + 1; // inside the 3-byte ✓
    const r = fakeReporter();
    const s = new OutputStream(r);
    s.push(parsePoll(reply('RUNNING|None|n', '', bytes.subarray(0, cut))).output);
    expect(r.infos()).toEqual([]);
    s.push(parsePoll(reply('RUNNING|None|n', '', bytes.subarray(cut))).output);
    expect(r.infos()).toEqual(['naïve ✓ 🚀 done']);
    expect(r.infos()[0]).not.toContain('\uFFFD');
  });
});

describe('OutputStream', () => {
  test('lines split across pushes are joined; a split 4-byte character survives byte by byte', () => {
    const r = fakeReporter();
    const s = new OutputStream(r);
    const bytes = Buffer.from('a🚀b\nc');
    for (const b of bytes) s.push(Buffer.from([b]));
    expect(r.infos()).toEqual(['a🚀b']);
    s.end();
    expect(r.infos()).toEqual(['a🚀b', 'c']);
    s.end();
    expect(r.infos()).toEqual(['a🚀b', 'c']);
  });

  test('several lines in one push, empty lines kept', () => {
    const r = fakeReporter();
    const s = new OutputStream(r);
    s.push(Buffer.from('one\n\nthree\n'));
    expect(r.infos()).toEqual(['one', '', 'three']);
    expect(s.tail).toEqual(['one', '', 'three']);
  });

  test('phase markers open groups and are not printed; end closes the group', () => {
    const r = fakeReporter();
    const s = new OutputStream(r);
    s.push(
      Buffer.from(
        `${marker('modules', '100.0')}loading\n${marker('sif-build', '101.5')}building\n${marker('smoke-test', '111.5')}GPU 0\n${marker('end', '112.0')}`,
      ),
    );
    expect(r.calls).toEqual([
      ['group', 'Job: modules'],
      ['output', 'loading'],
      ['group', 'Job: sif-build'],
      ['output', 'building'],
      ['group', 'Job: smoke-test'],
      ['output', 'GPU 0'],
      ['endGroup'],
    ]);
    expect(s.tail).toEqual(['loading', 'building', 'GPU 0']);
  });

  test('GPU report lines are kept for the report, not printed as output', () => {
    const r = fakeReporter();
    const s = new OutputStream(r);
    s.push(Buffer.from(`${jobMarker('tok')} gpu node vm\nGPU 0\n${jobMarker('tok')} gpu outside query NVIDIA A100-SXM4-40GB, 535.104.05, 40960 MiB\n`));
    expect(s.gpu).toEqual(['node vm', 'outside query NVIDIA A100-SXM4-40GB, 535.104.05, 40960 MiB']);
    expect(r.infos()).toEqual(['GPU 0']);
    expect(s.tail).toEqual(['GPU 0']);
  });

  test('phase seconds come from the marker timestamps', () => {
    const s = new OutputStream(fakeReporter());
    s.push(Buffer.from(marker('modules', '1700000000.25') + marker('sif-build', '1700000001.75') + marker('smoke-test', '1700000011.75')));
    expect(s.phases).toEqual([
      { phase: 'modules', seconds: 1.5 },
      { phase: 'sif-build', seconds: 10 },
    ]);
    s.push(Buffer.from(marker('end', '1700000012.25')));
    expect(s.phases).toEqual([
      { phase: 'modules', seconds: 1.5 },
      { phase: 'sif-build', seconds: 10 },
      { phase: 'smoke-test', seconds: 0.5 },
    ]);
  });

  test('a phase with an unreadable timestamp is left out, a clock step back counts as 0', () => {
    const s = new OutputStream(fakeReporter());
    s.push(Buffer.from(marker('modules', '100.N') + marker('sif-build', '200') + marker('smoke-test', '150') + marker('end', '160')));
    expect(s.phases).toEqual([
      { phase: 'sif-build', seconds: 0 },
      { phase: 'smoke-test', seconds: 10 },
    ]);
  });

  test('no markers, no phases', () => {
    const s = new OutputStream(fakeReporter());
    s.push(Buffer.from('just output\n'));
    expect(s.phases).toEqual([]);
  });

  test('keeps the last N lines as the tail', () => {
    const r = fakeReporter();
    const s = new OutputStream(r, 3);
    s.push(Buffer.from(['l1', 'l2', 'l3', 'l4'].join('\n') + '\n' + marker('end', 1) + 'l5'));
    expect(s.tail).toEqual(['l2', 'l3', 'l4']);
    s.end();
    expect(s.tail).toEqual(['l3', 'l4', 'l5']);
    expect(r.infos()).toEqual(['l1', 'l2', 'l3', 'l4', 'l5']);
  });

  test('the default tail is 30 lines', () => {
    const s = new OutputStream(fakeReporter());
    s.push(Buffer.from(Array.from({ length: 50 }, (_, i) => `line ${i}\n`).join('')));
    expect(s.tail).toHaveLength(30);
    expect(s.tail[0]).toBe('line 20');
    expect(s.tail[29]).toBe('line 49');
  });
});

describe('applyPoll', () => {
  function setup() {
    const r = fakeReporter();
    const out = new OutputStream(r);
    const s = initialFollowState();
    return { r, out, s, apply: (p: Poll) => applyPoll(s, p, out, r, '7') };
  }

  test('state changes are reported once each; a final state ends following', () => {
    const { r, s, apply } = setup();
    expect(apply(poll('PENDING|Resources|(null)'))).toBe(false);
    expect(apply(poll('PENDING|Resources|(null)'))).toBe(false);
    expect(apply(poll('RUNNING|None|gpu01'))).toBe(false);
    expect(apply(poll('RUNNING|None|gpu01'))).toBe(false);
    expect(apply(poll('COMPLETING|None|gpu01'))).toBe(false);
    expect(apply(poll('COMPLETED|None|gpu01', 'smoke-test 0'))).toBe(true);
    expect(r.infos()).toEqual(['Job 7: PENDING (Resources)', 'Job 7: RUNNING on gpu01', 'Job 7: COMPLETING', 'Job 7: COMPLETED']);
    expect(s).toMatchObject({ state: 'COMPLETED', node: 'gpu01', status: { phase: 'smoke-test', code: 0 }, unknownPolls: 0 });
  });

  test.each(['FAILED', 'CANCELLED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL'])('%s ends following, even without a status', (state) => {
    const { s, apply } = setup();
    expect(apply(poll(`${state}|None|n1`))).toBe(true);
    expect(s.state).toBe(state);
    expect(s.status).toBeNull();
  });

  test('the output is pushed to the stream and the offset advances by bytes, not characters', () => {
    const { r, s, apply } = setup();
    apply(poll('RUNNING|None|n', '', 'é✓\n'));
    expect(s.offset).toBe(6);
    apply(poll('RUNNING|None|n', '', 'abc'));
    expect(s.offset).toBe(9);
    apply(poll('RUNNING|None|n'));
    expect(s.offset).toBe(9);
    expect(r.infos()).toContain('é✓');
  });

  test('a full-size chunk does not end following, even in a final state; the next, shorter one does', () => {
    const { r, s, apply } = setup();
    const big = Buffer.alloc(CHUNK, 'x\n');
    expect(apply(poll('COMPLETED|None|n', 'smoke-test 0', big))).toBe(false);
    expect(s.offset).toBe(CHUNK);
    expect(apply(poll('COMPLETED|None|n', 'smoke-test 0', 'tail\n'))).toBe(true);
    expect(s.offset).toBe(CHUNK + 5);
    expect(r.infos().filter((m) => m === 'Job 7: COMPLETED')).toHaveLength(1);
  });

  test('a chunk one byte short of full ends following in a final state', () => {
    const { apply } = setup();
    expect(apply(poll('COMPLETED|None|n', '', Buffer.alloc(CHUNK - 1, 'y')))).toBe(true);
  });

  test('unknown to Slurm with a status file → ended once the end marker is in (and no full chunk is still coming)', () => {
    const end = marker('end', '1.0');
    const a = setup();
    expect(a.apply(poll('UNKNOWN', 'smoke-test 3', end))).toBe(true);
    expect(a.s.status).toEqual({ phase: 'smoke-test', code: 3 });
    expect(a.s.state).toBeNull();

    const b = setup();
    expect(b.apply(poll('UNKNOWN', 'smoke-test 0', Buffer.alloc(CHUNK, 'z')))).toBe(false);
    expect(b.apply(poll('UNKNOWN', 'smoke-test 0', 'rest\n' + end))).toBe(true);

    // Status written but the exit trap has not printed its marker yet: keep polling.
    const c = setup();
    expect(c.apply(poll('UNKNOWN', 'smoke-test 0', 'last line\n'))).toBe(false);
    expect(c.apply(poll('UNKNOWN', 'smoke-test 0', end))).toBe(true);
  });

  test('a status seen earlier is kept when a later poll has none', () => {
    const { s, apply } = setup();
    apply(poll('RUNNING|None|n', 'sif-build 2'));
    expect(apply(poll('UNKNOWN', '', marker('end', '2.0')))).toBe(true);
    expect(s.status).toEqual({ phase: 'sif-build', code: 2 });
  });

  test('5 unknown polls without a status → ended (lost); a known state in between resets the count', () => {
    const { s, apply } = setup();
    for (let i = 1; i <= 4; i++) {
      expect(apply(poll('UNKNOWN'))).toBe(false);
      expect(s.unknownPolls).toBe(i);
    }
    expect(apply(poll('RUNNING|None|n'))).toBe(false);
    expect(s.unknownPolls).toBe(0);
    for (let i = 1; i <= 4; i++) expect(apply(poll(''))).toBe(false);
    expect(apply(poll('garbage'))).toBe(true);
    expect(s.unknownPolls).toBe(5);
    expect(s.status).toBeNull();
    expect(s.state).toBe('RUNNING');
  });

  test('Slurm not answering is neither an end nor a loss: one warning, then one line when it answers again', () => {
    const r = fakeReporter();
    const out = new OutputStream(r);
    const s = initialFollowState();
    const at = (p: Poll, now: number) => applyPoll(s, p, out, r, '7', now);
    expect(at(poll('OK RUNNING|None|n1'), 0)).toBe(false);
    for (let i = 0; i < 50; i++) {
      expect(
        at(poll('ERR slurm_load_jobs error: Unable to contact slurm controller (connect failure)', '', i === 3 ? 'still working\n' : ''), 1000 + i * 10_000),
      ).toBe(false);
    }
    expect(s.unknownPolls).toBe(0);
    expect(s.silentSince).toBe(1000);
    const warnings = r.calls.filter((c) => c[0] === 'warning').map((c) => c[1]);
    expect(warnings).toEqual([
      'Slurm does not answer (slurm_load_jobs error: Unable to contact slurm controller (connect failure)); still following job 7, which runs on without the controller.',
    ]);
    expect(r.infos()).toContain('still working');
    expect(at(poll('OK COMPLETED|None|n1', 'smoke-test 0'), 181_000)).toBe(true);
    expect(r.infos()).toContain('Slurm answers again after 180 s.');
    expect(s.silentSince).toBeNull();
  });

  test('Slurm answering that it does not know the job (Invalid job id) counts toward lost', () => {
    const { s, apply } = setup();
    for (let i = 1; i <= 4; i++) expect(apply(poll('ERR slurm_load_jobs error: Invalid job id specified'))).toBe(false);
    expect(apply(poll('OK '))).toBe(true);
    expect(s.unknownPolls).toBe(5);
  });

  test('a reason is only shown for PENDING, a node only for RUNNING', () => {
    const { r, apply } = setup();
    apply(poll('PENDING|Priority|(null)'));
    apply(poll('RUNNING|None|n1'));
    apply(poll('FAILED|NonZeroExitCode|n1'));
    expect(r.infos()).toEqual(['Job 7: PENDING (Priority)', 'Job 7: RUNNING on n1', 'Job 7: FAILED']);
  });

  test('a whole job, poll by poll, with a line split across polls', () => {
    const { r, out, s, apply } = setup();
    const all =
      marker('modules', 10) +
      'loading\n' +
      marker('sif-build', 12) +
      'INFO: Creating SIF file...\n' +
      marker('smoke-test', 40) +
      'GPU 0: A100\n' +
      marker('end', 41);
    const bytes = Buffer.from(all);
    const cuts = [0, 5, 40, 90, bytes.length];
    apply(poll('PENDING|Resources|(null)'));
    for (let i = 0; i < cuts.length - 1; i++) {
      expect(apply(poll('RUNNING|None|n1', '', bytes.subarray(cuts[i], cuts[i + 1])))).toBe(false);
    }
    expect(apply(poll('COMPLETED|None|n1', 'smoke-test 0'))).toBe(true);
    out.end();
    expect(s.offset).toBe(bytes.length);
    expect(out.tail).toEqual(['loading', 'INFO: Creating SIF file...', 'GPU 0: A100']);
    expect(out.phases).toEqual([
      { phase: 'modules', seconds: 2 },
      { phase: 'sif-build', seconds: 28 },
      { phase: 'smoke-test', seconds: 1 },
    ]);
    expect(r.calls.filter((c) => c[0] === 'group').map((c) => c[1])).toEqual(['Job: modules', 'Job: sif-build', 'Job: smoke-test']);
  });
});

describe('sleep between polls', () => {
  test('leaves no abort listener behind when the timer fires (no MaxListenersExceededWarning in a long queue)', async () => {
    const controller = new AbortController();
    for (let i = 0; i < 20; i++) await sleep(1, controller.signal);
    expect(EventEmitter.getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  test('an abort ends it at once', async () => {
    const controller = new AbortController();
    const t0 = Date.now();
    const p = sleep(60_000, controller.signal);
    controller.abort();
    await p;
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});

// The cluster-side scripts (src/core/cluster/*.sh): shellcheck passes on each file and on each
// script as rendered with its generated parameters; the parameters reach bash exactly as given.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderScript, shellAssignments } from '../../src/core/cluster/scripts.js';
import { pollScript } from '../../src/core/poll.js';
import { preflightScript, preflightThen } from '../../src/core/preflight.js';
import { type JobScriptParams, renderJobScript } from '../../src/core/jobscript.js';
import { gcScript, prepareScript, receiveScript } from '../../src/core/store.js';
import { shq } from '../../src/core/quote.js';
import { cancelScript, parseSubmission, submitScript, submitThen } from '../../src/core/submit.js';
import { HOSTILE_MULTILINE as HOSTILE } from '../helpers/hostile.js';
import { prepareParams } from '../helpers/store.js';

const DIR = fileURLToPath(new URL('../../src/core/cluster/', import.meta.url));

/** shellcheck's findings at warning level and above (empty when clean). */
function shellcheck(args: string[], input?: string): string {
  const r = spawnSync('shellcheck', ['-S', 'warning', '-f', 'gcc', ...args], { cwd: DIR, input, encoding: 'utf8' });
  if (r.error) throw new Error(`shellcheck is not installed (apt-get install shellcheck): ${r.error.message}`);
  return r.stdout + r.stderr;
}

/** shellcheck on a rendered script, without the folder's .shellcheckrc: every variable must be assigned. */
const checkRendered = (script: string) => shellcheck(['--norc', '-s', 'bash', '-'], script);

const shFiles = readdirSync(DIR).filter((f) => f.endsWith('.sh'));

describe('the .sh files', () => {
  test.each(shFiles)('%s passes shellcheck -S warning', (file) => {
    expect(shellcheck([file])).toBe('');
  });

  test('each one is read by scripts.ts with a literal URL (so the bundler copies it into dist/)', () => {
    const source = readFileSync(`${DIR}/scripts.ts`, 'utf8');
    expect(shFiles.length).toBeGreaterThan(5);
    for (const f of shFiles) expect([f, source.includes(`readFileSync(new URL('./${f}', import.meta.url), 'utf8')`)]).toEqual([f, true]);
  });
});

describe('rendered scripts', () => {
  const job: JobScriptParams = {
    modules: ['cuda/12', HOSTILE],
    tmpdir: `/t/${HOSTILE}`,
    assemble: { storeLock: '/s/.store/lock', manifest: '/j/manifest.json', members: [{ name: 'a.json', blob: '/s/.store/blobs/sha256/a' }] },
    sif: '/s/sif/a.sif',
    sifLink: '/s/images/x.sif',
    smoke: { kind: 'command', argv: ['nvidia-smi', HOSTILE] },
    smokeFile: null,
    binds: ['/d'],
    gpus: 1,
    statusFile: '/j/status',
    runtime: 'auto',
    publish: {
      dir: '/p',
      name: 'x',
      version: '1.0',
      keep: 3,
      group: 'g',
      mode: '0640',
      lock: '/r/.store/locks/publish-x',
      record: { image: 'x:1.0', digest: null },
    },
    markerToken: 'tok',
    watchdog: { seconds: 600, heartbeatFile: '/j/heartbeat', watchdogFile: '/j/watchdog', loginModules: ['slurm'] },
  };
  const rendered: [string, string][] = [
    ['job, full', renderJobScript(job)],
    ['job, existing .sif, no publication, no watchdog', renderJobScript({ ...job, assemble: null, sifLink: null, publish: null, modules: [], watchdog: null })],
    [
      'store-prepare',
      prepareScript(prepareParams({ tmpdir: 't', group: 'g', blobHexes: ['a', 'b'], publishDir: 'p', publishMode: '0640', publishGroup: 'g' })),
    ],
    ['store-prepare, existing .sif', prepareScript(prepareParams({ tmpdir: 't', imageHex: null, reuse: false, existingSif: 'x.sif', run: 'r' }))],
    [
      'store-receive',
      receiveScript({ root: '/r', key: 'a'.repeat(64), hex: 'a'.repeat(64), size: 10, start: 0, end: 10, codec: 'zstd', path: '/usr/bin:/bin' }),
    ],
    ['store-gc', gcScript({ root: '/r', keepImages: 2, maxAgeDays: 7, loginModules: ['slurm'] })],
    ['poll', pollScript('1', '/j', 0, ['slurm'], { heartbeat: true })],
    [
      'submit',
      submitScript(
        { group: null, loginModules: [], partition: 'p', buildCpus: 4 },
        { jobDir: '/j', root: '/r', hold: '/r/.store/holds/r' },
        { script: '#!/bin/bash', manifest: null, sbatch: ['sbatch', 'x'] },
        { name: 'check.py', data: Buffer.from('x') },
      ).script,
    ],
    ['cancel', cancelScript({ jobDir: '/j' }, [])],
    [
      'preflight, then store-prepare',
      preflightThen(
        preflightScript({
          jobName: 'j',
          partition: 'p',
          gpus: 1,
          time: '30:00',
          sbatchArgs: ['--mem=1G'],
          modules: [HOSTILE],
          loginModules: ['slurm'],
          runtime: 'auto',
          remoteDir: 'rd',
          tmpdir: 't',
        }),
        prepareScript(prepareParams({ tmpdir: 't', sifOnly: true, run: 'r' })),
      ),
    ],
    ['accounting', renderScript('accounting', { login_modules: ['slurm'], job_id: '1', fields: 'JobID,State' })],
  ];

  test.each(rendered)('%s passes shellcheck, every variable assigned', (_what, script) => {
    expect(checkRendered(script)).toBe('');
  });

  test('the check is real: a variable no parameter assigns is found', () => {
    expect(checkRendered(`${rendered[6][1]}\necho "$job_dri"\n`)).toContain('SC2154');
  });
});

describe('shellAssignments', () => {
  test('strings and numbers through shq, flags as 1/0, null as empty, lists as arrays', () => {
    expect(shellAssignments({ a: 'plain/path', b: 'it is', n: 42, t: true, f: false, z: null, l: ['x', 'y z'], e: [] })).toBe(
      "a=plain/path\nb='it is'\nn=42\nt=1\nf=0\nz=''\nl=(x 'y z')\ne=()\n",
    );
  });

  test('refuses a name that is not a plain shell variable', () => {
    expect(() => shellAssignments({ 'a-b': 'x' })).toThrow(/not a shell variable name/);
    expect(() => shellAssignments({ 'x;touch PWNED;y': 'x' })).toThrow(/not a shell variable name/);
  });

  test('bash reads back exactly the values given, hostile ones too', () => {
    const values = [HOSTILE, "it's", '', ' lead and trail ', '-n', '*', '\t\n'];
    const script = `${shellAssignments({ one: HOSTILE, list: values })}printf '%s\\0' "$one" "\${list[@]}"`;
    const cwd = mkdtempSync(join(tmpdir(), 'scripts-'));
    try {
      const r = spawnSync('bash', ['-c', script], { cwd, encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stdout.split('\0').slice(0, -1)).toEqual([HOSTILE, ...values]);
      expect(readdirSync(cwd)).toEqual([]);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe('submit.sh and cancel.sh, run by bash with a fake sbatch, squeue, scancel and module', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  function sandbox() {
    const home = mkdtempSync(join(tmpdir(), 'submit-'));
    dirs.push(home);
    const bin = join(home, 'bin');
    mkdirSync(bin);
    const fake = {
      sbatch: `echo '4242;cluster-a'`,
      scancel: `[ -f "$HOME/scancel-says" ] && { cat "$HOME/scancel-says" >&2; exit 1; }`,
      // What Slurm lists (work dir|id), or a failure when the controller does not answer.
      squeue: `[ -f "$HOME/squeue-fails" ] && { echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1; }\ncat "$HOME/squeue-lists" 2>/dev/null`,
    };
    for (const [cmd, body] of Object.entries(fake)) {
      writeFileSync(join(bin, cmd), `#!/bin/sh\n{ echo --${cmd}--; printf '%s\\n' "$@"; } >> "$HOME/calls"\n${body}\nexit 0\n`);
      chmodSync(join(bin, cmd), 0o755);
    }
    // Not the real one (this machine is the stand-in cluster): a partition it knows nothing of.
    writeFileSync(join(bin, 'sinfo'), '#!/bin/sh\nexit 0\n');
    chmodSync(join(bin, 'sinfo'), 0o755);
    const run = (script: string, stdin: Uint8Array = Buffer.alloc(0)) => {
      const r = spawnSync('bash', ['-c', `module() { echo "module $*" >> "$HOME/calls"; }\n${script}`], {
        cwd: home,
        env: { PATH: `${bin}:${process.env.PATH}`, HOME: home },
        input: stdin,
        encoding: 'utf8',
      });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const calls = () => (existsSync(join(home, 'calls')) ? readFileSync(join(home, 'calls'), 'utf8') : '');
    const count = (cmd: string) => calls().split(`--${cmd}--`).length - 1;
    return { home, run, calls, count };
  }

  const submission = (jobDir: string, manifest: string | null = '[{"Config":"a.json"}]') => ({
    script: '#!/bin/bash -l\necho job\n',
    manifest,
    sbatch: ['sbatch', '--parsable', `--chdir=${jobDir}`, `${jobDir}/job.sh`],
  });

  test('reads the files from stdin (never argv), submits once, links jobs/job-ID to the job dir; a second run finds the job', () => {
    const { home, run, calls, count } = sandbox();
    const jobDir = join(home, 'rd', 'jobs', `run ${HOSTILE}`);
    const smoke = { name: `smoke ${HOSTILE}.sh`, data: Buffer.from('echo smoke-file-content\n') };
    const { script, stdin } = submitScript(
      { group: null, loginModules: ['slurm', 'a b'], partition: 'p', buildCpus: 4 },
      { jobDir, root: join(home, 'rd'), hold: join(home, 'rd', 'hold-r') },
      submission(jobDir),
      smoke,
    );
    expect(script).not.toContain('smoke-file-content');
    expect(script).not.toContain('echo job');
    const r = run(script, stdin);
    expect(r).toEqual({ code: 0, stdout: 'ready\ncpus 4\n4242;cluster-a\n', stderr: '' });
    // The run's hold names its job, for garbage collection.
    expect(readFileSync(join(home, 'rd', 'hold-r'), 'utf8')).toBe('job 4242\n');
    expect(readFileSync(join(jobDir, 'job.sh'), 'utf8')).toBe('#!/bin/bash -l\necho job\n');
    expect(readFileSync(join(jobDir, 'manifest.json'), 'utf8')).toBe('[{"Config":"a.json"}]');
    expect(readFileSync(join(jobDir, smoke.name), 'utf8')).toBe('echo smoke-file-content\n');
    expect(readFileSync(join(jobDir, 'submitted'), 'utf8')).toBe('4242;cluster-a\n');
    expect(existsSync(join(jobDir, 'heartbeat'))).toBe(true);
    expect(readlinkSync(join(home, 'rd', 'jobs', 'job-4242'))).toBe(jobDir);
    expect(statSync(jobDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(jobDir, 'job.sh')).mode & 0o777).toBe(0o600);
    expect(calls()).toContain(`module load slurm a b\n--squeue--\n`);
    expect(calls()).toContain(`--sbatch--\n--parsable\n--chdir=${jobDir}\n${jobDir}/job.sh\n`);
    // A retry after a dropped connection: the same answer, no second job, nothing read.
    expect(run(script)).toEqual({ code: 0, stdout: 'ready\n4242;cluster-a\n', stderr: '' });
    expect(count('sbatch')).toBe(1);
    expect(readdirSync(home).filter((f) => f === 'PWNED')).toEqual([]);
  });

  test('submitThen: `then` runs once the job is submitted (its hold names the job), its output after the answer; parseSubmission tells them apart', () => {
    const { home, run } = sandbox();
    const jobDir = join(home, 'rd', 'jobs', 'r');
    const hold = join(home, 'rd', 'hold-r');
    const { script, stdin } = submitScript(
      { group: null, loginModules: [], partition: 'p', buildCpus: 4 },
      { jobDir, root: join(home, 'rd'), hold },
      submission(jobDir),
      null,
    );
    const then = `cat ${shq(hold)}\necho 'to stderr' >&2`;
    const r = run(submitThen(script, then), stdin);
    expect(r).toEqual({ code: 0, stdout: 'ready\ncpus 4\n4242;cluster-a\nthen job 4242\nthen to stderr\n', stderr: '' });
    expect(parseSubmission(r.stdout, 8)).toEqual({ jobId: '4242', cpus: 4, notes: [], then: ['job 4242', 'to stderr'] });
    // A retry finds the job, and runs `then` again.
    expect(parseSubmission(run(submitThen(script, then)).stdout, 8)).toEqual({ jobId: '4242', cpus: 8, notes: [], then: ['job 4242', 'to stderr'] });
    // `then` failing is said, and the submission stands.
    expect(run(submitThen(script, 'exit 3')).stdout).toBe('ready\n4242;cluster-a\nthen failed: exit 3\n');
  });

  test('submitThen: a failed submission keeps its exit code, and `then` does not run', () => {
    const { home, run } = sandbox();
    writeFileSync(join(home, 'squeue-fails'), '');
    const jobDir = join(home, 'jobs', 'r');
    const { script, stdin } = submitScript(
      { group: null, loginModules: [], partition: 'p', buildCpus: 4 },
      { jobDir, root: home, hold: join(home, 'hold') },
      submission(jobDir),
      null,
    );
    const r = run(submitThen(script, 'touch "$HOME/then-ran"'), stdin);
    expect(r.code).toBe(75);
    expect(r.stdout).not.toContain('then ');
    expect(existsSync(join(home, 'then-ran'))).toBe(false);
  });

  test('an attempt cut off between sbatch and keeping its answer: the retry finds the job by its work dir', () => {
    const { home, run, count } = sandbox();
    // Job directories hold no newline (remote-dir refuses control characters); anything else goes.
    const jobDir = join(home, 'jobs', `a|b ${HOSTILE.replace(/\n/g, '')}`);
    writeFileSync(join(home, 'squeue-lists'), `${jobDir}-other|4000\n${jobDir}|4243\n/elsewhere|4244\n`);
    const { script, stdin } = submitScript(
      { group: null, loginModules: [], partition: 'p', buildCpus: 4 },
      { jobDir, root: home, hold: join(home, 'hold') },
      submission(jobDir),
      null,
    );
    expect(run(script, stdin)).toEqual({ code: 0, stdout: 'ready\n4243\n', stderr: '' });
    expect(count('sbatch')).toBe(0);
    expect(readFileSync(join(jobDir, 'submitted'), 'utf8')).toBe('4243\n');
    expect(readlinkSync(join(home, 'jobs', 'job-4243'))).toBe(jobDir);
  });

  test('says ready first thing, so the files travel while it waits for the lock (another attempt holds it)', () => {
    const { home } = sandbox();
    const jobDir = join(home, 'jobs', 'r');
    mkdirSync(jobDir, { recursive: true });
    const holder = spawn('flock', [join(jobDir, 'submit.lock'), 'sleep', '30'], { stdio: 'ignore' });
    try {
      const { script, stdin } = submitScript(
        { group: null, loginModules: [], partition: 'p', buildCpus: 4 },
        { jobDir, root: home, hold: join(home, 'hold') },
        submission(jobDir),
        null,
      );
      spawnSync('sleep', ['0.2']);
      const r = spawnSync('bash', ['-c', script], { cwd: home, env: { PATH: process.env.PATH, HOME: home }, input: stdin, encoding: 'utf8', timeout: 1500 });
      expect([r.signal, r.stdout]).toEqual(['SIGTERM', 'ready\n']);
    } finally {
      holder.kill();
    }
  });

  test('Slurm not answering: exit 75, nothing submitted', () => {
    const { home, run, count } = sandbox();
    writeFileSync(join(home, 'squeue-fails'), '');
    const jobDir = join(home, 'jobs', 'r');
    const { script, stdin } = submitScript(
      { group: null, loginModules: [], partition: 'p', buildCpus: 4 },
      { jobDir, root: home, hold: join(home, 'hold') },
      submission(jobDir),
      null,
    );
    const r = run(script, stdin);
    expect(r.code).toBe(75);
    expect(r.stderr).toContain('Slurm does not answer: slurm_load_jobs error: Unable to contact slurm controller');
    expect(count('sbatch')).toBe(0);
  });

  test('files cut short (the link dropped while sending): nothing submitted, no half file left', () => {
    const { home, run, count } = sandbox();
    const jobDir = join(home, 'jobs', 'r');
    const { script, stdin } = submitScript(
      { group: null, loginModules: [], partition: 'p', buildCpus: 4 },
      { jobDir, root: home, hold: join(home, 'hold') },
      submission(jobDir),
      null,
    );
    const r = run(script, stdin.subarray(0, stdin.length - 3));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('manifest.json did not arrive whole');
    expect(count('sbatch')).toBe(0);
    expect(readdirSync(jobDir).sort()).toEqual(['job.sh', 'submit.lock']);
  });

  test('no manifest, no smoke file, no login modules: none written, no module command; group-shared: umask 027', () => {
    const { home, run, calls } = sandbox();
    const jobDir = join(home, 'jobs', 'r');
    const group = spawnSync('id', ['-gn'], { encoding: 'utf8' }).stdout.trim();
    const { script, stdin } = submitScript(
      { group, loginModules: [], partition: 'p', buildCpus: 4 },
      { jobDir, root: home, hold: join(home, 'hold') },
      { script: 'x', manifest: null, sbatch: ['sbatch', 'j'] },
      null,
    );
    expect(run(script, stdin).code).toBe(0);
    expect(readdirSync(jobDir).sort()).toEqual(['heartbeat', 'job.sh', 'submit.lock', 'submitted']);
    expect(statSync(jobDir).mode & 0o777).toBe(0o750);
    expect(calls()).not.toContain('module');
  });

  test("more build CPUs than the partition's largest node has: asks sbatch for that many, and says so", () => {
    const { home, run, calls } = sandbox();
    // sinfo -o %c: CPUs per node, one line per node group ("+" marks a range).
    writeFileSync(join(home, 'bin', 'sinfo'), `#!/bin/sh\necho "$@" >> "$HOME/sinfo-args"\nprintf '2\\n8+\\n4\\n'\n`);
    chmodSync(join(home, 'bin', 'sinfo'), 0o755);
    const submit = (cpus: number, dir: string) => {
      const jobDir = join(home, 'jobs', dir);
      const sub = { script: 'x', manifest: null, sbatch: ['sbatch', `--cpus-per-task=${cpus}`, '--mem=1G', 'j'] };
      const { script, stdin } = submitScript(
        { group: null, loginModules: [], partition: 'gpu part', buildCpus: cpus },
        { jobDir, root: home, hold: join(home, `hold-${dir}`) },
        sub,
        null,
      );
      return run(script, stdin);
    };
    expect(submit(16, 'a')).toEqual({
      code: 0,
      stdout: 'ready\nnote build-cpus 16 is more than a node of partition gpu part has: asking for 8\ncpus 8\n4242;cluster-a\n',
      stderr: '',
    });
    expect(readFileSync(join(home, 'sinfo-args'), 'utf8')).toBe('-h -p gpu part -o %c\n');
    expect(submit(6, 'b').stdout).toBe('ready\ncpus 6\n4242;cluster-a\n');
    expect(calls()).toContain('--sbatch--\n--cpus-per-task=8\n--mem=1G\nj\n');
    expect(calls()).toContain('--sbatch--\n--cpus-per-task=6\n--mem=1G\nj\n');
  });

  test('cancel: scancel the job id, after the login modules; an ended job is no failure', () => {
    const { home, run, calls } = sandbox();
    expect(run(cancelScript({ jobId: '4242' }, ['slurm']))).toEqual({ code: 0, stdout: '4242\n', stderr: '' });
    expect(calls()).toBe('module load slurm\n--scancel--\n4242\n');
    writeFileSync(join(home, 'scancel-says'), 'scancel: error: Kill job error on job id 4242: Job/step already completing or completed\n');
    expect(run(cancelScript({ jobId: '4242' }, [])).code).toBe(0);
    writeFileSync(join(home, 'scancel-says'), 'scancel: error: Kill job error on job id 4242: Unable to contact slurm controller (connect failure)\n');
    const r = run(cancelScript({ jobId: '4242' }, []));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Unable to contact slurm controller');
  });

  test('cancel by job dir: the kept answer, else the job Slurm lists there, else nothing', () => {
    const { home, run, calls } = sandbox();
    const kept = join(home, 'jobs', 'kept');
    mkdirSync(kept, { recursive: true });
    writeFileSync(join(kept, 'submitted'), '4250;cluster-a\n');
    expect(run(cancelScript({ jobDir: kept }, []))).toEqual({ code: 0, stdout: '4250\n', stderr: '' });
    const cut = join(home, 'jobs', `cut ${HOSTILE.replace(/\n/g, '')}`);
    mkdirSync(cut, { recursive: true });
    writeFileSync(join(home, 'squeue-lists'), `${cut}|4251\n`);
    expect(run(cancelScript({ jobDir: cut }, []))).toEqual({ code: 0, stdout: '4251\n', stderr: '' });
    expect(run(cancelScript({ jobDir: join(home, 'jobs', 'never') }, []))).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(calls().match(/--scancel--\n(\d+)/g)).toEqual(['--scancel--\n4250', '--scancel--\n4251']);
  });
});

// A shared, busy cluster (issue 12): what the tool may touch, how path inputs read, and that no
// credentials reach a record. The stand-in has what Riviera has and a quiet machine lacks
// (test-cluster/cluster-up.sh): a colleague whose GPU job makes ours queue, a lab group with a
// group-writable directory and a member who plants symlinks in it, and the user's own sif/ and jobs/
// in the home directory and in a folder of theirs.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CLI,
  CLUSTER_HOME,
  type StepRun,
  clusterInputs,
  clusterWorkspace,
  eventually,
  jobState,
  makeDataImageContext,
  runStep,
  singularityCalls,
  startStep,
  uniqueRemoteDir,
} from './harness.js';

let ws: string;
beforeAll(async () => {
  ws = await clusterWorkspace();
  writeFileSync(join(ws, 'quick.sh'), 'echo quick-ok\n');
});

/** A delivery on the CPU partition with a smoke test that needs no GPU: the quickest there is. */
const ON_CPU = { gpus: '0', partition: 'day-long-cpu', 'smoke-test': 'quick.sh' };

function inputs(remoteDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...clusterInputs(), image: 'rs-e2e/gpucheck:safety', 'smoke-test': 'gpu-check.sh', 'remote-dir': remoteDir, ...extra };
}

function expectPassed(run: StepRun): void {
  if (run.code !== 0) throw new Error(`the delivery failed:\n${run.log}`);
}

describe('path inputs', () => {
  test('tmpdir ~/x is the folder x in the home directory, not one named ~; so is a bind source $HOME/x', async () => {
    const remoteDir = uniqueRemoteDir('tilde');
    const run = await runStep(inputs(remoteDir, { tmpdir: `~/${remoteDir}-tmp`, binds: `$HOME/${remoteDir}-tmp:/scratch`, ...ON_CPU }), { workspace: ws });
    expectPassed(run);
    expect(statSync(`${CLUSTER_HOME}/${remoteDir}-tmp`).isDirectory()).toBe(true);
    expect(existsSync(`${CLUSTER_HOME}/~`)).toBe(false);
    const smoke = singularityCalls(0).find((c) => c.SLURM_JOB_ID === run.outputs['job-id'] && c.argv[0] === 'run');
    expect(smoke?.argv).toContain(`${CLUSTER_HOME}/${remoteDir}-tmp:/scratch`);
  });

  test.each([
    ['tmpdir', '/scratch/../tmp/x', /Input 'tmpdir': must not be under \/tmp/],
    ['remote-dir', '~', /Input 'remote-dir': is your home directory/],
    ['remote-dir', '$HOME', /Input 'remote-dir': is your home directory/],
    ['publish-dir', '$LAB/x', /Input 'publish-dir': .*only \$HOME and \$USER/],
  ])('%s %s is refused before anything is built or sent', async (input, value, message) => {
    const run = await runStep(inputs(uniqueRemoteDir('refused'), { [input]: value, publish: 'true' }), { workspace: ws });
    expect(run.code).toBe(1);
    expect(run.log).toMatch(message);
    expect(run.log).not.toContain('::group::Build');
  });
});

test('a CLI run from a checkout whose remote holds a token records the repository without it', () => {
  const repo = mkdtempSync(join(tmpdir(), 'rs-cred-'));
  const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { stdio: 'ignore' });
  git('init', '-q');
  git('remote', 'add', 'origin', 'https://someone:ghp_SECRET0123456789@github.com/lab/gpu-check.git');
  git('-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-q', '--allow-empty', '-m', 'x');
  git('tag', 'v9.9.9');
  writeFileSync(join(repo, 'gpu-check.sh'), readFileSync(join(ws, 'gpu-check.sh')));
  const out = execFileSync(
    process.execPath,
    [CLI, 'deliver', '--host', 'h.example.edu', '--username', 'me', '--image', 'x:1', '--smoke-test', 'gpu-check.sh', '--dry-run'],
    {
      cwd: repo,
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: repo },
    },
  );
  expect(out).toContain('https://github.com/lab/gpu-check.git');
  expect(out).not.toContain('SECRET');
  expect(out).not.toContain('someone');
});

/** Run a command as another account of the stand-in (the colleague, the lab member). */
function asUser(user: string, argv: string[]): string {
  return execFileSync('setpriv', [`--reuid=${user}`, `--regid=${user}`, '--init-groups', '--reset-env', ...argv], { encoding: 'utf8', cwd: '/' }).trim();
}

/** The colleague's job, holding both GPUs of the node until cancelled. */
async function colleagueHoldsGpus(): Promise<string> {
  const id = asUser('rivcolleague', [
    '/opt/slurm/bin/sbatch',
    '--parsable',
    '--partition=short-gpu',
    '--gres=gpu:2',
    '--chdir=/tmp',
    '--output=/dev/null',
    '--wrap',
    'sleep 600',
  ]);
  await eventually(() => jobState(id) === 'RUNNING', 30_000, "the colleague's GPU job to start");
  return id;
}

/** The job directory a started delivery reported, once it has submitted. */
function jobDirOf(log: string): string {
  const m = /Submitted job (\d+) to partition \S+; output in (\S+)\/job\.out/.exec(log);
  if (!m) throw new Error(`no submitted job in the log:\n${log}`);
  return m[2];
}

const backdate = (path: string, days: number) => utimesSync(path, new Date(Date.now() - days * 86_400_000), new Date(Date.now() - days * 86_400_000));

describe('a busy cluster: deliveries queue behind a colleague holding the GPUs', () => {
  test('garbage collection by a delivery that ends meanwhile (keep-images 1, max-age 1) leaves the queued ones what they need', async () => {
    const remoteDir = uniqueRemoteDir('busy');
    const root = `${CLUSTER_HOME}/${remoteDir}`;
    const image = (x: string) => `rs-e2e/busy-${x}:${process.pid}`;
    const ctx = (x: string) => makeDataImageContext({ randomMiB: 1, zerosMiB: 0, seed: `busy-${x}-${process.pid}` });
    const [wsNew, wsReused, wsCpu] = [ctx('new'), ctx('reused'), ctx('cpu')];
    for (const w of [wsNew, wsReused, wsCpu]) writeFileSync(join(w, 'quick.sh'), 'echo quick-ok\n');
    // One CPU each: the node has two and the colleague's job holds one.
    const quick = (x: string, extra: Record<string, string> = {}) =>
      inputs(remoteDir, { image: image(x), 'smoke-test': 'quick.sh', 'build-cpus': '1', ...extra });
    // The unchanged image was delivered before: its next delivery reuses the .sif.
    expectPassed(await runStep(quick('reused', { gpus: '0', partition: 'day-long-cpu' }), { workspace: wsReused }));
    // An old run of ours whose job Slurm has long forgotten: max-age removes it.
    const stale = `${root}/jobs/20200101-000000-abcdef`;
    mkdirSync(stale);
    writeFileSync(`${stale}/submitted`, '1\n');
    chownSync(stale, statSync(root).uid, statSync(root).gid);
    backdate(stale, 400);

    const colleague = await colleagueHoldsGpus();
    let fresh: ReturnType<typeof startStep> | undefined;
    let reused: ReturnType<typeof startStep> | undefined;
    try {
      fresh = startStep(quick('new'), { workspace: wsNew });
      reused = startStep(quick('reused'), { workspace: wsReused });
      await Promise.all([fresh.waitFor(/Submitted job \d+/), reused.waitFor(/Submitted job \d+/)]);
      expect(reused.log()).toContain('The cluster has an intact .sif of this image');
      // Queued for days, as far as the clock can tell.
      for (const step of [fresh, reused]) backdate(jobDirOf(step.log()), 3);
      const cpu = await runStep(quick('cpu', { gpus: '0', partition: 'day-long-cpu', 'keep-images': '1', 'max-age': '1' }), { workspace: wsCpu });
      expectPassed(cpu);
      for (const step of [fresh, reused]) expect(existsSync(`${jobDirOf(step.log())}/job.sh`)).toBe(true);
    } finally {
      execFileSync('scancel', [colleague]);
    }
    const [a, b] = await Promise.all([fresh!.done, reused!.done]);
    expectPassed(a);
    expectPassed(b);
    expect(b.outputs['sif-reused']).toBe('true');
    expect(existsSync(stale)).toBe(false);
  });
});

test('a .sif changed in place after a delivery verified it (same size, same mtime) is built again, not reused', async () => {
  const remoteDir = uniqueRemoteDir('sif-changed');
  const image = `rs-e2e/sif-changed:${process.pid}`;
  const w = makeDataImageContext({ randomMiB: 1, zerosMiB: 0, seed: `sif-changed-${process.pid}` });
  writeFileSync(join(w, 'quick.sh'), 'echo quick-ok\n');
  const deliver = async () => {
    const run = await runStep(inputs(remoteDir, { image, ...ON_CPU, 'build-cpus': '1' }), { workspace: w });
    expectPassed(run);
    return run;
  };
  const sif = (await deliver()).outputs['sif-path'];
  // A verification is remembered once the .sif's ctime is two seconds old.
  await new Promise((r) => setTimeout(r, 2100));
  expect((await deliver()).outputs['sif-reused']).toBe('true');
  expect(readFileSync(`${sif}.verified`, 'utf8')).toContain(readFileSync(`${sif}.sha256`, 'utf8').split(' ')[0]);
  // One byte flipped in place, the size and mtime kept: only the ctime tells.
  const { atime, mtime, size } = statSync(sif);
  const bytes = readFileSync(sif);
  bytes[size >> 1] ^= 0xff;
  writeFileSync(sif, bytes);
  utimesSync(sif, atime, mtime);
  const third = await deliver();
  expect(third.outputs['sif-reused']).toBe('false');
  expect(third.log).not.toContain('The cluster has an intact .sif');
});

describe('remote-dir is the delivery’s own', () => {
  /** Name → [content, mtime] of every file below dir, and the modes of dir and its subdirectories. */
  function snapshot(dir: string): string {
    return execFileSync('find', [dir, '-maxdepth', '3', '-printf', '%p %m %u:%g %T@ %s\\n'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => !/\/(e2e|\.ssh|\.local|\.cache|\.bash_history)(\/|\s)/.test(l))
      .sort()
      .join('\n');
  }

  test.each([
    ['the home directory, written out', CLUSTER_HOME, CLUSTER_HOME],
    ['a folder of the user’s, holding their own sif/ and jobs/', 'thesis-work', `${CLUSTER_HOME}/thesis-work`],
  ])('%s is refused, and nothing in it is touched', async (_name, remoteDir, dir) => {
    expect(readFileSync(`${dir}/sif/thesis-env.sif`, 'utf8')).toBe("the user's own image\n");
    const before = snapshot(dir);
    const group = execFileSync('id', ['-gn', 'rivuser'], { encoding: 'utf8' }).trim();
    const run = await runStep(inputs(remoteDir, { group, 'max-age': '1', 'keep-images': '1' }), { workspace: ws });
    expect(run.code).toBe(1);
    expect(run.log).toMatch(/Input 'remote-dir': .*(your home directory|was not made by riviera-singularity)/);
    expect(run.state.jobId).toBeUndefined();
    expect(snapshot(dir)).toBe(before);
  });
});

describe('publishing into a lab directory where a member plants symlinks', () => {
  test('publication either succeeds safely or fails clearly, and which one is recorded; nothing of the member’s is followed', async () => {
    const tag = `${process.pid}-${Date.now().toString(36)}`;
    const lab = `/srv/rivlab/shared/t-${tag}`;
    mkdirSync(lab);
    execFileSync('chown', ['root:rivlab', lab]);
    chmodSync(lab, 0o2775);
    const victim = `${CLUSTER_HOME}/e2e/victim-${tag}.txt`;
    writeFileSync(victim, 'precious\n', { mode: 0o600 });
    execFileSync('chown', ['rivuser:rivuser', victim]);
    const name = `labimg${process.pid}`;
    const file = `${name}_v1.sif`;
    // The names a publication could be predicted to use: the lock, the final names, and temp names
    // made from the next process ids.
    const lastPid = Number(readFileSync('/proc/loadavg', 'utf8').trim().split('/').pop()!.split(' ').pop());
    const temps = Array.from({ length: 500 }, (_, i) => `.${file}.tmp.${lastPid + i}`);
    const names = ['.lock', file, `${file}.sha256`, `${name}_v1.json`, `${name}_latest.sif`, ...temps, ...temps.flatMap((t) => [`${t}.sha256`, `${t}.json`])];
    let planter: ChildProcess | undefined;
    const before = statSync(lab);
    const victimBefore = statSync(victim);
    // What stood under each name the member swapped away (plant-symlinks' log), and a reference time.
    const work = mkdtempSync(join(tmpdir(), 'rs-lab-'));
    chmodSync(work, 0o755);
    const plantLog = join(work, 'planted');
    writeFileSync(plantLog, '');
    execFileSync('chown', ['rivmember', plantLog]);
    const since = join(work, 'since');
    writeFileSync(since, '');
    const remoteDir = uniqueRemoteDir('lab');
    try {
      planter = spawn('setpriv', ['--reuid=rivmember', '--regid=rivmember', '--init-groups', '/usr/local/bin/plant-symlinks', lab, victim, '300', ...names], {
        stdio: 'ignore',
        env: { ...process.env, PLANT_LOG: plantLog },
      });
      await eventually(() => existsSync(`${lab}/.lock`), 10_000, 'the member to plant links');
      const run = await runStep(
        inputs(remoteDir, {
          publish: 'true',
          'publish-dir': lab,
          'publish-group': 'rivlab',
          'publish-name': name,
          'publish-version': 'v1',
          ...ON_CPU,
        }),
        {
          workspace: ws,
        },
      );
      // Stop the member before looking: what is in the directory no longer changes.
      writeFileSync(`${lab}/.stop-planting`, '');
      const exited = new Promise((r) => planter!.once('exit', r));
      planter.kill();
      await exited;
      const outcome = run.code === 0 ? 'published' : 'refused';
      console.info(`Publication into a lab directory with a symlink planter: ${outcome} (job ${run.outputs['job-id']}).`);

      // Either way: nothing of the member's was followed (the victim's bytes, mode and inode times
      // are as they were: no write, chmod or chgrp through a link), the directory keeps its mode,
      // and no file of the user's was written outside the publish directory and remote-dir.
      const victimAfter = statSync(victim);
      expect(readFileSync(victim, 'utf8')).toBe('precious\n');
      expect([victimAfter.mode, victimAfter.uid, victimAfter.gid, victimAfter.mtimeMs, victimAfter.ctimeMs]).toEqual([
        victimBefore.mode,
        victimBefore.uid,
        victimBefore.gid,
        victimBefore.mtimeMs,
        victimBefore.ctimeMs,
      ]);
      const after = statSync(lab);
      expect([after.mode, after.uid, after.gid]).toEqual([before.mode, before.uid, before.gid]);
      const written = execFileSync(
        'find',
        ['/srv/rivlab', `${CLUSTER_HOME}/e2e`, '-maxdepth', '3', '-user', 'rivuser', '!', '-type', 'd', '-newer', since, '-print'],
        {
          encoding: 'utf8',
        },
      )
        .split('\n')
        .filter((p) => p && !p.startsWith(`${lab}/`) && p !== lab && !p.startsWith(`${CLUSTER_HOME}/${remoteDir}`));
      expect(written).toEqual([]);
      // Each link the member planted is still its own link to the victim (replaced by ours, or left).
      for (const e of readdirSync(lab)) {
        const st = lstatSync(join(lab, e));
        if (st.uid !== 0 && st.uid === lstatSync(plantLog).uid)
          expect([e, st.isSymbolicLink() ? readlinkSync(join(lab, e)) : 'not a link']).toEqual([e, victim]);
      }
      // No temp file of ours is left.
      expect(readdirSync(lab).filter((e) => e.startsWith('.riviera-') && lstatSync(join(lab, e)).uid !== lstatSync(plantLog).uid)).toEqual([]);

      if (outcome === 'published') {
        // The published file was complete and ours: in place, or as the member found it before
        // swapping it away.
        expect(run.outputs['published-path']).toBe(`${lab}/${file}`);
        const sif = readFileSync(run.outputs['sif-path']);
        const want = { owner: 'rivuser', size: sif.length, sha: createHash('sha256').update(sif).digest('hex') };
        const seen = readFileSync(plantLog, 'utf8')
          .split('\n')
          .filter((l) => l.endsWith(` ${file}`))
          .map((l) => {
            const [owner, size, sha] = l.split(' ');
            return { owner, size: Number(size), sha };
          });
        const inPlace = lstatSync(`${lab}/${file}`);
        if (!inPlace.isSymbolicLink()) {
          const bytes = readFileSync(`${lab}/${file}`);
          seen.push({
            owner: execFileSync('stat', ['-c', '%U', `${lab}/${file}`], { encoding: 'utf8' }).trim(),
            size: bytes.length,
            sha: createHash('sha256').update(bytes).digest('hex'),
          });
        }
        expect(seen.length).toBeGreaterThan(0);
        for (const s of seen) expect(s).toEqual(want);
      } else {
        // A clear error naming the input, and the job's own line naming the directory.
        expect(run.code).toBe(1);
        expect(run.outputs['published-path'] ?? '').toBe('');
        expect(run.log).toMatch(/::error::.*publishing the \.sif failed.*publish-dir/);
        expect(run.log).toMatch(new RegExp(`riviera-singularity: cannot [^\\n]*${lab.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      }
    } finally {
      planter?.kill();
      rmSync(work, { recursive: true, force: true });
    }
  });
});

test('publishing an existing .sif records its sha256', async () => {
  const remoteDir = uniqueRemoteDir('pubsif');
  const first = await runStep(inputs(remoteDir, ON_CPU), { workspace: ws });
  expectPassed(first);
  const { image: _image, ...rest } = inputs(remoteDir, {
    sif: first.outputs['sif-path'],
    publish: 'true',
    'publish-name': 'existing',
    'publish-version': 'v1',
    ...ON_CPU,
  });
  void _image;
  const run = await runStep(rest, { workspace: ws });
  expectPassed(run);
  const pub = `${CLUSTER_HOME}/${remoteDir}/published`;
  const record = JSON.parse(readFileSync(`${pub}/existing_v1.json`, 'utf8'));
  const sum = createHash('sha256')
    .update(readFileSync(`${pub}/existing_v1.sif`))
    .digest('hex');
  expect(record.sha256).toBe(sum);
  expect(readFileSync(`${pub}/existing_v1.sif.sha256`, 'utf8')).toBe(`${sum}  existing_v1.sif\n`);
  expect(lstatSync(`${pub}/existing_latest.sif`).isSymbolicLink()).toBe(true);
  expect(readdirSync(pub).filter((f) => f.startsWith('.'))).toEqual([]);
});

// The job script, checked by bash itself: `bash -n` for syntax, then by running it for real in a
// temp dir with a fake `module` function and a fake `singularity` on PATH that records its argv.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { type Assembly, type JobScriptParams, JOB_PHASES, jobMarker, parseMark, renderJobScript, sbatchArgv, smokeArgv } from '../../src/core/jobscript.js';
import { parseGpuReport } from '../../src/core/gpu.js';
import { shq } from '../../src/core/quote.js';
import { holdLock, killTrackedAfterEach, track } from '../helpers/processes.js';
import { listTar, readTarMember } from '../../src/core/tar.js';
import { HOSTILE } from '../helpers/hostile.js';
import { OutputStream } from '../../src/core/poll.js';
import { fakeReporter } from '../helpers/reporter.js';

killTrackedAfterEach();

function params(over: Partial<JobScriptParams> = {}): JobScriptParams {
  return {
    modules: ['slurm', 'singularity', 'cuda12.2/toolkit'],
    tmpdir: '/scratch/me/tmp',
    assemble: {
      storeLock: '/scratch/me/.store/lock',
      manifest: '/scratch/me/jobs/1/manifest.json',
      members: [
        { name: 'abc.json', blob: '/scratch/me/.store/blobs/sha256/abc' },
        { name: 'def/layer.tar', blob: '/scratch/me/.store/blobs/sha256/def' },
      ],
    },
    sif: '/scratch/me/sif/abc.sif',
    sifLink: '/scratch/me/images/myimage_latest.sif',
    smoke: { kind: 'command', argv: ['nvidia-smi', '-L'] },
    smokeFile: null,
    binds: [],
    gpus: 1,
    statusFile: '/scratch/me/jobs/1/status',
    runtime: 'singularity',
    publish: null,
    markerToken: 'tok123',
    watchdog: null,
    ...over,
  };
}

function bashSyntaxOk(script: string): void {
  execFileSync('bash', ['-n'], { input: script, stdio: ['pipe', 'pipe', 'pipe'] });
}

describe('renderJobScript: text', () => {
  test('passes bash -n, for both kinds of smoke test and with hostile values', () => {
    bashSyntaxOk(renderJobScript(params()));
    bashSyntaxOk(renderJobScript(params({ smoke: { kind: 'script', path: 'x/smoke.sh' }, smokeFile: 'smoke.sh', gpus: 0, assemble: null })));
    bashSyntaxOk(
      renderJobScript(
        params({
          tmpdir: `/t/${HOSTILE}`,
          assemble: {
            storeLock: `/st/${HOSTILE}/lock`,
            manifest: `/m/${HOSTILE}.json`,
            members: [
              { name: `${HOSTILE}.json`, blob: `/b/${HOSTILE}` },
              { name: `${HOSTILE}/layer.tar`, blob: `/b/it's` },
            ],
          },
          sif: `/s/${HOSTILE}.sif`,
          sifLink: `/l/${HOSTILE}.sif`,
          statusFile: `/j/${HOSTILE}/status`,
          binds: [HOSTILE, `${HOSTILE}:/x:ro`],
          smoke: { kind: 'command', argv: [HOSTILE, "it's", ''] },
        }),
      ),
    );
  });

  test('bash -n is a real check (a broken script is rejected)', () => {
    expect(() => bashSyntaxOk(renderJobScript(params()) + '\nif then fi\n')).toThrow();
  });

  test('starts as a bash login shell', () => {
    expect(renderJobScript(params()).split('\n')[0]).toBe('#!/bin/bash -l');
  });

  /** The generated assignment of one parameter. */
  const param = (script: string, name: string) => script.split('\n').find((l) => l.startsWith(`${name}=`));

  test('every parameter is an assignment quoted by shq; lists are bash arrays', () => {
    const script = renderJobScript(params({ modules: ['b', 'a/1.0', "it's"], tmpdir: '/scratch/my tmp', sifLink: null }));
    expect(param(script, 'modules')).toBe(`modules=(b a/1.0 'it'\\''s')`);
    expect(param(script, 'tmpdir')).toBe(`tmpdir='/scratch/my tmp'`);
    expect(param(script, 'sif_link')).toBe(`sif_link=''`);
    expect(param(script, 'marker')).toBe(`marker=${shq(jobMarker('tok123'))}`);
    // The parameters come before the body, which holds no value but through them.
    const body = script.slice(script.indexOf('\nphase modules\n'));
    expect(body).not.toContain('/scratch');
  });

  test('loads the modules in one module load, only when there are some', () => {
    const script = renderJobScript(params());
    expect(script.split('\n').filter((l) => /^\s*module load "\$\{modules/.test(l))).toEqual([
      `  module load "\${modules[@]}" || fail 127 "module load failed: check the module names with 'module avail'"`,
    ]);
    expect(script).toContain('if [ "${#modules[@]}" -gt 0 ]; then\n  module load');
  });

  test('exports the temp dir to Singularity, Apptainer and TMPDIR', () => {
    const script = renderJobScript(params());
    expect(script).toContain('export SINGULARITY_TMPDIR="$job_tmp" APPTAINER_TMPDIR="$job_tmp" TMPDIR="$job_tmp"');
    expect(script).toContain('mkdir -p "$tmpdir"');
    expect(param(script, 'tmpdir')).toBe('tmpdir=/scratch/me/tmp');
  });

  test('builds from docker-archive:<the assembled tar in the job temp dir>, single colon form', () => {
    const script = renderJobScript(params());
    expect(script).toContain('run "$rt" build --force "$sif.tmp.$$" "docker-archive:$job_tmp/image.tar" ');
    expect(script).not.toContain('docker-archive://');
  });

  test('assembles the archive from the store: members staged as links, tar -h, under a shared store lock', () => {
    const script = renderJobScript(params());
    expect(param(script, 'assemble')).toBe('assemble=1');
    expect(param(script, 'store_lock')).toBe('store_lock=/scratch/me/.store/lock');
    expect(param(script, 'manifest')).toBe('manifest=/scratch/me/jobs/1/manifest.json');
    expect(param(script, 'member_names')).toBe('member_names=(abc.json def/layer.tar)');
    expect(param(script, 'member_blobs')).toBe('member_blobs=(/scratch/me/.store/blobs/sha256/abc /scratch/me/.store/blobs/sha256/def)');
    expect(script).toContain('cp "$manifest" "$arch/manifest.json"');
    expect(script).toContain('mkdir -p "$arch/$dir" && ln -sf "${member_blobs[$i]}" "$arch/$name" || fail 1 "cannot stage the archive"');
    expect(script).toMatch(/exec 7>"\$store_lock" \|\| fail 1 [^\n]*\n\s*flock -s /);
    expect(script).toContain('tar -chf "$job_tmp/image.tar" -C "$arch" manifest.json "${member_names[@]}" ');
    const spaced = renderJobScript(
      params({ assemble: { storeLock: '/scratch/my store/lock', manifest: '/j/m f.json', members: [{ name: 'a b.json', blob: '/s/a b' }] } }),
    );
    expect(param(spaced, 'store_lock')).toBe(`store_lock='/scratch/my store/lock'`);
    expect(param(spaced, 'manifest')).toBe(`manifest='/j/m f.json'`);
    expect(param(spaced, 'member_names')).toBe(`member_names=('a b.json')`);
    expect(param(spaced, 'member_blobs')).toBe(`member_blobs=('/s/a b')`);
  });

  test('the phases, in order', () => {
    expect([...JOB_PHASES]).toEqual(['modules', 'assemble', 'sif-build', 'gpu-check', 'smoke-test', 'publish']);
  });

  test('--nv only when gpus > 0', () => {
    const smoke = (gpus: number) => param(renderJobScript(params({ gpus })), 'smoke');
    expect(smoke(1)).toBe('smoke=(exec --nv /scratch/me/sif/abc.sif nvidia-smi -L)');
    expect(smoke(4)).toContain(' --nv ');
    expect(smoke(0)).toBe('smoke=(exec /scratch/me/sif/abc.sif nvidia-smi -L)');
    expect(renderJobScript(params())).toContain('run "$rt" "${smoke[@]}"');
  });

  test('one --bind per bind', () => {
    const smoke = param(renderJobScript(params({ binds: ['/data:/data:ro', '/scratch/x', 'a b:/c'] })), 'smoke');
    expect(smoke).toBe(`smoke=(exec --nv --bind /data:/data:ro --bind /scratch/x --bind 'a b:/c' /scratch/me/sif/abc.sif nvidia-smi -L)`);
  });

  test('with an assembly it builds from the store; without one the store parameters are empty', () => {
    const none = renderJobScript(params({ assemble: null }));
    expect(param(none, 'assemble')).toBe('assemble=0');
    expect(param(none, 'store_lock')).toBe(`store_lock=''`);
    expect(param(none, 'member_names')).toBe('member_names=()');
    expect(none).toContain('if [ "$assemble" = 1 ]; then\n  phase assemble');
  });
});

describe('smokeArgv', () => {
  test('exec + argv for a smoke command', () => {
    expect(smokeArgv(params({ smoke: { kind: 'command', argv: ['python3', '-c', 'print(1)'] }, binds: ['/d'], gpus: 2 }))).toEqual([
      'exec',
      '--nv',
      '--bind',
      '/d',
      '/scratch/me/sif/abc.sif',
      'python3',
      '-c',
      'print(1)',
    ]);
  });

  test('run + the script name for a smoke test', () => {
    expect(smokeArgv(params({ smoke: { kind: 'script', path: 'ci/smoke.sh' }, smokeFile: 'smoke.sh', gpus: 0 }))).toEqual([
      'run',
      '/scratch/me/sif/abc.sif',
      'smoke.sh',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Running the script.

const FAKE_SINGULARITY = `#!/bin/sh
[ "$1" = --version ] && { echo 'singularity-ce version 4.1.0'; exit 0; }
# Records each call's argv (but --version), one per line, after a '--call--' line.
{ echo --call--; for a in "$@"; do printf '%s\\n' "$a"; done; } >> "$FAKE_LOG"
# The GPU report's probe (exec --cleanenv) answers what the test says the image declares.
[ "$1 $2" = "exec --cleanenv" ] && { printf '%s\\n' "\${FAKE_PROBE:-env }"; exit 0; }
case "$1" in
  build)
    printf 'TMPDIR=%s\\nSINGULARITY_TMPDIR=%s\\nAPPTAINER_TMPDIR=%s\\nCACHE=%s\\n' "$TMPDIR" "$SINGULARITY_TMPDIR" "$APPTAINER_TMPDIR" "$SINGULARITY_CACHEDIR" > "$FAKE_ENV"
    [ -d "$TMPDIR" ] && echo in-tmp > "$TMPDIR/scratch-file"
    # Keep the archive it was given, and whether garbage collection could take the store now.
    case "$4" in docker-archive:*) cp "\${4#docker-archive:}" "$FAKE_TAR" ;; esac
    if flock -x -n "$FAKE_STORE_LOCK" true; then echo free; else echo held; fi > "$FAKE_LOCK_STATE"
    echo "building $3"
    if [ "\${FAKE_BUILD_RC:-0}" -eq 0 ]; then printf 'SIF' > "$3"; else printf 'partial' > "$3"; fi
    exit "\${FAKE_BUILD_RC:-0}"
    ;;
  *)
    echo "smoke test output"
    echo "smoke test error" >&2
    [ -n "$FAKE_SMOKE_ENV" ] && env > "$FAKE_SMOKE_ENV"
    [ -n "$FAKE_SMOKE_OUT" ] && printf '%s\\n' "$FAKE_SMOKE_OUT"
    if [ -n "$FAKE_SLEEP" ]; then : > "$FAKE_STARTED"; exec sleep "$FAKE_SLEEP"; fi
    exit "\${FAKE_SMOKE_RC:-0}"
    ;;
esac
`;

interface Sandbox {
  root: string;
  jobDir: string;
  p: JobScriptParams;
  scriptPath: string;
  env: NodeJS.ProcessEnv;
  log: string;
  moduleLog: string;
  envFile: string;
  /** Where the fake build copies the archive it is given. */
  tarCopy: string;
  lockState: string;
  /** Archive member name → the bytes it must hold (manifest.json and every blob). */
  expected: Map<string, Buffer>;
  /** The store directory. */
  store: string;
  /** The store's lock and members (p.assemble unless a test overrides it). */
  assembly: Assembly;
  sifLink: string;
}

const sandboxes: string[] = [];
afterAll(() => {
  for (const d of sandboxes) rmSync(d, { recursive: true, force: true });
});

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/**
 * A temp dir with hostile path names everywhere, a fake singularity, a real store (blobs named by
 * their digests, as the delivery leaves them) with a manifest.json in the job dir, and the script.
 */
function sandbox(over: (root: string) => Partial<JobScriptParams> = () => ({}), moduleBody = 'printf "%s\\n" "$@" > "$MODULE_LOG"'): Sandbox {
  const root = mkdtempSync(join(tmpdir(), 'jobscript-'));
  sandboxes.push(root);
  const bin = join(root, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'singularity'), FAKE_SINGULARITY);
  chmodSync(join(bin, 'singularity'), 0o755);
  const jobDir = join(root, `jobs ${HOSTILE}`);
  mkdirSync(jobDir);

  const store = join(root, `store ${HOSTILE}`);
  mkdirSync(join(store, 'blobs', 'sha256'), { recursive: true });
  const config = Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [] } }));
  const layers = [randomBytes(70_000), randomBytes(3_000)];
  const blobs = [config, ...layers].map((data) => {
    const path = join(store, 'blobs', 'sha256', sha256(data));
    writeFileSync(path, data);
    return { data, path, hex: sha256(data) };
  });
  // Real names are <hex>.json and <hex>/layer.tar; one hostile name checks the quoting.
  const members = [
    { name: `${blobs[0].hex}.json`, blob: blobs[0].path },
    { name: `${blobs[1].hex}/layer.tar`, blob: blobs[1].path },
    { name: `l2 ${HOSTILE}/layer.tar`, blob: blobs[2].path },
  ];
  const manifest = Buffer.from(JSON.stringify([{ Config: members[0].name, RepoTags: ['x:latest'], Layers: members.slice(1).map((m) => m.name) }]));
  writeFileSync(join(jobDir, 'manifest.json'), manifest);
  const expected = new Map<string, Buffer>([['manifest.json', manifest], ...members.map((m, i): [string, Buffer] => [m.name, blobs[i].data])]);

  const assembly: Assembly = { storeLock: join(store, 'lock'), manifest: join(jobDir, 'manifest.json'), members };
  const sifLink = join(root, `images ${HOSTILE}`, 'my`image`.sif');
  const p = params({
    modules: ['slurm', 'singularity', 'cuda12.2/toolkit'],
    tmpdir: join(root, `tmp ${HOSTILE}`),
    assemble: assembly,
    sif: join(root, `sif ${HOSTILE}`, "it's.sif"),
    sifLink,
    statusFile: join(jobDir, 'status'),
    binds: [`/data ${HOSTILE}:/d`, `it's:"/x":ro`],
    smoke: { kind: 'command', argv: ['python3', '-c', `print("${HOSTILE}")`, "it's", ''] },
    gpus: 1,
    ...over(root),
  });
  const scriptPath = join(jobDir, 'job.sh');
  writeFileSync(scriptPath, `module() { ${moduleBody}; }\n${renderJobScript(p)}`);
  const log = join(root, 'singularity.log');
  const moduleLog = join(root, 'module.log');
  const envFile = join(root, 'singularity.env');
  const tarCopy = join(root, 'built-from.tar');
  const lockState = join(root, 'lock-state');
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}:${process.env.PATH}`,
    HOME: root,
    SLURM_JOB_ID: '4242',
    FAKE_LOG: log,
    FAKE_ENV: envFile,
    FAKE_STARTED: join(root, 'started'),
    FAKE_TAR: tarCopy,
    FAKE_STORE_LOCK: assembly.storeLock,
    FAKE_LOCK_STATE: lockState,
    MODULE_LOG: moduleLog,
  };
  return { root, jobDir, p, scriptPath, env, log, moduleLog, envFile, tarCopy, lockState, expected, store, assembly, sifLink };
}

function runScript(sb: Sandbox, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync('bash', [sb.scriptPath], { cwd: sb.jobDir, env: { ...sb.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every call of the fake singularity, as argv arrays; `probe`: the GPU report's (`exec --cleanenv`) only, else all but it. */
function calls(sb: Sandbox, probe = false): string[][] {
  if (!existsSync(sb.log)) return [];
  return readFileSync(sb.log, 'utf8')
    .split('--call--\n')
    .slice(1)
    .map((c) => c.replace(/\n$/, '').split('\n'))
    .filter((c) => (c[0] === 'exec' && c[1] === '--cleanenv') === probe);
}

/** The temp dir variables the fake build saw. */
function buildEnv(sb: Sandbox): Record<string, string> {
  return Object.fromEntries(
    readFileSync(sb.envFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** All paths under dir, recursively (not following symlinks). */
function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...walk(p));
  }
  return out;
}

function expectNoPwned(sb: Sandbox): void {
  const files = walk(sb.root);
  expect(files.filter((f) => f.endsWith('/PWNED'))).toEqual([]);
}

function expectNoTempLeftovers(sb: Sandbox): void {
  expect(walk(sb.root).filter((f) => /\.tmp\.\d+$/.test(f))).toEqual([]);
  // The job's own temp dir under tmpdir is gone; tmpdir itself may stay.
  expect(readdirSync(sb.p.tmpdir)).toEqual([]);
}

/** The rest of each of the job's marker lines of `kind` (token tok123), in order. */
function marks(stdout: string, kind: 'phase' | 'gpu'): string[] {
  return stdout
    .split('\n')
    .map((l) => parseMark(l, 'tok123'))
    .filter((m) => m?.kind === kind)
    .map((m) => m!.rest);
}

function phasesIn(stdout: string): string[] {
  return marks(stdout, 'phase').map((m) => m.split(' ')[0]);
}

/** Epoch seconds at which each phase started. */
function phaseTimes(stdout: string): Record<string, number> {
  return Object.fromEntries(marks(stdout, 'phase').map((m) => [m.split(' ')[0], Number(m.split(' ')[1])]));
}

/**
 * Processes a test started (each spawned `detached`, as its own process group); any still running
 * when the test ends (it failed midway) are killed with their children.
 */
describe('renderJobScript: the watchdog', () => {
  /** A sandbox whose job has a watchdog of `seconds`, and a scancel that fails (the job then signals itself). */
  function watched(seconds: number, heartbeatAgo: number) {
    const sb = sandbox((root) => ({
      watchdog: { seconds, heartbeatFile: join(root, 'heartbeat'), watchdogFile: join(root, 'watchdog'), loginModules: ['slurm'] },
    }));
    const heartbeat = sb.p.watchdog!.heartbeatFile;
    writeFileSync(heartbeat, '');
    const t = Date.now() / 1000 - heartbeatAgo;
    utimesSync(heartbeat, t, t);
    writeFileSync(join(sb.root, 'bin', 'scancel'), `#!/bin/sh\necho "$@" >> "${join(sb.root, 'scancel.log')}"\nexit 1\n`);
    chmodSync(join(sb.root, 'bin', 'scancel'), 0o755);
    return sb;
  }

  test('a job that starts after the watchdog ran out runs nothing, cancels itself and says why', () => {
    const sb = watched(20, 100);
    const r = runScript(sb);
    expect(calls(sb)).toEqual([]);
    expect(r.stderr).toMatch(/watchdog: no delivery has followed this job for (9\d|1\d\d) s \(watchdog 20 s\): cancelling it/);
    expect(readFileSync(join(sb.root, 'scancel.log'), 'utf8')).toBe('4242\n');
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('watchdog 143\n');
    expect(r.code).toBe(143);
  });

  test('a running job whose heartbeat stops cancels itself about `watchdog` later', () => {
    const sb = watched(3, 0);
    const t0 = Date.now();
    runScript(sb, { FAKE_SLEEP: '60' });
    const took = (Date.now() - t0) / 1000;
    expect(calls(sb).map((c) => c[0])).toEqual(['build', 'exec']);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('smoke-test 143\n');
    expect(took).toBeGreaterThan(3);
    expect(took).toBeLessThan(15);
  });

  test('a job whose heartbeat is kept fresh runs to its end, and leaves no watchdog behind', async () => {
    const sb = watched(3, 0);
    const keep = setInterval(() => utimesSync(sb.p.watchdog!.heartbeatFile, new Date(), new Date()), 500);
    const child = track(spawn('bash', [sb.scriptPath], { cwd: sb.jobDir, env: { ...sb.env, FAKE_SLEEP: '6' }, stdio: 'ignore', detached: true }));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearInterval(keep);
    expect(code).toBe(0);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('smoke-test 0\n');
    expect(existsSync(join(sb.root, 'scancel.log'))).toBe(false);
    // Nothing of the job is left in its directory once the watchdog's last sleep (2 s) is over.
    await new Promise((r) => setTimeout(r, 2500));
    const inJobDir = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return readlinkSync(`/proc/${p}/cwd`) === sb.jobDir;
        } catch {
          return false;
        }
      });
    expect(inJobDir).toEqual([]);
  }, 30_000);
});

describe('renderJobScript: running it', () => {
  test('the sandbox really detects injection (a PWNED file would be found)', () => {
    const sb = sandbox();
    writeFileSync(join(sb.p.tmpdir.replace(/\/[^/]*$/, ''), 'PWNED'), '');
    expect(() => expectNoPwned(sb)).toThrow();
  });

  test('a passing smoke test: exact argv, status, exit code, phases, cleanup', () => {
    const sb = sandbox();
    const r = runScript(sb);
    expect(r.stderr).toContain('smoke test error');
    expect(r.code).toBe(0);

    const c = calls(sb);
    expect(c).toHaveLength(2);
    const [build, smoke] = c;
    expect(build.slice(0, 2)).toEqual(['build', '--force']);
    expect(build[2]).toMatch(/\.tmp\.\d+$/);
    expect(build[2].replace(/\.tmp\.\d+$/, '')).toBe(sb.p.sif);
    expect(build[3]).toBe(`docker-archive:${buildEnv(sb).TMPDIR}/image.tar`);
    expect(build).toHaveLength(4);
    expect(smoke).toEqual(['exec', '--nv', '--bind', sb.p.binds[0], '--bind', sb.p.binds[1], sb.p.sif, 'python3', '-c', `print("${HOSTILE}")`, "it's", '']);

    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('smoke-test 0\n');
    expect(readFileSync(sb.moduleLog, 'utf8')).toBe('load\nslurm\nsingularity\ncuda12.2/toolkit\n');
    expect(phasesIn(r.stdout)).toEqual(['modules', 'assemble', 'sif-build', 'gpu-check', 'smoke-test', 'end']);
    expect(r.stdout).toContain('smoke test output');

    // The .sif is in place and the stable link points at it.
    expect(readFileSync(sb.p.sif, 'utf8')).toBe('SIF');
    expect(lstatSync(sb.sifLink).isSymbolicLink()).toBe(true);
    expect(readlinkSync(sb.sifLink)).toBe(sb.p.sif);

    expectNoPwned(sb);
    expectNoTempLeftovers(sb);
  });

  test("the build gets a tar of exactly manifest.json and the members, with the blobs' bytes (no links)", async () => {
    const sb = sandbox();
    expect(runScript(sb).code).toBe(0);
    const entries = await listTar(sb.tarCopy);
    expect(entries.map((e) => e.name).sort()).toEqual([...sb.expected.keys()].sort());
    for (const e of entries) {
      expect([e.name, e.type]).toEqual([e.name, 'file']);
      expect((await readTarMember(sb.tarCopy, e)).equals(sb.expected.get(e.name)!)).toBe(true);
    }
    // The store is untouched: the blobs are still there, byte for byte.
    for (const m of sb.assembly.members) expect(readFileSync(m.blob).equals(sb.expected.get(m.name)!)).toBe(true);
    expect(existsSync(sb.assembly.storeLock)).toBe(true);
    // The assembled tar was in the job's temp dir, which is gone.
    expect(existsSync(buildEnv(sb).TMPDIR)).toBe(false);
  });

  test('the tar check is real: a different blob in the store shows in the archive', async () => {
    const sb = sandbox();
    const member = sb.assembly.members[1];
    writeFileSync(member.blob, 'not the layer');
    expect(runScript(sb).code).toBe(0);
    const entry = (await listTar(sb.tarCopy)).find((e) => e.name === member.name)!;
    expect((await readTarMember(sb.tarCopy, entry)).equals(sb.expected.get(member.name)!)).toBe(false);
  });

  test('<sif>.sha256 beside the .sif verifies with sha256sum -c from its directory', () => {
    const sb = sandbox();
    expect(runScript(sb).code).toBe(0);
    const digestFile = `${sb.p.sif}.sha256`;
    expect(readFileSync(digestFile, 'utf8')).toBe(`${sha256('SIF')}  ${basename(sb.p.sif)}\n`);
    const check = () => execFileSync('sha256sum', ['-c', '--status', basename(digestFile)], { cwd: dirname(sb.p.sif), stdio: 'pipe' });
    expect(check).not.toThrow();
    writeFileSync(sb.p.sif, 'SIF but changed');
    expect(check).toThrow();
  });

  test('the store lock is released before the build (garbage collection is not held up by it)', () => {
    const sb = sandbox();
    expect(runScript(sb).code).toBe(0);
    expect(readFileSync(sb.lockState, 'utf8')).toBe('free\n');
  });

  test('assembly shares the store lock with deliveries and waits out garbage collection', async () => {
    const shared = sandbox();
    const lock = shared.assembly.storeLock;
    const reader = await holdLock(lock, '-s');
    try {
      expect(runScript(shared).code).toBe(0);
    } finally {
      await reader.release();
    }

    const sb = sandbox();
    const gc = await holdLock(sb.assembly.storeLock, '-x');
    const child = track(spawn('bash', [sb.scriptPath], { cwd: sb.jobDir, env: sb.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true }));
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise((r) => setTimeout(r, 1500));
    expect(calls(sb)).toEqual([]); // still waiting for the lock: nothing built
    await gc.release();
    expect(await exited).toBe(0);
    const t = phaseTimes(stdout);
    expect(t['sif-build'] - t.assemble).toBeGreaterThan(1);
    expect(calls(sb).map((c) => c[0])).toEqual(['build', 'exec']);
  }, 30_000);

  test('the build ran with every temp dir variable set to a fresh dir under tmpdir', () => {
    const sb = sandbox();
    expect(runScript(sb).code).toBe(0);
    const env = buildEnv(sb);
    expect(env.TMPDIR.startsWith(`${sb.p.tmpdir}/job-4242.`)).toBe(true);
    expect(env.SINGULARITY_TMPDIR).toBe(env.TMPDIR);
    expect(env.APPTAINER_TMPDIR).toBe(env.TMPDIR);
    expect(env.CACHE).toBe(`${env.TMPDIR}/cache`);
    // It existed during the build (the fake wrote into it) and is gone now.
    expect(existsSync(env.TMPDIR)).toBe(false);
    expectNoTempLeftovers(sb);
  });

  test.each([1, 3, 42, 255])('a smoke test exiting %d: the job exits with it and records it', (rc) => {
    const sb = sandbox();
    const r = runScript(sb, { FAKE_SMOKE_RC: String(rc) });
    expect(r.code).toBe(rc);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe(`smoke-test ${rc}\n`);
    expect(calls(sb).map((c) => c[0])).toEqual(['build', 'exec']);
    expectNoPwned(sb);
    expectNoTempLeftovers(sb);
  });

  test('a smoke test script: singularity run <sif> <script name>, no --nv without GPUs', () => {
    const sb = sandbox(() => ({ smoke: { kind: 'script', path: 'ci/smoke.sh' }, smokeFile: `smoke ${HOSTILE}.sh`, gpus: 0, binds: [] }));
    const r = runScript(sb, { FAKE_SMOKE_RC: '7' });
    expect(r.code).toBe(7);
    expect(calls(sb)[1]).toEqual(['run', sb.p.sif, `smoke ${HOSTILE}.sh`]);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('smoke-test 7\n');
    expectNoPwned(sb);
  });

  test('a failing singularity build records sif-build 2 and runs no smoke test', () => {
    const sb = sandbox();
    const r = runScript(sb, { FAKE_BUILD_RC: '2' });
    expect(r.code).toBe(2);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('sif-build 2\n');
    expect(r.stderr).toContain('singularity build failed');
    expect(calls(sb).map((c) => c[0])).toEqual(['build']);
    expect(existsSync(sb.p.sif)).toBe(false);
    expect(existsSync(`${sb.p.sif}.sha256`)).toBe(false);
    expect(existsSync(sb.sifLink)).toBe(false);
    expect(phasesIn(r.stdout)).toEqual(['modules', 'assemble', 'sif-build', 'end']);
    expectNoPwned(sb);
    expectNoTempLeftovers(sb);
  });

  test('a blob missing from the store fails the assemble phase and builds nothing', () => {
    const sb = sandbox();
    rmSync(sb.assembly.members[2].blob);
    const r = runScript(sb);
    expect(r.code).toBe(1);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('assemble 1\n');
    expect(r.stderr).toContain('cannot assemble the archive from the store');
    expect(calls(sb)).toEqual([]);
    expect(phasesIn(r.stdout)).toEqual(['modules', 'assemble', 'end']);
    expect(existsSync(sb.p.sif)).toBe(false);
    expectNoPwned(sb);
    expectNoTempLeftovers(sb);
  });

  test('no store at all: fails in the assemble phase and builds nothing', () => {
    const sb = sandbox();
    rmSync(sb.store, { recursive: true });
    const r = runScript(sb);
    expect(r.code).not.toBe(0);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toMatch(/^assemble [1-9]\d*\n$/);
    expect(calls(sb)).toEqual([]);
    expect(existsSync(sb.p.sif)).toBe(false);
    expectNoTempLeftovers(sb);
  });

  test('a missing manifest.json fails the assemble phase', () => {
    const sb = sandbox();
    rmSync(sb.assembly.manifest);
    const r = runScript(sb);
    expect(r.code).toBe(1);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('assemble 1\n');
    expect(r.stderr).toContain('cannot stage the archive');
    expect(calls(sb)).toEqual([]);
    expectNoTempLeftovers(sb);
  });

  test('a failing module load records modules 127 and runs nothing', () => {
    const sb = sandbox(undefined, 'return 1');
    const r = runScript(sb);
    expect(r.code).toBe(127);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('modules 127\n');
    expect(r.stderr).toContain('module load failed');
    expect(calls(sb)).toEqual([]);
  });

  test('no singularity after loading the modules records modules 127', () => {
    const sb = sandbox();
    const r = runScript(sb, { PATH: '/usr/bin:/bin' });
    expect(r.code).toBe(127);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('modules 127\n');
  });

  test('an unchanged image (no assembly): its .sif is not rebuilt, the store not touched, the link updated', () => {
    const sb = sandbox(() => ({ assemble: null }));
    rmSync(sb.store, { recursive: true });
    mkdirSync(join(sb.p.sif, '..'), { recursive: true });
    writeFileSync(sb.p.sif, 'OLD');
    const r = runScript(sb);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`using the existing ${sb.p.sif}`);
    expect(calls(sb).map((c) => c[0])).toEqual(['exec']);
    expect(phasesIn(r.stdout)).toEqual(['modules', 'sif-build', 'gpu-check', 'smoke-test', 'end']);
    expect(readFileSync(sb.p.sif, 'utf8')).toBe('OLD');
    expect(readlinkSync(sb.sifLink)).toBe(sb.p.sif);
    expect(existsSync(sb.tarCopy)).toBe(false);
    expectNoPwned(sb);
    expectNoTempLeftovers(sb);
  });

  test('no assembly (an existing .sif under test): no assemble, no build, the .sif tested as it is', () => {
    const sb = sandbox((root) => ({ assemble: null, sifLink: null, sif: join(root, `given ${HOSTILE}`, "it's.sif") }));
    mkdirSync(join(sb.p.sif, '..'));
    writeFileSync(sb.p.sif, 'GIVEN');
    const r = runScript(sb);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`using the existing ${sb.p.sif}`);
    expect(phasesIn(r.stdout)).toEqual(['modules', 'sif-build', 'gpu-check', 'smoke-test', 'end']);
    expect(calls(sb).map((c) => c.slice(0, 3))).toEqual([['exec', '--nv', '--bind']]);
    expect(calls(sb)[0]).toContain(sb.p.sif);
    expect(readFileSync(sb.p.sif, 'utf8')).toBe('GIVEN');
    expect(existsSync(`${sb.p.sif}.sha256`)).toBe(false);
    expect(existsSync(sb.assembly.storeLock)).toBe(false);
    expect(existsSync(sb.sifLink)).toBe(false);
    expectNoPwned(sb);
    expectNoTempLeftovers(sb);
  });

  test('no assembly and no .sif there: fails in sif-build, runs nothing', () => {
    const sb = sandbox((root) => ({ assemble: null, sifLink: null, sif: join(root, 'nowhere.sif') }));
    const r = runScript(sb);
    expect(r.code).toBe(1);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('sif-build 1\n');
    expect(r.stderr).toContain(`no .sif at ${sb.p.sif}`);
    expect(calls(sb)).toEqual([]);
    expectNoTempLeftovers(sb);
  });

  test('SIGTERM (scancel) during the smoke test: records smoke-test 143, exits 143, cleans up', async () => {
    const sb = sandbox();
    const child = track(spawn('bash', [sb.scriptPath], { cwd: sb.jobDir, env: { ...sb.env, FAKE_SLEEP: '30' }, stdio: 'ignore', detached: true }));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const started = sb.env.FAKE_STARTED!;
    const t0 = Date.now();
    while (!existsSync(started) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(started)).toBe(true);
    child.kill('SIGTERM');
    const code = await exited;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(code).toBe(143);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('smoke-test 143\n');
    expectNoTempLeftovers(sb);
  }, 20_000);

  /** A fake node nvidia-smi with this driver and CUDA version, as the stand-in's answers. */
  function withDriver(sb: Sandbox, driver: string, cuda: string): void {
    const smi = join(sb.root, 'bin', 'nvidia-smi');
    writeFileSync(
      smi,
      `#!/bin/sh
case "$1" in
  --query-gpu=*) echo "NVIDIA A100-SXM4-40GB, ${driver}, 40960 MiB" ;;
  *) echo "| NVIDIA-SMI ${driver}   Driver Version: ${driver}   CUDA Version: ${cuda}     |" ;;
esac
`,
    );
    chmodSync(smi, 0o755);
  }
  const gpuLines = (stdout: string) => marks(stdout, 'gpu');

  test('GPU report: the node and container views and the image CUDA, then the smoke test', () => {
    const sb = sandbox();
    withDriver(sb, '550.54.15', '12.4');
    const r = runScript(sb, { FAKE_PROBE: 'query NVIDIA A100-SXM4-40GB, 550.54.15, 40960 MiB\nenv 12.4.0' });
    expect(r.code).toBe(0);
    const report = parseGpuReport(gpuLines(r.stdout))!;
    expect(report).toMatchObject({ outside: { driver: '550.54.15', cuda: '12.4' }, imageCuda: '12.4.0', compat: { kind: 'ok' } });
    expect(report.inside.gpus).toHaveLength(1);
    // One probe in the container (the log splits its multi-line script into lines).
    const probe = calls(sb, true);
    expect(probe).toHaveLength(1);
    expect(probe[0].slice(0, 6)).toEqual(['exec', '--cleanenv', '--nv', sb.p.sif, '/bin/sh', '-c']);
    expect(probe[0].at(-1)).toBe('name,driver_version,memory.total');
    expect(calls(sb).map((c) => c[0])).toEqual(['build', 'exec']);
  });

  test.each([
    ['CUDA_VERSION', 'env 12.4.0', '470.82.01', '11.4', "the image's CUDA 12.4.0 needs NVIDIA driver >= 525.60.13, but"],
    [
      'version.json',
      'env \njson {\njson  "cuda" : { "name" : "CUDA SDK", "version" : "13.0.1" }\njson }',
      '575.51.03',
      '12.9',
      "the image's CUDA 13.0.1 needs NVIDIA driver >= 580, but",
    ],
  ])('an image (%s) whose CUDA needs a newer driver stops before the smoke test', (_, probe, driver, cuda, message) => {
    const sb = sandbox();
    withDriver(sb, driver, cuda);
    const r = runScript(sb, { FAKE_PROBE: probe });
    expect(r.code).toBe(3);
    expect(readFileSync(sb.p.statusFile, 'utf8')).toBe('gpu-check 3\n');
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain(`has ${driver} (CUDA ${cuda})`);
    expect(calls(sb).map((c) => c[0])).toEqual(['build']);
    expectNoTempLeftovers(sb);
  });

  // Job output is data: lines shaped like the job's markers (old formats, a guessed token) and
  // workflow commands, printed by the smoke test, reach the log as output and change neither the
  // GPU report nor the phases; the token is not in the smoke test's environment.
  test('a smoke test printing forged marker lines and workflow commands changes neither the report nor the phases', () => {
    const FORGED = [
      '::riviera-gpu:: node forged-node',
      '::riviera-gpu:: outside query FORGED GPU, 999.99, 1 MiB',
      '::riviera-gpu:: inside env 99.0',
      `${jobMarker('0123456789abcdef01234567')} gpu outside query FORGED GPU, 999.99, 1 MiB`,
      `${jobMarker('tok12')} gpu node forged-node`,
      '::riviera:: gpu node forged-node',
      '::riviera-phase:: tok123 forged 1',
      '::riviera-phase:: publish 1',
      `${jobMarker('guess')} phase forged 1`,
      `${jobMarker('')} phase end 1`,
      '::save-state name=jobDone::true',
      '::set-output name=job-state::COMPLETED',
      '::set-output name=gpu-name::FORGED GPU',
    ];
    const follow = (stdout: string) => {
      const r = fakeReporter();
      const out = new OutputStream(r, 100, 'tok123');
      out.push(Buffer.from(stdout));
      out.end();
      return { r, out, report: parseGpuReport(out.gpu)!, phases: out.phases.map((p) => p.phase) };
    };
    const sb = sandbox();
    withDriver(sb, '550.54.15', '12.4');
    const probe = { FAKE_PROBE: 'query NVIDIA A100-SXM4-40GB, 550.54.15, 40960 MiB\nenv 12.4.0' };
    const clean = follow(runScript(sb, probe).stdout);
    const smokeEnv = join(sb.root, 'smoke.env');
    const r = runScript(sb, { ...probe, FAKE_SMOKE_OUT: FORGED.join('\n'), FAKE_SMOKE_ENV: smokeEnv });
    expect(r.code).toBe(0);
    const forged = follow(r.stdout);
    expect(forged.report).toEqual(clean.report);
    expect(forged.report).toMatchObject({ node: expect.not.stringContaining('forged'), imageCuda: '12.4.0', outside: { driver: '550.54.15' } });
    expect(forged.out.gpu).toEqual(clean.out.gpu);
    expect(forged.phases).toEqual(['modules', 'assemble', 'sif-build', 'gpu-check', 'smoke-test']);
    expect(forged.phases).toEqual(clean.phases);
    expect(forged.r.of('group')).toEqual(clean.r.of('group'));
    // Every forged line reached the log as output, in the smoke test's group.
    for (const l of FORGED) expect(forged.r.outputs()).toContain(l);
    expect(forged.out.tail).toEqual(expect.arrayContaining(FORGED));
    expect(readFileSync(smokeEnv, 'utf8')).not.toContain(jobMarker('tok123'));
  });

  test('a newer minor version than the driver reports runs (minor version compatibility)', () => {
    const sb = sandbox();
    withDriver(sb, '535.104.05', '12.2');
    const r = runScript(sb, { FAKE_PROBE: 'env 12.4.0' });
    expect(r.code).toBe(0);
    expect(parseGpuReport(gpuLines(r.stdout))!.compat.kind).toBe('minor');
  });

  test('no GPUs asked for: no GPU report', () => {
    const sb = sandbox(() => ({ gpus: 0 }));
    const r = runScript(sb);
    expect(r.code).toBe(0);
    expect(phasesIn(r.stdout)).not.toContain('gpu-check');
    expect(calls(sb, true)).toEqual([]);
  });

  // With no modules (input `modules: none`) there must be no bare `module load`: it fails on a
  // cluster without a module system (command not found → 'modules 127').
  test('modules: none runs no module command at all', () => {
    const sb = sandbox(() => ({ modules: [] }), 'echo called > "$MODULE_LOG"; return 1');
    const r = runScript(sb);
    expect(existsSync(sb.moduleLog)).toBe(false);
    expect(r.code).toBe(0);
  });
});

describe('sbatchArgv', () => {
  const base = {
    jobName: 'riviera-x',
    partition: 'short-gpu',
    gpus: 2,
    cpus: 4,
    time: '30:00',
    jobDir: '/j/1',
    output: 'job.out',
    extra: [],
    script: '/j/1/job.sh',
  };

  test('the full argv, in order', () => {
    expect(sbatchArgv(base)).toEqual([
      'sbatch',
      '--parsable',
      '--job-name=riviera-x',
      '--partition=short-gpu',
      '--cpus-per-task=4',
      '--gres=gpu:2',
      '--time=30:00',
      '--chdir=/j/1',
      '--output=job.out',
      '/j/1/job.sh',
    ]);
  });

  test('--gres=gpu:N only when gpus > 0', () => {
    expect(sbatchArgv({ ...base, gpus: 0 }).some((a) => a.startsWith('--gres'))).toBe(false);
    expect(sbatchArgv({ ...base, gpus: 1 })).toContain('--gres=gpu:1');
  });

  test('time omitted when null', () => {
    expect(sbatchArgv({ ...base, time: null }).some((a) => a.startsWith('--time'))).toBe(false);
    expect(sbatchArgv({ ...base, time: '1-00:00:00' })).toContain('--time=1-00:00:00');
  });

  test('extra args come after ours, and the script is last', () => {
    const argv = sbatchArgv({ ...base, extra: ['--mem=4G', '--comment', 'a b'] });
    expect(argv.slice(-4)).toEqual(['--mem=4G', '--comment', 'a b', '/j/1/job.sh']);
    expect(argv.indexOf('--mem=4G')).toBeGreaterThan(argv.indexOf('--output=job.out'));
    expect(argv[argv.length - 1]).toBe('/j/1/job.sh');
  });
});

describe('publication into a directory others can write to', () => {
  /** A sandbox that publishes into `pub`, where links to a victim file were planted under every name it could use. */
  function planted() {
    const sb = sandbox((root) => {
      const pub = join(root, 'lab');
      mkdirSync(pub);
      return {
        smoke: { kind: 'command', argv: ['true'] },
        publish: {
          dir: pub,
          name: 'img',
          version: 'v1',
          keep: 1,
          group: null,
          mode: '0640',
          lock: join(root, 'publish.lock'),
          record: { image: 'img:v1', digest: null },
        },
      };
    });
    const pub = sb.p.publish!.dir;
    const victim = join(sb.root, 'victim.txt');
    writeFileSync(victim, 'precious\n', { mode: 0o600 });
    for (const n of ['.lock', 'img_v1.sif', 'img_v1.sif.sha256', 'img_v1.json', ...Array.from({ length: 50 }, (_, i) => `.img_v1.sif.tmp.${i}`)]) {
      execFileSync('ln', ['-s', victim, join(pub, n)]);
    }
    return { sb, pub, victim };
  }

  test('never writes, chmods or truncates through a planted link; publishes by rename and records the digest', () => {
    const { sb, pub, victim } = planted();
    const dirMode = lstatSync(pub).mode;
    const r = runScript(sb);
    expect(r.stderr).not.toContain('riviera-singularity: cannot');
    expect(r.code).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(victim).mode & 0o777).toBe(0o600);
    expect(lstatSync(pub).mode).toBe(dirMode);
    for (const f of ['img_v1.sif', 'img_v1.sif.sha256', 'img_v1.json']) {
      expect([f, lstatSync(join(pub, f)).isFile(), lstatSync(join(pub, f)).mode & 0o777]).toEqual([f, true, 0o640]);
    }
    const sum = createHash('sha256')
      .update(readFileSync(join(pub, 'img_v1.sif')))
      .digest('hex');
    expect(readFileSync(join(pub, 'img_v1.sif.sha256'), 'utf8')).toBe(`${sum}  img_v1.sif\n`);
    expect(JSON.parse(readFileSync(join(pub, 'img_v1.json'), 'utf8')).sha256).toBe(sum);
    expect(readlinkSync(join(pub, 'img_latest.sif'))).toBe('img_v1.sif');
    // No temp file of ours left; the links someone else planted are theirs to remove.
    expect(readdirSync(pub).filter((f) => f.startsWith('.riviera-'))).toEqual([]);
  });

  test('a final name someone made a directory: fails clearly, nothing written into it', () => {
    const { sb, pub, victim } = planted();
    rmSync(join(pub, 'img_v1.sif'));
    mkdirSync(join(pub, 'img_v1.sif'));
    writeFileSync(join(pub, 'img_v1.sif', 'theirs'), 'x');
    const r = runScript(sb);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`riviera-singularity: cannot publish img_v1.sif in ${pub}`);
    expect(readdirSync(join(pub, 'img_v1.sif'))).toEqual(['theirs']);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(readdirSync(pub).filter((f) => f.startsWith('.riviera-'))).toEqual([]);
  });
});

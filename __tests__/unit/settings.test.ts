// parseSettings: one valid baseline (a real ed25519 key and known_hosts line from ssh-keygen), then
// each bad input on its own, each refused with an InputError that names it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../src/core/errors.js';
import { DEFAULT_MODULES, type RawInputs, maskPrivateKey, parseConnection, parseSettings } from '../../src/core/settings.js';
import { testKeys } from '../helpers/keys.js';

const { privateKey, knownHosts } = testKeys('[127.0.0.1]:2222');
/** The key as files (k, k.pub), for tests that sign it. */
const dir = mkdtempSync(join(tmpdir(), 'settings-'));
writeFileSync(join(dir, 'k'), privateKey, { mode: 0o600 });
writeFileSync(join(dir, 'k.pub'), execFileSync('ssh-keygen', ['-y', '-f', join(dir, 'k')]));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const base: Record<string, string> = {
  host: '127.0.0.1',
  port: '2222',
  username: 'alice',
  'private-key': privateKey,
  'known-hosts': knownHosts,
  image: 'myimage:v1',
  'smoke-command': 'nvidia-smi',
};

const withInputs = (over: Record<string, string | undefined>): RawInputs => ({ ...base, ...over });

/** parseSettings (or `parse`) must throw an InputError; returns it. */
function refused(raw: RawInputs, parse: (raw: RawInputs) => unknown = parseSettings): InputError {
  let caught: unknown;
  try {
    parse(raw);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(InputError);
  return caught as InputError;
}

describe('parseSettings: the baseline', () => {
  test('parses, with the documented defaults', () => {
    const s = parseSettings(base);
    expect(s.host).toBe('127.0.0.1');
    expect(s.port).toBe(2222);
    expect(s.username).toBe('alice');
    expect(s.privateKey).toBe(privateKey.trim() + '\n');
    expect(s.knownHosts).toHaveLength(1);
    expect(s.knownHosts[0]).toMatchObject({ hosts: '[127.0.0.1]:2222', keyType: 'ssh-ed25519' });
    expect(s.image).toBe('myimage:v1');
    expect(s.build).toBe(true);
    expect(s.context).toBe('.');
    expect(s.dockerfile).toBeNull();
    expect(s.buildArgs).toEqual([]);
    expect(s.smoke).toEqual({ kind: 'command', argv: ['nvidia-smi'] });
    expect(s.partition).toBe('short-gpu');
    expect(s.gpus).toBe(1);
    expect(s.time).toBe('30:00');
    expect(s.modules).toEqual(DEFAULT_MODULES);
    expect(s.loginModules).toEqual(['slurm']);
    expect(s.remoteDir).toBe('riviera-singularity');
    expect(s.tmpdir).toBe('riviera-singularity/tmp');
    expect(s.jobName).toBe('riviera-myimage');
    expect(s.sbatchArgs).toEqual([]);
    expect(s.binds).toEqual([]);
    expect(s.timeoutSeconds).toBe(7200);
  });

  test('values are trimmed; port defaults to 22', () => {
    const s = parseSettings(withInputs({ host: '  login.example.org \n', port: undefined, username: ' bob ' }));
    expect(s.host).toBe('login.example.org');
    expect(s.port).toBe(22);
    expect(s.username).toBe('bob');
  });
});

describe('parseSettings: each bad input is refused by name', () => {
  test.each<[string, Record<string, string | undefined>, string]>([
    ['port abc', { port: 'abc' }, 'port'],
    ['port 70000', { port: '70000' }, 'port'],
    ['port 0', { port: '0' }, 'port'],
    ['port -22', { port: '-22' }, 'port'],
    ['missing host', { host: undefined }, 'host'],
    ['blank host', { host: '   ' }, 'host'],
    ['host with a space', { host: 'login node' }, 'host'],
    ['host with a shell metacharacter', { host: 'a;b' }, 'host'],
    ['missing username', { username: undefined }, 'username'],
    ['username with a space', { username: 'a b' }, 'username'],
    ['negative gpus', { gpus: '-1' }, 'gpus'],
    ['gpus x', { gpus: 'x' }, 'gpus'],
    ['gpus 65', { gpus: '65' }, 'gpus'],
    ['gpus 1.5', { gpus: '1.5' }, 'gpus'],
    ['time forever', { time: 'forever' }, 'time'],
    ['time 1:2:3:4', { time: '1:2:3:4' }, 'time'],
    ['time with a shell metacharacter', { time: '30;x' }, 'time'],
    ['private key garbage', { 'private-key': 'garbage' }, 'private-key'],
    ['missing private key', { 'private-key': undefined }, 'private-key'],
    ['jump-hosts with a bad port', { 'jump-hosts': 'bastion:0' }, 'jump-hosts'],
    ['jump-hosts with a space', { 'jump-hosts': 'bas tion' }, 'jump-hosts'],
    ['ssh-client putty', { 'ssh-client': 'putty' }, 'ssh-client'],
    ['certificate garbage', { certificate: 'garbage' }, 'certificate'],
    ['known-hosts garbage line', { 'known-hosts': 'garbage line' }, 'known-hosts'],
    ['empty known-hosts', { 'known-hosts': '' }, 'known-hosts'],
    ['blank known-hosts', { 'known-hosts': ' \n \n' }, 'known-hosts'],
    ['missing known-hosts', { 'known-hosts': undefined }, 'known-hosts'],
    ['known-hosts with only comments', { 'known-hosts': '# nothing\n' }, 'known-hosts'],
    ['image UPPER:tag', { image: 'UPPER:tag' }, 'image'],
    ['image a b', { image: 'a b' }, 'image'],
    ['image $(touch x)', { image: '$(touch x)' }, 'image'],
    ['missing image', { image: undefined }, 'image'],
    ['modules slurm; rm -rf ~', { modules: 'slurm; rm -rf ~' }, 'modules'],
    ['modules $(x)', { modules: '$(x)' }, 'modules'],
    ['login-modules with a quote', { 'login-modules': "sl'urm" }, 'login-modules'],
    ['sbatch-args --wrap=x', { 'sbatch-args': '--wrap=x' }, 'sbatch-args'],
    ['sbatch-args positional', { 'sbatch-args': 'positional' }, 'sbatch-args'],
    ['sbatch-args --output=x', { 'sbatch-args': '--output=x' }, 'sbatch-args'],
    ['sbatch-args --chdir x', { 'sbatch-args': '--chdir x' }, 'sbatch-args'],
    ['sbatch-args -o x', { 'sbatch-args': '-o x' }, 'sbatch-args'],
    ['sbatch-args -D x', { 'sbatch-args': '-D x' }, 'sbatch-args'],
    ['sbatch-args --parsable', { 'sbatch-args': '--parsable' }, 'sbatch-args'],
    ['sbatch-args --wait', { 'sbatch-args': '--wait' }, 'sbatch-args'],
    ['sbatch-args --error=e', { 'sbatch-args': '--mem=1G --error=e' }, 'sbatch-args'],
    ['sbatch-args unterminated quote', { 'sbatch-args': '--comment "a b' }, 'sbatch-args'],
    ['sbatch-args -HD/x (grouped: -H -D /x)', { 'sbatch-args': '-HD/x' }, 'sbatch-args'],
    ['sbatch-args -kW (grouped: -k -W)', { 'sbatch-args': '-kW' }, 'sbatch-args'],
    ['sbatch-args -vvo x', { 'sbatch-args': '-vvo x' }, 'sbatch-args'],
    ['sbatch-args -sQe err', { 'sbatch-args': '-sQe err' }, 'sbatch-args'],
    ['sbatch-args with a NUL', { 'sbatch-args': '--comment=a\0b' }, 'sbatch-args'],
    ['smoke-command with a NUL', { 'smoke-command': 'python3 -c "print(1)"\0' }, 'smoke-command'],
    ['a module starting with -', { modules: 'slurm --force' }, 'modules'],
    ['a login module starting with -', { 'login-modules': '-q' }, 'login-modules'],
    ['context starting with -', { context: '--file=/etc/passwd' }, 'context'],
    ['smoke-test named job.sh', { 'smoke-command': undefined, 'smoke-test': 'tests/job.sh' }, 'smoke-test'],
    ['smoke-test named status', { 'smoke-command': undefined, 'smoke-test': 'status' }, 'smoke-test'],
    ['smoke-test named manifest.json', { 'smoke-command': undefined, 'smoke-test': 'manifest.json' }, 'smoke-test'],
    ['smoke-test named job.out', { 'smoke-command': undefined, 'smoke-test': 'job.out' }, 'smoke-test'],
    ['smoke-test named like a status temp file', { 'smoke-command': undefined, 'smoke-test': 'status.tmp.1' }, 'smoke-test'],
    ['smoke-test named -x', { 'smoke-command': undefined, 'smoke-test': '-x' }, 'smoke-test'],
    ['bind a:b:c:d', { binds: 'a:b:c:d' }, 'binds'],
    ['bind with a bad mode', { binds: '/a:/b:rx' }, 'binds'],
    ['bind with an empty source', { binds: ':/b' }, 'binds'],
    ['tmpdir /tmp/x', { tmpdir: '/tmp/x' }, 'tmpdir'],
    ['tmpdir /tmp', { tmpdir: '/tmp' }, 'tmpdir'],
    ['tmpdir /var/tmp', { tmpdir: '/var/tmp' }, 'tmpdir'],
    ['tmpdir /var/tmp/', { tmpdir: '/var/tmp/' }, 'tmpdir'],
    ['tmpdir //tmp//x', { tmpdir: '//tmp//x' }, 'tmpdir'],
    ['remote-dir /tmp/x', { 'remote-dir': '/tmp/x' }, 'remote-dir'],
    ['tmpdir /scratch/../tmp/x', { tmpdir: '/scratch/../tmp/x' }, 'tmpdir'],
    ['remote-dir /scratch/./../var/tmp', { 'remote-dir': '/scratch/./../var/tmp' }, 'remote-dir'],
    ['remote-dir ~ (the home directory)', { 'remote-dir': '~' }, 'remote-dir'],
    ['remote-dir ~/', { 'remote-dir': '~/' }, 'remote-dir'],
    ['remote-dir .', { 'remote-dir': '.' }, 'remote-dir'],
    ['remote-dir $HOME', { 'remote-dir': '$HOME' }, 'remote-dir'],
    ['remote-dir ${HOME}/', { 'remote-dir': '${HOME}/' }, 'remote-dir'],
    ['remote-dir x/..', { 'remote-dir': 'x/..' }, 'remote-dir'],
    ['remote-dir ~other/x', { 'remote-dir': '~other/x' }, 'remote-dir'],
    ['tmpdir $SCRATCH/x', { tmpdir: '$SCRATCH/x' }, 'tmpdir'],
    ['publish-dir /lab/$GROUP', { publish: 'true', 'publish-dir': '/lab/$GROUP' }, 'publish-dir'],
    ['sif $(id)', { image: undefined, sif: '$(id).sif' }, 'sif'],
    ['publish-mode 0660 (group may write)', { publish: 'true', 'publish-mode': '0660' }, 'publish-mode'],
    ['publish-mode 0666 (anyone may write)', { publish: 'true', 'publish-mode': '0666' }, 'publish-mode'],
    ['publish-mode 0642 (others may write)', { publish: 'true', 'publish-mode': '0642' }, 'publish-mode'],
    ['publish-name -rf', { publish: 'true', 'publish-name': '-rf' }, 'publish-name'],
    ['publish-version --force', { publish: 'true', 'publish-version': '--force' }, 'publish-version'],
    ['smoke-test and smoke-command', { 'smoke-test': 'smoke.sh', 'smoke-command': 'nvidia-smi' }, 'smoke-test'],
    ['neither smoke-test nor smoke-command', { 'smoke-command': undefined }, 'smoke-test'],
    ['smoke-command blank', { 'smoke-command': '  ' }, 'smoke-test'],
    ['smoke-command unterminated quote', { 'smoke-command': "python3 -c 'print(1)" }, 'smoke-command'],
    ['build maybe', { build: 'maybe' }, 'build'],
    ['build-args without =', { 'build-args': 'FOO' }, 'build-args'],
    ['timeout forever', { timeout: 'forever' }, 'timeout'],
    ['timeout 0', { timeout: '0' }, 'timeout'],
    ['timeout -5m', { timeout: '-5m' }, 'timeout'],
    ['partition with a space', { partition: 'a b' }, 'partition'],
  ])('%s', (_name, over, input) => {
    const err = refused(withInputs(over));
    expect(err.input).toBe(input);
    expect(err.message).toContain(`Input '${input}'`);
    expect(err.exitCode).toBe(2);
  });
});

// Known bug (src/core/settings.ts, noControl): it returns `true` or a message string and is passed to
// zod's .refine, which only fails on a falsy result, so a message string passes. Control characters
// and newlines are never refused in these inputs. Flip to `test.each` once fixed.
describe('parseSettings: control characters', () => {
  test.each<[string, string]>([
    ['tmpdir', '/scratch/a\nb'],
    ['remote-dir', 'a\nb'],
    ['job-name', 'job\nname'],
    ['smoke-test', 'smoke\x1b[2J.sh'],
    ['context', 'ctx\rdir'],
    ['dockerfile', 'Docker\nfile'],
  ])('%s with a control character is refused', (input, value) => {
    const over: Record<string, string> = { [input]: value };
    if (input === 'smoke-test') over['smoke-command'] = '';
    expect(refused(withInputs(over)).input).toBe(input);
  });

  test('binds with a control character are refused (binds check it themselves)', () => {
    expect(refused(withInputs({ binds: '/a\x07:/b' })).input).toBe('binds');
  });
});

describe('parseSettings: accepted values', () => {
  test.each(['30', '30:00', '1:00:00', '2-0', '2-00:30', '1-2:3:4', 'UNLIMITED', 'infinite'])('time %s', (time) => {
    expect(parseSettings(withInputs({ time })).time).toBe(time);
  });

  test.each([
    ['myimage', 'myimage:latest'],
    ['org/name', 'org/name:latest'],
    ['registry.example.org:5000/org/name', 'registry.example.org:5000/org/name:latest'],
    ['registry.example.org:5000/org/name:1.0', 'registry.example.org:5000/org/name:1.0'],
    ['my-image_x:Tag_1.2-rc', 'my-image_x:Tag_1.2-rc'],
  ])('image %s → %s', (image, want) => {
    expect(parseSettings(withInputs({ image })).image).toBe(want);
  });

  test('jump-hosts: each hop with its user (username by default) and port; the SSH client auto by default', () => {
    const s = parseSettings(withInputs({ 'jump-hosts': 'gate@bastion:2200,inner' }));
    expect(s.jumpHosts).toEqual([
      { user: 'gate', host: 'bastion', port: 2200 },
      { user: 'alice', host: 'inner', port: 22 },
    ]);
    expect(s.sshClient).toBe('auto');
    expect(parseSettings(withInputs({})).jumpHosts).toEqual([]);
  });

  test('a certificate cannot go with ssh-client builtin (ssh2 cannot send one), and goes with auto', () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'ca')]);
    execFileSync('ssh-keygen', ['-q', '-s', join(dir, 'ca'), '-I', 'id', '-n', 'alice', join(dir, 'k.pub')]);
    const certificate = readFileSync(join(dir, 'k-cert.pub'), 'utf8');
    expect(refused(withInputs({ certificate, 'ssh-client': 'builtin' })).input).toBe('ssh-client');
    expect(parseSettings(withInputs({ certificate })).certificate).toBe(certificate);
  });

  test('job name defaults to the last path part of the image name, without the tag', () => {
    expect(parseSettings(withInputs({ image: 'registry.example.org:5000/org/name:1.0' })).jobName).toBe('riviera-name');
    expect(parseSettings(withInputs({ 'job-name': 'mine' })).jobName).toBe('mine');
  });

  test('modules: a list in order, separated by spaces, commas or newlines; none means none', () => {
    expect(parseSettings(withInputs({ modules: 'slurm, singularity\ncuda12.2/toolkit  gcc/12' })).modules).toEqual([
      'slurm',
      'singularity',
      'cuda12.2/toolkit',
      'gcc/12',
    ]);
    expect(parseSettings(withInputs({ modules: 'none' })).modules).toEqual([]);
    expect(parseSettings(withInputs({ modules: ' ' })).modules).toEqual(DEFAULT_MODULES);
  });

  test('sbatch-args that are options only become argv', () => {
    expect(parseSettings(withInputs({ 'sbatch-args': '--mem=4G --constraint="a100|h100"\n--exclusive' })).sbatchArgs).toEqual([
      '--mem=4G',
      '--constraint=a100|h100',
      '--exclusive',
    ]);
  });

  // Known bug (src/core/settings.ts, the sbatch-args check): every word must start with '-', so an
  // option's value given as a separate word is refused as "not an option". Flip to `test` once fixed.
  test('sbatch-args --mem=4G --comment "a b" → argv', () => {
    expect(parseSettings(withInputs({ 'sbatch-args': '--mem=4G --comment "a b"' })).sbatchArgs).toEqual(['--mem=4G', '--comment', 'a b']);
  });

  // Known gap (same check): sbatch takes short options with the value attached (-oFILE, -DDIR) and
  // unambiguous abbreviations of long ones (--out=FILE); both slip past the reserved-option list.
  test.each([['-ojob2.out'], ['-D/elsewhere'], ['--out=x'], ['--chd=/x']])('sbatch-args %s is refused', (arg) => {
    expect(refused(withInputs({ 'sbatch-args': arg })).input).toBe('sbatch-args');
  });

  test('sbatch-args: short options grouped or with values attached, as getopt reads them', () => {
    expect(parseSettings(withInputs({ 'sbatch-args': '-Hv -pshort -c 4 -kvJ name' })).sbatchArgs).toEqual(['-Hv', '-pshort', '-c', '4', '-kvJ', 'name']);
    // A reserved letter inside another option's value is that value, not an option.
    expect(parseSettings(withInputs({ 'sbatch-args': '-JD -pWo' })).sbatchArgs).toEqual(['-JD', '-pWo']);
  });

  test('watchdog: a duration (default 10m), or off', () => {
    expect(parseSettings(base).watchdogSeconds).toBe(600);
    expect(parseSettings(withInputs({ watchdog: '20s' })).watchdogSeconds).toBe(20);
    expect(parseSettings(withInputs({ watchdog: '1h' })).watchdogSeconds).toBe(3600);
    expect(parseSettings(withInputs({ watchdog: 'off' })).watchdogSeconds).toBeNull();
    for (const bad of ['5s', 'soon', '-1m', '0']) expect(refused(withInputs({ watchdog: bad })).input).toBe('watchdog');
  });

  test('a smoke-test script may be named like a job file only in part', () => {
    expect(parseSettings(withInputs({ 'smoke-command': undefined, 'smoke-test': 'tests/job.sh.d/check.py' })).smoke).toEqual({
      kind: 'script',
      path: 'tests/job.sh.d/check.py',
    });
    expect(parseSettings(withInputs({ 'smoke-command': undefined, 'smoke-test': 'my-status.sh' })).smoke).toEqual({ kind: 'script', path: 'my-status.sh' });
  });

  test('binds: a comma or newline separated list, one spec each', () => {
    expect(parseSettings(withInputs({ binds: 'a,b' })).binds).toEqual(['a', 'b']);
    expect(parseSettings(withInputs({ binds: '/data:/data:ro\n/scratch/x:/x , /y:/y:rw' })).binds).toEqual(['/data:/data:ro', '/scratch/x:/x', '/y:/y:rw']);
  });

  test('tmpdir: a path that only looks like /tmp is accepted, and the default is under remote-dir', () => {
    expect(parseSettings(withInputs({ tmpdir: '/tmpfs/x' })).tmpdir).toBe('/tmpfs/x');
    expect(parseSettings(withInputs({ tmpdir: '/scratch/tmp' })).tmpdir).toBe('/scratch/tmp');
    expect(parseSettings(withInputs({ 'remote-dir': '/scratch/me/rs' })).tmpdir).toBe('/scratch/me/rs/tmp');
  });

  test.each([
    ['~/x', 'x'],
    ['x/y/', 'x/y'],
    ['/scratch/me', '/scratch/me'],
  ])('remote-dir %s → %s', (remoteDir, want) => {
    expect(parseSettings(withInputs({ 'remote-dir': remoteDir })).remoteDir).toBe(want);
  });

  test.each<[string, string, string]>([
    ['remote-dir', '~/x', 'x'],
    ['remote-dir', '$HOME/a/./b/', 'a/b'],
    ['remote-dir', '${HOME}/x', 'x'],
    ['remote-dir', '/scratch/$USER/rs', '/scratch/alice/rs'],
    ['remote-dir', '/scratch/${USER}x', '/scratch/alicex'],
    ['remote-dir', '../shared/x', '../shared/x'],
    ['tmpdir', '~/x', 'x'],
    ['tmpdir', '$HOME/build-tmp', 'build-tmp'],
    ['tmpdir', '/scratch/../scratch2/t', '/scratch2/t'],
    ['tmpdir', '/tmpfs/x', '/tmpfs/x'],
  ])('%s %s means %s (relative: under the home)', (input, value, want) => {
    const s = parseSettings(withInputs({ [input]: value }));
    expect(input === 'tmpdir' ? s.tmpdir : s.remoteDir).toBe(want);
  });

  test('publish-dir, sif and bind sources follow the same rules', () => {
    const pub = parseSettings(withInputs({ publish: 'true', 'publish-dir': '~/pub/', 'remote-dir': '$HOME/rs' }), {
      repository: '',
      commit: 'c0ffee',
      tag: null,
    });
    expect(pub.publish?.dir).toBe('pub');
    expect(parseSettings(withInputs({ publish: 'true', 'remote-dir': '~/rs' })).publish?.dir).toBe('rs/published');
    expect(parseSettings(withInputs({ image: undefined, sif: '~/images/x_latest.sif' })).sif).toBe('images/x_latest.sif');
    expect(parseSettings(withInputs({ image: undefined, sif: '$HOME/x.sif' })).sif).toBe('x.sif');
    expect(parseSettings(withInputs({ binds: '~/data:/data:ro, $HOME/../shared/$USER, /scratch/./x:/x' })).binds).toEqual([
      'data:/data:ro',
      '../shared/alice',
      '/scratch/x:/x',
    ]);
  });

  test('a tmpdir default follows remote-dir, however it was written', () => {
    expect(parseSettings(withInputs({ 'remote-dir': '~/rs' })).tmpdir).toBe('rs/tmp');
    expect(parseSettings(withInputs({ 'remote-dir': '/scratch/$USER' })).tmpdir).toBe('/scratch/alice/tmp');
  });

  test('publish-mode may let the group or others read, never write', () => {
    expect(parseSettings(withInputs({ publish: 'true', 'publish-mode': '0644' })).publish?.mode).toBe('0644');
    expect(parseSettings(withInputs({ publish: 'true', 'publish-mode': '755' })).publish?.mode).toBe('755');
  });

  test('the provenance record carries no credentials from the repository address', () => {
    const ctx = (repository: string) =>
      parseSettings(withInputs({ publish: 'true' }), { repository, commit: 'c0ffee', tag: 'v1' }).publish?.provenance.repository;
    expect(ctx('https://user:ghp_secret123@github.com/lab/repo.git')).toBe('https://github.com/lab/repo.git');
    expect(ctx('https://oauth2:glpat-xyz@gitlab.example.edu:8443/lab/repo?private_token=abc#x')).toBe('https://gitlab.example.edu:8443/lab/repo');
    expect(ctx('ssh://git@github.com/lab/repo.git')).toBe('ssh://github.com/lab/repo.git');
    expect(ctx('git@github.com:lab/repo.git')).toBe('git@github.com:lab/repo.git');
    expect(ctx('https://github.com/lab/repo')).toBe('https://github.com/lab/repo');
  });

  test('a version taken from a tag never starts like an option', () => {
    expect(parseSettings(withInputs({ publish: 'true' }), { repository: '', commit: 'c0ffee', tag: '.-v1/x' }).publish?.version).toBe('v1_x');
  });

  test('smoke-command is split into argv like sh, with nothing expanded', () => {
    expect(parseSettings(withInputs({ 'smoke-command': 'python3 -c "print(1)"' })).smoke).toEqual({
      kind: 'command',
      argv: ['python3', '-c', 'print(1)'],
    });
    expect(parseSettings(withInputs({ 'smoke-command': 'echo "$(touch x)"' })).smoke).toEqual({ kind: 'command', argv: ['echo', '$(touch x)'] });
  });

  test('smoke-test is a script path', () => {
    expect(parseSettings(withInputs({ 'smoke-command': undefined, 'smoke-test': ' tests/smoke.sh ' })).smoke).toEqual({
      kind: 'script',
      path: 'tests/smoke.sh',
    });
  });

  test.each([
    ['true', true],
    ['YES', true],
    ['1', true],
    ['false', false],
    ['no', false],
    ['0', false],
    ['', true],
  ])('build %j → %s', (build, want) => {
    expect(parseSettings(withInputs({ build })).build).toBe(want);
  });

  test.each([
    ['90m', 5400],
    ['3600', 3600],
    ['45s', 45],
    ['2h', 7200],
    ['1d', 86400],
    ['10 M', 600],
  ])('timeout %s → %d s', (timeout, seconds) => {
    expect(parseSettings(withInputs({ timeout })).timeoutSeconds).toBe(seconds);
  });

  test('gpus 0 is allowed (a CPU-only smoke test)', () => {
    expect(parseSettings(withInputs({ gpus: '0' })).gpus).toBe(0);
  });

  test('build-args: KEY=VALUE lines', () => {
    expect(parseSettings(withInputs({ 'build-args': 'A=1\n\n B=x y \n' })).buildArgs).toEqual(['A=1', 'B=x y']);
  });
});

describe('parseSettings: several bad inputs', () => {
  test('one error lists each bad input by name', () => {
    const err = refused(withInputs({ port: 'abc', gpus: 'x', image: 'UPPER:tag', 'known-hosts': 'garbage line', 'sbatch-args': '--wrap=x' }));
    const lines = err.message.split('\n');
    for (const input of ['port', 'gpus', 'image', 'known-hosts', 'sbatch-args']) {
      expect(lines.some((l) => l.startsWith(`Input '${input}':`))).toBe(true);
    }
    expect(lines).toHaveLength(5);
  });

  // Known gap (src/core/settings.ts, parseSettings): the smoke-test/smoke-command and /tmp checks run
  // only when every schema field parsed, so they are missing from a list with another bad input.
  test('checks outside the schema are listed alongside schema problems', () => {
    const err = refused(withInputs({ port: 'abc', tmpdir: '/tmp/x', 'smoke-command': undefined }));
    expect(err.message).toContain("Input 'port'");
    expect(err.message).toContain("Input 'tmpdir'");
    expect(err.message).toContain("Input 'smoke-test'");
  });

  test('the first problem is the one the error is named after', () => {
    const err = refused(withInputs({ host: undefined, time: 'forever' }));
    expect(['host', 'time']).toContain(err.input);
    expect(err.message).toContain("Input 'host'");
    expect(err.message).toContain("Input 'time'");
  });

  test('a single bad input gives a single-problem message', () => {
    const err = refused(withInputs({ gpus: 'x' }));
    expect(err.message.split('\n')[0]).toBe(`Input 'gpus': must be a whole number of GPUs`);
    expect(err.message).not.toContain("Input 'port'");
  });
});

describe('parseConnection: the inputs that reach the cluster, checked as parseSettings checks them', () => {
  test('valid: host, port, user, key, known_hosts, remote-dir and login modules', () => {
    const c = parseConnection({ ...base, 'remote-dir': '~/rs/', 'login-modules': 'none' });
    expect(c).toMatchObject({ host: '127.0.0.1', port: 2222, username: 'alice', remoteDir: 'rs', loginModules: [] });
    expect(c.knownHosts).toHaveLength(1);
    expect(c.privateKey).toBe(privateKey.trim() + '\n');
  });

  test('does not ask for what only a delivery needs (image, smoke test)', () => {
    expect(() => parseConnection(withInputs({ image: undefined, 'smoke-command': undefined, gpus: 'x' }))).not.toThrow();
  });

  test.each<[string, Record<string, string | undefined>]>([
    ['host', { host: undefined }],
    ['host', { host: 'a b' }],
    ['port', { port: '0' }],
    ['username', { username: '1x y' }],
    ['private-key', { 'private-key': undefined }],
    ['private-key', { 'private-key': 'garbage' }],
    ['known-hosts', { 'known-hosts': undefined }],
    ['known-hosts', { 'known-hosts': 'garbage line' }],
    ['remote-dir', { 'remote-dir': 'a\nb' }],
    ['login-modules', { 'login-modules': 'slurm;rm' }],
  ])('%s %j: the same message as parseSettings gives', (input, over) => {
    const conn = refused(withInputs(over), parseConnection);
    expect(conn.input).toBe(input);
    expect(refused(withInputs(over)).message.split('\n')).toContain(conn.message.split('\n')[0]);
  });

  test('parseSettings lists the connection problems as parseConnection does: the same lines, in order, each once', () => {
    const over = { host: 'a b', port: '0', 'known-hosts': 'garbage line', 'remote-dir': '/tmp/a\nb', 'login-modules': 'slurm;rm' };
    const conn = refused(withInputs(over), parseConnection).message.split('\n');
    expect(conn).toHaveLength(6);
    expect(refused(withInputs(over)).message.split('\n')).toEqual(conn);
    // The delivery's own problems follow them.
    expect(refused(withInputs({ ...over, gpus: 'x' })).message.split('\n')).toEqual([...conn, "Input 'gpus': must be a whole number of GPUs"]);
  });

  test('several bad inputs: one error naming each', () => {
    const err = refused(withInputs({ host: undefined, port: 'x', 'known-hosts': undefined }), parseConnection);
    expect(err.message.split('\n').map((l) => /^Input '([a-z-]+)'/.exec(l)?.[1])).toEqual(['host', 'port', 'known-hosts']);
  });
});

describe('maskPrivateKey', () => {
  test('marks the whole key and every non-empty line secret', () => {
    const calls: string[] = [];
    maskPrivateKey(privateKey, (v) => calls.push(v));
    const lines = privateKey.split('\n').filter((l) => l.trim() !== '');
    expect(lines.length).toBeGreaterThan(3);
    expect(calls[0]).toBe(privateKey);
    for (const line of lines) expect(calls).toContain(line);
    expect(calls).toHaveLength(1 + lines.length);
    expect(calls).not.toContain('');
  });

  test('CRLF keys and indented lines: each line is masked without \\r or surrounding blanks', () => {
    const crlf = '  -----BEGIN X-----\r\nAAAA\r\n\r\n  BBBB  \r\n-----END X-----\r\n';
    const calls: string[] = [];
    maskPrivateKey(crlf, (v) => calls.push(v));
    expect(calls).toEqual([crlf, '-----BEGIN X-----', 'AAAA', 'BBBB', '-----END X-----']);
  });

  test('nothing to mask when there is no key', () => {
    const calls: string[] = [];
    maskPrivateKey(undefined, (v) => calls.push(v));
    maskPrivateKey('', (v) => calls.push(v));
    expect(calls).toEqual([]);
  });
});

describe('parseSettings: preflight-only', () => {
  test('off by default', () => {
    expect(parseSettings(base).preflightOnly).toBe(false);
  });
  test('checking a setup needs no image or smoke test yet', () => {
    const s = parseSettings(withInputs({ 'preflight-only': 'true', image: undefined, 'smoke-command': undefined }));
    expect(s.preflightOnly).toBe(true);
    expect(s.partition).toBe('short-gpu');
    expect(s.jobName).toBe('riviera-preflight');
  });
  test('given ones are still validated, and so is every other input', () => {
    expect(refused(withInputs({ 'preflight-only': 'true', image: 'Not A Ref' })).input).toBe('image');
    expect(refused(withInputs({ 'preflight-only': 'true', image: undefined, gpus: 'many' })).input).toBe('gpus');
    expect(refused(withInputs({ 'preflight-only': 'maybe' })).input).toBe('preflight-only');
  });
  test('without it, the image is required as before', () => {
    expect(refused(withInputs({ image: undefined })).input).toBe('image');
  });
});

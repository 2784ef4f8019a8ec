// The remote command wrapper, run here by a real sh and bash, as sshd would hand it to the user's shell.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OUTPUT_START, PreambleFilter, loginShellCommand } from '../../src/core/loginshell.js';

/** As sshd runs a command: the user's login shell with -c, in $HOME. stdout is raw (preamble and all). */
function runRemoteRaw(script: string, home: string, shell = 'sh', login = true) {
  return spawnSync(shell, ['-c', loginShellCommand(script, login)], { cwd: home, env: { HOME: home, PATH: process.env.PATH }, encoding: 'utf8' });
}

/** The same, with stdout as Remote.exec hands it on (through the preamble filter). */
function runRemote(script: string, home: string, shell = 'sh', login = true) {
  const r = runRemoteRaw(script, home, shell, login);
  return { ...r, stdout: new PreambleFilter().push(Buffer.from(r.stdout)).toString() };
}

// Login shells users have on clusters; tcsh is installed by test-cluster/cluster-up.sh.
describe.each(['sh', 'bash', 'tcsh'])('loginShellCommand, login shell %s', (shell) => {
  let home: string;
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'rs-home-'));
    writeFileSync(join(home, '.bash_profile'), 'export FROM_PROFILE=yes\n');
    writeFileSync(join(home, '.cshrc'), 'echo "csh banner"\nset history=100\n');
  });

  test('a script with newlines, !, $, backquotes, quotes and stdin runs exactly as written', () => {
    const script = String.raw`set -e
echo "$FROM_PROFILE $PWD"
x='a!b'; echo "$x ${'`'}echo tick${'`'} $(echo dollar) 'q' \\"
head -c 5
exit 3`;
    const r = spawnSync(shell, ['-c', loginShellCommand(script)], { cwd: home, env: { HOME: home, PATH: process.env.PATH }, input: 'stdin-data' });
    expect(new PreambleFilter().push(r.stdout).toString()).toBe(`yes ${home}\na!b tick dollar 'q' \\\nstdin`);
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(3);
  });

  test('the command is one line without characters a csh-like shell expands in quotes', () => {
    expect(loginShellCommand('echo "$HOME" `id` !! \n \\')).toMatch(/^[^\n!$`\\]+$/);
  });
});

describe('loginShellCommand', () => {
  let home: string;
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'rs-home-'));
    // A login shell reads this; a failing ~/.bash_logout (as Debian's clear_console without a tty) must not change results.
    writeFileSync(join(home, '.bash_profile'), 'export FROM_PROFILE=yes\n');
    writeFileSync(join(home, '.bash_logout'), 'false\n');
  });

  test('runs the script in a login shell (profile read), in $HOME', () => {
    const r = runRemote('echo "$FROM_PROFILE $PWD"', home);
    expect(r.stdout.trim()).toBe(`yes ${home}`);
  });

  test.each(['sh', 'bash', 'tcsh'])('without login (from %s): the profile is not read; output and exit status as with it', (shell) => {
    const r = runRemote('echo "[$FROM_PROFILE] $PWD"; exit 5', home, shell, false);
    expect(r.stdout.trim()).toBe(`[] ${home}`);
    expect(r.status).toBe(5);
  });

  test.each([0, 3, 97])('an explicit exit %i under set -e is the exit status, whatever ~/.bash_logout does', (code) => {
    const r = runRemote(`set -e\necho before\nexit ${code}\necho after`, home);
    expect(r.status).toBe(code);
    expect(r.stdout).toBe('before\n');
  });

  test('quotes, $(...) and newlines in the script reach bash intact and run only as written', () => {
    const r = runRemote(`printf '%s|' 'it'"'"'s' "\\$(touch PWNED)" "$(printf 'a\\nb')"`, home);
    expect(r.stdout).toBe("it's|$(touch PWNED)|a\nb|");
  });
});

describe('output of a login profile', () => {
  test('is dropped: only the script output follows the start line, however the chunks fall', () => {
    const home = mkdtempSync(join(tmpdir(), 'rs-home-'));
    writeFileSync(join(home, '.bash_profile'), 'echo "Welcome to Riviera"\necho "Quota: 91% used"\n');
    const r = runRemoteRaw('printf "%s\\n" one two', home);
    expect(r.stdout).toContain('Welcome to Riviera');
    const raw = Buffer.from(r.stdout);
    for (const size of [1, 3, 7, raw.length]) {
      const filter = new PreambleFilter();
      const parts: Buffer[] = [];
      for (let i = 0; i < raw.length; i += size) parts.push(filter.push(raw.subarray(i, i + size)));
      expect(Buffer.concat(parts).toString()).toBe('one\ntwo\n');
    }
  });

  test('nothing passes before the start line', () => {
    const filter = new PreambleFilter();
    expect(filter.push(Buffer.from(`banner\n${OUTPUT_START.slice(0, 5)}`)).length).toBe(0);
    expect(filter.push(Buffer.from(`${OUTPUT_START.slice(5)}\nout`)).toString()).toBe('out');
    expect(filter.push(Buffer.from('more')).toString()).toBe('more');
  });
});

// The remote command wrapper, run here by a real sh and bash, as sshd would hand it to the user's shell.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loginShellCommand } from '../../src/core/ssh.js';

function runRemote(script: string, home: string) {
  return spawnSync('sh', ['-c', loginShellCommand(script)], { cwd: home, env: { HOME: home, PATH: process.env.PATH }, encoding: 'utf8' });
}

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

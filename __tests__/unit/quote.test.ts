// shq / shJoin / splitWords, checked against a real POSIX shell (/bin/sh) rather than against
// expectations written by hand: what the shell prints is the ground truth.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shJoin, shq, splitWords } from '../../src/core/quote.js';
import { HOSTILE_VALUES } from '../helpers/hostile.js';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'quote-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Run a command line with sh in the temp dir; return stdout. */
function sh(script: string, env: NodeJS.ProcessEnv = {}): string {
  return execFileSync('sh', ['-c', script], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: dir, ...env } });
}

/** Print each word on its own line, with a terminator, so that trailing newlines survive. */
function echoWords(words: string): string {
  return sh(`for a in ${words}; do printf '%s<END>' "$a"; done`);
}

const HOSTILE = HOSTILE_VALUES;

describe('shq', () => {
  beforeAll(() => {
    // A PWNED file in the temp dir is the mark of a value that escaped its quotes.
    rmSync(join(dir, 'PWNED'), { force: true });
  });

  test.each(HOSTILE)('%s survives a real sh unchanged', (_name, value) => {
    const out = sh(`printf '%s<END>' ${shq(value)}`);
    expect(out).toBe(`${value}<END>`);
    expect(readdirSync(dir)).not.toContain('PWNED');
  });

  test.each(HOSTILE)('%s is one word to sh', (_name, value) => {
    expect(echoWords(shq(value))).toBe(`${value}<END>`);
  });

  test('no PWNED file was created by any hostile value', () => {
    for (const [, v] of HOSTILE) sh(`printf '%s' ${shq(v)} >/dev/null`);
    expect(readdirSync(dir)).not.toContain('PWNED');
  });

  test('the PWNED check can see a file the shell creates (the check is not blind)', () => {
    sh('touch PWNED');
    expect(readdirSync(dir)).toContain('PWNED');
    rmSync(join(dir, 'PWNED'));
  });

  test('unquoted, the same strings would misbehave (the test inputs are really hostile)', () => {
    expect(sh(`printf '%s' $(printf '%s' '$(echo hi)')`)).not.toBe('$(echo hi)');
    sh(`printf '%s' $(touch PWNED)`);
    expect(readdirSync(dir)).toContain('PWNED');
    rmSync(join(dir, 'PWNED'));
  });

  test('refuses a NUL byte', () => {
    expect(() => shq('a\0b')).toThrow(/NUL/);
    expect(() => shq('\0')).toThrow(/NUL/);
  });

  test('plain words stay bare, everything else is quoted', () => {
    expect(shq('abc-1.2_3/x=y:z,@%+')).toBe('abc-1.2_3/x=y:z,@%+');
    expect(shq('')).toBe("''");
    expect(shq('a b')).toBe("'a b'");
    expect(shq("it's")).toBe(`'it'\\''s'`);
    expect(shq('~')).toBe("'~'");
    expect(shq('*')).toBe("'*'");
  });
});

describe('shJoin', () => {
  test('joins an argv that sh splits back into the same argv', () => {
    const argv = HOSTILE.map(([, v]) => v);
    const out = echoWords(shJoin(argv));
    expect(out).toBe(argv.map((a) => `${a}<END>`).join(''));
    expect(readdirSync(dir)).not.toContain('PWNED');
  });

  test('keeps empty words as words', () => {
    expect(echoWords(shJoin(['', 'a', '']))).toBe('<END>a<END><END>');
  });

  test('an empty argv is an empty line', () => {
    expect(shJoin([])).toBe('');
  });

  test('refuses a NUL byte in any word', () => {
    expect(() => shJoin(['ok', 'bad\0'])).toThrow(/NUL/);
  });
});

describe('splitWords', () => {
  /** What sh makes of a line as the word list of a `for` loop (no expansions in these inputs). */
  function shSplit(line: string): string {
    return sh(`for a in ${line}; do printf '[%s]' "$a"; done`);
  }
  const brackets = (words: string[]) => words.map((w) => `[${w}]`).join('');

  // Inputs with no $, backticks, globs or tildes, so that sh does nothing but split and unquote.
  const SAME_AS_SH = [
    'a b c',
    '  leading and trailing  ',
    'a\tb',
    "'single quoted words' x",
    '"double quoted words" x',
    "a'b'c",
    'a"b"c',
    `'it'\\''s'`,
    `"it's"`,
    `'say "hi"'`,
    `"say \\"hi\\""`,
    '"back\\\\slash"',
    '"keep \\n and \\a"',
    "'no \\ escapes \\' x",
    'esc\\ aped\\ space',
    '\\"lit\\"',
    "\\'lit\\'",
    '""',
    "''",
    '"" x \'\'',
    'a""b',
    '--mem=4G --comment "a b"',
    `-c "print('hi')"`,
    'python3 -c "import sys; print(sys.argv)"',
    'a\\\nb',
    '"ünï cödé" ✓',
  ];

  test.each(SAME_AS_SH)('splits %j as sh does', (line) => {
    expect(brackets(splitWords(line))).toBe(shSplit(line));
  });

  // Known bug (src/core/quote.ts, double-quote branch): inside double quotes sh removes a
  // backslash-newline (line continuation); splitWords keeps both characters. Flip to `test` once fixed.
  test('removes a backslash-newline inside double quotes, as sh does', () => {
    const line = '"a\\\nb"';
    expect(shSplit(line)).toBe('[ab]');
    expect(brackets(splitWords(line))).toBe(shSplit(line));
  });

  test('a known split, in case sh and splitWords agree on something wrong', () => {
    expect(splitWords(`python3 -c "print(1)" 'a b' c\\ d ""`)).toEqual(['python3', '-c', 'print(1)', 'a b', 'c d', '']);
  });

  test.each([
    // Split on the space like any other text: a `$(` does not group words, nothing is substituted.
    ['$(touch PWNED)', ['$(touch', 'PWNED)']],
    ['"$(touch PWNED)"', ['$(touch PWNED)']],
    ['echo `touch PWNED`', ['echo', '`touch', 'PWNED`']],
    ['a;b', ['a;b']],
    ['a ; b', ['a', ';', 'b']],
    ['a && b | c', ['a', '&&', 'b', '|', 'c']],
    ['"$HOME" $PATH', ['$HOME', '$PATH']],
    ['* ~ ?', ['*', '~', '?']],
    ['> out 2>&1', ['>', 'out', '2>&1']],
    ['"a\\$b" "a\\`b"', ['a$b', 'a`b']],
  ])('keeps %j literal', (line, words) => {
    expect(splitWords(line)).toEqual(words);
    expect(readdirSync(dir)).not.toContain('PWNED');
  });

  test('newlines separate words like spaces', () => {
    expect(splitWords('--mem=4G\n--gres=gpu:1\n')).toEqual(['--mem=4G', '--gres=gpu:1']);
  });

  test('an empty or blank line has no words', () => {
    expect(splitWords('')).toEqual([]);
    expect(splitWords(' \t\n ')).toEqual([]);
  });

  test.each([`'abc`, `abc '`, `"abc`, `"abc\\"`, `a "b`, `'a' "b' c`])('unterminated quote in %j throws', (line) => {
    expect(() => splitWords(line)).toThrow(/unterminated/);
  });

  test('a trailing backslash throws', () => {
    expect(() => splitWords('abc\\')).toThrow(/backslash/);
  });

  test('splitWords inverts shJoin', () => {
    const argv = HOSTILE.map(([, v]) => v);
    expect(splitWords(shJoin(argv))).toEqual(argv);
  });
});

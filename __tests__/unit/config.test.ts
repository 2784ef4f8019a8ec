// .riviera.yml: its keys are the input names; lists become lines; the key never sits in it; a later
// layer (inputs, flags) wins over it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, mergeInputs, parseConfig } from '../../src/core/config.js';
import { InputError } from '../../src/core/errors.js';

const refused = (text: string) => {
  try {
    parseConfig(text, '.riviera.yml');
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return (e as InputError).message;
  }
  throw new Error('not refused');
};

describe('parseConfig', () => {
  test('scalars as strings, lists as one item per line, null as absent', () => {
    expect(parseConfig('host: h\nport: 2222\nbuild: false\nmodules: [slurm, cuda12.2/toolkit]\ngroup:\n', 'f')).toEqual({
      host: 'h',
      port: '2222',
      build: 'false',
      modules: 'slurm\ncuda12.2/toolkit',
    });
  });

  test('empty file: nothing', () => {
    expect(parseConfig('', 'f')).toEqual({});
    expect(parseConfig('# only a comment\n', 'f')).toEqual({});
  });

  test.each([
    ['private-key: abc', "must not hold 'private-key'"],
    ['private-key-passphrase: hunter2', "must not hold 'private-key-passphrase'"],
    ['hots: typo', "unknown setting 'hots' in .riviera.yml"],
    ['- a\n- b', 'must be a mapping of input names to values'],
    ['host: [a, {b: c}]', "'host' in .riviera.yml must be a string, number, boolean or list of them"],
    ['host: {a: b}', "'host' in .riviera.yml must be a string"],
    ['host: "unclosed', 'is not valid YAML'],
  ])('%j is refused: %s', (text, message) => {
    expect(refused(text)).toContain(message);
  });

  test("an unknown key's error lists the known ones, without the secret", () => {
    const message = refused('hots: typo');
    const known = message.split('Known settings: ')[1].split(', ');
    expect(known).toEqual(expect.arrayContaining(['host', 'port', 'username', 'known-hosts']));
    expect(known).not.toContain('private-key');
    expect(known).not.toContain('private-key-passphrase');
  });
});

describe('loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('reads and parses the file', async () => {
    writeFileSync(join(dir, 'a.yml'), 'partition: p\n');
    expect(await loadConfig(join(dir, 'a.yml'), true)).toEqual({ partition: 'p' });
  });

  test('a missing default file is fine; a missing named one is an error', async () => {
    expect(await loadConfig(join(dir, 'none.yml'), false)).toEqual({});
    await expect(loadConfig(join(dir, 'none.yml'), true)).rejects.toThrow(/Input 'config': cannot read .*none\.yml/);
  });
});

test('mergeInputs: a later non-empty value wins; empty and absent ones do not erase', () => {
  expect(mergeInputs({ a: '1', b: '2', c: '3' }, { a: 'x', b: '', c: undefined }, { d: '4' })).toEqual({ a: 'x', b: '2', c: '3', d: '4' });
});

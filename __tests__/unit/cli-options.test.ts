// The CLI's options against action.yml: one option per input (the key and known_hosts come from
// files), and every default the help states is the one the action documents.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { FILE_INPUTS, FLAG_INPUTS, OPTION_GROUPS } from '../../src/cli/options.js';
import { EXIT_CODE_MEANINGS, ExitCode } from '../../src/core/errors.js';
import { INPUT_NAMES } from '../../src/core/settings.js';

const action = parse(readFileSync(new URL('../../action.yml', import.meta.url), 'utf8')) as { inputs: Record<string, { description: string }> };
const options = OPTION_GROUPS.flatMap((g) => g.options);

test('every input but the key files is an option, exactly once, with a description', () => {
  expect(options.map((o) => o.input).sort()).toEqual(INPUT_NAMES.filter((n) => !FILE_INPUTS.includes(n)).sort());
  for (const o of options) expect(o.help.length).toBeGreaterThan(5);
});

test('the true/false inputs are --flag/--no-flag, defaulting as the action does', () => {
  expect(FLAG_INPUTS.sort()).toEqual(['build', 'force-rebuild', 'preflight-only']);
  for (const name of FLAG_INPUTS) {
    const actionDefault = /Default: (true|false)\.$/.exec(action.inputs[name].description.trim())?.[1];
    const o = options.find((x) => x.input === name)!;
    expect(o.default).toBe(actionDefault === 'true' ? `--${name}` : `--no-${name}`);
  }
});

test.each(options.filter((o) => o.default && !o.flag).map((o) => [o.input, o.default!]))("--%s's default (%s) is the one action.yml states", (input, def) => {
  const stated = /Default: (.+?)\.?$/.exec(action.inputs[input].description.trim())?.[1];
  expect(stated).toBeDefined();
  // A single value must be a word of it (22, not 2022); longer ones must be there as they are.
  if (/^[\w./:-]+$/.test(def)) expect(stated!.split(/[\s()]+/)).toContain(def);
  else expect(stated).toContain(def);
});

test("the README's exit-code table lists exactly the codes the CLI returns", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('| exit code | meaning |');
  const table = readme.slice(start, readme.indexOf('\n\n', start));
  const codes = [...table.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]));
  expect(codes).toEqual(Object.values(ExitCode).sort((a, b) => a - b));
  expect(Object.keys(EXIT_CODE_MEANINGS).map(Number)).toEqual(codes);
});

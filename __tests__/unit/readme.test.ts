// The README's promises that can drift: its input and output tables, and its two opening commands.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

const readme = readFileSync('README.md', 'utf8');
const action = parse(readFileSync('action.yml', 'utf8')) as {
  inputs: Record<string, { description: string; required?: boolean }>;
  outputs: Record<string, { description: string }>;
};
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };

const cell = (s: string) => s.replace(/\n/g, ' ').replace(/\|/g, '\\|');

describe('README', () => {
  test.each(Object.entries(action.inputs))('documents input %s as action.yml does', (name, input) => {
    expect(readme).toContain(`| \`${name}\` | ${input.required ? 'yes' : ''} | ${cell(input.description)} |`);
  });

  test.each(Object.entries(action.outputs))('documents output %s as action.yml does', (name, output) => {
    expect(readme).toContain(`| \`${name}\` | ${cell(output.description)} |`);
  });

  test('opens with the two commands, and both are npm scripts', () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme.slice(0, 1500))?.[1] ?? '';
    expect(firstBlock).toMatch(/npm run demo/);
    expect(firstBlock).toMatch(/npm test/);
    expect(pkg.scripts.demo).toBeDefined();
    expect(pkg.scripts.test).toBeDefined();
  });
});

// Rewrites the README's input and output tables from action.yml (the unit tests check they agree).
import { readFileSync, writeFileSync } from 'node:fs';
import { parse } from 'yaml';

const action = parse(readFileSync('action.yml', 'utf8'));
const cell = (s) => s.replace(/\n/g, ' ').replace(/\|/g, '\\|');
let t = '| input | required | description |\n| --- | --- | --- |\n';
for (const [k, v] of Object.entries(action.inputs)) t += `| \`${k}\` | ${v.required ? 'yes' : ''} | ${cell(v.description)} |\n`;
t += '\n| output | description |\n| --- | --- |\n';
for (const [k, v] of Object.entries(action.outputs)) t += `| \`${k}\` | ${cell(v.description)} |\n`;
const readme = readFileSync('README.md', 'utf8');
const start = readme.indexOf('| input | required |');
const end = readme.indexOf('\n## The CLI');
writeFileSync('README.md', readme.slice(0, start) + t + readme.slice(end));

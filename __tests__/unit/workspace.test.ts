// Files read from the runner must lie in the workspace, symlinks resolved.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../src/core/errors.js';
import { workspaceFile } from '../../src/core/workspace.js';

let ws: string;
let outside: string;

beforeAll(() => {
  ws = realpathSync(mkdtempSync(join(tmpdir(), 'rs-ws-')));
  outside = realpathSync(mkdtempSync(join(tmpdir(), 'rs-out-')));
  mkdirSync(join(ws, 'tests'));
  writeFileSync(join(ws, 'tests', 'check.py'), 'print(1)\n');
  writeFileSync(join(outside, 'secret'), 'key\n');
  symlinkSync(join(outside, 'secret'), join(ws, 'link-out'));
  symlinkSync(join(ws, 'tests', 'check.py'), join(ws, 'link-in'));
  symlinkSync('/proc/self/environ', join(ws, 'env'));
});

async function refusal(path: string): Promise<InputError> {
  const e = await workspaceFile('smoke-test', path, ws).then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(InputError);
  expect((e as InputError).input).toBe('smoke-test');
  return e as InputError;
}

test('a file in the workspace, relative, absolute or through a link inside it', async () => {
  for (const p of ['tests/check.py', join(ws, 'tests/check.py'), './tests/../tests/check.py', 'link-in']) {
    expect(await workspaceFile('smoke-test', p, ws)).toEqual({ path: join(ws, 'tests/check.py'), size: 9 });
  }
});

test.each([['/proc/self/environ'], ['env'], ['link-out'], ['../' + 'x'], ['/etc/passwd']])(
  '%s is refused as outside the workspace (or not found)',
  async (p) => {
    const e = await refusal(p);
    expect(e.message).toMatch(/outside the workspace|not found/);
  },
);

test('a link out of the workspace says where it leads', async () => {
  expect((await refusal('link-out')).message).toContain(`resolves to ${join(outside, 'secret')}`);
  expect((await refusal('/proc/self/environ')).message).toContain('outside the workspace');
});

test('a directory or a missing file is not found', async () => {
  expect((await refusal('tests')).message).toContain('not found');
  expect((await refusal('nope.py')).message).toContain('not found');
});

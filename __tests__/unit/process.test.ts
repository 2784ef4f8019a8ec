// core/process.ts, the one place the core starts programs: real processes, argv never a shell line.
import { processFilter, runProcess, commandWorks } from '../../src/core/process.js';

test('runProcess: exit code, stdout and stderr, whatever the code', async () => {
  expect(await runProcess('sh', ['-c', 'echo out; echo err >&2; exit 3'])).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' });
});

test('runProcess: arguments are words, never parsed by a shell', async () => {
  const hostile = '$(touch PWNED); `id` | x';
  expect((await runProcess('printf', ['%s', hostile])).stdout).toBe(hostile);
});

test('runProcess: each line of stdout and stderr as it comes, the last one without a newline too', async () => {
  const lines: string[] = [];
  await runProcess('sh', ['-c', 'printf "a\\nb"; sleep 0.05; printf "c\\r\\n"; echo e >&2; printf tail'], { onLine: (l) => lines.push(l) });
  expect(lines.sort()).toEqual(['a', 'bc', 'e', 'tail'].sort());
});

test('runProcess: runs in the given directory', async () => {
  expect((await runProcess('pwd', [], { cwd: '/' })).stdout).toBe('/\n');
});

test('runProcess: a program that is not there rejects (ENOENT)', async () => {
  await expect(runProcess('riviera-no-such-program', [])).rejects.toMatchObject({ code: 'ENOENT' });
});

test('commandWorks', () => {
  expect(commandWorks('sh')).toBe(false); // sh --version is not a thing on dash
  expect(commandWorks('bash')).toBe(true);
  expect(commandWorks('riviera-no-such-program')).toBe(false);
});

test('processFilter: a program as a stream, written to and read from', async () => {
  const upper = processFilter('tr', ['a-z', 'A-Z']);
  upper.end('hello');
  const out: Buffer[] = [];
  for await (const d of upper) out.push(d as Buffer);
  expect(Buffer.concat(out).toString()).toBe('HELLO');
});

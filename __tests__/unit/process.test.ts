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

/** Everything a filter gives for `input`: its output, or the error that ended it. */
async function filtered(command: string, args: string[], input: Buffer | string): Promise<{ out: string; error: Error | null }> {
  const f = processFilter(command, args);
  f.end(input);
  const out: Buffer[] = [];
  try {
    for await (const d of f) out.push(d as Buffer);
    return { out: Buffer.concat(out).toString(), error: null };
  } catch (e) {
    return { out: Buffer.concat(out).toString(), error: e as Error };
  }
}

test('processFilter: a program that fails at once is reported with its exit code', async () => {
  const r = await filtered('sh', ['-c', 'exit 3'], 'x');
  expect(r.error?.message).toBe('sh exited with 3');
});

test('processFilter: a program that closes its output, then fails, is reported with its exit code and stderr', async () => {
  // Its output ends well before it exits: all of it is read before the exit code exists.
  const r = await filtered('sh', ['-c', 'cat; exec >&-; sleep 0.3; echo "zstd: error 70 : Write error : cannot write block" >&2; exit 4'], 'data');
  expect(r.out).toBe('data');
  expect(r.error?.message).toBe('sh exited with 4: zstd: error 70 : Write error : cannot write block');
});

test('processFilter: a program that stops reading and fails is reported by its exit code, not as a broken pipe', async () => {
  const r = await filtered('sh', ['-c', 'head -c 10 >/dev/null; echo bad input >&2; exit 5'], Buffer.alloc(8 << 20));
  expect(r.error?.message).toBe('sh exited with 5: bad input');
});

test('processFilter: a program killed by a signal is reported', async () => {
  const r = await filtered('sh', ['-c', 'kill -9 $$'], 'x');
  expect(r.error?.message).toBe('sh exited with SIGKILL');
});

test("processFilter: the program never sees the step's environment, so its stderr cannot carry a secret", async () => {
  process.env['INPUT_PRIVATE-KEY'] = 'riviera-test-secret-key';
  try {
    const r = await filtered('sh', ['-c', 'env >&2; exit 1'], '');
    expect(r.error?.message).toMatch(/^sh exited with 1: [^]*PATH=/);
    expect(r.error?.message).not.toContain('riviera-test-secret-key');
  } finally {
    delete process.env['INPUT_PRIVATE-KEY'];
  }
});

test('processFilter: a large stream arrives whole (backpressure both ways)', async () => {
  const input = Buffer.alloc(4 << 20, 'a');
  const r = await filtered('cat', [], input);
  expect(r.error).toBeNull();
  expect(r.out.length).toBe(input.length);
});

test('processFilter: a program that is not there errors (ENOENT)', async () => {
  const r = await filtered('riviera-no-such-program', [], 'x');
  expect(r.error).toMatchObject({ code: 'ENOENT' });
});

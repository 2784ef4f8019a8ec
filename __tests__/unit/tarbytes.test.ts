// Following a save as it is written: `docker save` writes straight into the file and TarBytes reads
// behind it. Here a real process stands in for docker: it writes a tar into the file in uneven
// pieces with pauses, so headers and pax records are cut between reads, as a real writer may.
import { jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tarBuffer } from '../helpers/tarfixture.js';

const dir = mkdtempSync(join(tmpdir(), 'rs-tarbytes-'));
/** What the stand-in writes: the tar, in pieces of this many bytes, then this exit code. */
let writer: { tar: Buffer; piece: number; rc: number } = { tar: Buffer.alloc(0), piece: 512, rc: 0 };

// The writer runs instead of `docker save IMAGE`, with its stdout on the file, as docker's is.
jest.unstable_mockModule('../../src/core/process.js', () => ({
  startProcessToFile: (_command: string, _args: string[], fd: number) => {
    writeFileSync(join(dir, 'image.src'), writer.tar);
    const script = `const fs = require('fs');
const data = fs.readFileSync(${JSON.stringify(join(dir, 'image.src'))});
let at = 0;
const step = () => {
  if (at >= data.length) process.exit(${writer.rc});
  fs.writeSync(1, data.subarray(at, at + ${writer.piece}));
  at += ${writer.piece};
  setTimeout(step, 2);
};
step();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', fd, 'pipe'] });
    const ended = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    return { stderr: child.stderr, ended, kill: () => child.kill() };
  },
}));
const { TarBytes } = await import('../../src/core/tarbytes.js');

function fakeDocker(tar: Buffer, piece: number, rc = 0): void {
  writer = { tar, piece, rc };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('members cut anywhere between reads are all found and hashed right; the file is the tar', async () => {
  const layers = [randomBytes(3000), randomBytes(777), Buffer.from('x'.repeat(5000))];
  const long = `${'deep/'.repeat(30)}layer.tar`; // a name over 100 bytes: a pax record before it
  const tar = tarBuffer([
    { name: 'a/layer.tar', data: layers[0] },
    { name: long, data: layers[1] },
    { name: 'c/layer.tar', data: layers[2] },
  ]);
  // 700 bytes: never a multiple of the 512-byte blocks, so headers straddle reads.
  fakeDocker(tar, 700);
  const path = join(dir, 'out1.tar');
  const { bytes, done } = TarBytes.save('img', path, () => true);
  await done;
  expect(readFileSync(path).equals(tar)).toBe(true);
  expect(bytes.finished).toBe(true);
  expect(bytes.written).toBe(tar.length);
  expect([...bytes.members.values()].map((m) => [m.name, m.size, m.hex])).toEqual([
    ['a/layer.tar', 3000, sha256(layers[0])],
    [long, 777, sha256(layers[1])],
    ['c/layer.tar', 5000, sha256(layers[2])],
  ]);
});

test('a failing save rejects with its exit code and marks the bytes failed', async () => {
  fakeDocker(tarBuffer([{ name: 'a/layer.tar', data: randomBytes(100) }], { end: false }), 300, 3);
  const { bytes, done } = TarBytes.save('img', join(dir, 'out2.tar'), () => false);
  await expect(done).rejects.toThrow(/docker save failed \(exit 3\)/);
  expect(bytes.failed).not.toBeNull();
});

test('a stopped save rejects as stopped', async () => {
  fakeDocker(tarBuffer([{ name: 'a/layer.tar', data: randomBytes(100_000) }]), 100);
  const { done, abort } = TarBytes.save('img', join(dir, 'out3.tar'), () => false);
  abort();
  await expect(done).rejects.toThrow('docker save was stopped.');
});

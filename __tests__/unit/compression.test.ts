// The compression level follows what limits the transfer, measured per range.
import { LEVELS, LevelTuner, threadsPerChannel, zstdArgs } from '../../src/core/compression.js';

test('starts at level 3; a link that keeps the channels full raises it, a busy CPU lowers it', () => {
  const t = new LevelTuner(8);
  expect(t.level).toBe(3);
  t.record(3, 0.9);
  expect(t.level).toBe(6);
  t.record(6, 0.4); // neither: stays
  expect(t.level).toBe(6);
  t.record(6, 0.1);
  expect(t.level).toBe(3);
  t.record(3, 0.05);
  expect(t.level).toBe(1);
  t.record(1, 0); // already the lowest
  expect(t.level).toBe(1);
});

test('the top level depends on the CPUs: 2 CPUs stop at 3, 4 at 6, 8 reach 9', () => {
  const top = (cpus: number) => {
    const t = new LevelTuner(cpus);
    for (let i = 0; i < LEVELS.length; i++) t.record(t.level, 1);
    return t.level;
  };
  expect([top(2), top(4), top(8)]).toEqual([3, 6, 9]);
});

test('a range sent at an older level does not move the current one', () => {
  const t = new LevelTuner(8);
  t.record(3, 0.9);
  t.record(3, 0.9);
  expect(t.level).toBe(6);
});

test('threads per channel: the CPUs shared among the channels, at least one', () => {
  expect([threadsPerChannel(2, 4), threadsPerChannel(8, 4), threadsPerChannel(16, 4), threadsPerChannel(3, 0)]).toEqual([1, 2, 4, 3]);
});

test('zstd arguments: level, threads only when more than one, quiet, to stdout', () => {
  expect(zstdArgs(3, 1)).toEqual(['-3', '-q', '-c']);
  expect(zstdArgs(6, 2)).toEqual(['-6', '-T2', '-q', '-c']);
});

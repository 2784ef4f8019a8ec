// Range planning: how blobs are cut and handed to the channels, and how a resume reuses the parts
// already on the cluster.
import { type RangeJob, RangeQueue, partName, usableParts } from '../../src/core/ranges.js';

const MIB = 1 << 20;
const opts = { channels: 4, minRange: 8 * MIB, align: MIB };

function drain(q: RangeQueue): RangeJob[] {
  const out: RangeJob[] = [];
  for (let j = q.next(); j; j = q.next()) out.push(j);
  return out;
}

/** The ranges of one blob tile [0, size) exactly, in order. */
function expectTiles(jobs: RangeJob[], key: string, size: number): void {
  const mine = jobs.filter((j) => j.key === key).sort((a, b) => a.start - b.start);
  let pos = 0;
  for (const j of mine) {
    expect(j.start).toBe(pos);
    expect(j.end).toBeGreaterThan(j.start);
    pos = j.end;
  }
  expect(pos).toBe(size);
}

test('one large blob is cut into several ranges, one per channel at least, that tile it', () => {
  const size = 200 * MIB + 12345;
  const jobs = drain(new RangeQueue([{ key: 'a', size }], opts));
  expectTiles(jobs, 'a', size);
  expect(jobs.length).toBeGreaterThanOrEqual(4);
  // The first four (one per channel) are the largest: the tail is cut finer so the channels end together.
  expect(Math.min(...jobs.slice(0, 4).map((j) => j.end - j.start))).toBeGreaterThanOrEqual(Math.max(...jobs.slice(4).map((j) => j.end - j.start)));
  for (const j of jobs) expect(j.from).toBe(j.start);
});

test('no range is smaller than minRange, and bounds are aligned except at the end of a blob', () => {
  const jobs = drain(
    new RangeQueue(
      [
        { key: 'a', size: 100 * MIB + 7 },
        { key: 'b', size: 30 * MIB },
      ],
      opts,
    ),
  );
  expectTiles(jobs, 'a', 100 * MIB + 7);
  expectTiles(jobs, 'b', 30 * MIB);
  for (const j of jobs) {
    expect(j.end - j.start).toBeGreaterThanOrEqual(8 * MIB);
    expect(j.start % MIB).toBe(0);
  }
});

test('small blobs go whole, the largest blob first; an empty blob is one empty range', () => {
  const jobs = drain(
    new RangeQueue(
      [
        { key: 'small', size: 1000 },
        { key: 'empty', size: 0 },
        { key: 'mid', size: 5 * MIB },
      ],
      opts,
    ),
  );
  expect(jobs.map((j) => [j.key, j.start, j.end])).toEqual([
    ['mid', 0, 5 * MIB],
    ['small', 0, 1000],
    ['empty', 0, 0],
  ]);
});

test('blobs that go whole go before the ranges of large ones, also when they come later', () => {
  const q = new RangeQueue([{ key: 'big', size: 100 * MIB }], opts);
  const first = q.next()!;
  expect(first.key).toBe('big');
  q.add({ key: 'config', size: 2301 });
  q.add({ key: 'layer', size: 2 * MIB });
  q.add({ key: 'other', size: 40 * MIB });
  const rest = drain(q);
  expect(rest.slice(0, 2).map((j) => j.key)).toEqual(['layer', 'config']);
  // Then the largest first.
  expect(rest.slice(2).map((j) => j.key)).toEqual(
    [...rest.slice(2).filter((j) => j.key === 'big'), ...rest.slice(2).filter((j) => j.key === 'other')].map((j) => j.key),
  );
  expectTiles([first, ...rest], 'big', 100 * MIB);
  expectTiles(rest, 'other', 40 * MIB);
});

test('a resume sends the rest of each partial part first, keeps complete ones, and cuts only the gaps', () => {
  const size = 64 * MIB;
  const parts = [
    { start: 0, end: 16 * MIB, have: 16 * MIB },
    { start: 16 * MIB, end: 32 * MIB, have: 5 * MIB },
  ];
  const jobs = drain(new RangeQueue([{ key: 'a', size, parts }], opts));
  expect(jobs[0]).toEqual({ key: 'a', start: 16 * MIB, end: 32 * MIB, from: 21 * MIB });
  expect(jobs.some((j) => j.start === 0)).toBe(false);
  expectTiles([{ key: 'a', start: 0, end: 16 * MIB, from: 0 }, ...jobs], 'a', size);
});

test('when every part is complete, one empty send of the last part makes the cluster join them', () => {
  const parts = [
    { start: 0, end: 10 * MIB, have: 10 * MIB },
    { start: 10 * MIB, end: 20 * MIB, have: 10 * MIB },
  ];
  expect(drain(new RangeQueue([{ key: 'a', size: 20 * MIB, parts }], opts))).toEqual([{ key: 'a', start: 10 * MIB, end: 20 * MIB, from: 20 * MIB }]);
});

test('parts that overlap, overrun the blob or claim more than their length are ignored', () => {
  const parts = [
    { start: 0, end: 10, have: 3 },
    { start: 5, end: 20, have: 1 },
    { start: 20, end: 90, have: 1 },
    { start: 30, end: 40, have: 11 },
  ];
  expect(usableParts(50, parts)).toEqual([{ start: 0, end: 10, have: 3 }]);
});

test('blobs whose bytes are not readable yet are skipped until they are', () => {
  const q = new RangeQueue(
    [
      { key: 'big', size: 50 * MIB },
      { key: 'small', size: MIB },
    ],
    opts,
  );
  expect(q.next((k) => k === 'small')).toEqual({ key: 'small', start: 0, end: MIB, from: 0 });
  expect(q.next((k) => k === 'small')).toBeNull();
  expect(q.done).toBe(false);
  expectTiles(drain(q), 'big', 50 * MIB);
  expect(q.done).toBe(true);
});

test('restart hands a blob out again from scratch', () => {
  const q = new RangeQueue([{ key: 'a', size: 40 * MIB }], opts);
  drain(q);
  q.restart('a');
  expectTiles(drain(q), 'a', 40 * MIB);
});

test('part files are named by their bounds', () => {
  expect(partName('ab12', { start: 0, end: 1048576 })).toBe('ab12.0-1048576.part');
});

// Which bytes go on which channel: blobs are cut into ranges handed out to the channels as they
// free up, large ranges first and smaller ones towards the end (guided self-scheduling), so that
// one large layer fills every channel and they all finish together. A range's part file on the
// cluster is named by its bounds, so an interrupted range resumes where it stopped. Pure.

/** Bytes [start, end) of a blob. */
export interface Range {
  start: number;
  end: number;
}

/** A range's part file found on the cluster, with the bytes it holds. */
export interface RangePart extends Range {
  have: number;
}

/** One piece of work: send bytes [from, end) of range [start, end) of blob `key`. */
export interface RangeJob extends Range {
  key: string;
  /** Where sending starts (start + what the cluster already holds of this range). */
  from: number;
}

export interface RangeOptions {
  /** Channels sending at once. */
  channels: number;
  /** No range is cut smaller than this (each costs a command and its round trips). */
  minRange: number;
  /** Range bounds are multiples of this (tidy names, whole reads). */
  align: number;
}

export const DEFAULT_RANGES: RangeOptions = { channels: 4, minRange: 8 << 20, align: 1 << 20 };

interface BlobWork {
  key: string;
  size: number;
  /** Parts to resume (or, if complete, one left to trigger the join). */
  resume: RangeJob[];
  /** Byte spans nobody has started, in order. */
  gaps: Range[];
}

/**
 * The parts of a blob worth keeping: complete or partial ranges that do not overlap, in order
 * (a part overlapping one already kept came from another plan and is ignored).
 */
export function usableParts(size: number, parts: RangePart[]): RangePart[] {
  const kept: RangePart[] = [];
  let pos = 0;
  for (const p of [...parts].sort((a, b) => a.start - b.start || b.end - a.end)) {
    if (p.start < pos || p.end > size || p.end <= p.start || p.have < 0 || p.have > p.end - p.start) continue;
    kept.push(p);
    pos = p.end;
  }
  return kept;
}

function workOf(key: string, size: number, parts: RangePart[]): BlobWork {
  const kept = usableParts(size, parts);
  const gaps: Range[] = [];
  let pos = 0;
  for (const p of kept) {
    if (p.start > pos) gaps.push({ start: pos, end: p.start });
    pos = p.end;
  }
  if (pos < size || size === 0) gaps.push({ start: pos, end: size });
  const open = kept.filter((p) => p.have < p.end - p.start).map((p) => ({ key, start: p.start, end: p.end, from: p.start + p.have }));
  // Every part complete and nothing left: resend nothing of the last one, so its receiver joins them.
  const last = kept[kept.length - 1];
  if (open.length === 0 && gaps.length === 0 && last) open.push({ key, start: last.start, end: last.end, from: last.end });
  return { key, size, resume: open, gaps };
}

/**
 * Hands out the ranges of a set of blobs: blobs that go whole (under minRange) first, since each
 * costs a command's round trips more than its bytes, and on a free channel they finish while the
 * large ones still flow instead of trailing after them; then the largest blob first. Resumed parts
 * before new ones.
 */
export class RangeQueue {
  private readonly work: BlobWork[] = [];
  private readonly sizes = new Map<string, number>();

  constructor(
    blobs: { key: string; size: number; parts?: RangePart[] }[],
    private readonly opts: RangeOptions = DEFAULT_RANGES,
  ) {
    for (const b of blobs) this.add(b);
  }

  /** Sorts before `other`: whole blobs first, then by size, largest first. */
  private before(size: number, other: number): boolean {
    const whole = size < this.opts.minRange;
    const otherWhole = other < this.opts.minRange;
    return whole !== otherWhole ? whole : size > other;
  }

  /** One more blob to hand out (one whose bytes became known while others were being sent). */
  add(blob: { key: string; size: number; parts?: RangePart[] }): void {
    this.sizes.set(blob.key, blob.size);
    const w = workOf(blob.key, blob.size, blob.parts ?? []);
    const at = this.work.findIndex((x) => this.before(blob.size, x.size));
    this.work.splice(at < 0 ? this.work.length : at, 0, w);
  }

  /** Bytes not yet handed out. */
  get remaining(): number {
    return this.work.reduce((a, w) => a + w.resume.reduce((x, r) => x + r.end - r.from, 0) + w.gaps.reduce((x, g) => x + g.end - g.start, 0), 0);
  }

  /** The next range to send, or null when everything is handed out. `ready(key)`: whether the blob's bytes can be read yet. */
  next(ready: (key: string) => boolean = () => true): RangeJob | null {
    for (const w of this.work) {
      if (!ready(w.key)) continue;
      const resumed = w.resume.shift();
      if (resumed) return resumed;
      const gap = w.gaps[0];
      if (!gap) continue;
      const len = this.cut(gap.end - gap.start);
      const job = { key: w.key, start: gap.start, end: gap.start + len, from: gap.start };
      gap.start += len;
      if (gap.start >= gap.end) w.gaps.shift();
      return job;
    }
    return null;
  }

  /** Whether anything is left to hand out (perhaps of a blob not ready yet). */
  get done(): boolean {
    return this.work.every((w) => w.resume.length === 0 && w.gaps.length === 0);
  }

  /** Send a blob again from scratch (its join failed the digest check, and its parts were removed). */
  restart(key: string): void {
    const i = this.work.findIndex((w) => w.key === key);
    const size = this.sizes.get(key);
    if (size === undefined) throw new Error(`unknown blob ${key}`);
    const fresh = workOf(key, size, []);
    if (i >= 0) this.work[i] = fresh;
    else this.work.push(fresh);
  }

  /**
   * How much of a gap of `len` bytes to take: a share of what is left so that the channels end
   * together, never under minRange, aligned, and never leaving a sliver under minRange behind.
   */
  private cut(len: number): number {
    const { channels, minRange, align } = this.opts;
    const share = Math.ceil(this.remaining / Math.max(1, channels));
    let take = Math.max(minRange, Math.ceil(share / align) * align);
    if (len - take < minRange) take = len;
    return Math.min(take, len);
  }
}

/** A part file's name on the cluster: HEX.START-END.part. */
export function partName(hex: string, r: Range): string {
  return `${hex}.${r.start}-${r.end}.part`;
}

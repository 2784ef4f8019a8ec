// How hard to compress: the zstd level follows what limits the transfer, measured as it goes. A
// range whose channel was full most of the time (the link is the bottleneck) leaves CPU to spare,
// so the next ranges compress harder; one whose channel waited for data (the CPU is the
// bottleneck) makes them compress less. Threads per compressor follow the CPUs left per channel.
// Pure.

/** The levels tried, in order: each step costs about twice the CPU for a few percent fewer bytes. */
export const LEVELS = [1, 3, 6, 9] as const;

/** Where the first ranges start: a good middle on the realistic image (zstd -b on it, 2024-era CPUs). */
const START = 3;
/** Above this fraction of the time with a full channel, the link is the bottleneck. */
const LINK_BOUND = 0.6;
/** Below this, the compressor is. */
const CPU_BOUND = 0.25;

export class LevelTuner {
  private index: number;

  constructor(
    /** CPUs here: with few, the top levels are never worth it. */
    private readonly cpus: number,
  ) {
    this.index = LEVELS.indexOf(START);
  }

  /** The level for the next range. */
  get level(): number {
    return LEVELS[this.index];
  }

  /** The highest level these CPUs may use (level 9 costs ~8x level 1's CPU). */
  private get top(): number {
    return this.cpus >= 8 ? LEVELS.length - 1 : this.cpus >= 4 ? 2 : 1;
  }

  /**
   * A range sent at `level` ended; `fullFraction` is the share of its samples in which its channel
   * was full (the compressor had to wait for the link). Ranges still at an older level say little
   * about the current one and are ignored.
   */
  record(level: number, fullFraction: number): void {
    if (level !== this.level) return;
    if (fullFraction > LINK_BOUND && this.index < this.top) this.index++;
    else if (fullFraction < CPU_BOUND && this.index > 0) this.index--;
  }
}

/** Compression threads per channel: the CPUs shared among the channels, at least one. */
export function threadsPerChannel(cpus: number, channels: number): number {
  return Math.max(1, Math.floor(cpus / Math.max(1, channels)));
}

/** The zstd command line for a level and thread count (stdin to stdout). */
export function zstdArgs(level: number, threads: number): string[] {
  return [`-${level}`, ...(threads > 1 ? [`-T${threads}`] : []), '-q', '-c'];
}

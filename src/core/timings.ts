// Wall time per phase of a delivery, for the log, the summary and the benchmarks.

export class Timings {
  private readonly entries: { phase: string; seconds: number }[] = [];
  private readonly started = Date.now();

  async time<T>(phase: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      this.add(phase, (Date.now() - t0) / 1000);
    }
  }

  /** Add time to a phase (a phase timed in several parts is listed once, summed). */
  add(phase: string, seconds: number): void {
    const e = this.entries.find((x) => x.phase === phase) ?? this.entries[this.entries.push({ phase, seconds: 0 }) - 1];
    e.seconds = Math.round((e.seconds + seconds) * 100) / 100;
  }

  /**
   * Phases (those named in `order` first, in that order; the rest as they came), then `overhead`
   * (what no phase accounts for) and `total`.
   */
  list(order: readonly string[] = []): { phase: string; seconds: number }[] {
    const total = (Date.now() - this.started) / 1000;
    const counted = this.entries.reduce((a, e) => a + e.seconds, 0);
    const round = (n: number) => Math.round(n * 100) / 100;
    const rank = (p: string) => (order.includes(p) ? order.indexOf(p) : order.length);
    const sorted = [...this.entries].sort((a, b) => rank(a.phase) - rank(b.phase));
    return [...sorted, { phase: 'overhead', seconds: round(Math.max(0, total - counted)) }, { phase: 'total', seconds: round(total) }];
  }
}

// Where a delivery's minutes went, as a mermaid gantt chart (GitHub renders mermaid in step
// summaries): the phases one after another on a time axis in seconds. Pure.

/** The phases shown, in order, and the section each belongs to. */
const SECTIONS: { section: string; phases: string[] }[] = [
  { section: 'Runner', phases: ['build', 'connect', 'save', 'upload'] },
  { section: 'Cluster', phases: ['sbatch-wait', 'modules', 'assemble', 'sif-build', 'smoke-test', 'publish'] },
];

const LABELS: Record<string, string> = {
  build: 'docker build',
  connect: 'connect',
  save: 'docker save',
  upload: 'transfer',
  'sbatch-wait': 'queue',
  modules: 'modules',
  assemble: 'assemble',
  'sif-build': '.sif build',
  'smoke-test': 'smoke test',
  publish: 'publish',
};

/**
 * A mermaid gantt of the timed phases laid end to end (phases that ran at the same time, as save
 * and upload may, are drawn one after the other: the chart shows where the time went, not overlap).
 * Phases under 10 ms are left out; null when there is nothing to show.
 */
export function phaseChart(timings: { phase: string; seconds: number }[]): string | null {
  const lines = ['gantt', '  dateFormat X', '  axisFormat %M:%S'];
  let at = 0;
  let shown = 0;
  for (const { section, phases } of SECTIONS) {
    const rows: string[] = [];
    for (const phase of phases) {
      const seconds = timings.find((t) => t.phase === phase)?.seconds ?? 0;
      if (seconds < 0.01) continue;
      // dateFormat X: start and end in whole seconds; a phase under a second still gets one.
      const start = Math.round(at);
      const end = Math.max(start + 1, Math.round(at + seconds));
      rows.push(`  ${LABELS[phase]} ${seconds.toFixed(1)} s : ${phase}, ${start}, ${end}`);
      at += seconds;
    }
    if (rows.length === 0) continue;
    lines.push(`  section ${section}`, ...rows);
    shown += rows.length;
  }
  return shown === 0 ? null : lines.join('\n');
}

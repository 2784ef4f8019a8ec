// The phase chart of the job summary: a mermaid gantt of where a delivery's time went.
import { phaseChart } from '../../src/core/chart.js';

const t = (pairs: [string, number][]) => pairs.map(([phase, seconds]) => ({ phase, seconds }));

test('the phases laid end to end in order, runner then cluster, in whole seconds', () => {
  const chart = phaseChart(
    t([
      ['build', 2.4],
      ['connect', 0.3],
      ['save', 3.2],
      ['upload', 1.5],
      ['sbatch-wait', 10.2],
      ['modules', 0.1],
      ['assemble', 0.4],
      ['sif-build', 20.6],
      ['smoke-test', 4.9],
      ['overhead', 0.7],
      ['total', 44.3],
    ]),
  );
  expect(chart).toBe(
    [
      'gantt',
      '  dateFormat X',
      '  axisFormat %M:%S',
      '  section Runner',
      '  docker build 2.4 s : build, 0, 2',
      '  connect 0.3 s : connect, 2, 3',
      '  docker save 3.2 s : save, 3, 6',
      '  transfer 1.5 s : upload, 6, 7',
      '  section Cluster',
      '  queue 10.2 s : sbatch-wait, 7, 18',
      '  modules 0.1 s : modules, 18, 19',
      '  assemble 0.4 s : assemble, 18, 19',
      '  .sif build 20.6 s : sif-build, 18, 39',
      '  smoke test 4.9 s : smoke-test, 39, 44',
    ].join('\n'),
  );
});

test('phases that did not run are left out, and so are sections without any', () => {
  const chart = phaseChart(
    t([
      ['connect', 0.2],
      ['upload', 0.4],
      ['sbatch-wait', 1],
      ['smoke-test', 2],
      ['build', 0],
      ['total', 4],
    ]),
  )!;
  expect(chart).not.toContain('docker build');
  expect(chart).not.toContain('.sif build');
  expect(chart.split('\n').filter((l) => l.includes('section'))).toEqual(['  section Runner', '  section Cluster']);
  expect(phaseChart(t([['smoke-test', 3]]))).not.toContain('section Runner');
});

test('nothing timed: no chart', () => {
  expect(
    phaseChart(
      t([
        ['overhead', 0.5],
        ['total', 0.5],
      ]),
    ),
  ).toBeNull();
});

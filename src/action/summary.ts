// The job summary and the step outputs, from the core's result.
import * as core from '@actions/core';
import type { DeliveryResult } from '../core/deliver.js';
import { phaseChart } from '../core/chart.js';
import { mib } from '../core/format.js';
import type { Check } from '../core/preflight.js';

export function setOutputs(r: DeliveryResult): void {
  core.setOutput('job-id', r.jobId);
  core.setOutput('job-state', r.jobState);
  core.setOutput('exit-code', r.exitCode === null ? '' : String(r.exitCode));
  core.setOutput('sif-path', r.sifPath);
  core.setOutput('image-digest', r.imageDigest);
  core.setOutput('bytes-sent', String(r.bytesSent));
  core.setOutput('bytes-total', String(r.bytesTotal));
  core.setOutput('sif-reused', String(r.sifReused));
  core.setOutput('published-path', r.publishedPath ?? '');
  core.setOutput('gpu-name', r.gpu?.outside.gpus[0]?.name ?? '');
  core.setOutput('gpu-count', String(r.gpu?.outside.gpus.length ?? 0));
  core.setOutput('driver-version', r.gpu?.outside.driver ?? '');
  core.setOutput('driver-cuda', r.gpu?.outside.cuda ?? '');
  core.setOutput('image-cuda', r.gpu?.imageCuda ?? '');
}

/** GPU rows: the node's view, and the container's where it differs. */
function gpuRows(r: DeliveryResult): string[][] {
  const g = r.gpu;
  if (!g) return [];
  const gpus = (v: NonNullable<DeliveryResult['gpu']>['outside']) => (v.gpus.length ? `${v.gpus.length}× ${esc(v.gpus[0].name)}` : 'none visible');
  const driver = (v: NonNullable<DeliveryResult['gpu']>['outside']) => (v.driver ? `${esc(v.driver)}${v.cuda ? ` (CUDA ${esc(v.cuda)})` : ''}` : '-');
  const compat = g.compat.kind === 'ok' ? '' : ` ⚠️ ${esc(g.compat.message)}`;
  return [
    ['GPUs (node)', gpus(g.outside)],
    ['GPUs (in the container)', gpus(g.inside)],
    ['Driver (node / container)', `${driver(g.outside)} / ${driver(g.inside)}`],
    ['Image CUDA', `${esc(g.imageCuda ?? 'not declared')}${compat}`],
  ];
}

/** How much the store and compression saved, against sending the whole `docker save` tar. */
const dedup = (r: DeliveryResult) => (r.bytesTotal > 0 ? `${((r.bytesSent / r.bytesTotal) * 100).toFixed(1)}% of the tar on the wire` : '-');

const seconds = (r: DeliveryResult, ...phases: string[]) => phases.reduce((a, p) => a + (r.timings.find((t) => t.phase === p)?.seconds ?? 0), 0);

/** The transfer: bytes on the wire over the time it took (the save overlaps it). */
function transferRow(r: DeliveryResult): string {
  const t = seconds(r, 'save', 'upload');
  if (r.bytesSent === 0) return r.sifReused ? 'nothing (the .sif was reused)' : 'nothing (the cluster had every blob)';
  return `${mib(r.bytesSent)} in ${t.toFixed(1)} s (save and upload): ${mib(r.bytesSent / Math.max(t, 0.001))}/s on the wire`;
}

function buildRow(r: DeliveryResult): string {
  if (r.sifReused) return 'reused (image unchanged)';
  return `${seconds(r, 'assemble', 'sif-build').toFixed(1)} s${r.buildCpus ? ` on ${r.buildCpus} CPU${r.buildCpus > 1 ? 's' : ''}` : ''}`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export async function writeSummary(r: DeliveryResult): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  const chart = phaseChart(r.timings);
  await core.summary
    .addHeading(`${r.ok ? '✅' : '❌'} riviera-singularity: ${esc(r.image)}`, 2)
    .addRaw(`<p>${esc(r.message)}</p>`)
    .addTable([
      [
        { data: 'Field', header: true },
        { data: 'Value', header: true },
      ],
      ['Image', esc(r.image)],
      ['Digest', `<code>${esc(r.imageDigest)}</code>`],
      ['Job', esc(r.jobId)],
      ['Node', esc(r.node || '-')],
      ...gpuRows(r),
      ['State', esc(r.jobState)],
      ['Exit code', r.exitCode === null ? '-' : String(r.exitCode)],
      ['SIF', `<code>${esc(r.sifPath)}</code>`],
      ['Published', r.publishedPath ? `<code>${esc(r.publishedPath)}</code>` : '-'],
      ['SIF reused', r.sifReused ? 'yes (image unchanged)' : 'no (built in this job)'],
      ['Sent', `${mib(r.bytesSent)} for a ${mib(r.bytesTotal)} image (${dedup(r)})`],
      ['Transfer', esc(transferRow(r))],
      ['.sif build', esc(buildRow(r))],
    ])
    .addHeading('Timing', 3)
    // GitHub renders a mermaid code block in a step summary as a chart.
    .addRaw(chart ? `\n\n\`\`\`mermaid\n${chart}\n\`\`\`\n\n` : '')
    .addTable([
      [
        { data: 'Phase', header: true },
        { data: 'Seconds', header: true },
      ],
      ...r.timings.map((t) => [esc(t.phase), t.seconds.toFixed(2)]),
    ])
    .addDetails('Last lines of the job output', `<pre>${esc(r.outputTail.join('\n'))}</pre>`)
    .write();
}

const MARK = { pass: '✅ pass', warn: '⚠️ warn', fail: '❌ fail' } as const;

export async function writeChecksSummary(checks: Check[]): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  await core.summary
    .addHeading(`${checks.some((c) => c.status === 'fail') ? '❌' : '✅'} riviera-singularity: preflight`, 2)
    .addTable([
      [
        { data: 'Check', header: true },
        { data: 'Result', header: true },
        { data: 'Found', header: true },
        { data: 'Fix', header: true },
      ],
      ...checks.map((c) => [esc(c.id), MARK[c.status], esc(c.detail), esc(c.fix)]),
    ])
    .write();
}

// The step's outputs and job summary, written by the real @actions/core into the files the runner
// reads (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY): every output, the table, and job output as data.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setOutputs, writeSummary } from '../../src/action/summary.js';
import type { DeliveryResult } from '../../src/core/deliver.js';
import { deliveryResult } from '../helpers/result.js';

// One directory for the file: core.summary keeps the path it first wrote to.
const dir = mkdtempSync(join(tmpdir(), 'summary-'));
beforeEach(() => {
  process.env.GITHUB_OUTPUT = join(dir, 'output');
  process.env.GITHUB_STEP_SUMMARY = join(dir, 'summary');
  writeFileSync(process.env.GITHUB_OUTPUT, '');
  writeFileSync(process.env.GITHUB_STEP_SUMMARY, '');
});
afterEach(() => {
  delete process.env.GITHUB_OUTPUT;
  delete process.env.GITHUB_STEP_SUMMARY;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HOSTILE = '<script>alert(1)</script> & "q" ::set-output name=x::y';
const result = (over: Partial<DeliveryResult> = {}) =>
  deliveryResult({
    sifPath: '/rs/sif/abc.sif',
    sifReused: true,
    publishedPath: '/pub/img_v1.sif',
    timings: [
      { phase: 'upload', seconds: 1.234 },
      { phase: 'smoke-test', seconds: 2 },
    ],
    outputTail: ['line 1', HOSTILE],
    bytesSent: 1048576,
    bytesTotal: 4194304,
    ...over,
  });

/** GITHUB_OUTPUT's name<<delimiter blocks, as the runner reads them. */
function outputs(): Record<string, string> {
  const text = readFileSync(process.env.GITHUB_OUTPUT!, 'utf8');
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^([\w-]+)<<(\S+)\n([\s\S]*?)\n\2$/gm)) out[m[1]] = m[3];
  return out;
}

test('every output the action declares, as strings', () => {
  setOutputs(result());
  expect(outputs()).toEqual({
    'job-id': '77',
    'job-state': 'COMPLETED',
    'exit-code': '0',
    'sif-path': '/rs/sif/abc.sif',
    'image-digest': 'sha256:abc',
    'bytes-sent': '1048576',
    'bytes-total': '4194304',
    'sif-reused': 'true',
    'published-path': '/pub/img_v1.sif',
    'gpu-name': '',
    'gpu-count': '0',
    'driver-version': '',
    'driver-cuda': '',
    'image-cuda': '',
  });
});

test('a smoke test that never ran: exit-code and published-path empty', () => {
  setOutputs(result({ exitCode: null, publishedPath: null, ok: false }));
  expect(outputs()).toMatchObject({ 'exit-code': '', 'published-path': '' });
});

test('the summary: heading, table, timings in order, the last lines escaped', async () => {
  await writeSummary(result({ image: `img:${HOSTILE}` }));
  const html = readFileSync(process.env.GITHUB_STEP_SUMMARY!, 'utf8');
  expect(html).toContain('<h2>✅ riviera-singularity: img:&lt;script&gt;');
  expect(html).toContain('<td>Sent</td><td>1.0 MiB for a 4.0 MiB image (25.0% of the tar on the wire)</td>');
  expect(html).toContain('<td>SIF reused</td><td>yes (image unchanged)</td>');
  expect(html.indexOf('<td>upload</td><td>1.23</td>')).toBeLessThan(html.indexOf('<td>smoke-test</td><td>2.00</td>'));
  expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &amp; "q" ::set-output');
  expect(html).not.toContain('<script>');
});

test('a failed job: the cross, and no summary file, no summary', async () => {
  await writeSummary(result({ ok: false, exitCode: 3, jobState: 'FAILED' }));
  expect(readFileSync(process.env.GITHUB_STEP_SUMMARY!, 'utf8')).toMatch(/^<h2>❌/);
  delete process.env.GITHUB_STEP_SUMMARY;
  await expect(writeSummary(result())).resolves.toBeUndefined();
});

// nvidia-smi's answers, an image's CUDA version, and whether a driver runs it.
import { compareVersions, cudaCompat, imageCudaVersion, parseGpuQuery, parseGpuReport, parseSmiHeader } from '../../src/core/gpu.js';

// Recorded from a real A100 node (driver 535) and from the stand-in's nvidia-smi.
const HEADER = `Fri Nov 27 15:01:02 2026
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |
|-----------------------------------------+----------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA A100-SXM4-40GB          On  | 00000000:07:00.0 Off |                    0 |
`;

describe('parseGpuQuery', () => {
  test('one GPU per line, noheader', () => {
    expect(parseGpuQuery('NVIDIA A100-SXM4-40GB, 535.104.05, 40960 MiB\nNVIDIA A100-SXM4-40GB, 535.104.05, 40960 MiB\n')).toEqual([
      { name: 'NVIDIA A100-SXM4-40GB', driver: '535.104.05', memory: '40960 MiB' },
      { name: 'NVIDIA A100-SXM4-40GB', driver: '535.104.05', memory: '40960 MiB' },
    ]);
  });
  test('a header line and errors are not GPUs', () => {
    expect(parseGpuQuery('name, driver_version, memory.total\nTesla V100-PCIE-16GB, 470.82.01, 16160 MiB\n')).toHaveLength(1);
    expect(parseGpuQuery('No devices were found\n')).toEqual([]);
    expect(parseGpuQuery('Field "compute_cap" is not a valid field to query.\n')).toEqual([]);
    expect(parseGpuQuery("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")).toEqual([]);
  });
});

describe('parseSmiHeader', () => {
  test('driver and CUDA version from the banner', () => {
    expect(parseSmiHeader(HEADER)).toEqual({ driver: '535.104.05', cuda: '12.2' });
  });
  test('the stand-in banner', () => {
    expect(parseSmiHeader('| NVIDIA-SMI 470.57.02        Driver Version: 470.57.02        CUDA Version: 11.4    |')).toEqual({
      driver: '470.57.02',
      cuda: '11.4',
    });
  });
  test('nothing when there is no banner', () => {
    expect(parseSmiHeader('No devices were found')).toEqual({ driver: null, cuda: null });
  });
});

describe('imageCudaVersion', () => {
  test('CUDA_VERSION first', () => {
    expect(imageCudaVersion('12.4.1', '{"cuda":{"version":"11.8.0"}}')).toBe('12.4.1');
    expect(imageCudaVersion('12.4', null)).toBe('12.4');
  });
  test('else version.json', () => {
    const json = '{"cuda" : {"name" : "CUDA SDK", "version" : "12.1.1"}, "cuda_cudart" : {"name" : "CUDA Runtime (cudart)", "version" : "12.1.105"}}';
    expect(imageCudaVersion('', json)).toBe('12.1.1');
    expect(imageCudaVersion(null, json)).toBe('12.1.1');
  });
  test('none declared, or garbage', () => {
    expect(imageCudaVersion(null, null)).toBeNull();
    expect(imageCudaVersion('', 'not json')).toBeNull();
    expect(imageCudaVersion('latest', '{"cuda":{}}')).toBeNull();
  });
});

test('compareVersions compares field by field, numerically', () => {
  expect(compareVersions('535.104.05', '525.60.13')).toBe(1);
  expect(compareVersions('525.60.13', '525.60.13')).toBe(0);
  expect(compareVersions('470.82.01', '525.60.13')).toBe(-1);
  expect(compareVersions('580', '580.65.06')).toBe(-1);
  expect(compareVersions('12.10', '12.9')).toBe(1);
});

describe('cudaCompat', () => {
  test('no CUDA declared: nothing to check', () => {
    expect(cudaCompat(null, '535.104.05', '12.2')).toEqual({ kind: 'ok' });
  });
  test('same or older minor runs', () => {
    expect(cudaCompat('12.2.0', '535.104.05', '12.2').kind).toBe('ok');
    expect(cudaCompat('11.8.0', '535.104.05', '12.2').kind).toBe('ok');
  });
  test('a newer minor of the same major is a warning (minor version compatibility)', () => {
    const c = cudaCompat('12.4.0', '535.104.05', '12.2');
    expect(c.kind).toBe('minor');
    if (c.kind === 'minor') expect(c.message).toMatch(/12\.4\.0.*12\.2/);
  });
  test('a major that needs a newer driver fails, naming both versions and the driver needed', () => {
    const c = cudaCompat('12.4.0', '470.82.01', '11.4');
    expect(c).toEqual({
      kind: 'driver',
      need: '525.60.13',
      message: expect.stringMatching(/CUDA 12\.4\.0 needs NVIDIA driver >= 525\.60\.13.*driver 470\.82\.01 \(CUDA 11\.4\)/),
    });
    expect(cudaCompat('13.0.1', '575.51.03', '12.9')).toMatchObject({ kind: 'driver', need: '580' });
    expect(cudaCompat('11.0', '440.33.01', '10.2')).toMatchObject({ kind: 'driver', need: '450.80.02' });
  });
  test('the driver minimum is the boundary', () => {
    expect(cudaCompat('12.0.0', '525.60.13', '12.0').kind).toBe('ok');
    expect(cudaCompat('12.0.0', '525.60.12', '12.0').kind).toBe('driver');
  });
  test('before CUDA 11 there is no minor compatibility; after the table, the driver CUDA decides', () => {
    expect(cudaCompat('10.2', '418.87.01', '10.1').kind).toBe('driver');
    expect(cudaCompat('14.0', '580.65.06', '13.0').kind).toBe('driver');
  });
  test('no driver on the node', () => {
    expect(cudaCompat('12.4.0', null, null).kind).toBe('unknown');
  });
});

describe('parseGpuReport', () => {
  // As the job prints them (marker removed), with a driver too old for the image's CUDA 12.4.
  const LINES = [
    'node vm',
    'outside query NVIDIA A100-SXM4-40GB, 470.82.01, 40960 MiB',
    'outside header | NVIDIA-SMI 470.82.01   Driver Version: 470.82.01   CUDA Version: 11.4     |',
    'inside query NVIDIA A100-SXM4-40GB, 470.82.01, 40960 MiB',
    'inside header | NVIDIA-SMI 470.82.01   Driver Version: 470.82.01   CUDA Version: 11.4     |',
    'inside env 12.4.0',
  ];
  test('node, both views, the image CUDA and the verdict on it', () => {
    const r = parseGpuReport(LINES)!;
    expect(r.node).toBe('vm');
    expect(r.outside).toEqual({ gpus: [{ name: 'NVIDIA A100-SXM4-40GB', driver: '470.82.01', memory: '40960 MiB' }], driver: '470.82.01', cuda: '11.4' });
    expect(r.inside.gpus).toHaveLength(1);
    expect(r.imageCuda).toBe('12.4.0');
    expect(r.compat).toMatchObject({ kind: 'driver', need: '525.60.13' });
  });
  test('version.json when the image sets no CUDA_VERSION; no GPUs inside without --nv', () => {
    const r = parseGpuReport([
      'node gpu01',
      'outside query Tesla V100, 535.104.05, 16160 MiB',
      'inside query No devices were found',
      'inside env ',
      'inside json {',
      'inside json   "cuda" : { "name" : "CUDA SDK", "version" : "11.8.0" }',
      'inside json }',
    ])!;
    expect(r.imageCuda).toBe('11.8.0');
    expect(r.inside.gpus).toEqual([]);
    expect(r.compat.kind).toBe('ok');
  });
  test('no report', () => {
    expect(parseGpuReport([])).toBeNull();
  });
});

// What a GPU node runs: nvidia-smi's answers (GPUs, driver, the CUDA version the driver supports),
// the CUDA version an image declares, and whether that driver can run that image. Pure.
import type { JobStatus, Verdict } from './slurm.js';

export interface GpuInfo {
  name: string;
  driver: string;
  memory: string;
}

/** `nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader`: one GPU per line. */
export function parseGpuQuery(out: string): GpuInfo[] {
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^name\s*,/.test(l) && l.includes(','))
    .map((l) => {
      const [name, driver = '', memory = ''] = l.split(',').map((f) => f.trim());
      return { name, driver, memory };
    })
    .filter((g) => /^\d+(\.\d+)+$/.test(g.driver));
}

/** The banner of plain `nvidia-smi`: the driver and the highest CUDA version it supports. */
export function parseSmiHeader(out: string): { driver: string | null; cuda: string | null } {
  return {
    driver: /Driver Version:\s*([\d.]+)/.exec(out)?.[1] ?? null,
    cuda: /CUDA Version:\s*([\d.]+)/.exec(out)?.[1] ?? null,
  };
}

/**
 * The CUDA version an image declares: NVIDIA's images set CUDA_VERSION (e.g. 12.4.1); otherwise
 * /usr/local/cuda/version.json (`{"cuda": {"version": "12.4.1"}}`). null: it declares none.
 */
export function imageCudaVersion(env: string | null, versionJson: string | null): string | null {
  const fromEnv = env?.trim();
  if (fromEnv && /^\d+\.\d+(\.\d+)?$/.test(fromEnv)) return fromEnv;
  if (versionJson?.trim()) {
    try {
      const v = (JSON.parse(versionJson) as { cuda?: { version?: unknown } }).cuda?.version;
      if (typeof v === 'string' && /^\d+\.\d+(\.\d+)?$/.test(v)) return v;
    } catch {
      // not JSON: the image declares nothing usable
    }
  }
  return null;
}

/** -1, 0 or 1, comparing dotted numeric versions field by field (missing fields count as 0). */
export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * Oldest Linux driver that runs any CUDA of a major version (minor version compatibility, NVIDIA's
 * CUDA compatibility guide): the job script carries the same table.
 */
export const MIN_DRIVER: Readonly<Record<number, string>> = { 11: '450.80.02', 12: '525.60.13', 13: '580' };

export type CudaCompat =
  { kind: 'ok' } | { kind: 'unknown'; message: string } | { kind: 'minor'; message: string } | { kind: 'driver'; need: string | null; message: string };

const minorOf = (v: string) => v.split('.').slice(0, 2).join('.');

/**
 * Can a node whose driver is `driver` (supporting CUDA up to `driverCuda`) run an image built for
 * `imageCuda`? A major version needing a newer driver cannot (the job stops before the smoke test);
 * a newer minor version than the driver reports usually runs (minor version compatibility) but
 * PTX compiled for it and its newest APIs do not: a warning.
 */
export function cudaCompat(imageCuda: string | null, driver: string | null, driverCuda: string | null): CudaCompat {
  if (!imageCuda) return { kind: 'ok' };
  if (!driver) return { kind: 'unknown', message: `The image declares CUDA ${imageCuda}, but no NVIDIA driver answered on the node.` };
  const need = MIN_DRIVER[Number(imageCuda.split('.')[0])] ?? null;
  // Outside the table (before CUDA 11, or newer than it knows) no minor version compatibility is assumed.
  const tooOld = need !== null ? compareVersions(driver, need) < 0 : driverCuda !== null && compareVersions(minorOf(imageCuda), driverCuda) > 0;
  if (tooOld) {
    return {
      kind: 'driver',
      need,
      message: `The image's CUDA ${imageCuda} needs NVIDIA driver >= ${need ?? `one supporting CUDA ${minorOf(imageCuda)}`}, but the node has driver ${driver}${driverCuda ? ` (CUDA ${driverCuda})` : ''}.`,
    };
  }
  if (driverCuda && compareVersions(minorOf(imageCuda), driverCuda) > 0) {
    return {
      kind: 'minor',
      message: `The image's CUDA ${imageCuda} is newer than the ${driverCuda} that driver ${driver} reports: it runs by minor version compatibility, but PTX JIT and the newest APIs need a newer driver.`,
    };
  }
  return { kind: 'ok' };
}

/** The fields the job asks nvidia-smi for (compute_cap is missing on 470-era drivers). */
export const GPU_QUERY = 'name,driver_version,memory.total';

export interface GpuView {
  gpus: GpuInfo[];
  driver: string | null;
  /** Highest CUDA version the driver supports. */
  cuda: string | null;
}

export interface GpuReport {
  node: string;
  /** What the node shows, outside the container. */
  outside: GpuView;
  /** What the smoke test sees, inside the container (--nv). */
  inside: GpuView;
  imageCuda: string | null;
  compat: CudaCompat;
}

function view(query: string[], header: string[]): GpuView {
  const gpus = parseGpuQuery(query.join('\n'));
  const h = parseSmiHeader(header.join('\n'));
  return { gpus, driver: gpus[0]?.driver ?? h.driver, cuda: h.cuda };
}

/** The job's GPU report lines (`<where> [<kind>] <text>`, marker removed: jobscript.ts) into the report; null when the job made none (no GPUs asked). */
export function parseGpuReport(lines: string[]): GpuReport | null {
  if (lines.length === 0) return null;
  const parts: Record<string, string[]> = {};
  let node = '';
  for (const line of lines) {
    const [where, kind, ...rest] = line.split(' ');
    if (where === 'node') node = [kind, ...rest].join(' ');
    else (parts[`${where} ${kind}`] ??= []).push(rest.join(' '));
  }
  const outside = view(parts['outside query'] ?? [], parts['outside header'] ?? []);
  const inside = view(parts['inside query'] ?? [], parts['inside header'] ?? []);
  const imageCuda = imageCudaVersion(parts['inside env']?.[0] ?? null, (parts['inside json'] ?? []).join('\n') || null);
  return { node, outside, inside, imageCuda, compat: cudaCompat(imageCuda, outside.driver, outside.cuda) };
}

/** One line for the log: what the job ran on. */
export function describeGpu(r: GpuReport): string {
  const g = r.outside.gpus;
  const what = g.length > 0 ? `${g.length}× ${g[0].name}` : 'no GPU visible';
  const driver = r.outside.driver ? `driver ${r.outside.driver}${r.outside.cuda ? ` (CUDA ${r.outside.cuda})` : ''}` : 'no NVIDIA driver answered';
  return `GPU report: ${what} on ${r.node || 'the node'}, ${driver}; ${r.inside.gpus.length} GPU(s) inside the container; image CUDA ${r.imageCuda ?? 'not declared'}.`;
}

/**
 * A job stopped by its GPU check (phase gpu-check) fails with one line naming the image's CUDA, the
 * node's driver and the driver needed; any other verdict stands.
 */
export function gpuVerdict(v: Verdict, status: JobStatus | null, r: GpuReport | null): Verdict {
  if (v.ok || status?.phase !== 'gpu-check' || r?.compat.kind !== 'driver') return v;
  return { ok: false, state: 'FAILED', exitCode: status.code, interrupted: false, message: r.compat.message };
}

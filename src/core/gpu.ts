// What a GPU node runs: nvidia-smi's answers (GPUs, driver, the CUDA version the driver supports),
// the CUDA version an image declares, and whether that driver can run that image. Pure.

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
  | { kind: 'ok' }
  | { kind: 'unknown'; message: string }
  | { kind: 'minor'; message: string }
  | { kind: 'driver'; need: string | null; message: string };

const majorOf = (v: string) => Number(v.split('.')[0]);
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
  const major = majorOf(imageCuda);
  const need = MIN_DRIVER[major] ?? null;
  const tooOld =
    need !== null ? compareVersions(driver, need) < 0 : driverCuda !== null && (major > majorOf(driverCuda) || (major < 11 && compareVersions(minorOf(imageCuda), driverCuda) > 0));
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

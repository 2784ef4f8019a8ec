// What a cluster offers, from Slurm's own answers: partitions (`scontrol show partition -o`), GPUs
// per node (`sinfo -h -o '%P|%G'`), time limits, and what `sbatch --test-only` says of a job. Pure.

export interface Partition {
  name: string;
  /** Seconds; null: UNLIMITED. */
  maxTime: number | null;
  state: string;
  isDefault: boolean;
  allowAccounts: string;
  /** Most GPUs one node of it has (from sinfo); 0 when none of its nodes has any. */
  gpusPerNode: number;
}

function fields(line: string): Map<string, string> {
  const m = new Map<string, string>();
  // Values hold no spaces in -o output, except a few (e.g. Nodes lists) which hold none either.
  for (const kv of line.trim().split(/\s+/)) {
    const i = kv.indexOf('=');
    if (i > 0) m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

/**
 * Slurm's time format to seconds: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; null for
 * UNLIMITED/INFINITE (and NONE), undefined for anything else.
 */
export function slurmSeconds(t: string): number | null | undefined {
  const s = t.trim();
  if (/^(UNLIMITED|INFINITE|NONE)$/i.test(s)) return null;
  let m = /^(\d+)-(\d+)(?::(\d+))?(?::(\d+))?$/.exec(s);
  if (m) return Number(m[1]) * 86400 + Number(m[2]) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
  m = /^(\d+)(?::(\d+))?(?::(\d+))?$/.exec(s);
  if (!m) return undefined;
  if (m[3] !== undefined) return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  if (m[2] !== undefined) return Number(m[1]) * 60 + Number(m[2]);
  return Number(m[1]) * 60;
}

/** GPUs in one `%G` value: `gpu:2`, `gpu:a100:4(S:0-1)`, `gpu:tesla:2,mps:100`, `(null)`. */
export function gpusInGres(gres: string): number {
  let n = 0;
  for (const g of gres.split(/,(?![^(]*\))/)) {
    const m = /^gpu(?::[^:(]+)?:(\d+)/.exec(g.trim());
    if (m) n += Number(m[1]);
  }
  return n;
}

/** `scontrol show partition -o` plus `sinfo -h -o '%P|%G'` lines into the partitions. */
export function parsePartitions(scontrol: string, sinfo: string): Partition[] {
  const gpus = new Map<string, number>();
  for (const line of sinfo.split('\n')) {
    const [p, g] = line.trim().split('|');
    if (!p || g === undefined) continue;
    const name = p.replace(/\*$/, '');
    gpus.set(name, Math.max(gpus.get(name) ?? 0, gpusInGres(g)));
  }
  return scontrol
    .split('\n')
    .filter((l) => l.startsWith('PartitionName='))
    .map((l) => {
      const f = fields(l);
      const name = f.get('PartitionName')!;
      return {
        name,
        maxTime: slurmSeconds(f.get('MaxTime') ?? 'UNLIMITED') ?? null,
        state: f.get('State') ?? 'UP',
        isDefault: f.get('Default') === 'YES',
        allowAccounts: f.get('AllowAccounts') ?? 'ALL',
        gpusPerNode: gpus.get(name) ?? 0,
      };
    });
}

/** Seconds as Slurm writes a limit: D-HH:MM:SS or HH:MM:SS. */
export function slurmDuration(seconds: number | null): string {
  if (seconds === null) return 'UNLIMITED';
  const d = Math.floor(seconds / 86400);
  const hms = [Math.floor((seconds % 86400) / 3600), Math.floor((seconds % 3600) / 60), seconds % 60].map((n) => String(n).padStart(2, '0')).join(':');
  return d > 0 ? `${d}-${hms}` : hms;
}

export interface TestOnly {
  accepted: boolean;
  /** sbatch's own words: the estimated start, or its error lines. */
  lines: string[];
}

/**
 * `sbatch --test-only` (stdout and stderr together) and its exit code: `sbatch: Job N to start at
 * T using C processors on nodes N in partition P` when accepted; `sbatch: error: ...` and
 * `allocation failure: ...` when not.
 */
export function parseTestOnly(out: string, code: number): TestOnly {
  const lines = out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const accepted = code === 0 && lines.some((l) => /\bJob \d+ to start at\b/.test(l));
  const said = accepted ? lines.filter((l) => /to start at/.test(l)) : lines.filter((l) => /error|failure|invalid|denied|not available|reject/i.test(l));
  return { accepted, lines: (said.length > 0 ? said : lines).map((l) => l.replace(/^sbatch: (error: )?/, '')) };
}

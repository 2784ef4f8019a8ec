// Slurm's accounting of a finished job, where the cluster has it (preflight found out): sacct is
// asked a few times, as its record can lag the job's end by seconds and slurmdbd has outages.
import { renderScript } from './cluster/scripts.js';
import type { Reporter } from './reporter.js';
import { type Accounting, SACCT_FIELDS, describeAccounting, parseSacct, readAccounting } from './sacct.js';
import type { Session } from './session.js';

export async function jobAccounting(
  session: Session,
  loginModules: string[],
  jobId: string,
  reporter: Reporter,
  tries = 4,
  delayMs = 2000,
): Promise<Accounting | null> {
  const script = renderScript('accounting', { login_modules: loginModules, job_id: jobId, fields: SACCT_FIELDS });
  for (let i = 1; ; i++) {
    const r = await session.retry('Reading accounting', (remote) => remote.exec(script));
    const a = r.code === 0 ? readAccounting(parseSacct(r.stdout.toString()), jobId) : null;
    if (a) {
      reporter.info(describeAccounting(a));
      for (const w of a.warnings) reporter.warning(w);
      return a;
    }
    if (i >= tries) {
      reporter.warning(
        `sacct had no final record of job ${jobId} after ${tries} tries${r.code ? ` (exit ${r.code}: ${r.stderr.toString().trim().slice(0, 200)})` : ''}: the verdict is the job's own.`,
      );
      return null;
    }
    await new Promise((res) => setTimeout(res, delayMs));
  }
}

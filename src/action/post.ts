// The post step: if main ended (cancelled, killed) while its job was pending or running, scancel it,
// so no job is left behind: on a session of its own that reconnects as the CLI's does, within a
// time limit. Post never fails the workflow; it only warns.
import * as core from '@actions/core';
import { cancelOnNewSession } from '../core/control.js';
import { parseConnection } from '../core/settings.js';
import { readInputs } from './inputs.js';
import { actionReporter } from './reporter.js';
import { savedJob } from './state.js';

export async function post(): Promise<void> {
  const { jobId, jobDir, jobDone } = savedJob;
  if (jobDone || (!jobId && !jobDir)) return;
  // Main may have been killed between sbatch and learning the job id: the job directory finds it.
  const job = jobId ? { jobId, jobDir } : { jobDir };
  const what = jobId ? `job ${jobId}` : `the job of ${jobDir}`;
  try {
    const cancelled = await cancelOnNewSession(parseConnection(await readInputs()), job, actionReporter());
    if (cancelled) core.info(`Cancelled job ${cancelled}: the main step ended before it did.`);
  } catch (e) {
    core.warning(
      `Could not cancel ${what}: ${e instanceof Error ? e.message : String(e)}. Cancel it by hand: ${jobId ? `scancel ${jobId}` : `scancel the job whose directory is ${jobDir}`}`,
    );
  }
}

// The post step: if main ended (cancelled, killed) while its job was pending or running, scancel it,
// so no job is left behind; if it ended before any job existed, release the run's hold on the image
// (garbage collection would keep its blobs a day): on a session of its own that reconnects as the
// CLI's does, within a time limit. Post never fails the workflow; it only warns.
import * as core from '@actions/core';
import { cancelOnNewSession } from '../core/control.js';
import { parseConnection } from '../core/settings.js';
import { readInputs } from './inputs.js';
import { actionReporter } from './reporter.js';
import { savedJob } from './state.js';

export async function post(): Promise<void> {
  const { jobId, jobDir, jobDone, hold } = savedJob;
  if (jobDone || (!jobId && !jobDir && !hold)) return;
  // Main may have been killed between sbatch and learning the job id: the job directory finds it.
  const job = jobId ? { jobId, jobDir } : { jobDir: jobDir || null, hold: hold || undefined };
  const what = jobId ? `job ${jobId}` : jobDir ? `the job of ${jobDir}` : 'the delivery';
  try {
    const cancelled = await cancelOnNewSession(parseConnection(await readInputs()), job, actionReporter());
    if (cancelled) core.info(`Cancelled job ${cancelled}: the main step ended before it did.`);
    else if (!jobId) core.info('The main step ended before submitting a job; released its hold on the image.');
  } catch (e) {
    core.warning(
      `Could not cancel ${what}: ${e instanceof Error ? e.message : String(e)}. Cancel it by hand: ${jobId ? `scancel ${jobId}` : `scancel the job whose directory is ${jobDir}`}`,
    );
  }
}

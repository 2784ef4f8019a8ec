// The post step: if main ended (cancelled, killed) while its job was pending or running, scancel it,
// so no job is left behind. Post never fails the workflow; it only warns.
import * as core from '@actions/core';
import { parseConnection } from '../core/settings.js';
import { cancelOnNewConnection } from '../core/submit.js';
import { readInputs } from './inputs.js';
import { savedJob } from './state.js';

export async function post(): Promise<void> {
  if (!savedJob.jobId || savedJob.jobDone) return;
  try {
    await cancelOnNewConnection(parseConnection(await readInputs()), savedJob.jobId);
    core.info(`Cancelled job ${savedJob.jobId}: the main step ended before it did.`);
  } catch (e) {
    core.warning(`Could not cancel job ${savedJob.jobId}: ${e instanceof Error ? e.message : String(e)}. Cancel it by hand: scancel ${savedJob.jobId}`);
  }
}

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
  if (!savedJob.jobId || savedJob.jobDone) return;
  try {
    await cancelOnNewSession(parseConnection(await readInputs()), savedJob.jobId, actionReporter());
    core.info(`Cancelled job ${savedJob.jobId}: the main step ended before it did.`);
  } catch (e) {
    core.warning(`Could not cancel job ${savedJob.jobId}: ${e instanceof Error ? e.message : String(e)}. Cancel it by hand: scancel ${savedJob.jobId}`);
  }
}

// The post step: if main ended (cancelled, killed) while its job was pending or running, scancel it,
// so no job is left behind. Post never fails the workflow; it only warns.
import * as core from '@actions/core';
import { cancelJob } from '../core/submit.js';
import { parseConnection } from '../core/settings.js';
import { connectRemote } from '../core/connect.js';
import { readInputs } from './inputs.js';
import { savedJob } from './state.js';

export async function post(): Promise<void> {
  if (!savedJob.jobId || savedJob.jobDone) return;
  try {
    const settings = parseConnection(await readInputs());
    const remote = await connectRemote(settings);
    try {
      await cancelJob(remote, savedJob.jobId, settings.loginModules);
      core.info(`Cancelled job ${savedJob.jobId}: the main step ended before it did.`);
    } finally {
      remote.close();
    }
  } catch (e) {
    core.warning(`Could not cancel job ${savedJob.jobId}: ${e instanceof Error ? e.message : String(e)}. Cancel it by hand: scancel ${savedJob.jobId}`);
  }
}

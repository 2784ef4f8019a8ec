// The main step: inputs → core delivery → outputs, summary, and a failed step if the job did not pass.
import * as core from '@actions/core';
import { deliver } from '../core/deliver.js';
import { checksTable, doctor } from '../core/doctor.js';
import { PreflightError } from '../core/errors.js';
import { preflightFailureMessage } from '../core/preflight.js';
import { type Settings, parseSettings } from '../core/settings.js';
import { githubContext, readInputs } from './inputs.js';
import { actionReporter } from './reporter.js';
import { saveHold, saveJobDir, saveJobDone, saveJobId } from './state.js';
import { setOutputs, writeChecksSummary, writeSummary } from './summary.js';

/** preflight-only: the checks as a table in the log and the summary; a failed check fails the step. */
async function preflightOnly(settings: Settings): Promise<void> {
  const checks = await doctor(settings, actionReporter());
  core.info(checksTable(checks));
  await writeChecksSummary(checks);
  const failed = preflightFailureMessage(checks);
  if (failed) throw new PreflightError(failed);
}

export async function run(): Promise<void> {
  // The runner sends SIGINT on cancel (then SIGTERM, then kills us after ~10 s): cancel the job at once.
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const settings = parseSettings(await readInputs(), githubContext());
    if (settings.preflightOnly) return await preflightOnly(settings);
    const result = await deliver(settings, actionReporter(), {
      signal: controller.signal,
      onRunNamed: ({ hold }) => saveHold(hold),
      onJobPrepared: ({ jobDir }) => saveJobDir(jobDir),
      onJobSubmitted: ({ jobId }) => {
        saveJobId(jobId);
        core.setOutput('job-id', jobId);
      },
      onJobEnded: saveJobDone,
    });
    setOutputs(result);
    await writeSummary(result);
    if (result.error) throw result.error;
    core.info(`${result.message} (job ${result.jobId}, ${result.sifPath})`);
  } catch (e) {
    core.setFailed(e instanceof Error ? e.message : String(e));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

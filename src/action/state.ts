// What main hands to post, through the runner's GITHUB_STATE file.
import * as core from '@actions/core';

/** Set on the first (main) run, so the second run of the same bundle knows it is the post step. */
export const isPost = !!core.getState('isPost');
if (!isPost) core.saveState('isPost', 'true');

export const savedJob = {
  jobId: core.getState('jobId'),
  /** Saved before sbatch runs, so that post finds a job whose id main never learnt. */
  jobDir: core.getState('jobDir'),
  jobDone: core.getState('jobDone') === 'true',
  /** The run's hold on the image, saved before the first round trip takes it: post releases it if no job was submitted. */
  hold: core.getState('hold'),
};

export function saveHold(hold: string): void {
  core.saveState('hold', hold);
}

export function saveJobDir(jobDir: string): void {
  core.saveState('jobDir', jobDir);
}

export function saveJobId(jobId: string): void {
  core.saveState('jobId', jobId);
}

export function saveJobDone(): void {
  core.saveState('jobDone', 'true');
}

// What main hands to post, through the runner's GITHUB_STATE file.
import * as core from '@actions/core';

/** Set on the first (main) run, so the second run of the same bundle knows it is the post step. */
export const isPost = !!core.getState('isPost');
if (!isPost) core.saveState('isPost', 'true');

export const savedJob = {
  jobId: core.getState('jobId'),
  jobDone: core.getState('jobDone') === 'true',
};

export function saveJobId(jobId: string): void {
  core.saveState('jobId', jobId);
}

export function saveJobDone(): void {
  core.saveState('jobDone', 'true');
}

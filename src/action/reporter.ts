// The core's Reporter, backed by the step log. Log groups cannot nest, so a new group ends the open one.
import { randomBytes } from 'node:crypto';
import * as core from '@actions/core';
import type { Reporter } from '../core/reporter.js';

export function actionReporter(): Reporter {
  let open = false;
  return {
    info: (m) => core.info(m),
    // The runner honours workflow commands in a step's output (::save-state::, ::set-output::,
    // ::add-mask::, ...): fence data with stop-commands and a token it cannot guess.
    output: (lines) => {
      if (lines.length === 0) return;
      const token = randomBytes(16).toString('hex');
      core.info(`::stop-commands::${token}\n${lines.join('\n')}\n::${token}::`);
    },
    progress: (m) => core.info(m),
    warning: (m) => core.warning(m),
    debug: (m) => core.debug(m),
    group: (title) => {
      if (open) core.endGroup();
      core.startGroup(title);
      open = true;
    },
    endGroup: () => {
      if (open) core.endGroup();
      open = false;
    },
    secret: (v) => core.setSecret(v),
  };
}

// The core's Reporter, backed by the step log. Log groups cannot nest, so a new group ends the open one.
import * as core from '@actions/core';
import type { Reporter } from '../core/reporter.js';

export function actionReporter(): Reporter {
  let open = false;
  return {
    info: (m) => core.info(m),
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

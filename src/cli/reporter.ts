// The core's Reporter on a terminal: plain lines on stderr (stdout is kept for --json), secrets masked.
import type { Reporter } from '../core/reporter.js';

export function cliReporter(write: (s: string) => void = (s) => process.stderr.write(s), verbose = !!process.env.RIVIERA_DEBUG): Reporter {
  const secrets: string[] = [];
  const mask = (s: string) => secrets.reduce((acc, v) => acc.split(v).join('***'), s);
  const line = (s: string) => write(mask(s) + '\n');
  return {
    info: line,
    warning: (m) => line(`warning: ${m}`),
    debug: (m) => verbose && line(`debug: ${m}`),
    group: (title) => line(`==> ${title}`),
    endGroup: () => undefined,
    secret: (v) => {
      if (v) secrets.push(v);
    },
  };
}

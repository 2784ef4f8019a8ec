// The core's Reporter on a terminal: lines on stderr (stdout is kept for results and --json),
// progress rewritten in place on a TTY, secrets masked.
import type { Reporter } from '../core/reporter.js';

export function cliReporter(
  write: (s: string) => void = (s) => process.stderr.write(s),
  tty = !!process.stderr.isTTY,
  verbose = !!process.env.RIVIERA_DEBUG,
): Reporter {
  const secrets: string[] = [];
  let inPlace = false;
  const mask = (s: string) => secrets.reduce((acc, v) => acc.split(v).join('***'), s);
  const line = (s: string) => {
    write((inPlace ? '\r\x1b[K' : '') + mask(s) + '\n');
    inPlace = false;
  };
  return {
    info: line,
    output: (lines) => lines.forEach(line),
    warning: (m) => line(`warning: ${m}`),
    debug: (m) => {
      if (verbose) line(`debug: ${m}`);
    },
    group: (title) => line(`==> ${title}`),
    endGroup: () => undefined,
    progress: (m) => {
      if (!tty) return line(m);
      write('\r\x1b[K' + mask(m));
      inPlace = true;
    },
    secret: (v) => {
      if (v) secrets.push(v);
    },
  };
}

// A Reporter that records every call, for tests of what the core tells the person watching.
import type { Reporter } from '../../src/core/reporter.js';

export type Call = [method: keyof Reporter, arg?: string];

export interface FakeReporter extends Reporter {
  calls: Call[];
  /** The messages of one kind, in order. */
  of(method: keyof Reporter): string[];
  /** What was shown as lines: messages and output, in order. */
  infos(): string[];
  /** Only the output (job or build output, handed on as data). */
  outputs(): string[];
  warnings(): string[];
}

export function fakeReporter(): FakeReporter {
  const calls: Call[] = [];
  const of = (method: keyof Reporter) => calls.filter((c) => c[0] === method).map((c) => c[1] ?? '');
  return {
    calls,
    of,
    infos: () => calls.filter((c) => c[0] === 'info' || c[0] === 'output').map((c) => c[1] ?? ''),
    outputs: () => of('output'),
    warnings: () => of('warning'),
    info: (m) => void calls.push(['info', m]),
    output: (lines) => lines.forEach((l) => void calls.push(['output', l])),
    warning: (m) => void calls.push(['warning', m]),
    progress: (m) => void calls.push(['progress', m]),
    debug: (m) => void calls.push(['debug', m]),
    group: (t) => void calls.push(['group', t]),
    endGroup: () => void calls.push(['endGroup']),
    secret: (v) => void calls.push(['secret', v]),
  };
}

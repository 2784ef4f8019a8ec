// What the core tells the person watching. The action backs it with @actions/core (log groups,
// warnings); the CLI with plain lines on stderr. The core never prints on its own.

export interface Reporter {
  info(message: string): void;
  /**
   * Lines of the job's or docker build's output: data, shown as they are but never acted on (a line
   * of it that looks like a workflow command is not one).
   */
  output(lines: string[]): void;
  warning(message: string): void;
  debug(message: string): void;
  /** Start a titled section of the log (a collapsible group in the step log); ends the previous one. */
  group(title: string): void;
  endGroup(): void;
  /** A progress line that replaces the previous one where the output allows it (a terminal). */
  progress(message: string): void;
  /** Mark a value as secret, so that it is masked wherever it would be printed. */
  secret(value: string): void;
}

/** Run `fn` inside a log group. */
export async function inGroup<T>(reporter: Reporter, title: string, fn: () => Promise<T>): Promise<T> {
  reporter.group(title);
  try {
    return await fn();
  } finally {
    reporter.endGroup();
  }
}

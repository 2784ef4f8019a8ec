// Typed errors: each kind says what went wrong and what to do next, and carries the exit code the
// CLI returns for it (documented in the README).

export const ExitCode = {
  ok: 0,
  failure: 1,
  input: 2,
  connection: 3,
  hostKey: 4,
  jobFailed: 5,
  jobInterrupted: 6,
  build: 7,
} as const;

/** What each exit code means, for the CLI's help (the README's table says the same at more length). */
export const EXIT_CODE_MEANINGS: Record<(typeof ExitCode)[keyof typeof ExitCode], string> = {
  0: 'passed',
  1: 'other failure',
  2: 'bad input',
  3: 'connection',
  4: 'host key refused',
  5: 'job failed (smoke test or build)',
  6: 'job cancelled, timed out or lost',
  7: 'docker build/save failed',
};

export abstract class DeliveryError extends Error {
  abstract readonly exitCode: number;
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(hint ? `${message}\n${hint}` : message);
    this.name = new.target.name;
  }
}

/** A bad input value: named, refused before anything is built, connected or written. */
export class InputError extends DeliveryError {
  readonly exitCode = ExitCode.input;
  constructor(
    readonly input: string,
    readonly problem: string,
    hint?: string,
  ) {
    super(`Input '${input}': ${problem}`, hint);
  }
}

/** The base of an error kind that adds nothing to DeliveryError but its exit code. */
function withExitCode<C extends number>(code: C) {
  return class extends DeliveryError {
    readonly exitCode = code;
  };
}

/** The server's host key is not the one recorded in known-hosts. */
export class HostKeyError extends withExitCode(ExitCode.hostKey) {}

/** The SSH connection could not be made, or was lost and could not be re-established. */
export class ConnectionError extends withExitCode(ExitCode.connection) {}

/** A command on the cluster failed (exit code and the tail of its stderr in the message). */
export class RemoteCommandError extends DeliveryError {
  readonly exitCode = ExitCode.failure;
  constructor(
    what: string,
    readonly code: number | null,
    readonly stderr: string,
    hint?: string,
  ) {
    super(`${what} failed on the cluster (exit ${code ?? 'unknown'})${stderr ? `: ${tail(stderr)}` : ''}`, hint);
  }
}

/** docker build / docker save failed, or the saved archive could not be read. */
export class BuildError extends withExitCode(ExitCode.build) {}

/** The Slurm job ran but did not pass: the smoke test exited non-zero, or the .sif build failed. */
export class JobFailedError extends withExitCode(ExitCode.jobFailed) {}

/** The Slurm job was cancelled, timed out, ran out of memory or lost its node. */
export class JobInterruptedError extends withExitCode(ExitCode.jobInterrupted) {}

/**
 * The cluster refuses what the inputs ask for (partition, GPUs, time, modules, runtime, sbatch's
 * test, writable directories): found by preflight before anything was saved, sent or submitted.
 * Each line names the input and what the cluster offers.
 */
export class PreflightError extends withExitCode(ExitCode.input) {}

function tail(text: string, lines = 10): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export function exitCodeOf(err: unknown): number {
  return err instanceof DeliveryError ? err.exitCode : ExitCode.failure;
}

// The typed errors: each kind carries its name, its exit code and the hint after its message.
import {
  BuildError,
  ConnectionError,
  DeliveryError,
  ExitCode,
  HostKeyError,
  InputError,
  JobFailedError,
  JobInterruptedError,
  PreflightError,
  RemoteCommandError,
  exitCodeOf,
} from '../../src/core/errors.js';

test.each<[string, DeliveryError, number]>([
  ['HostKeyError', new HostKeyError('refused', 'check it'), ExitCode.hostKey],
  ['ConnectionError', new ConnectionError('lost', 'check it'), ExitCode.connection],
  ['BuildError', new BuildError('no docker', 'check it'), ExitCode.build],
  ['JobFailedError', new JobFailedError('exit 3', 'check it'), ExitCode.jobFailed],
  ['JobInterruptedError', new JobInterruptedError('cancelled', 'check it'), ExitCode.jobInterrupted],
  ['PreflightError', new PreflightError('no partition', 'check it'), ExitCode.input],
])('%s: its own name and class, its exit code, the hint on the next line', (name, err, code) => {
  expect(err.name).toBe(name);
  expect(err.constructor.name).toBe(name);
  expect(err).toBeInstanceOf(DeliveryError);
  expect(err).toBeInstanceOf(Error);
  expect(err.exitCode).toBe(code);
  expect(exitCodeOf(err)).toBe(code);
  expect(err.hint).toBe('check it');
  expect(err.message.split('\n')[1]).toBe('check it');
});

test('the kinds are told apart by instanceof', () => {
  const err: unknown = new ConnectionError('lost');
  expect(err instanceof ConnectionError).toBe(true);
  expect(err instanceof HostKeyError).toBe(false);
  expect(new HostKeyError('x') instanceof ConnectionError).toBe(false);
  expect(new ConnectionError('lost').message).toBe('lost');
});

test('an input error names the input; a remote command error its exit and the tail of stderr', () => {
  const input = new InputError('gpus', 'must be a whole number');
  expect([input.name, input.message, input.exitCode]).toEqual(['InputError', "Input 'gpus': must be a whole number", ExitCode.input]);
  const remote = new RemoteCommandError('Polling', 2, Array.from({ length: 12 }, (_, i) => `line ${i}`).join('\n'));
  expect(remote.message).toBe(`Polling failed on the cluster (exit 2): ${Array.from({ length: 10 }, (_, i) => `line ${i + 2}`).join('\n')}`);
  expect(exitCodeOf(remote)).toBe(ExitCode.failure);
  expect(exitCodeOf(new Error('other'))).toBe(ExitCode.failure);
});

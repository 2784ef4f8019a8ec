// A delivery's verdict on a followed job, when it cancelled the job or ran out of time.
import { verdictOf } from '../../src/core/deliver.js';
import { type FollowState, initialFollowState } from '../../src/core/poll.js';

const state = (over: Partial<FollowState>): FollowState => ({ ...initialFollowState(), ...over });

test('a timeout whose scancel found the job already completed keeps the real verdict', () => {
  const v = verdictOf(
    { timeoutSeconds: 60 },
    { timedOut: true, cancelled: false, state: state({ state: 'COMPLETED', status: { phase: 'smoke-test', code: 0 } }) },
  );
  expect(v).toEqual({ ok: true, state: 'COMPLETED', exitCode: 0 });
  const failed = verdictOf(
    { timeoutSeconds: 60 },
    { timedOut: true, cancelled: false, state: state({ state: 'FAILED', status: { phase: 'smoke-test', code: 3 } }) },
  );
  expect(failed).toMatchObject({ ok: false, state: 'FAILED', exitCode: 3, interrupted: false });
});

test('a timeout that cancelled the job is a TIMEOUT; a cancel is CANCELLED', () => {
  expect(
    verdictOf({ timeoutSeconds: 60 }, { timedOut: true, cancelled: false, state: state({ state: 'CANCELLED', status: { phase: 'smoke-test', code: 143 } }) }),
  ).toMatchObject({ ok: false, state: 'TIMEOUT' });
  expect(verdictOf({ timeoutSeconds: 60 }, { timedOut: false, cancelled: true, state: state({ state: 'RUNNING' }) })).toMatchObject({
    ok: false,
    state: 'CANCELLED',
  });
});

// How the built-in client logs in (pure: the ssh2 options of a target).
import { authOf } from '../../src/core/ssh2remote.js';

describe('authOf', () => {
  test('a key: publickey only, never `none` first (a round trip only to learn what the server wants)', () => {
    expect(authOf({ privateKey: 'KEY', passphrase: 'pw', agent: null })).toEqual({ privateKey: 'KEY', passphrase: 'pw', authHandler: ['publickey'] });
  });

  test("no key: the agent's keys only", () => {
    expect(authOf({ privateKey: '', passphrase: null, agent: '/run/agent.sock' })).toEqual({ agent: '/run/agent.sock', authHandler: ['agent'] });
  });
});

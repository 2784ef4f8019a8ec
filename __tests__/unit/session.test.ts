// Session: work on a connection that survives a flaky link. Scripts really run (in a local home,
// through the shared login-shell wrapper); the connector refuses or drops connections on cue.
import { HostKeyError, ConnectionError, RemoteCommandError } from '../../src/core/errors.js';
import { DEFAULT_RETRY, Session, backoffDelay } from '../../src/core/session.js';
import { FAST_RETRY, LOCAL_TARGET, LocalCluster } from '../helpers/localcluster.js';
import { fakeReporter } from '../helpers/reporter.js';

let cluster: LocalCluster;
beforeEach(() => {
  cluster = new LocalCluster('session-');
});
afterEach(() => cluster.remove());

const session = (reporter = fakeReporter(), policy = FAST_RETRY) => ({ reporter, s: new Session(LOCAL_TARGET, reporter, policy, cluster.connect) });
const echo = (word: string) => async (r: Awaited<ReturnType<Session['remote']>>) => (await r.run('echo', `echo ${word}`)).trim();

test('runs work on one connection and keeps it for the next', async () => {
  const { s, reporter } = session();
  expect(await s.retry('first', echo('one'))).toBe('one');
  expect(await s.retry('second', echo('two'))).toBe('two');
  expect(cluster.connections).toHaveLength(1);
  expect(s.reconnects).toBe(0);
  expect(reporter.warnings()).toEqual([]);
  s.close();
  expect(cluster.connections[0].connected).toBe(false);
});

test('work whose connection drops runs again on a new connection, after saying so', async () => {
  const { s, reporter } = session();
  cluster.dropNext = 1;
  expect(await s.retry('Polling', echo('again'))).toBe('again');
  expect(cluster.connections).toHaveLength(2);
  expect(s.reconnects).toBe(1);
  expect(reporter.warnings()).toEqual([expect.stringMatching(/^Polling: The SSH connection was lost\. Reconnecting in \d+ s \(attempt 1 of 3\)\.$/)]);
  // The same script twice: once lost, once run.
  expect(cluster.scripts).toEqual(['echo again', 'echo again']);
});

test('an unreachable host is tried again with backoff until it answers', async () => {
  const { s, reporter } = session();
  cluster.failConnects = 2;
  expect(await s.retry('Connecting', echo('up'))).toBe('up');
  expect(cluster.connections).toHaveLength(1);
  expect(reporter.warnings().map((w) => /attempt (\d) of 3/.exec(w)?.[1])).toEqual(['1', '2']);
});

test("gives up after the policy's attempts, with the connection error", async () => {
  const { s } = session();
  cluster.failConnects = 10;
  await expect(s.retry('Connecting', echo('never'))).rejects.toThrow(ConnectionError);
  // The first try and three more.
  expect(cluster.failConnects).toBe(10 - 4);
});

test('a failing command is not retried: only a lost connection is', async () => {
  const { s } = session();
  await expect(s.retry('Failing', (r) => r.run('Failing', 'echo broken >&2; exit 3'))).rejects.toThrow(RemoteCommandError);
  expect(cluster.scripts).toHaveLength(1);
  expect(cluster.connections).toHaveLength(1);
});

test('a refused host key is never retried', async () => {
  const refusing = async () => {
    throw new HostKeyError('Host key refused: known-hosts has no entry for [127.0.0.1]:22.');
  };
  const reporter = fakeReporter();
  let attempts = 0;
  const s = new Session(LOCAL_TARGET, reporter, FAST_RETRY, () => (attempts++, refusing()));
  await expect(s.retry('Connecting', echo('x'))).rejects.toThrow(HostKeyError);
  expect(attempts).toBe(1);
  expect(reporter.warnings()).toEqual([]);
});

test('concurrent users (parallel uploads) share one connection attempt', async () => {
  const { s } = session();
  const words = ['a', 'b', 'c', 'd'];
  expect(await Promise.all(words.map((w) => s.retry('Sending', echo(w))))).toEqual(words);
  expect(cluster.connections).toHaveLength(1);
});

test('concurrent users whose connection drops reconnect once, not once each', async () => {
  const { s } = session();
  await s.retry('warm', echo('x'));
  cluster.dropNext = 1;
  const words = ['a', 'b', 'c'];
  expect(await Promise.all(words.map((w) => s.retry('Sending', echo(w))))).toEqual(words);
  expect(cluster.connections).toHaveLength(2);
  expect(s.reconnects).toBe(1);
});

test('a connection lost between two commands is noticed and replaced before the next', async () => {
  const { s, reporter } = session();
  await s.retry('one', echo('1'));
  cluster.connections[0].drop();
  expect(await s.retry('two', echo('2'))).toBe('2');
  expect(reporter.warnings()).toEqual(['The SSH connection was lost; reconnecting.']);
  expect(s.reconnects).toBe(1);
});

test('backoff doubles from the base delay up to the maximum', () => {
  expect([0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(DEFAULT_RETRY, a))).toEqual([1000, 2000, 4000, 8000, 15000, 15000, 15000]);
});

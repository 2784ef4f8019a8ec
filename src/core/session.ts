// A connection to the cluster that survives a flaky link: work that fails because the connection
// dropped is retried on a new connection, after a backoff. Nothing else is retried.
import { ConnectionError } from './errors.js';
import type { Reporter } from './reporter.js';
import { type Connector, connectRemote, describeConnection } from './connect.js';
import type { Remote, SshTarget } from './remote.js';

export interface RetryPolicy {
  /** Reconnection attempts after a drop before giving up. */
  attempts: number;
  /** First backoff in ms; doubles each time, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 8, baseDelayMs: 1000, maxDelayMs: 15_000 };

export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
}

export class Session {
  private current: Remote | null = null;
  /** A connection being made: concurrent users (parallel uploads) share it instead of each connecting. */
  private connecting: Promise<Remote> | null = null;
  /** Reconnections so far (for the log and the benchmarks). */
  reconnects = 0;
  /** Connections made and operations run on them (each at least one command), for the benchmarks' round-trip count. */
  readonly calls = { connections: 0, commands: 0 };

  constructor(
    private readonly target: SshTarget,
    private readonly reporter: Reporter,
    private readonly policy: RetryPolicy = DEFAULT_RETRY,
    /** How to make a connection (a test may hand in its own transport). */
    private readonly connect: Connector = connectRemote,
  ) {}

  /** The live connection, connecting first if needed (a host-key refusal is never retried). */
  remote(): Promise<Remote> {
    if (this.current?.connected) return Promise.resolve(this.current);
    if (!this.connecting) {
      if (this.current) {
        // Dropped between two commands (e.g. between polls): say so, and connect again.
        this.reporter.warning('The SSH connection was lost; reconnecting.');
        this.dropped(this.current);
      }
      this.calls.connections++;
      this.connecting = this.connect(this.target).then(
        (r) => {
          this.reporter.debug(`Connected to ${describeConnection(this.target)}.`);
          this.current = r;
          this.connecting = null;
          return r;
        },
        (e) => {
          this.connecting = null;
          throw e;
        },
      );
    }
    return this.connecting;
  }

  /** Forget a connection that failed (once, however many users saw it fail). */
  private dropped(r: Remote): void {
    if (this.current !== r) return;
    r.close();
    this.current = null;
    this.reconnects++;
  }

  /** Run `fn` on the connection; if the connection drops, reconnect with backoff and run it again. */
  async retry<T>(what: string, fn: (remote: Remote) => Promise<T>): Promise<T> {
    this.calls.commands++;
    for (let attempt = 0; ; attempt++) {
      let remote: Remote | undefined;
      try {
        remote = await this.remote();
        return await fn(remote);
      } catch (e) {
        if (!(e instanceof ConnectionError) || attempt >= this.policy.attempts) throw e;
        const delay = backoffDelay(this.policy, attempt);
        this.reporter.warning(`${what}: ${e.message} Reconnecting in ${(delay / 1000).toFixed(0)} s (attempt ${attempt + 1} of ${this.policy.attempts}).`);
        if (remote) this.dropped(remote);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  close(): void {
    this.current?.close();
    this.current = null;
  }
}

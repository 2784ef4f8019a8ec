// Child processes a test starts (lock holders), killed with their process group after each test.
import { type ChildProcess, spawn } from 'node:child_process';

const running = new Set<ChildProcess>();
export function track<T extends ChildProcess>(child: T): T {
  running.add(child);
  child.on('exit', () => running.delete(child));
  return child;
}

/** Register, in a test file, the clean-up of every tracked process after each test. */
export function killTrackedAfterEach(): void {
  afterEach(() => {
    for (const child of running) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    running.clear();
  });
}

/** A process holding flock on `path` (shared or exclusive) until release() closes its stdin. */
export async function holdLock(path: string, mode: '-s' | '-x') {
  const child = track(
    spawn('bash', ['-c', `exec 8>>"$1"; flock ${mode} 8; echo locked; read -r _`, 'hold', path], { stdio: ['pipe', 'pipe', 'ignore'], detached: true }),
  );
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    child.on('exit', () => reject(new Error('the lock holder exited early')));
  });
  return {
    release: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

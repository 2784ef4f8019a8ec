// Waiting for something another process or a background task brings about.

/** Resolves once `check` holds, looked at every `everyMs`; fails naming `what` after `timeoutMs`. */
export async function eventually(check: () => boolean, timeoutMs = 30_000, what = 'condition', everyMs = 250): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

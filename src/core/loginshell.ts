// How a script is wrapped to run on the cluster, whatever carries it there: in a login shell (on
// Riviera, `module` and with it the Slurm clients exist only there), its output marked off from
// whatever the login profile prints.
import { shq } from './quote.js';

/**
 * Printed before a script's own output: whatever a login profile prints first (a banner, a quota
 * warning) comes before it and is dropped, so that the parsers see only the script's output.
 */
export const OUTPUT_START = '::riviera-output-start::';

/**
 * The remote command for a script, which sshd hands to the user's login shell as `SHELL -c COMMAND`:
 * one line that sh, bash, zsh, tcsh and fish all parse alike (no newline, `!`, `$` or backquote,
 * which tcsh would choke on or expand even inside quotes), so the script travels base64-encoded and
 * bash, as a login shell, decodes and runs it (a script that needs neither `module` nor the
 * profile's PATH, given `login` false, skips the profile: tens of ms of CPU each time). The script runs in a subshell: an `exit` in it would
 * otherwise make the login shell run the user's ~/.bash_logout, whose last status (with `set -e`
 * on, its first failure) replaces the script's.
 */
export function loginShellCommand(script: string, login = true): string {
  const wrapped = `printf '%s\\n' ${shq(OUTPUT_START)}\n(\n${script}\n)\n`;
  return `exec bash ${login ? '-l ' : ''}-c 'source <(base64 -d <<<${Buffer.from(wrapped).toString('base64')})'`;
}

/** Drops stdout up to and including the OUTPUT_START line, chunk by chunk. */
export class PreambleFilter {
  private head: Buffer | null = Buffer.alloc(0);

  /** The part of `chunk` that belongs to the script (empty while still in the preamble). */
  push(chunk: Buffer): Buffer {
    if (this.head === null) return chunk;
    this.head = Buffer.concat([this.head, chunk]);
    const at = this.head.indexOf(`${OUTPUT_START}\n`);
    if (at < 0) return Buffer.alloc(0);
    const rest = this.head.subarray(at + OUTPUT_START.length + 1);
    this.head = null;
    return rest;
  }
}

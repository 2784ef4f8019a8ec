// A real SSH key pair and a known_hosts line for it, made by ssh-keygen, for tests that parse
// settings (the key must parse; nothing connects with it).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function testKeys(host = '[127.0.0.1]:2222'): { privateKey: string; knownHosts: string } {
  const dir = mkdtempSync(join(tmpdir(), 'keys-'));
  try {
    const file = join(dir, 'k');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test@riviera', '-f', file]);
    const [type, b64] = readFileSync(`${file}.pub`, 'utf8').trim().split(' ');
    return { privateKey: readFileSync(file, 'utf8'), knownHosts: `${host} ${type} ${b64}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

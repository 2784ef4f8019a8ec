// Bundles the action (main + post in one file) and the CLI with ncc into dist/, ESM like the sources.
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

// CommonJS dependencies (ssh2's poly1305) read __dirname, which ESM lacks: define it for them.
const prelude =
  "import { fileURLToPath as __rs_fileURLToPath } from 'node:url';\n" +
  "import { dirname as __rs_dirname } from 'node:path';\n" +
  'const __filename = __rs_fileURLToPath(import.meta.url);\n' +
  'const __dirname = __rs_dirname(__filename);\n';

const bundles = [
  { entry: 'src/action/index.ts', out: 'dist/action', shebang: false },
  { entry: 'src/cli/index.ts', out: 'dist/cli', shebang: true },
];
rmSync('dist', { recursive: true, force: true });
for (const { entry, out, shebang } of bundles) {
  execFileSync('npx', ['ncc', 'build', entry, '-o', out, '--target', 'es2022', '--quiet'], { stdio: 'inherit' });
  writeFileSync(`${out}/package.json`, '{ "type": "module" }\n');
  // ncc copies ssh2's Windows Pageant helper because agent.js names it; it is spawned only for the
  // 'pageant' agent, which we never configure (the key is passed in memory).
  rmSync(`${out}/pagent.exe`, { force: true });
  const file = `${out}/index.js`;
  writeFileSync(file, (shebang ? '#!/usr/bin/env node\n' : '') + prelude + readFileSync(file, 'utf8'));
  if (shebang) chmodSync(file, 0o755);
}

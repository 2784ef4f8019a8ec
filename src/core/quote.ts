// The one way a value reaches a remote shell: POSIX single quotes, in which nothing is special
// but the quote itself. Everything the cluster runs is assembled from these pieces.

/** Quote one word for a POSIX shell. */
export function shq(word: string): string {
  if (word.includes('\0')) throw new Error('a NUL byte cannot be passed to a shell');
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Quote every word of an argv and join them into one command line. */
export function shJoin(argv: readonly string[]): string {
  return argv.map(shq).join(' ');
}

/**
 * Split a command line into words as a POSIX shell would, without running or expanding anything:
 * quotes and backslashes group, `$`, backticks, `;`, `|` and the like are kept as plain characters.
 * Used for sbatch-args and smoke-command, which are then passed on as argv (never pasted).
 */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error('unterminated single quote');
      cur += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= line.length) throw new Error('unterminated double quote');
        const d = line[i];
        if (d === '"') break;
        // Inside double quotes a backslash only escapes these, as in sh.
        if (d === '\\' && line[i + 1] === '\n') {
          i += 2;
        } else if (d === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) {
          cur += line[i + 1];
          i += 2;
        } else {
          cur += d;
          i++;
        }
      }
      inWord = true;
      i++;
    } else if (c === '\\') {
      if (i + 1 >= line.length) throw new Error('trailing backslash');
      if (line[i + 1] !== '\n') cur += line[i + 1];
      inWord = true;
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      i++;
    } else {
      cur += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

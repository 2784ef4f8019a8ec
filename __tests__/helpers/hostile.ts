// Values that would run something if they reached a shell unquoted: a file named PWNED appearing is
// the mark of one that escaped its quotes. Tests pass them wherever a value reaches a script.

/** One value with every kind of shell syntax in it, safe in a path (no newline). */
export const HOSTILE = `$(touch PWNED) \`touch PWNED\`; touch PWNED && 'q' "dq" | *`;

/** HOSTILE with a backslash and a newline too, for values that may hold them. */
export const HOSTILE_MULTILINE = `${HOSTILE} \\ \n end`;

/** Each kind of trouble on its own, named. */
export const HOSTILE_VALUES: [name: string, value: string][] = [
  ['command substitution', '$(touch PWNED)'],
  ['backticks', '`touch PWNED`'],
  ['semicolon', 'a; touch PWNED'],
  ['and-and', 'true && touch PWNED'],
  ['pipe', 'x | touch PWNED'],
  ['single quotes', "it's 'quoted'"],
  ['lone single quote', "'"],
  ['quote pairs', `'"'"'`],
  ['double quotes', 'say "hi" "$HOME"'],
  ['newlines', 'line1\nline2\n\n'],
  ['leading newline', '\nx'],
  ['glob star', '*'],
  ['glob pattern', '*.txt ?[ab]'],
  ['tilde', '~'],
  ['tilde path', '~/x'],
  ['spaces', '  two  spaces  '],
  ['tab', 'a\tb'],
  ['empty string', ''],
  ['unicode', 'héllo wörld ✓ 日本語 🚀'],
  ['variable', '$HOME ${PATH} $1 $@'],
  ['backslashes', 'a\\b\\\\c\\'],
  ['redirection', '> PWNED < /etc/passwd 2>&1'],
  ['background', 'sleep 1 & touch PWNED'],
  ['assignment-like', 'A=1'],
  ['option-like', '-n'],
  ['comment', '# not a comment'],
  ['braces', '{a,b} {1..3}'],
  ['history bang', '!! !x'],
  ['parens', '(touch PWNED)'],
  ['all at once', `$(touch PWNED) \`touch PWNED\`; && | ' " \n * ~ é`],
];

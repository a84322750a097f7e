// systemd's own splitting of an ExecStart= value into words (systemd.service(5)
// "Command lines": quotes, C escapes, %% and $$), written from the manual for
// tests: the unit's quoting is checked against it, and the unit itself
// against `systemd-analyze verify`.
export function splitExecStart(value: string): string[] {
  const words: string[] = [];
  let i = 0;
  const esc: Record<string, string> = { n: '\n', t: '\t', '\\': '\\', '"': '"', "'": "'", ' ': ' ' };
  while (i < value.length) {
    while (value[i] === ' ') i++;
    if (i >= value.length) break;
    let word = '';
    let quote: string | undefined;
    let started = false;
    for (; i < value.length; i++) {
      const c = value[i]!;
      if (!quote && c === ' ') break;
      if (!quote && (c === '"' || c === "'") && !started) {
        quote = c;
        started = true;
        continue;
      }
      started = true;
      if (quote && c === quote) {
        quote = undefined;
        i++;
        break;
      }
      if (c === '\\') {
        const n = value[++i]!;
        if (!(n in esc)) throw new Error(`unknown escape \\${n} in ${value}`);
        word += esc[n];
        continue;
      }
      if ((c === '%' || c === '$') && value[i + 1] === c) {
        word += c;
        i++;
        continue;
      }
      if (c === '%' || c === '$') throw new Error(`unescaped ${c} (a specifier or variable) in ${value}`);
      word += c;
    }
    if (quote) throw new Error(`unterminated quote in ${value}`);
    words.push(word);
  }
  return words;
}

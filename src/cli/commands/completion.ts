import type { Command } from 'commander';
import { UsageError } from '../errors';
import { commandPath } from '../help';

/**
 * `calicoctl completion bash`: a bash completion script generated from the
 * command tree itself (sub-commands and flags of each command, profile's
 * words), so it cannot fall behind the CLI.
 */
export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('Print a shell completion script (bash)')
    .argument('<shell>', 'bash')
    .action((shell: string) => {
      if (shell !== 'bash') throw new UsageError(`No completion for shell "${shell}": only bash is supported.`);
      process.stdout.write(bashCompletion(program));
    });
}

/** Pure: the words to offer after each command path ("" is calicoctl itself). */
export function completionTable(program: Command): Map<string, string[]> {
  const table = new Map<string, string[]>();
  const flags = (c: Command) => c.options.filter((o) => !o.hidden && o.long).map((o) => o.long!);
  const walk = (c: Command) => {
    const path = commandPath(c);
    const globals = path === '' ? [] : flags(program);
    table.set(path, [...c.commands.filter((s) => !(s as unknown as { _hidden?: boolean })._hidden).map((s) => s.name()), ...flags(c), ...globals, '--help']);
    for (const s of c.commands) walk(s);
  };
  walk(program);
  // profile's words: `profile show|add|remove`, `profile NAME tag|rule|member ...`.
  const profileFlags = (table.get('profile') ?? []).filter((w) => w.startsWith('-'));
  table.set('profile', ['show', 'add', 'remove', ...profileFlags]);
  table.set('profile *', ['tag', 'rule', 'member', ...profileFlags]);
  table.set('profile * tag', ['show', 'add', 'remove', ...profileFlags]);
  table.set('profile * rule', ['show', 'json', 'update', 'add', 'remove', ...profileFlags]);
  table.set('profile * rule add', ['inbound', 'outbound']);
  table.set('profile * rule remove', ['inbound', 'outbound']);
  table.set('profile * member', ['add', 'remove', ...profileFlags]);
  return table;
}

export function bashCompletion(program: Command): string {
  const table = completionTable(program);
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const cases = [...table.entries()].map(([path, words]) => `    ${quote(path)}) words=${quote(words.join(' '))} ;;`).join('\n');
  return `# bash completion for calicoctl (calicoctl completion bash)
# Install: calicoctl completion bash > /etc/bash_completion.d/calicoctl
_calicoctl_words() {
  local words=''
  case "$1" in
${cases}
  esac
  printf '%s' "$words"
}
_calicoctl() {
  local cur path w i next
  cur="\${COMP_WORDS[COMP_CWORD]}"
  path=''
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ $w == -* ]] && continue
    next="\${path:+$path }$w"
    if [[ -n "$(_calicoctl_words "$next")" ]]; then
      path="$next"
    elif [[ $path == profile && $w != show && $w != add && $w != remove ]]; then
      path='profile *'
    elif [[ -n "$(_calicoctl_words "\${path:+$path }*")" ]]; then
      path="\${path:+$path }*"
    fi
  done
  COMPREPLY=($(compgen -W "$(_calicoctl_words "$path")" -- "$cur"))
}
complete -F _calicoctl calicoctl
`;
}

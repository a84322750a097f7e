// First: V8 settings must be in place before the heap fills (see gc-tuning.ts).
import './gc-tuning';
import './warnings';
import { Command, CommanderError } from 'commander';
import { CliError, describeError, EXIT_USAGE } from './errors';
import { registerCommands } from './commands';
import { printVersion, registerVersion, versionRequest } from './commands/version';
import { addEtcdOptions } from './datastore';
import { registerCompletion } from './commands/completion';
import { profileTopicHelp } from './commands/profile';
import { addHelp } from './help';

/**
 * calicoctl: one program, subcommands registered from ./commands. Errors meant
 * for people are CliError (message to stderr, exit 1, or 2 for missing root);
 * anything else is a bug and prints its stack.
 */
export async function main(argv: string[]): Promise<number> {
  const program = new Command('calicoctl')
    .description('Calico networking for Docker: routable container addresses from IP pools')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  addEtcdOptions(program);
  registerCommands(program);
  registerVersion(program);
  registerCompletion(program);
  addHelp(program);
  try {
    const version = versionRequest(argv.slice(2));
    if (version) {
      // Before commander parses: `calicoctl node --version` prints versions, it starts no node.
      await printVersion(argv.slice(2));
      return 0;
    }
    const topic = profileHelpRequest(argv.slice(2));
    if (topic !== undefined) {
      process.stdout.write(topic);
      return 0;
    }
    const unknown = unknownCommandWithHelp(program, argv.slice(2));
    if (unknown) {
      // Commander would print the parent's help and exit 0: a typo would pass for success.
      process.stderr.write(`error: unknown command '${unknown.word}' (${['calicoctl', ...unknown.path, '--help'].join(' ')} lists the commands)\n`);
      return EXIT_USAGE;
    }
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; usage errors (already printed by commander) exit 2.
      return e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : EXIT_USAGE;
    }
    const known = e instanceof CliError ? e : describeError(e);
    if (known) {
      process.stderr.write(known.message.endsWith('\n') ? known.message : known.message + '\n');
      return known.exitCode;
    }
    process.stderr.write(`Unexpected error executing command.\n${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

/** `calicoctl profile WEB rule --help`: that sub-command's help (commander knows only `profile`). */
function profileHelpRequest(args: string[]): string | undefined {
  if (!args.some((a) => a === '--help' || a === '-h')) return undefined;
  const operands = args.filter((a) => !a.startsWith('-'));
  if (operands[0] !== 'profile') return undefined;
  return profileTopicHelp(operands.slice(1));
}

/**
 * `calicoctl nosuch --help` (or `calicoctl pool nosuch --help`): the word that
 * names no command, where commander would show the parent's help instead.
 */
export function unknownCommandWithHelp(program: Command, args: string[]): { word: string; path: string[] } | undefined {
  if (!args.some((a) => a === '--help' || a === '-h')) return undefined;
  let cmd = program;
  const path: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return undefined;
    if (a.startsWith('-')) {
      const opt = cmd.options.find((o) => o.long === a || o.short === a);
      if (opt && (opt.required || opt.optional) && !a.includes('=')) i++;
      continue;
    }
    if (!cmd.commands.length) return undefined;
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) {
      // A command with operands of its own (profile's words) takes the word itself.
      if (a === 'help' || cmd.registeredArguments.length) return undefined;
      return { word: a, path };
    }
    cmd = sub;
    path.push(a);
  }
  return undefined;
}

if (require.main === module || process.argv[1]?.endsWith('calicoctl')) {
  main(process.argv).then(
    (code) => {
      // Long-running commands (node) keep the event loop alive themselves.
      if (code !== 0) process.exit(code);
    },
    (e) => {
      process.stderr.write(`${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}

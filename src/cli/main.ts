// First: V8 settings must be in place before the heap fills (see gc-tuning.ts).
import './gc-tuning';
import './warnings';
import { Command, CommanderError } from 'commander';
import { CliError, describeError } from './errors';
import { registerCommands } from './commands';
import { printVersion, registerVersion, versionRequest } from './commands/version';
import { addEtcdOptions } from './datastore';

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
  try {
    const version = versionRequest(argv.slice(2));
    if (version) {
      // Before commander parses: `calicoctl node --version` prints versions, it starts no node.
      await printVersion(argv.slice(2));
      return 0;
    }
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; usage errors were already printed by commander.
      return e.exitCode;
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

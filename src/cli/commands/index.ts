import type { Command } from 'commander';
import { registerNode } from './node';
import { registerPool } from './pool';

/** Every calicoctl subcommand is registered here, one module per command. */
export function registerCommands(program: Command): void {
  registerNode(program);
  registerPool(program);
}

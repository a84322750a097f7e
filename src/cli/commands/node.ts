import type { Command } from 'commander';
import { CliError } from '../errors';

/**
 * `calicoctl node`: starts the node process (proxy, Docker plugin, reconciler,
 * ...) in the foreground, or in the background with --detach.
 */
export function registerNode(program: Command): void {
  program
    .command('node')
    .description('Start the Calico node process on this host')
    .option('--ip <IP>', 'this host\'s IPv4 address (BGP peering, as in `calicoctl node --ip=...`)')
    .option('--ip6 <IP6>', 'this host\'s IPv6 address')
    .action(async () => {
      throw new CliError('calicoctl node: not wired yet');
    });
}

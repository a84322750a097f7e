import type { Command } from 'commander';
import { registerNode } from './node';
import { registerPool } from './pool';
import { registerShownodes } from './shownodes';
import { registerStatus } from './status';
import { registerContainer } from './container';
import { registerProfile } from './profile';
import { registerBgppeer } from './bgppeer';
import { registerBgp } from './bgp';
import { registerDiags } from './diags';
import { registerPolicy } from './policy';
import { registerEndpoint } from './endpoint';

/** Every calicoctl subcommand is registered here, one module per command. */
export function registerCommands(program: Command): void {
  registerNode(program);
  registerPool(program);
  registerShownodes(program);
  registerStatus(program);
  registerContainer(program);
  registerProfile(program);
  registerBgppeer(program);
  registerBgp(program);
  registerDiags(program);
  registerPolicy(program);
  registerEndpoint(program);
}

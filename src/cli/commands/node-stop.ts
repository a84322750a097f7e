// `calicoctl node stop [--force]`, as 2015 had it: refuses while this host has
// endpoints unless --force; stops the node process (SIGTERM, bounded) and
// removes the host's registration. Unlike 2015 it never deletes endpoint
// records or addresses of containers that still run (calicoctl #497: a
// `node stop --force` in a systemd unit wiped every container's policy).
// A stopped node leaves its iptables chains and ipsets in place (running
// containers keep being filtered); --force, once the node has exited,
// removes every kernel object of ours (policy and NAT outgoing alike) and
// nothing that is not ours.
import type { Command } from 'commander';
import { EndpointStore, HostStore } from '../../datastore';
import { withDatastore } from '../datastore';
import { CliError } from '../errors';
import { runningNodePid } from './node-detach';
import { IptablesApplier } from '../../dataplane/applier/iptables-applier';
import { createLogger } from '../../log/logger';
import { isAlive } from '../../process/pids';

interface StopFlags {
  force?: boolean;
}

/** How long the node may take to exit after SIGTERM before it is killed (its own bound is 5 s). */
const EXIT_WAIT_MS = 8000;


async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

/** After the node exited: every chain, hook and ipset of ours goes (applier.removeAll), foreign rules stay. */
async function removeKernelState(): Promise<void> {
  const applier = new IptablesApplier({ log: createLogger({ level: 'warn' }) });
  try {
    await applier.removeAll();
  } catch (e) {
    throw new CliError(`could not remove the node's iptables chains and ipsets: ${(e as Error).message}`);
  }
  process.stdout.write('Removed the node\'s iptables chains and ipsets (policy and NAT outgoing): running containers are no longer filtered\n');
}

export function registerNodeStop(node: Command, opts: () => { stateDir: string; hostname: string }): void {
  node
    .command('stop')
    .description('Stop the Calico node on this host and remove its registration (refused while it has endpoints, unless --force)')
    .option('--force', "stop even though containers on this host still have endpoints (they keep their addresses and records), and remove every iptables chain and ipset of the node's: running containers are then no longer filtered")
    .action(async (flags: StopFlags, cmd: Command) => {
      const { stateDir, hostname } = opts();
      const endpoints = await withDatastore(cmd, async (ds) => (await new EndpointStore(ds).list(hostname)).filter((e) => e.state === 'active')).catch((e) => {
        if (!flags.force) throw e;
        process.stderr.write(`cannot check this host's endpoints (${(e as Error).message}); stopping anyway (--force)\n`);
        return [];
      });
      if (endpoints.length && !flags.force) {
        throw new CliError("Current host has active endpoints so can't be stopped. Force with --force");
      }
      // The registration goes first: the etcd may be the node's own embedded member, gone with it.
      const removed = await withDatastore(cmd, (ds) => new HostStore(ds).unregister(hostname)).then(
        () => true,
        (e) => {
          if (!flags.force) throw e;
          process.stderr.write(`could not remove the host's registration: ${(e as Error).message}\n`);
          return false;
        },
      );
      const pid = runningNodePid(stateDir);
      if (pid) {
        process.stderr.write(`stopping calicoctl node (pid ${pid})...\n`);
        process.kill(pid, 'SIGTERM');
        if (!(await waitForExit(pid, EXIT_WAIT_MS))) {
          process.kill(pid, 'SIGKILL');
          await waitForExit(pid, 2000);
          process.stderr.write(`calicoctl node (pid ${pid}) did not exit within ${EXIT_WAIT_MS / 1000} s: killed\n`);
        }
      } else {
        process.stderr.write(`no calicoctl node is running with state dir ${stateDir}\n`);
      }
      process.stdout.write(removed ? 'Node stopped and all configuration removed\n' : 'Node stopped; its registration was left in etcd\n');
      if (flags.force) await removeKernelState();
    });
}

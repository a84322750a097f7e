// `calicoctl node stop [--force]`, as 2015 had it: refuses while this host has
// endpoints unless --force; stops the node process (SIGTERM, bounded) and
// removes the host's registration. Unlike 2015 it never deletes endpoint
// records or addresses of containers that still run (calicoctl #497: a
// `node stop --force` in a systemd unit wiped every container's policy).
// A stopped node leaves its iptables chains and ipsets in place (running
// containers keep being filtered); --force, once the node has exited,
// removes every kernel object of ours (policy, NAT outgoing, the IP-in-IP
// tunnel's routes, address and device) and nothing that is not ours.
import type { Command } from 'commander';
import { EndpointStore, HostStore, PoolStore } from '../../datastore';
import { TUNNEL_HANDLE_PREFIX } from '../../datastore/pool-store';
import { EtcdIpam } from '../../ipam/ipam';
import { ipipDevice } from '../../names/kernel';
import { readStatusFile } from '../../node/status-file';
import { inSomePool, removeTunnelFromKernel, type TunnelStatus } from '../../tunnel/tunnel';
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

/**
 * --force, after the node exited (a running node would take its tunnel
 * address again): the tunnel's routes, the device when it holds the node's
 * last tunnel address or an address of a pool, and the address's allocation
 * in IPAM. The datastore part is best effort (the node's own embedded member
 * is gone with it): it says what stays and what frees it.
 */
async function removeTunnel(cmd: Command, stateDir: string, hostname: string): Promise<void> {
  const status = readStatusFile(stateDir)?.components.tunnel as TunnelStatus | undefined;
  const device = ipipDevice();
  const bare = (a: string) => a.replace(/\/\d+$/, '');
  const last = status?.address ? bare(status.address) : undefined;
  // Routes of ours are known by their protocol; the device by the address the node last gave it.
  const routes = await removeTunnelFromKernel(device, (addrs) => addrs.some((a) => bare(a) === last));
  if (!status?.enabled && routes === 0) return;
  let released = true;
  try {
    const pools = await withDatastore(cmd, async (ds) => {
      await new EtcdIpam(ds).releaseByHandle(TUNNEL_HANDLE_PREFIX + hostname);
      return new PoolStore(ds).list(4);
    });
    // After a restart the status may not name the address: an address of a pool makes the device ours too.
    await removeTunnelFromKernel(device, (addrs) => addrs.some(inSomePool(pools)));
  } catch (e) {
    released = false;
    process.stderr.write(
      `could not release the IP-in-IP tunnel's address in IPAM (${(e as Error).message}); ` +
        `it is released when this host's node next starts without IP-in-IP, or by \`calicoctl node remove ${hostname}\` from another host\n`,
    );
  }
  process.stdout.write(`Removed the IP-in-IP tunnel (${routes} route(s), its address${released ? ' and its allocation' : ''})\n`);
}

export function registerNodeStop(node: Command, opts: () => { stateDir: string; hostname: string }): void {
  node
    .command('stop')
    .description('Stop the Calico node on this host and remove its registration (refused while it has endpoints, unless --force)')
    .option('--force', "stop even though containers on this host still have endpoints (they keep their addresses and records), and remove every iptables chain and ipset of the node's and its IP-in-IP tunnel (routes, address, device): running containers are then no longer filtered")
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
      if (flags.force) {
        await removeKernelState();
        await removeTunnel(cmd, stateDir, hostname);
      }
    });
}

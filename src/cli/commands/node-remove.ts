// `calicoctl node remove --hostname H [--remove-endpoints]`: an operator
// removes a host that is never coming back. Nothing but a host's own
// reconciler releases what it holds, so without this a dead host kept its
// addresses, blocks, endpoint records (and so its containers' places in
// every other host's tag ipsets) and its BGP registration forever.
//
// Refused while H's node is alive (its lease holds /calico/v1/host/H/node).
// Otherwise, in this order, each step a guarded transaction (the node key
// must still be absent, so a node that comes back midway stops it):
//   1. endpoint records (only with --remove-endpoints; refused without it
//      while there are any): every other host's policy forgets its
//      containers before their addresses can be handed out again;
//   2. addresses the host allocated, its blocks and block affinities;
//   3. its host keys (bird_ip, bird6_ip, bgp_as, its BGP peers, config):
//      the other hosts drop it from their BGP mesh.
// A run cut short leaves a consistent state; running it again finishes.
// When nothing of H is left it says so and exits 0.
import type { Command } from 'commander';
import { checkId, HostLease, HostRecords, keys } from '../../datastore';
import type { Datastore, Guard } from '../../datastore';
import { IpamContext } from '../../ipam/context';
import { releaseHost, surveyHost } from '../../ipam/gc';
import { withDatastore } from '../datastore';
import { CliError, UsageError } from '../errors';
import { startProgress } from '../progress';

interface RemoveFlags {
  hostname: string;
  removeEndpoints?: boolean;
}

/** What is left of a host in etcd. */
export interface HostSurvey {
  endpoints: number;
  hostKeys: number;
  allocations: number;
  blocks: number;
  affinities: number;
}

export function isGone(s: HostSurvey): boolean {
  return s.endpoints + s.hostKeys + s.allocations + s.blocks + s.affinities === 0;
}

/** Pure: the refusal while a node holds the host name. */
export function aliveMessage(host: string, l: HostLease): string {
  const who = l.holder ? `node pid ${l.holder.pid} on machine ${l.holder.machine}, state dir ${l.holder.stateDir}` : 'an unreadable holder';
  const lease =
    l.leaseId === '0'
      ? 'a key without a lease, which only its node removes'
      : `lease ${l.leaseId}, TTL ${l.grantedS ?? '?'} s, ${l.ttlS !== undefined && l.ttlS >= 0 ? `${l.ttlS} s left` : 'expiring'} unless its node renews it`;
  return (
    `Host ${host} is alive: its node holds the registration lease ${l.key} (${lease}; ${who}). ` +
    `Stop that node (calicoctl node stop on ${host}); if it died, its lease expires within ${l.grantedS ?? 'its TTL in'} s: run this again then. Nothing was changed.`
  );
}

/** Pure: the refusal while the host has endpoint records and --remove-endpoints was not given. */
export function endpointsMessage(host: string, n: number): string {
  return (
    `Host ${host} still has ${n} endpoint record${n === 1 ? '' : 's'} (its containers, as every host's policy sees them): ` +
    `rerun with --remove-endpoints to remove ${n === 1 ? 'it' : 'them'} together with its addresses. Nothing was changed.`
  );
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function registerNodeRemove(node: Command): void {
  node
    .command('remove')
    .description(
      "Remove a dead host from the datastore: release its addresses, blocks and registration (refused while its node is alive; " +
        'refused while it has endpoint records unless --remove-endpoints). Run it again to finish a removal that was cut short',
    )
    .option('--hostname <HOSTNAME>', 'the host to remove, as its node registered it (calicoctl node --hostname); required')
    .option('--remove-endpoints', "also remove the host's endpoint records (its containers leave every other host's policy)")
    .action(async (flags: RemoveFlags, cmd: Command) => {
      // `node`'s own --hostname takes the flag when it follows `remove` (commander gives it to the parent): read both.
      const host = (flags.hostname ?? cmd.optsWithGlobals().hostname) as string | undefined;
      if (host === undefined) throw new UsageError("error: required option '--hostname <HOSTNAME>' not specified: the host to remove");
      try {
        checkId('host name', host);
      } catch (e) {
        throw new UsageError((e as Error).message.replace(/^invalid/, 'Invalid'));
      }
      await withDatastore(cmd, (ds) => removeHost(ds, host, flags.removeEndpoints === true), `Checking host ${host}`);
    });
}

async function removeHost(ds: Datastore, host: string, removeEndpoints: boolean): Promise<void> {
  const records = new HostRecords(ds);
  const lease = await records.nodeLease(host);
  if (lease) throw new CliError(aliveMessage(host, lease));
  // Every step compares the node key's absence: a node coming back stops the removal.
  const guard: Guard = [{ key: keys.hostNode(host), modRevision: '0' }];
  const ctx = new IpamContext(ds);
  const ipam = await surveyHost(ctx, host);
  const survey: HostSurvey = {
    endpoints: (await records.endpointRecords(host)).length,
    hostKeys: (await records.hostKeys(host)).length,
    ...ipam,
  };
  if (isGone(survey)) {
    process.stdout.write(`Host ${host} is already gone: nothing of it is left in etcd.\n`);
    return;
  }
  if (survey.endpoints && !removeEndpoints) throw new CliError(endpointsMessage(host, survey.endpoints));
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(
    `Removing host ${host} (no node holds ${keys.hostNode(host)}): ${plural(survey.endpoints, 'endpoint record')}, ` +
      `${plural(survey.allocations, 'address', 'addresses')}, ${plural(survey.blocks, 'block')}, ${plural(survey.hostKeys, 'host key')}`,
  );
  const progress = startProgress(`removing the endpoint records of ${host}`);
  try {
    const eps = await records.removeEndpointRecords(host, guard, (done, total) =>
      progress.update(`removing the endpoint records of ${host}: ${done}/${total}`),
    );
    out(`  endpoint records: ${eps} removed`);
    progress.update(`releasing the addresses and blocks of ${host}`);
    const r = await releaseHost(ctx, host, guard, (done, total) => progress.update(`releasing the addresses and blocks of ${host}: block ${done}/${total}`));
    out(
      `  addresses: ${r.addresses} released; blocks: ${r.blocksRemoved} removed` +
        (r.blocksReleased ? `, ${r.blocksReleased} kept without an owner (they hold other hosts' borrowed addresses)` : '') +
        (r.affinities ? `; ${plural(r.affinities, 'stale block claim')} removed` : ''),
    );
    progress.update(`removing the keys of host ${host}`);
    const hk = await records.removeHostKeys(host, guard);
    out(`  host keys: ${hk} removed (registration, BGP settings and peers)`);
  } finally {
    progress.stop();
  }
  out(`Host ${host} removed.`);
}

import type { Command } from 'commander';
import { BgpConfigStore, Endpoint, EndpointStore, Host, HostStore } from '../../datastore';
import { withDatastore } from '../datastore';
import { addOutputOption, outputFormat, renderJson, renderTable } from '../output';

export interface NodeSummary {
  host: string;
  workloadType: string;
  workloads: number;
}

export interface NodeDetail {
  host: string;
  workloadType: string | null;
  workloadId: string | null;
  endpointId: string | null;
  addresses: string[];
  mac: string | null;
  state: string | null;
}

/** Every host that is registered or has endpoints, sorted. */
function hostNames(hosts: string[], endpoints: Endpoint[]): string[] {
  return [...new Set([...hosts, ...endpoints.map((e) => e.host)])].sort();
}

/** `shownodes`: one row per host (N/A, 0 for a host without workloads, as in 2015). */
export function summarise(hosts: string[], endpoints: Endpoint[]): NodeSummary[] {
  return hostNames(hosts, endpoints).map((host) => {
    const workloads = new Set(endpoints.filter((e) => e.host === host).map((e) => e.containerId)).size;
    return { host, workloadType: workloads ? 'docker' : 'N/A', workloads };
  });
}

/** `shownodes --detailed`: one row per endpoint; a host without any gets a row of None. */
export function detail(hosts: string[], endpoints: Endpoint[]): NodeDetail[] {
  const out: NodeDetail[] = [];
  for (const host of hostNames(hosts, endpoints)) {
    const eps = endpoints
      .filter((e) => e.host === host)
      .sort((a, b) => a.containerId.localeCompare(b.containerId) || a.endpointId.localeCompare(b.endpointId));
    if (!eps.length) {
      out.push({ host, workloadType: null, workloadId: null, endpointId: null, addresses: [], mac: null, state: null });
    }
    for (const e of eps) {
      out.push({
        host,
        workloadType: 'docker',
        workloadId: e.containerId,
        endpointId: e.endpointId,
        addresses: [...e.ipv4_nets, ...e.ipv6_nets],
        mac: e.mac,
        state: e.state,
      });
    }
  }
  return out;
}

const none = (v: string | null) => v ?? 'None';

export interface NodeBgp {
  host: string;
  ipv4: string | null;
  ipv6: string | null;
  as: string;
  /** The AS is the host's own (`calicoctl node --as`), not the global default. */
  ownAs: boolean;
}

/** Each registered host's BGP address(es) and AS (its own, else the global one). */
export function bgpRows(hosts: Host[], globalAs: string): NodeBgp[] {
  return [...hosts]
    .sort((a, b) => a.host.localeCompare(b.host))
    .map((h) => ({ host: h.host, ipv4: h.ip ?? null, ipv6: h.ip6 || null, as: h.as ?? globalAs, ownAs: h.as !== undefined }));
}

/** Appended under the 2015 tables (whose columns stay as they were): how the hosts peer. */
export function renderBgpTable(rows: NodeBgp[]): string {
  return renderTable(
    ['Host', 'BGP IPv4', 'BGP IPv6', 'AS'].map((header) => ({ header })),
    rows.map((r) => [r.host, none(r.ipv4), none(r.ipv6), r.ownAs ? r.as : `${r.as} (global)`]),
  );
}

/** The 2015 tables; ids are cut to 12 characters as docker ps does (JSON keeps them whole). */
export function renderShownodes(detailed: boolean, hosts: string[], endpoints: Endpoint[]): string {
  if (!detailed) {
    return renderTable(
      [{ header: 'Host' }, { header: 'Workload Type' }, { header: 'Number of workloads' }],
      summarise(hosts, endpoints).map((r) => [r.host, r.workloadType, r.workloads]),
    );
  }
  return renderTable(
    ['Host', 'Workload Type', 'Workload ID', 'Endpoint ID', 'Addresses', 'MAC', 'State'].map((header) => ({ header })),
    detail(hosts, endpoints).map((r) => [
      r.host,
      none(r.workloadType),
      r.workloadId ? r.workloadId.slice(0, 12) : 'None',
      r.endpointId ? r.endpointId.slice(0, 12) : 'None',
      r.addresses.length ? r.addresses.join('\n') : 'None',
      none(r.mac),
      none(r.state),
    ]),
  );
}

/** `calicoctl shownodes [--detailed]`: hosts and the workloads on them, then each host's BGP address(es) and AS. */
export function registerShownodes(program: Command): void {
  const cmd = program
    .command('shownodes')
    .description('Show the hosts running Calico and their workloads')
    .option('--detailed', 'one row per endpoint: workload, endpoint, addresses, MAC, state');
  addOutputOption(cmd).action(async (flags: { detailed?: boolean; output?: string }, c: Command) => {
    const format = outputFormat(flags.output);
    const { registered, endpoints, globalAs } = await withDatastore(c, async (ds) => ({
      registered: await new HostStore(ds).list(),
      endpoints: await new EndpointStore(ds).list(),
      globalAs: await new BgpConfigStore(ds).getAs(),
    }));
    const hosts = registered.map((h) => h.host);
    const bgp = bgpRows(registered, globalAs);
    if (format === 'json') {
      // JSON keeps its row arrays as they were (scripts read them).
      process.stdout.write(renderJson(flags.detailed ? detail(hosts, endpoints) : summarise(hosts, endpoints)));
      return;
    }
    process.stdout.write(renderShownodes(flags.detailed === true, hosts, endpoints) + (bgp.length ? '\n' + renderBgpTable(bgp) : ''));
  });
}

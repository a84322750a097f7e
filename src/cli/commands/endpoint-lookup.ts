// Finding a container's endpoints from any host (`endpoint show`, `policy
// trace`): the datastore knows every endpoint by container id and host; a
// container *name* is known to the Docker daemon of its own host, and to
// IPAM when the proxy created the container (the allocation's "name"
// attribute). So: an id or unique id prefix, an address, a name local
// Docker knows, then a name IPAM recorded — in that order.
import type { Datastore, Endpoint } from '../../datastore';
import { isAddress, parseAddress, parseCidr, cidrContains } from '../../address/cidr';
import { EtcdIpam } from '../../ipam/ipam';
import { OWNER_NAME_ATTR } from '../../ipam/owner';
import { dockerClient } from '../../node/docker-client';
import { CliError } from '../errors';

export interface FoundContainer {
  containerId: string;
  host: string;
  /** The container's name, when Docker on this host or IPAM knows it. */
  name?: string;
  endpoints: Endpoint[];
}

/** The endpoints grouped by container, each group sorted by endpoint id. */
export function byContainer(endpoints: Endpoint[]): Map<string, Endpoint[]> {
  const m = new Map<string, Endpoint[]>();
  for (const e of endpoints) {
    const list = m.get(e.containerId);
    if (list) list.push(e);
    else m.set(e.containerId, [e]);
  }
  for (const list of m.values()) list.sort((a, b) => (a.endpointId < b.endpointId ? -1 : 1));
  return m;
}

/** Endpoints one of whose nets holds the address. */
export function endpointsWithAddress(endpoints: Endpoint[], address: string): Endpoint[] {
  const a = parseAddress(address);
  return endpoints.filter((e) => [...e.ipv4_nets, ...e.ipv6_nets].some((n) => cidrContains(parseCidr(n), a.family, a.value)));
}

/** Containers whose id is, or starts with, `query` (pure). */
export function byIdPrefix(groups: Map<string, Endpoint[]>, query: string): string[] {
  if (groups.has(query)) return [query];
  return [...groups.keys()].filter((id) => id.startsWith(query)).sort();
}

/** The name the proxy recorded for the container's address (IPAM attribute), if any. */
export async function ipamName(ds: Datastore, eps: Endpoint[]): Promise<string | undefined> {
  const ipam = new EtcdIpam(ds);
  for (const e of eps) {
    for (const n of [...e.ipv4_nets, ...e.ipv6_nets]) {
      const alloc = await ipam.lookup(n.slice(0, n.indexOf('/'))).catch(() => undefined);
      const name = alloc?.attrs?.[OWNER_NAME_ATTR];
      if (name && (!alloc!.attrs.container || alloc!.attrs.container === e.containerId)) return name.replace(/^\//, '');
    }
  }
  return undefined;
}

/** Docker on this host: the container's full id and name, or undefined when it does not know it (or is not there). */
export async function localDocker(docker: string, query: string): Promise<{ id: string; name: string } | undefined> {
  try {
    const c = (await dockerClient(docker).getContainer(query).inspect()) as { Id: string; Name?: string };
    return { id: c.Id, name: (c.Name ?? '').replace(/^\//, '') };
  } catch {
    return undefined;
  }
}

/**
 * The container `query` names, among every host's endpoints: an id or a
 * unique prefix, an address of one of its endpoints, a name local Docker
 * knows, or a name the proxy recorded in IPAM. Throws a CliError that says
 * what was tried.
 */
export async function findContainer(ds: Datastore, all: Endpoint[], query: string, docker: string): Promise<FoundContainer> {
  const groups = byContainer(all);
  const found = (id: string, name?: string): FoundContainer => {
    const eps = groups.get(id)!;
    return { containerId: id, host: eps[0]!.host, endpoints: eps, ...(name ? { name } : {}) };
  };
  if (isAddress(query)) {
    const eps = endpointsWithAddress(all, query);
    const ids = [...new Set(eps.map((e) => e.containerId))];
    if (ids.length === 1) return found(ids[0]!);
    if (ids.length > 1) throw new CliError(`Address ${query} is held by several containers' endpoints: ${ids.map((i) => i.slice(0, 12)).join(', ')}.`);
    throw new CliError(`No Calico endpoint has address ${query}.`);
  }
  if (/^[0-9a-f]{1,64}$/.test(query)) {
    const ids = byIdPrefix(groups, query);
    if (ids.length === 1) return found(ids[0]!);
    if (ids.length > 1) throw new CliError(`Container id prefix ${query} is ambiguous: ${ids.map((i) => i.slice(0, 12)).join(', ')}.`);
  }
  const local = await localDocker(docker, query);
  if (local) {
    if (groups.has(local.id)) return found(local.id, local.name);
    throw new CliError(`Container ${query} (${local.id.slice(0, 12)}) has no Calico endpoint: it is not on the Calico network.`);
  }
  const named: string[] = [];
  for (const [id, eps] of groups) {
    if ((await ipamName(ds, eps)) === query.replace(/^\//, '')) named.push(id);
  }
  if (named.length === 1) return found(named[0]!, query.replace(/^\//, ''));
  if (named.length > 1) throw new CliError(`Several containers are named ${query}: ${named.map((i) => i.slice(0, 12)).join(', ')}; give an id.`);
  throw new CliError(
    `Container ${query} was not found: no Calico endpoint has that id or address, Docker on this host does not know it, ` +
      'and no container of that name was created through the proxy.',
  );
}

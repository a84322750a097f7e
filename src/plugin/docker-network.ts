import type Dockerode from 'dockerode';
import type { Logger } from 'pino';
import { Endpoint, makeEndpoint } from '../endpoints/model';
import { calicoNetworkName } from '../names';
import { parseAddress } from './address';

export interface CalicoNetworkOptions {
  /** Driver and IPAM driver name (the plugin socket's name). */
  pluginName: string;
  ipv6: boolean;
  log: Logger;
}

/** A container on the calico network as Docker reports it: its endpoint, its name, its addresses. */
export interface NetworkMember {
  endpoint: Endpoint;
  /** The container's name (messages). */
  name: string;
  /** Its addresses without prefix length. */
  addresses: string[];
}

/** Docker's view of the calico network, or undefined if it does not exist. */
export async function inspectCalicoNetwork(docker: Dockerode): Promise<Dockerode.NetworkInspectInfo | undefined> {
  try {
    return (await docker.getNetwork(calicoNetworkName()).inspect()) as Dockerode.NetworkInspectInfo;
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return undefined;
    throw new Error(`inspecting Docker network ${calicoNetworkName()}: ${(e as Error).message}`);
  }
}

/** Containers with a live endpoint on the calico network (their profiles are not Docker's to say: empty). */
export async function calicoNetworkMembers(docker: Dockerode, host: string): Promise<NetworkMember[]> {
  const net = await inspectCalicoNetwork(docker);
  const containers = (net?.Containers ?? {}) as Record<
    string,
    { Name?: string; EndpointID?: string; MacAddress?: string; IPv4Address?: string; IPv6Address?: string }
  >;
  return Object.entries(containers)
    .filter(([, c]) => c.EndpointID)
    .map(([id, c]) => {
      const ipv4 = c.IPv4Address ? parseAddress(c.IPv4Address, 'IPv4Address').address : undefined;
      const ipv6 = c.IPv6Address ? parseAddress(c.IPv6Address, 'IPv6Address').address : undefined;
      return {
        endpoint: makeEndpoint({ host, containerId: id, endpointId: c.EndpointID!, mac: c.MacAddress ?? '', ipv4, ipv6, profiles: [] }),
        name: c.Name ?? '',
        addresses: [ipv4, ipv6].filter((a): a is string => !!a),
      };
    });
}

/**
 * Creates the host's calico Docker network unless it exists. The subnet is
 * the whole address space so Docker accepts any explicit address; calico
 * pools, not Docker, decide which addresses are valid.
 */
export async function ensureCalicoNetwork(docker: Dockerode, o: CalicoNetworkOptions): Promise<void> {
  const name = calicoNetworkName();
  const existing = await inspectCalicoNetwork(docker);
  if (existing) {
    checkExisting(existing, o);
    return;
  }
  const config: { Subnet: string }[] = [{ Subnet: '0.0.0.0/0' }];
  if (o.ipv6) config.push({ Subnet: '::/0' });
  try {
    await docker.createNetwork({
      Name: name,
      Driver: o.pluginName,
      EnableIPv6: o.ipv6,
      CheckDuplicate: true,
      IPAM: { Driver: o.pluginName, Config: config },
    });
    o.log.info({ network: name, driver: o.pluginName, ipv6: o.ipv6 }, 'created Docker network');
  } catch (e) {
    // Another node process on the same dockerd may have won the race.
    const now = await inspectCalicoNetwork(docker);
    if (now) return checkExisting(now, o);
    throw new Error(`creating Docker network ${name} with driver ${o.pluginName}: ${(e as Error).message}`);
  }
}

function checkExisting(net: Dockerode.NetworkInspectInfo, o: CalicoNetworkOptions): void {
  const name = calicoNetworkName();
  const ipamDriver = net.IPAM?.Driver;
  if (net.Driver !== o.pluginName || ipamDriver !== o.pluginName) {
    throw new Error(
      `Docker network ${name} exists with driver ${net.Driver} and IPAM driver ${ipamDriver}, not ${o.pluginName}: ` +
        `remove it (docker network rm ${name}) and start the node again, or start the node with --plugin-name ${net.Driver}`,
    );
  }
  if (o.ipv6 && !net.EnableIPv6) {
    o.log.warn(
      { network: name },
      `an IPv6 pool exists but Docker network ${name} was created without IPv6; remove the network while no container uses it and restart the node to add IPv6`,
    );
  }
}

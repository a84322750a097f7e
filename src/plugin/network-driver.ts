import type { Logger } from 'pino';
import type { HostDataplane } from '../dataplane/host-dataplane';
import type { EndpointLifecycle } from '../endpoints/lifecycle';
import { Endpoint, addressesOf, makeEndpoint } from '../endpoints/model';
import type { EndpointRegistry } from '../endpoints/registry';
import type { StartTrace } from '../endpoints/start-trace';
import { GATEWAY_V4, GATEWAY_V6, containerMac, hostIfName, peerIfName } from '../names';
import { PluginError, parseAddress } from './address';

export interface NetworkDriverOptions {
  host: string;
  dataplane: HostDataplane;
  endpoints: EndpointRegistry;
  lifecycle: EndpointLifecycle;
  /** Each call timed per container start. */
  trace?: StartTrace;
  log: Logger;
  /** A veth's MTU for its IPv4 address (an IP-in-IP pool's is the tunnel's); undefined: the dataplane's default. */
  endpointMtu?: (ipv4: string | undefined) => number | undefined;
}

export interface CreateEndpointRequest {
  NetworkID: string;
  EndpointID: string;
  Interface?: { Address?: string; AddressIPv6?: string; MacAddress?: string } | null;
}

/** libnetwork's route type for a directly connected destination (no next hop). */
const ROUTE_CONNECTED = 1;

/**
 * The Docker network driver: plumbs each endpoint's host side. The veth is
 * created when Docker creates the endpoint and awaited in Join, so its
 * netlink work overlaps Docker's own bookkeeping in between; Docker moves
 * the peer into the container after Join, before the process starts.
 */
export class NetworkDriver {
  /** Endpoint id -> its host-side setup, awaited by Join. */
  private readonly ready = new Map<string, Promise<void>>();

  constructor(private readonly o: NetworkDriverOptions) {}

  getCapabilities() {
    return { Scope: 'local', ConnectivityScope: 'local' };
  }

  async createNetwork(req: { NetworkID: string; IPv6Data?: unknown[] | null }) {
    if (req.IPv6Data && req.IPv6Data.length) await this.o.dataplane.enableIpv6Forwarding();
    this.o.log.info({ networkId: req.NetworkID, ipv6: !!req.IPv6Data?.length }, 'network created');
    return {};
  }

  deleteNetwork(req: { NetworkID: string }) {
    this.o.log.info({ networkId: req.NetworkID }, 'network deleted');
    return {};
  }

  createEndpoint(req: CreateEndpointRequest) {
    const t0 = this.o.trace?.now();
    const iface = req.Interface ?? {};
    const v4 = iface.Address ? parseAddress(iface.Address, 'endpoint address') : undefined;
    const v6 = iface.AddressIPv6 ? parseAddress(iface.AddressIPv6, 'endpoint IPv6 address') : undefined;
    if (!v4 && !v6) {
      throw new PluginError('Docker gave the endpoint no address: use calico as the network\'s IPAM driver (--ipam-driver)');
    }
    const mac = iface.MacAddress ? iface.MacAddress.toLowerCase() : containerMac(req.EndpointID);
    // The container is named at Join (the lifecycle finds it by the address's reservation).
    const ep = makeEndpoint({ host: this.o.host, containerId: '', endpointId: req.EndpointID, mac, ipv4: v4?.address, ipv6: v6?.address, profiles: [] });
    const setup = this.o.dataplane.addEndpoint({
      endpointId: ep.endpointId,
      hostIf: ep.name,
      peerIf: peerIfName(req.EndpointID),
      containerMac: mac,
      ipv4: v4?.address,
      ipv6: v6?.address,
      mtu: this.o.endpointMtu?.(v4?.address),
    });
    const started = process.hrtime.bigint();
    // Join reports a failure; until then nothing may treat it as unhandled.
    setup.then(
      () => this.o.log.debug({ endpointId: ep.endpointId, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'endpoint plumbed'),
      (e) => this.o.log.warn({ endpointId: ep.endpointId, err: e }, 'endpoint setup failed'),
    );
    this.ready.set(ep.endpointId, setup);
    this.o.lifecycle.created(ep);
    if (t0 !== undefined) this.o.trace?.createEndpoint(ep.endpointId, (v4 ?? v6)!.address, t0);
    return iface.MacAddress ? {} : { Interface: { MacAddress: mac } };
  }

  endpointOperInfo(req: { EndpointID: string }) {
    const ep = this.o.endpoints.get(req.EndpointID);
    return { Value: ep ? { hostInterface: ep.name, mac: ep.mac, addresses: [...ep.ipv4_nets, ...ep.ipv6_nets] } : {} };
  }

  async join(req: { EndpointID: string; SandboxKey?: string }) {
    const ep = this.o.endpoints.get(req.EndpointID);
    const setup = this.ready.get(req.EndpointID);
    if (!ep || !setup) {
      throw new PluginError(`endpoint ${req.EndpointID.slice(0, 12)} is unknown to the calico plugin (was the node restarted in between?); start the container again`);
    }
    const trace = this.o.trace;
    const t0 = trace?.now() ?? 0;
    await setup;
    trace?.joinStep(req.EndpointID, 'veth', trace.now() - t0);
    // Recorded in etcd (and its policy programmed) before the container's process can start.
    await this.o.lifecycle.joined(req.EndpointID);
    trace?.joined(req.EndpointID, t0);
    const { ipv4, ipv6 } = addressesOf(ep);
    const routes: { Destination: string; RouteType: number }[] = [];
    if (ipv4) routes.push({ Destination: `${GATEWAY_V4}/32`, RouteType: ROUTE_CONNECTED });
    if (ipv6) routes.push({ Destination: `${GATEWAY_V6}/128`, RouteType: ROUTE_CONNECTED });
    return {
      InterfaceName: { SrcName: peerIfName(req.EndpointID), DstPrefix: 'eth' },
      ...(ipv4 ? { Gateway: GATEWAY_V4 } : {}),
      ...(ipv6 ? { GatewayIPv6: GATEWAY_V6 } : {}),
      StaticRoutes: routes,
      DisableGatewayService: false,
    };
  }

  leave(_req: { EndpointID: string }) {
    // Docker moves the container end back to the host on Leave; the pair goes at DeleteEndpoint.
    return {};
  }

  deleteEndpoint(req: { EndpointID: string }) {
    this.ready.delete(req.EndpointID);
    // Answered at once: Docker's container teardown (`run --rm` waits for it)
    // must not queue behind netlink or etcd. A record whose delete fails is
    // the reconciler's to remove (its container no longer runs this endpoint).
    this.o.dataplane.removeEndpoint(hostIfName(req.EndpointID));
    this.o.lifecycle.deleted(req.EndpointID).catch((e) =>
      this.o.log.warn({ endpoint: req.EndpointID, err: (e as Error).message }, 'deleting the endpoint record failed; the reconciler removes it'),
    );
    return {};
  }

  /** Forgets every endpoint (plugin restart: Docker's view is adopted again). */
  reset(): void {
    this.ready.clear();
    this.o.endpoints.reset();
  }

  /** Registers endpoints that exist in Docker but not in this process (node restart): no veth work. */
  adopt(ep: Endpoint): void {
    this.o.endpoints.set(ep);
    this.ready.set(ep.endpointId, Promise.resolve());
  }
}

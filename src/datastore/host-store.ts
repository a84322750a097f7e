// Hosts (/calico/v1/host/<h>/bird_ip, bird6_ip, config/marker) and the
// global settings a node writes or BIRD reads (Ready, InterfacePrefix,
// bgp_as, route reflectors, node mesh).
import type { Family } from '../address/cidr';
import { canonicalAddress, parseAddress } from '../address/cidr';
import { Codec, Datastore, json, text } from './datastore';
import { DatastoreError } from './errors';
import { checkId, keys, parseHostLeafKey } from './keys';
import { AsNumberValue, BgpNodeMeshValue, BgpPeerValue, IpValue, OptionalIpValue, TextValue } from './schemas';

export interface Host {
  host: string;
  /** IPv4 address BGP peers use (bird_ip). */
  ip?: string;
  /** IPv6 address (bird6_ip); undefined when the host has none. */
  ip6?: string;
  /** Per-host AS override. */
  as?: string;
}

/** AS number used when none is configured (the blog post's router uses it). */
export const DEFAULT_AS = '64511';
export const INTERFACE_PREFIX = 'cali';

export type HostLeaf = 'bird_ip' | 'bird6_ip' | 'bgp_as';

/** How each host leaf is stored (plain strings; bird6_ip may be ""). */
export function hostLeafCodec(leaf: HostLeaf): Codec<string> {
  return leaf === 'bird_ip' ? text(IpValue) : leaf === 'bird6_ip' ? text(OptionalIpValue) : text(AsNumberValue);
}

/** The host with one decoded leaf set (a new object; `h` is not changed). */
export function withHostLeaf(h: Host, leaf: HostLeaf, value: string): Host {
  if (leaf === 'bird_ip') return { ...h, ip: value };
  if (leaf === 'bird6_ip') return { ...h, ip6: value || undefined };
  return { ...h, as: value };
}

export class HostStore {
  constructor(private readonly ds: Datastore) {}

  /**
   * Registers a host as `calicoctl node` does: bird_ip, bird6_ip ("" when
   * none), the config marker; and the global Ready flag and InterfacePrefix
   * (the latter only when not set, as in 2015).
   */
  async register(host: string, addrs: { ip: string; ip6?: string; as?: string }): Promise<void> {
    checkId('host name', host);
    const ip = checkFamily(addrs.ip, 4, '--ip');
    const ip6 = addrs.ip6 ? checkFamily(addrs.ip6, 6, '--ip6') : '';
    await this.ds.put(keys.hostBirdIp(host), ip, true);
    await this.ds.put(keys.hostBird6Ip(host), ip6, true);
    await this.ds.put(keys.hostConfigMarker(host), 'created', true);
    if (addrs.as) {
      this.ds.decode(keys.hostBgpAs(host), addrs.as, text(AsNumberValue));
      await this.ds.put(keys.hostBgpAs(host), addrs.as, true);
    } else {
      await this.ds.delete(keys.hostBgpAs(host));
    }
    await this.ensureGlobalConfig();
  }

  async ensureGlobalConfig(): Promise<void> {
    await this.ds.update(keys.interfacePrefix(), text(TextValue), (cur) => (cur === undefined ? INTERFACE_PREFIX : undefined));
    await this.ds.put(keys.ready(), 'true', true);
  }

  async get(host: string): Promise<Host | undefined> {
    checkId('host name', host);
    return (await this.listUnder(keys.hostDir(host))).find((h) => h.host === host);
  }

  /** Every registered host (one with a bird_ip), sorted by name. */
  async list(): Promise<Host[]> {
    return this.listUnder(keys.hostsDir());
  }

  private async listUnder(prefix: string): Promise<Host[]> {
    const r = await this.ds.rangePrefix(prefix, false);
    const hosts = new Map<string, Host>();
    const leaves = r.kvs.filter((kv) => parseHostLeafKey(kv.key.toString()));
    for (const kv of leaves) {
      const { host, leaf } = parseHostLeafKey(kv.key.toString())!;
      const [v] = this.ds.decodeAll([kv], hostLeafCodec(leaf));
      if (!v) continue;
      hosts.set(host, withHostLeaf(hosts.get(host) ?? { host }, leaf, v.value));
    }
    return [...hosts.values()].filter((h) => h.ip !== undefined).sort((a, b) => a.host.localeCompare(b.host));
  }

  /** Removes the host's registration (bird_ip, bird6_ip, bgp_as, config); its endpoints stay. Idempotent. */
  async unregister(host: string): Promise<void> {
    checkId('host name', host);
    await this.ds.delete(keys.hostBirdIp(host));
    await this.ds.delete(keys.hostBird6Ip(host));
    await this.ds.delete(keys.hostBgpAs(host));
    await this.ds.delete(keys.hostConfigMarker(host));
  }
}

/** Global BGP settings: AS number, route reflectors, node mesh. */
export class BgpConfigStore {
  constructor(private readonly ds: Datastore) {}

  async getAs(): Promise<string> {
    return (await this.ds.get(keys.bgpAs(), text(AsNumberValue)))?.value ?? DEFAULT_AS;
  }

  async setAs(as: string): Promise<void> {
    this.ds.decode(keys.bgpAs(), as, text(AsNumberValue));
    await this.ds.put(keys.bgpAs(), as, true);
  }

  /** `calicoctl bgppeer rr add <ip>`: idempotent; the key is the address itself. */
  async addRouteReflector(ip: string): Promise<string> {
    const addr = canonicalAddress(checkFamily(ip, undefined, 'route reflector'));
    const family = parseAddress(addr).family;
    await this.ds.put(keys.bgpPeerRr(family, addr), addr, true);
    return addr;
  }

  /** Idempotent: false when it was not configured. */
  async removeRouteReflector(ip: string): Promise<boolean> {
    const addr = canonicalAddress(checkFamily(ip, undefined, 'route reflector'));
    return this.ds.delete(keys.bgpPeerRr(parseAddress(addr).family, addr));
  }

  async listRouteReflectors(family?: Family): Promise<string[]> {
    const fams: Family[] = family ? [family] : [4, 6];
    const out: string[] = [];
    for (const f of fams) out.push(...(await this.ds.list(keys.bgpPeerRrDir(f), text(IpValue))).map((v) => v.value));
    return out;
  }

  /** Absent means on. */
  async getNodeMesh(): Promise<boolean> {
    return (await this.ds.get(keys.bgpNodeMesh(), json(BgpNodeMeshValue)))?.value.enabled ?? true;
  }

  async setNodeMesh(enabled: boolean): Promise<void> {
    await this.ds.put(keys.bgpNodeMesh(), { enabled });
  }

  /** The mesh setting as stored: undefined when never set (the renderer then decides by the peers configured). */
  async getNodeMeshSetting(): Promise<boolean | undefined> {
    return (await this.ds.get(keys.bgpNodeMesh(), json(BgpNodeMeshValue)))?.value.enabled;
  }

  /**
   * `bgppeer add <ip> as <AS>` (no host: a global peer) or `node bgppeer add`
   * (host: that host's own peer). Idempotent; a second add updates the AS.
   */
  async addPeer(scope: PeerScope, ip: string, as: string): Promise<BgpPeer> {
    const addr = canonicalAddress(checkFamily(ip, undefined, 'BGP peer'));
    this.ds.decode('AS number', as, text(AsNumberValue));
    await this.ds.put(peerKey(scope, parseAddress(addr).family, addr), { ip: addr, as_num: Number(as) });
    return { ip: addr, as: String(Number(as)) };
  }

  /** Idempotent: false when it was not configured. */
  async removePeer(scope: PeerScope, ip: string): Promise<boolean> {
    const addr = canonicalAddress(checkFamily(ip, undefined, 'BGP peer'));
    return this.ds.delete(peerKey(scope, parseAddress(addr).family, addr));
  }

  /** Peers of one family or both (IPv4 first), each family sorted by address. */
  async listPeers(scope: PeerScope, family?: Family): Promise<BgpPeer[]> {
    const out: BgpPeer[] = [];
    for (const f of family ? [family] : ([4, 6] as Family[])) {
      const dir = scope.host === undefined ? keys.bgpPeerDir(f) : keys.hostBgpPeerDir(scope.host, f);
      const vs = await this.ds.list(dir, json(BgpPeerValue));
      const peers = vs.map((v) => ({ ip: canonicalAddress(v.value.ip), as: String(Number(v.value.as_num)) }));
      peers.sort((a, b) => cmpAddress(a.ip, b.ip));
      out.push(...peers);
    }
    return out;
  }
}

/** A BGP peer outside the node mesh. */
export interface BgpPeer {
  ip: string;
  as: string;
}

/** Where a peer is configured: globally (every host peers with it) or for one host. */
export interface PeerScope {
  host?: string;
}

function peerKey(scope: PeerScope, family: Family, addr: string): string {
  if (scope.host === undefined) return keys.bgpPeer(family, addr);
  checkId('host name', scope.host);
  return keys.hostBgpPeer(scope.host, family, addr);
}

function cmpAddress(a: string, b: string): number {
  const x = parseAddress(a).value;
  const y = parseAddress(b).value;
  return x < y ? -1 : x > y ? 1 : 0;
}

function checkFamily(ip: string, family: Family | undefined, what: string): string {
  let a: { family: Family };
  try {
    a = parseAddress(ip);
  } catch {
    throw new DatastoreError('INVALID_ARGUMENT', `${what}: "${ip}" is not a valid IP address`);
  }
  if (family && a.family !== family) {
    throw new DatastoreError('INVALID_ARGUMENT', `${what}: "${ip}" is not an IPv${family} address`);
  }
  return canonicalAddress(ip);
}

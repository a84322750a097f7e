// Hosts (/calico/v1/host/<h>/bird_ip, bird6_ip, config/marker) and the
// global settings a node writes or BIRD reads (Ready, InterfacePrefix,
// bgp_as, route reflectors, node mesh); and what removing a dead host
// (calicoctl node remove) needs of the host's keys: whether its node's
// lease still holds the host name, and guarded deletes of its records.
import type { Family } from '../address/cidr';
import { canonicalAddress, parseAddress } from '../address/cidr';
import { backoff, Codec, Datastore, json, text } from './datastore';
import type { TxnResult } from './datastore';
import { DatastoreError } from './errors';
import { checkId, keys, parseEndpointKey, parseHostLeafKey } from './keys';
import { AsNumberValue, bgpPasswordProblem, BgpNodeMeshValue, BgpPeerValue, HostNodeValue, IpValue, OptionalIpValue, TextValue } from './schemas';

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

/** The live node that holds a host name: /calico/v1/host/<h>/node and the lease it is attached to. */
export interface HostLease {
  key: string;
  holder?: HostNodeValue;
  /** etcd lease id (decimal), "0" when the key has no lease. */
  leaseId: string;
  /** Seconds the lease has left (-1: expired meanwhile); undefined without a lease. */
  ttlS?: number;
  /** Seconds it was granted with (the node's LEASE_TTL_S). */
  grantedS?: number;
}

/**
 * Compares that every step of a guarded removal carries (e.g. the host's
 * node key still absent): a transaction that fails on one of them means
 * the world changed under the removal, which then stops.
 */
export type Guard = { key: string; modRevision: string }[];

/** Throws REFUSED when a failed transaction failed on a guard key (naming it); returns otherwise. */
export function checkGuard(r: TxnResult, guard: Guard, what: string): void {
  if (r.succeeded) return;
  for (const g of guard) {
    const now = r.current.get(g.key);
    if (now && now.modRevision !== g.modRevision) {
      throw new DatastoreError('REFUSED', `${what}: stopped, ${g.key} changed meanwhile (revision ${g.modRevision} -> ${now.modRevision})`, g.key);
    }
  }
}

/** Keys deleted per guarded transaction (etcd allows 128 operations; each key also has its compare). */
const DELETE_BATCH = 50;

/** A host's own records (calicoctl node remove), each step a guarded transaction. */
export class HostRecords {
  constructor(private readonly ds: Datastore) {}

  /** The lease holding the host name, if a live node holds it. */
  async nodeLease(host: string): Promise<HostLease | undefined> {
    checkId('host name', host);
    const key = keys.hostNode(host);
    const r = await this.ds.call(`reading ${key}`, () => this.ds.client.kv.range({ key: Buffer.from(key) }));
    const kv = r.kvs[0];
    if (!kv) return undefined;
    let holder: HostNodeValue | undefined;
    try {
      holder = this.ds.decode(key, kv.value.toString(), json(HostNodeValue));
    } catch {
      holder = undefined;
    }
    const out: HostLease = { key, holder, leaseId: kv.lease };
    if (kv.lease !== '0') {
      const t = await this.ds.call(`reading lease ${kv.lease} of ${key}`, () => this.ds.client.leaseClient.leaseTimeToLive({ ID: kv.lease }));
      out.ttlS = Number(t.TTL);
      out.grantedS = Number(t.grantedTTL);
    }
    return out;
  }

  /** The host's endpoint record keys with their revisions. */
  async endpointRecords(host: string): Promise<{ key: string; modRevision: string }[]> {
    checkId('host name', host);
    const r = await this.ds.rangePrefix(keys.hostWorkloadsDir(host), true);
    return r.kvs.map((kv) => ({ key: kv.key.toString(), modRevision: kv.mod_revision })).filter((k) => parseEndpointKey(k.key));
  }

  /** The host's other keys (registration, BGP settings and peers, config): everything under its dir but endpoints and the node key. */
  async hostKeys(host: string): Promise<{ key: string; modRevision: string }[]> {
    checkId('host name', host);
    const r = await this.ds.rangePrefix(keys.hostDir(host), true);
    return r.kvs
      .map((kv) => ({ key: kv.key.toString(), modRevision: kv.mod_revision }))
      .filter((k) => !k.key.startsWith(keys.hostWorkloadsDir(host)) && k.key !== keys.hostNode(host));
  }

  /** Deletes the host's endpoint records, a batch per guarded transaction; returns how many. */
  async removeEndpointRecords(host: string, guard: Guard, progress?: (done: number, total: number) => void): Promise<number> {
    return this.removeGuarded(() => this.endpointRecords(host), guard, `removing endpoint records of ${host}`, progress);
  }

  /** Deletes the host's own keys (bird_ip, bird6_ip, bgp_as, its BGP peers, config), guarded; returns how many. */
  async removeHostKeys(host: string, guard: Guard): Promise<number> {
    return this.removeGuarded(() => this.hostKeys(host), guard, `removing the keys of host ${host}`);
  }

  /**
   * Deletes what `list` returns in batches, each batch one transaction
   * guarded by its keys' revisions and `guard`. A key rewritten meanwhile
   * fails its batch, which is listed again (and deleted as it now is); a
   * guard key that changed stops the whole removal.
   */
  private async removeGuarded(
    list: () => Promise<{ key: string; modRevision: string }[]>,
    guard: Guard,
    what: string,
    progress?: (done: number, total: number) => void,
  ): Promise<number> {
    let done = 0;
    let total: number | undefined;
    for (let attempt = 0; attempt < 20; attempt++) {
      const todo = await list();
      total ??= todo.length;
      if (!todo.length) return done;
      let conflicted = false;
      for (let i = 0; i < todo.length; i += DELETE_BATCH) {
        const batch = todo.slice(i, i + DELETE_BATCH);
        const r = await this.ds.cas(what, [...batch, ...guard], [], batch.map((k) => k.key));
        checkGuard(r, guard, what);
        if (!r.succeeded) {
          conflicted = true;
          continue;
        }
        done += batch.length;
        progress?.(done, Math.max(total, done));
      }
      if (!conflicted) return done;
      await backoff(attempt);
    }
    throw new DatastoreError('CONFLICT', `${what}: still conflicting after 20 attempts`);
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

  /**
   * `calicoctl bgppeer rr add <ip> [--password]`: idempotent; the key is the
   * address itself. The password (its own key beside it) is set or removed
   * in the same transaction: an add states the whole peer.
   */
  async addRouteReflector(ip: string, password?: string): Promise<string> {
    const addr = canonicalAddress(checkFamily(ip, undefined, 'route reflector'));
    const family = parseAddress(addr).family;
    if (password !== undefined) checkPassword(password);
    const pwKey = keys.bgpRrPassword(family, addr);
    await this.ds.cas(
      `adding route reflector ${addr}`,
      [],
      [{ key: keys.bgpPeerRr(family, addr), value: addr, text: true }, ...(password === undefined ? [] : [{ key: pwKey, value: password, text: true }])],
      password === undefined ? [pwKey] : [],
    );
    return addr;
  }

  /** Idempotent: false when it was not configured. Its password goes with it. */
  async removeRouteReflector(ip: string): Promise<boolean> {
    const addr = canonicalAddress(checkFamily(ip, undefined, 'route reflector'));
    const family = parseAddress(addr).family;
    const existed = (await this.ds.get(keys.bgpPeerRr(family, addr), text(IpValue))) !== undefined;
    await this.ds.cas(`removing route reflector ${addr}`, [], [], [keys.bgpPeerRr(family, addr), keys.bgpRrPassword(family, addr)]);
    return existed;
  }

  async listRouteReflectors(family?: Family): Promise<string[]> {
    const fams: Family[] = family ? [family] : [4, 6];
    const out: string[] = [];
    for (const f of fams) out.push(...(await this.ds.list(keys.bgpPeerRrDir(f), text(IpValue))).map((v) => v.value));
    return out;
  }

  /** The route reflectors that have a password (addresses only: the passwords never leave the datastore here). */
  async routeReflectorsWithPassword(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const f of [4, 6] as Family[]) {
      for (const k of await this.ds.listKeys(keys.bgpRrPasswordDir(f))) out.add(canonicalAddress(k.slice(keys.bgpRrPasswordDir(f).length)));
    }
    return out;
  }

  /** `calicoctl bgp node-mesh-password set|unset`: the TCP MD5 password of every mesh session; undefined removes it. */
  async setNodeMeshPassword(password: string | undefined): Promise<void> {
    if (password === undefined) {
      await this.ds.delete(keys.bgpNodeMeshPassword());
      return;
    }
    checkPassword(password);
    await this.ds.put(keys.bgpNodeMeshPassword(), password, true);
  }

  /** Whether the mesh has a password (never the password itself). */
  async hasNodeMeshPassword(): Promise<boolean> {
    return (await this.ds.listKeys(keys.bgpNodeMeshPassword())).includes(keys.bgpNodeMeshPassword());
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
   * `bgppeer add <ip> as <AS> [--password]` (no host: a global peer) or
   * `node bgppeer add` (host: that host's own peer). Idempotent; a second add
   * replaces the peer (AS and password: without one, the peer has none).
   */
  async addPeer(scope: PeerScope, ip: string, as: string, password?: string): Promise<BgpPeer> {
    const addr = canonicalAddress(checkFamily(ip, undefined, 'BGP peer'));
    this.ds.decode('AS number', as, text(AsNumberValue));
    if (password !== undefined) checkPassword(password);
    await this.ds.put(peerKey(scope, parseAddress(addr).family, addr), { ip: addr, as_num: Number(as), ...(password === undefined ? {} : { password }) });
    return { ip: addr, as: String(Number(as)) };
  }

  /** Idempotent: false when it was not configured. */
  async removePeer(scope: PeerScope, ip: string): Promise<boolean> {
    const addr = canonicalAddress(checkFamily(ip, undefined, 'BGP peer'));
    return this.ds.delete(peerKey(scope, parseAddress(addr).family, addr));
  }

  /** Peers of one family or both (IPv4 first), each family sorted by address; whether each has a password, never the password. */
  async listPeers(scope: PeerScope, family?: Family): Promise<(BgpPeer & { hasPassword: boolean })[]> {
    const out: (BgpPeer & { hasPassword: boolean })[] = [];
    for (const f of family ? [family] : ([4, 6] as Family[])) {
      const dir = scope.host === undefined ? keys.bgpPeerDir(f) : keys.hostBgpPeerDir(scope.host, f);
      const vs = await this.ds.list(dir, json(BgpPeerValue));
      const peers = vs.map((v) => ({ ip: canonicalAddress(v.value.ip), as: String(Number(v.value.as_num)), hasPassword: v.value.password !== undefined }));
      peers.sort((a, b) => cmpAddress(a.ip, b.ip));
      out.push(...peers);
    }
    return out;
  }
}

function checkPassword(password: string): void {
  const problem = bgpPasswordProblem(password);
  if (problem) throw new DatastoreError('INVALID_ARGUMENT', `invalid BGP password: ${problem}`);
}

/** A BGP peer outside the node mesh. */
export interface BgpPeer {
  ip: string;
  as: string;
  /** TCP MD5 password of the session; never printed or logged. */
  password?: string;
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

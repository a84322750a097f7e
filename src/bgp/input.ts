// The renderer's input from the datastore syncer's snapshot: hosts and pools
// come typed; the BGP settings are raw /calico/v1/config and host keys,
// decoded here with the datastore's schemas. Pure.
import { parseBgpConfigKey } from '../datastore/keys';
import { AsNumberValue, BgpNodeMeshValue, BgpPasswordValue, BgpPeerValue, IpValue } from '../datastore/schemas';
import { canonicalAddress, parseAddress } from '../address/cidr';
import type { DatastoreSnapshot } from '../syncer/types';
import type { BgpConfig, BgpPeer, BirdInput, HostRoutes } from './types';

export type InvalidValue = (key: string, problem: string) => void;

type Issues = { issues: { path: (string | number)[]; message: string }[] };

/** The value, or undefined after reporting its problems (never the value itself: it may be a password). */
function decode<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: Issues } }, raw: unknown, key: string, onInvalid?: InvalidValue): T | undefined {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  onInvalid?.(key, r.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; '));
  return undefined;
}

function parseJson(raw: string, key: string, onInvalid?: InvalidValue): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    onInvalid?.(key, 'not JSON');
    return undefined;
  }
}

/** Global BGP settings and this host's own peers from the snapshot's raw keys; an invalid value is skipped (and reported). */
export function bgpConfigFromRaw(raw: ReadonlyMap<string, string>, hostname: string, onInvalid?: InvalidValue): { config: BgpConfig; nodePeers: BgpPeer[] } {
  const config: BgpConfig = { routeReflectors: [], globalPeers: [] };
  const nodePeers: BgpPeer[] = [];
  for (const [key, value] of raw) {
    const k = parseBgpConfigKey(key);
    if (!k) continue;
    if (k.kind === 'as') config.as = decode(AsNumberValue, value, key, onInvalid);
    else if (k.kind === 'meshPassword') {
      // Not renderable: kept as it is, so the renderer refuses the config
      // (the running one stays) rather than run the mesh without a password.
      decode(BgpPasswordValue, value, key, onInvalid);
      config.meshPassword = value;
    } else if (k.kind === 'rrPassword') {
      // Likewise: a route reflector with a bad password is not peered with in the clear.
      decode(BgpPasswordValue, value, key, onInvalid);
      (config.rrPasswords ??= {})[canonicalOrRaw(k.ip)] = value;
    }
    else if (k.kind === 'nodeMesh') {
      const v = parseJson(value, key, onInvalid);
      if (v !== undefined) config.nodeMesh = decode(BgpNodeMeshValue, v, key, onInvalid)?.enabled;
    } else if (k.kind === 'routeReflector') {
      const ip = decode(IpValue, value, key, onInvalid);
      if (ip && parseAddress(ip).family === k.family) config.routeReflectors.push(canonicalAddress(ip));
      else if (ip) onInvalid?.(key, `${ip} is not an IPv${k.family} address`);
    } else {
      if (k.host !== undefined && k.host !== hostname) continue;
      const v = parseJson(value, key, onInvalid);
      const p = v === undefined ? undefined : decode(BgpPeerValue, v, key, onInvalid);
      if (!p) continue;
      if (parseAddress(p.ip).family !== k.family) {
        onInvalid?.(key, `${p.ip} is not an IPv${k.family} address`);
        continue;
      }
      const peer: BgpPeer = { ip: canonicalAddress(p.ip), as: String(Number(p.as_num)) };
      if (p.password !== undefined) peer.password = p.password;
      (k.host === undefined ? config.globalPeers : nodePeers).push(peer);
    }
  }
  return { config, nodePeers };
}

function canonicalOrRaw(ip: string): string {
  try {
    return canonicalAddress(ip);
  } catch {
    return ip;
  }
}

/** The renderer's input for `hostname`, given the blocks affine to it (from IPAM). */
export function birdInputFromSnapshot(
  snapshot: Pick<DatastoreSnapshot, 'hosts' | 'pools' | 'raw'>,
  hostname: string,
  affineBlocks: string[],
  hostRoutes: Readonly<Record<string, HostRoutes>>,
  onInvalid?: InvalidValue,
  localSubnet?: string,
): BirdInput {
  const { config, nodePeers } = bgpConfigFromRaw(snapshot.raw, hostname, onInvalid);
  return {
    hostname,
    hosts: [...snapshot.hosts.values()],
    pools: [...snapshot.pools.values()].map((p) => (p.ipipMode ? { cidr: p.cidr, family: p.family, ipipMode: p.ipipMode } : { cidr: p.cidr, family: p.family })),
    config,
    nodePeers,
    affineBlocks,
    hostRoutes,
    ...(localSubnet ? { localSubnet } : {}),
  };
}

// The one place that knows etcd key names. Everything else builds and parses
// keys through these functions; docs/datamodel.md documents the same layout.
//
// /calico/v1/...       the 2015 layout (hosts, endpoints, profiles, pools, BGP, felix config)
// /calico/ipam/v2/...  block IPAM (blocks, host affinities, handles), from later Calico
import type { Family } from '../address/cidr';

export const ROOT = '/calico/v1';
export const IPAM_ROOT = '/calico/ipam/v2';

/** The CIDR as it appears in a key segment: "/" becomes "-" (2015 convention). */
export function cidrSegment(cidr: string): string {
  return cidr.replace('/', '-');
}

export function cidrFromSegment(segment: string): string {
  const i = segment.lastIndexOf('-');
  return i < 0 ? segment : `${segment.slice(0, i)}/${segment.slice(i + 1)}`;
}

function v(family: Family): 'v4' | 'v6' {
  return family === 4 ? 'v4' : 'v6';
}

function ipv(family: Family): 'ipv4' | 'ipv6' {
  return family === 4 ? 'ipv4' : 'ipv6';
}

export const keys = {
  // --- global config (felix + BGP) ---
  /** "true" once a node has initialised the datastore; felix waits for it. */
  ready: () => `${ROOT}/Ready`,
  configDir: () => `${ROOT}/config/`,
  interfacePrefix: () => `${ROOT}/config/InterfacePrefix`,
  /** The key layout the data follows (whole number, text); written by the first node, see layout-store.ts. */
  layoutVersion: () => `${ROOT}/config/LayoutVersion`,
  /** Global AS number (string); absent means 64511. */
  bgpAs: () => `${ROOT}/config/bgp_as`,
  /** Route reflector peers: one key per peer address, value the address. */
  bgpPeerRrDir: (family: Family) => `${ROOT}/config/bgp_peer_rr_${v(family)}/`,
  bgpPeerRr: (family: Family, ip: string) => `${ROOT}/config/bgp_peer_rr_${v(family)}/${ip}`,
  /** {"enabled": bool}; absent means the node-to-node mesh is on (unless route reflectors or global peers replace it). */
  bgpNodeMesh: () => `${ROOT}/config/bgp_node_mesh`,
  /** TCP MD5 password of every node-to-node mesh session (text); absent = none. Ours, not 2015's. */
  bgpNodeMeshPassword: () => `${ROOT}/config/bgp_node_mesh_password`,
  /** TCP MD5 password of a route reflector session (text), beside bgp_peer_rr_*; absent = none. Ours. */
  bgpRrPasswordDir: (family: Family) => `${ROOT}/config/bgp_rr_password_${v(family)}/`,
  bgpRrPassword: (family: Family, ip: string) => `${ROOT}/config/bgp_rr_password_${v(family)}/${ip}`,
  /** Global BGP peers (v0.4.6): one key per peer address, value {"ip", "as_num"}. */
  bgpPeerDir: (family: Family) => `${ROOT}/config/bgp_peer_${v(family)}/`,
  bgpPeer: (family: Family, ip: string) => `${ROOT}/config/bgp_peer_${v(family)}/${ip}`,

  // --- hosts ---
  hostsDir: () => `${ROOT}/host/`,
  hostDir: (host: string) => `${ROOT}/host/${host}/`,
  hostBirdIp: (host: string) => `${ROOT}/host/${host}/bird_ip`,
  hostBird6Ip: (host: string) => `${ROOT}/host/${host}/bird6_ip`,
  hostBgpAs: (host: string) => `${ROOT}/host/${host}/bgp_as`,
  hostConfigMarker: (host: string) => `${ROOT}/host/${host}/config/marker`,
  /** Which live node process holds this host name (ours, not 2015's): JSON, attached to that node's lease. */
  hostNode: (host: string) => `${ROOT}/host/${host}/node`,
  /** This host's own BGP peers (v0.4.6 `node bgppeer`): value {"ip", "as_num"}. */
  hostBgpPeerDir: (host: string, family: Family) => `${ROOT}/host/${host}/bgp_peer_${v(family)}/`,
  hostBgpPeer: (host: string, family: Family, ip: string) => `${ROOT}/host/${host}/bgp_peer_${v(family)}/${ip}`,

  // --- endpoints ---
  hostWorkloadsDir: (host: string) => `${ROOT}/host/${host}/workload/docker/`,
  containerEndpointsDir: (host: string, containerId: string) =>
    `${ROOT}/host/${host}/workload/docker/${containerId}/endpoint/`,
  endpoint: (host: string, containerId: string, endpointId: string) =>
    `${ROOT}/host/${host}/workload/docker/${containerId}/endpoint/${endpointId}`,

  // --- profiles ---
  profilesDir: () => `${ROOT}/policy/profile/`,
  profileDir: (name: string) => `${ROOT}/policy/profile/${name}/`,
  profileTags: (name: string) => `${ROOT}/policy/profile/${name}/tags`,
  profileRules: (name: string) => `${ROOT}/policy/profile/${name}/rules`,

  // --- pools ---
  poolsDir: (family: Family) => `${ROOT}/ipam/${v(family)}/pool/`,
  pool: (family: Family, cidr: string) => `${ROOT}/ipam/${v(family)}/pool/${cidrSegment(cidr)}`,

  // --- block IPAM ---
  /** Every block of both families (one prefix: the BGP component watches it). */
  blocksRoot: () => `${IPAM_ROOT}/assignment/`,
  blocksDir: (family: Family) => `${IPAM_ROOT}/assignment/${ipv(family)}/block/`,
  block: (family: Family, cidr: string) => `${IPAM_ROOT}/assignment/${ipv(family)}/block/${cidrSegment(cidr)}`,
  affinitiesRoot: () => `${IPAM_ROOT}/host/`,
  hostAffinitiesDir: (host: string, family: Family) => `${IPAM_ROOT}/host/${host}/${ipv(family)}/block/`,
  affinity: (host: string, family: Family, cidr: string) =>
    `${IPAM_ROOT}/host/${host}/${ipv(family)}/block/${cidrSegment(cidr)}`,
  handlesDir: () => `${IPAM_ROOT}/handle/`,
  handle: (handle: string) => `${IPAM_ROOT}/handle/${handle}`,
};

// --- parsers: the inverse of the builders, for listings ---

const ENDPOINT_RE = /^\/calico\/v1\/host\/([^/]+)\/workload\/docker\/([^/]+)\/endpoint\/([^/]+)$/;
export function parseEndpointKey(key: string): { host: string; containerId: string; endpointId: string } | undefined {
  const m = ENDPOINT_RE.exec(key);
  return m ? { host: m[1], containerId: m[2], endpointId: m[3] } : undefined;
}

const HOST_LEAF_RE = /^\/calico\/v1\/host\/([^/]+)\/(bird_ip|bird6_ip|bgp_as)$/;
export function parseHostLeafKey(key: string): { host: string; leaf: 'bird_ip' | 'bird6_ip' | 'bgp_as' } | undefined {
  const m = HOST_LEAF_RE.exec(key);
  return m ? { host: m[1], leaf: m[2] as 'bird_ip' | 'bird6_ip' | 'bgp_as' } : undefined;
}

const PROFILE_RE = /^\/calico\/v1\/policy\/profile\/([^/]+)\/(tags|rules)$/;
export function parseProfileKey(key: string): { name: string; leaf: 'tags' | 'rules' } | undefined {
  const m = PROFILE_RE.exec(key);
  return m ? { name: m[1], leaf: m[2] as 'tags' | 'rules' } : undefined;
}

const POOL_RE = /^\/calico\/v1\/ipam\/(v4|v6)\/pool\/([^/]+)$/;
export function parsePoolKey(key: string): { family: Family; cidr: string } | undefined {
  const m = POOL_RE.exec(key);
  return m ? { family: m[1] === 'v4' ? 4 : 6, cidr: cidrFromSegment(m[2]) } : undefined;
}

const BLOCK_RE = /^\/calico\/ipam\/v2\/assignment\/(ipv4|ipv6)\/block\/([^/]+)$/;
export function parseBlockKey(key: string): { family: Family; cidr: string } | undefined {
  const m = BLOCK_RE.exec(key);
  return m ? { family: m[1] === 'ipv4' ? 4 : 6, cidr: cidrFromSegment(m[2]) } : undefined;
}

const AFFINITY_RE = /^\/calico\/ipam\/v2\/host\/([^/]+)\/(ipv4|ipv6)\/block\/([^/]+)$/;
export function parseAffinityKey(key: string): { host: string; family: Family; cidr: string } | undefined {
  const m = AFFINITY_RE.exec(key);
  return m ? { host: m[1], family: m[2] === 'ipv4' ? 4 : 6, cidr: cidrFromSegment(m[3]) } : undefined;
}

export function parseHandleKey(key: string): string | undefined {
  const prefix = keys.handlesDir();
  return key.startsWith(prefix) && key.length > prefix.length ? key.slice(prefix.length) : undefined;
}

/**
 * Names that become one key segment (hosts, container ids, endpoint ids,
 * profiles, handles) must not contain "/" or they would shift the layout.
 * Same character set felix accepted for ids in 2015.
 */
export const ID_RE = /^[a-zA-Z0-9_.:-]+$/;
export function checkId(kind: string, id: string): void {
  if (!ID_RE.test(id)) {
    throw new Error(`invalid ${kind} "${id}": use letters, digits, "_", ".", ":" and "-" only`);
  }
}

// --- BGP configuration keys (global and per host), for consumers of raw snapshots ---

export type BgpConfigKey =
  | { kind: 'as' }
  | { kind: 'nodeMesh' }
  | { kind: 'meshPassword' }
  | { kind: 'rrPassword'; family: Family; ip: string }
  | { kind: 'routeReflector'; family: Family; ip: string }
  | { kind: 'peer'; family: Family; ip: string; host?: string };

const BGP_PEER_RE = /^\/calico\/v1\/(?:config|host\/([^/]+))\/bgp_peer_(rr_)?(v4|v6)\/([^/]+)$/;
const BGP_RR_PASSWORD_RE = /^\/calico\/v1\/config\/bgp_rr_password_(v4|v6)\/([^/]+)$/;
export function parseBgpConfigKey(key: string): BgpConfigKey | undefined {
  if (key === keys.bgpAs()) return { kind: 'as' };
  if (key === keys.bgpNodeMesh()) return { kind: 'nodeMesh' };
  if (key === keys.bgpNodeMeshPassword()) return { kind: 'meshPassword' };
  const pw = BGP_RR_PASSWORD_RE.exec(key);
  if (pw) return { kind: 'rrPassword', family: pw[1] === 'v4' ? 4 : 6, ip: pw[2]! };
  const m = BGP_PEER_RE.exec(key);
  if (!m) return undefined;
  const [, host, rr, fam, ip] = m as unknown as [string, string | undefined, string | undefined, string, string];
  const family: Family = fam === 'v4' ? 4 : 6;
  if (rr) return host === undefined ? { kind: 'routeReflector', family, ip } : undefined;
  return host === undefined ? { kind: 'peer', family, ip } : { kind: 'peer', family, ip, host };
}

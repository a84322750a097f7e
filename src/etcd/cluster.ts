// `calicoctl node --etcd-cluster NAME=IP,NAME=IP,NAME=IP`: the blog post's
// three-member etcd cluster from one flag. Pure: the flag's text, this
// node's --ip and --hostname, and whether TLS files were given in; the member's
// etcd command line and the node's client URLs out.
import crypto from 'node:crypto';
import net from 'node:net';

/** etcd's default ports (the post's): clients on 2379, peers (raft) on 2380. */
export const CLUSTER_CLIENT_PORT = 2379;
export const CLUSTER_PEER_PORT = 2380;

export interface ClusterEntry {
  /** The etcd member name (the post used host names). */
  name: string;
  /** The address the member's peer and client ports listen on. */
  ip: string;
}

export interface EtcdClusterPlan {
  /** The list in the order given. */
  members: ClusterEntry[];
  /** This host's entry. */
  self: ClusterEntry;
  /** How self was chosen, for the log: `its IP is --ip 10.0.0.1` / `its name is --hostname h1`. */
  selfBy: string;
  /** `calico-<16 hex>` from the sorted list: every host derives the same token from the same list, in any order. */
  token: string;
  /** http, or https with the TLS files (peer and client traffic alike). */
  scheme: 'http' | 'https';
  /** etcd's --initial-cluster: `h1=http://10.0.0.1:2380,...` (the order given). */
  initialCluster: string;
  /** This member's peer URL (listen and advertise). */
  peerUrl: string;
  /** This member's TCP client URL (listen and advertise; the unix socket is listened on too). */
  clientUrl: string;
  /** What the node uses as its datastore: every member's client URL, this host's first. */
  endpoints: string[];
}

export class ClusterFlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClusterFlagError';
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** `host:port` with IPv6 in brackets. */
function hostPort(ip: string, port: number): string {
  return net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Parses and checks the list: NAME=IP entries, names and addresses each unique. */
export function parseClusterList(text: string, from = '--etcd-cluster'): ClusterEntry[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length === 0) throw new ClusterFlagError(`${from}: no member given (expected NAME=IP,NAME=IP,NAME=IP)`);
  const out: ClusterEntry[] = [];
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq < 0) throw new ClusterFlagError(`${from}: "${p}" is not NAME=IP (e.g. host1=10.0.0.1)`);
    const name = p.slice(0, eq).trim();
    let ip = p.slice(eq + 1).trim();
    if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
    if (!NAME_RE.test(name)) {
      throw new ClusterFlagError(`${from}: member name "${name}" in "${p}" must be letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)`);
    }
    if (!net.isIP(ip)) throw new ClusterFlagError(`${from}: "${ip}" in "${p}" is not an IP address (the member listens on it: no host names, no port)`);
    if (out.some((e) => e.name === name)) throw new ClusterFlagError(`${from}: member name "${name}" is given twice`);
    const dup = out.find((e) => e.ip === ip);
    if (dup) throw new ClusterFlagError(`${from}: ${ip} is given for both ${dup.name} and ${name} (one member per address)`);
    out.push({ name, ip });
  }
  return out;
}

/**
 * Which entry is this host's member: the one whose IP is the node's --ip
 * (the address the host peers on is the one it certainly has); without a
 * match by address (no --ip, or the cluster runs on another network), the
 * one whose NAME is the node's --hostname (default: the host name, as the post
 * named its members). Two different entries matching is refused.
 */
export function pickSelf(members: ClusterEntry[], node: { ip?: string; name: string }, from = '--etcd-cluster'): { self: ClusterEntry; by: string } {
  const byIp = node.ip ? members.find((m) => m.ip === node.ip) : undefined;
  const byName = members.find((m) => m.name === node.name);
  if (byIp && byName && byIp !== byName) {
    throw new ClusterFlagError(
      `${from}: this node's --ip ${node.ip} is member ${byIp.name}'s address, but its --hostname ${node.name} is another member's: ` +
        'which one is this host? Fix the list or the flags',
    );
  }
  if (byIp) return { self: byIp, by: `its IP is this node's --ip ${node.ip}` };
  if (byName) return { self: byName, by: `its name is this node's --hostname ${node.name}` };
  const list = members.map((m) => `${m.name}=${m.ip}`).join(',');
  throw new ClusterFlagError(
    `${from} ${list}: no member is this host: none has this node's ${node.ip ? `--ip ${node.ip} or ` : ''}--hostname ${node.name}. ` +
      'Give the node --ip <its address in the list> (or --hostname <its name in the list>)',
  );
}

/** Deterministic from the set of members (order-free): the same list on every host gives the same token. */
export function clusterToken(members: ClusterEntry[]): string {
  const canonical = members.map((m) => `${m.name}=${m.ip}`).sort().join(',');
  return `calico-${crypto.createHash('sha256').update(canonical).digest('hex').slice(0, 16)}`;
}

/** The whole plan for this host: its member's URLs and flags' values, and the node's endpoints. */
export function planCluster(text: string, node: { ip?: string; name: string; tls: boolean }, from = '--etcd-cluster'): EtcdClusterPlan {
  const members = parseClusterList(text, from);
  const { self, by } = pickSelf(members, node, from);
  const scheme = node.tls ? 'https' : 'http';
  const peer = (m: ClusterEntry) => `${scheme}://${hostPort(m.ip, CLUSTER_PEER_PORT)}`;
  const client = (m: ClusterEntry) => `${scheme}://${hostPort(m.ip, CLUSTER_CLIENT_PORT)}`;
  return {
    members,
    self,
    selfBy: by,
    token: clusterToken(members),
    scheme,
    initialCluster: members.map((m) => `${m.name}=${peer(m)}`).join(','),
    peerUrl: peer(self),
    clientUrl: client(self),
    endpoints: [client(self), ...members.filter((m) => m !== self).map(client)],
  };
}

/** One line for the log and the terminal: which cluster, which member, and how its TCP ports are protected. */
export function describeCluster(p: EtcdClusterPlan): string {
  const others = p.members.filter((m) => m !== p.self).map((m) => `${m.name} ${m.ip}`).join(', ');
  return `embedded etcd member ${p.self.name} (${p.self.ip}) of cluster ${p.token}, ${p.members.length} member${p.members.length === 1 ? '' : 's'}` +
    (others ? ` (with ${others})` : '');
}

/** Said (log and stderr) when the cluster's ports are plain: anyone who reaches them reads and writes the datastore. */
export function plainClusterWarning(p: EtcdClusterPlan): string {
  return `etcd cluster ${p.token} runs WITHOUT TLS: its TCP ports ${hostPort(p.self.ip, CLUSTER_CLIENT_PORT)} (clients) and ${hostPort(p.self.ip, CLUSTER_PEER_PORT)} ` +
    '(peers) are unauthenticated plain HTTP; anyone who reaches them can read and change every pool, profile and endpoint. ' +
    'Give --etcd-ca-file, --etcd-cert-file and --etcd-key-file (the certificate serves as the member\'s server and peer certificate too) ' +
    'or keep these ports on a network only the hosts reach.';
}

/**
 * The TLS files for a cluster member: all three or none. The certificate is
 * the member's server, peer and client certificate at once (so it needs
 * serverAuth and clientAuth and this host's IP among its names), the CA is
 * what clients and peers must present certificates from.
 */
export function checkClusterTls(files: { ca?: string; cert?: string; key?: string }, from = '--etcd-cluster'): boolean {
  const given = [files.ca, files.cert, files.key].filter(Boolean).length;
  if (given === 0) return false;
  if (given < 3) {
    throw new ClusterFlagError(
      `${from} with TLS needs all of --etcd-ca-file, --etcd-cert-file and --etcd-key-file: the member checks its peers' and clients' ` +
        'certificates against the CA and presents the certificate itself',
    );
  }
  return true;
}

/** What the member's data directory was made for, kept beside it (etcd-cluster.json in the state dir). */
export interface ClusterMarker {
  token: string;
  name: string;
  members: ClusterEntry[];
}

export type DataCheck = { ok: true; firstStart: boolean; warning?: string } | { ok: false; reason: string };

/**
 * Pure: may this member start on the data it finds? A data directory made
 * by the single-host member (no marker) or by another member name would
 * make etcd come up as that member, ignoring the list (etcd reads its
 * membership from its data on every start after the first): refused, with
 * what to do. A list that differs from the first start's only warns: the
 * membership lives in etcd now (etcdctl member add/remove changes it).
 */
export function checkMemberData(p: EtcdClusterPlan, hasData: boolean, marker: ClusterMarker | undefined, dataDir: string): DataCheck {
  if (!hasData) return { ok: true, firstStart: true };
  if (!marker) {
    return {
      ok: false,
      reason:
        `${dataDir} holds the data of this host's single-host embedded etcd member, not of a member of cluster ${p.token}: ` +
        'started on it, etcd would ignore --etcd-cluster and come up alone (a split datastore). Its pools and endpoints are not merged into the cluster: ' +
        `move ${dataDir} aside (or copy what matters with etcdctl) and start again`,
    };
  }
  if (marker.name !== p.self.name) {
    return { ok: false, reason: `${dataDir} holds the data of cluster member ${marker.name}, but --etcd-cluster makes this host member ${p.self.name}: fix the list or move ${dataDir} aside` };
  }
  if (marker.token !== p.token) {
    return {
      ok: true,
      firstStart: false,
      warning: `--etcd-cluster lists other members than at this member's first start (${marker.members.map((m) => `${m.name}=${m.ip}`).join(',')}): ` +
        'etcd keeps its membership in its data and ignores the list now; change members with etcdctl member add/remove',
    };
  }
  return { ok: true, firstStart: false };
}

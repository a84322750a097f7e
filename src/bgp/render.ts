// The BIRD 2 configuration of one host, as a pure function of what the
// datastore says (./types.ts). One daemon speaks both families: every IPv4
// peer gets a session with an ipv4 channel, every IPv6 peer one with an ipv6
// channel. docs/bgp.md explains how the routes flow.
import { DEFAULT_AS } from '../datastore/host-store';
import { canonicalAddress, parseAddress, parseCidr } from '../address/cidr';
import { cidrWithin } from '../address/pools';
import type { Family } from '../address/cidr';
import { bgpPasswordProblem } from '../datastore/schemas';
import type { BgpHost, BgpPeer, BirdInput, HostRoutes, SessionType } from './types';

export class BirdRenderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BirdRenderError';
  }
}

/** One BGP session the config declares. */
export interface RenderedSession {
  name: string;
  type: SessionType;
  family: Family;
  neighbor: string;
  as: string;
  /** This side only waits for the peer to connect (mesh: the higher address of the two waits). */
  passive: boolean;
  /** Mesh sessions: the peer's host name (its imports are limited to what that host holds). */
  host?: string;
  /** TCP MD5 password; never logged. */
  password?: string;
}

const PREFIX: Record<SessionType, string> = { mesh: 'Mesh', rr: 'Rr', global: 'Global', node: 'Node' };

/**
 * BIRD protocol name for a session: type prefix + the canonical address with
 * every "." and ":" turned into "_" (Mesh_10_0_0_2, Mesh_fd00__2). Canonical
 * texts map one to one onto these names (an IPv4 name has three single
 * underscores; an IPv6 one has seven or a "__"), so names never collide.
 */
export function protocolName(type: SessionType, ip: string): string {
  return `${PREFIX[type]}_${canonicalAddress(ip).replace(/[.:]/g, '_')}`;
}

/** The inverse of protocolName; undefined for a protocol we did not name. */
export function parseProtocolName(name: string): { type: SessionType; ip: string } | undefined {
  const m = /^(Mesh|Rr|Global|Node)_([0-9a-fA-F_]+)$/.exec(name);
  if (!m) return undefined;
  const type = (Object.keys(PREFIX) as SessionType[]).find((t) => PREFIX[t] === m[1])!;
  const body = m[2]!;
  const v4 = /^\d{1,3}(_\d{1,3}){3}$/.test(body);
  const ip = v4 ? body.replace(/_/g, '.') : body.replace(/_/g, ':');
  try {
    return { type, ip: canonicalAddress(ip) };
  } catch {
    return undefined;
  }
}

function familyOf(ip: string): Family {
  return parseAddress(ip).family;
}

function cmpAddr(a: string, b: string): number {
  const x = parseAddress(a);
  const y = parseAddress(b);
  return x.family - y.family || (x.value < y.value ? -1 : x.value > y.value ? 1 : 0);
}

/** The sessions of this host, in the order they are rendered (node, global, rr, mesh peers). */
export function sessionsFor(input: BirdInput): RenderedSession[] {
  const me = thisHost(input);
  const globalAs = input.config.as ?? DEFAULT_AS;
  const myAddrs = new Set([me.ip, me.ip6].filter((a): a is string => !!a).map(canonicalAddress));
  const mine: Record<Family, string | undefined> = { 4: me.ip && canonicalAddress(me.ip), 6: me.ip6 && canonicalAddress(me.ip6) };
  const out: RenderedSession[] = [];
  const seen = new Set<string>();
  const add = (type: SessionType, ip: string, as: string, extra: { host?: string; password?: string } = {}) => {
    const neighbor = canonicalAddress(ip);
    const family = familyOf(neighbor);
    // Ourselves, a family this host does not speak, or a peer already
    // declared under a more specific kind (node > global > rr > mesh).
    if (myAddrs.has(neighbor) || !mine[family] || seen.has(neighbor)) return;
    seen.add(neighbor);
    // Mesh peers are all ours: only the lower address connects, which
    // halves the connection races when both start together.
    const passive = type === 'mesh' && cmpAddr(neighbor, mine[family]!) < 0;
    const session: RenderedSession = { name: protocolName(type, neighbor), type, family, neighbor, as, passive };
    if (extra.host !== undefined) session.host = extra.host;
    if (extra.password !== undefined) session.password = extra.password;
    out.push(session);
  };
  const byAddr = (a: BgpPeer, b: BgpPeer) => cmpAddr(a.ip, b.ip);
  for (const p of [...input.nodePeers].sort(byAddr)) add('node', p.ip, p.as, { password: p.password });
  for (const p of [...input.config.globalPeers].sort(byAddr)) add('global', p.ip, p.as, { password: p.password });
  const rrPasswords = input.config.rrPasswords ?? {};
  for (const rr of [...input.config.routeReflectors].sort(cmpAddr)) add('rr', rr, globalAs, { password: rrPasswords[canonicalAddress(rr)] });
  if (meshEnabled(input)) {
    const others = input.hosts.filter((h) => h.host !== me.host).sort((a, b) => a.host.localeCompare(b.host));
    const password = input.config.meshPassword;
    for (const h of others) {
      const as = h.as ?? globalAs;
      if (h.ip) add('mesh', h.ip, as, { host: h.host, password });
      if (h.ip6) add('mesh', h.ip6, as, { host: h.host, password });
    }
  }
  return out;
}

/** Mesh on when set on; when unset, on unless route reflectors or global peers take its place. */
export function meshEnabled(input: Pick<BirdInput, 'config'>): boolean {
  const c = input.config;
  return c.nodeMesh ?? (c.routeReflectors.length === 0 && c.globalPeers.length === 0);
}

function thisHost(input: BirdInput): BgpHost & { ip: string } {
  const me = input.hosts.find((h) => h.host === input.hostname);
  if (!me) throw new BirdRenderError(`rendering the BIRD config: host ${input.hostname} is not registered`);
  if (!me.ip) throw new BirdRenderError(`rendering the BIRD config: host ${input.hostname} has no IPv4 address (the router id)`);
  return me as BgpHost & { ip: string };
}

/** A BIRD prefix set, or undefined when empty (BIRD has no empty set literal). */
function prefixSet(cidrs: string[], orLonger: boolean): string | undefined {
  if (!cidrs.length) return undefined;
  return `[ ${cidrs.map((c) => c + (orLonger ? '+' : '')).join(', ')} ]`;
}

function sortedCidrs(cidrs: string[], family: Family): string[] {
  const parsed = [...new Set(cidrs.map((c) => parseCidr(c)))].filter((c) => c.family === family);
  parsed.sort((a, b) => (a.network < b.network ? -1 : a.network > b.network ? 1 : a.prefix - b.prefix));
  return [...new Set(parsed.map((c) => c.text))];
}

const V: Record<Family, 'v4' | 'v6'> = { 4: 'v4', 6: 'v6' };
const IPV: Record<Family, 'ipv4' | 'ipv6'> = { 4: 'ipv4', 6: 'ipv6' };

/**
 * IPv4 only: the routes the node sends through tunl0 itself (src/tunnel):
 * learned routes inside an IP-in-IP pool whose next hop (the announcing
 * host's --ip: no next hop self anywhere) is tunnelled to under the pool's
 * mode. BIRD must not put its own route for these in the kernel, where it
 * would replace the tunnel's.
 */
function tunnelledFunction(input: Pick<BirdInput, 'pools' | 'localSubnet'>): string[] {
  const v4 = input.pools.filter((p) => familyOf(p.cidr.split('/')[0]!) === 4);
  const always = prefixSet(sortedCidrs(v4.filter((p) => p.ipipMode === 'always').map((p) => p.cidr), 4), true);
  const cross = prefixSet(sortedCidrs(v4.filter((p) => p.ipipMode === 'cross-subnet').map((p) => p.cidr), 4), true);
  const narrower = prefixSet(sortedCidrs(v4.filter((p) => !p.ipipMode).map((p) => p.cidr), 4), true);
  const lines = [`# Tunnelled through tunl0 by the node (IP-in-IP pools): kept out of the kernel.`, `function calico_tunnelled_v4() {`];
  if (!always && !cross) lines.push(`  return false;`);
  else {
    // The narrowest pool decides: a pool without IP-in-IP inside one with it is routed natively.
    if (narrower) {
      const inner = ipipInsidePlain(v4);
      lines.push(`  if net ~ ${narrower}${inner ? ` && !(net ~ ${inner})` : ''} then return false;`);
    }
    if (always) lines.push(`  if net ~ ${always} then return true;`);
    if (cross) {
      lines.push(
        input.localSubnet
          ? `  if net ~ ${cross} && !(bgp_next_hop ~ ${parseCidr(input.localSubnet).text}) then return true;`
          : `  if net ~ ${cross} then return true;`,
      );
    }
    lines.push(`  return false;`);
  }
  lines.push(`}`);
  return lines;
}

/**
 * BIRD has no "narrowest pool holding the route": a route in a plain pool is
 * native unless an IP-in-IP pool nested in that plain pool holds it too.
 * The set of those nested IP-in-IP pools, or undefined when there are none.
 */
function ipipInsidePlain(v4: BirdInput['pools']): string | undefined {
  const ipip = v4.filter((p) => p.ipipMode).map((p) => parseCidr(p.cidr));
  const inner = v4
    .filter((p) => !p.ipipMode)
    .flatMap((p) => ipip.filter((i) => i.prefix > parseCidr(p.cidr).prefix && cidrWithin(i, parseCidr(p.cidr))).map((i) => i.text));
  return prefixSet(sortedCidrs(inner, 4), true);
}

/** Filters, kernel and static protocols of one family. */
function familySection(family: Family, pools: string[], blocks: string[], input: Pick<BirdInput, 'pools' | 'localSubnet'>): string {
  const v = V[family];
  const poolSet = prefixSet(pools, true);
  const blockSet = prefixSet(blocks, false);
  const insideBlocks = prefixSet(blocks, true);
  const lines = [
    `# ---------- IP${v} ----------`,
    `# Inside an IP pool (any prefix length).`,
    `function calico_in_pools_${v}() { return ${poolSet ? `net ~ ${poolSet}` : 'false'}; }`,
    `# Inside a block affine to this host.`,
    `function calico_in_blocks_${v}() { return ${insideBlocks ? `net ~ ${insideBlocks}` : 'false'}; }`,
    '',
    `# To BGP peers: this host's own routes only, never what it learned from`,
    `# a peer. A block it owns goes as one aggregate (the blackhole below); an`,
    `# address it borrowed from another host's block goes as the kernel route`,
    `# to its cali interface; more specific routes inside its own blocks stay`,
    `# home, the aggregate covers them.`,
    `filter calico_export_${v} {`,
    `  if !calico_in_pools_${v}() then reject;`,
    blockSet ? `  if proto = "Blocks_${v}" && net ~ ${blockSet} then accept;` : `  # (no affine block)`,
    `  if proto = "Kernel_${v}" && ifname ~ "cali*" && !calico_in_blocks_${v}() then accept;`,
    `  reject;`,
    `}`,
    '',
    `# From route reflectors and external peers: routes inside the pools. (Mesh`,
    `# peers have their own, narrower import: see their protocols.)`,
    `filter calico_import_${v} {`,
    `  if calico_in_pools_${v}() then accept;`,
    `  reject;`,
    `}`,
    '',
    `# Into the kernel: routes learned by BGP (next hop = the announcing host)`,
    `# and the blackholes of this host's blocks (unallocated addresses are`,
    `# dropped here instead of following the default route).`,
    ...(family === 4 ? [...tunnelledFunction(input), ''] : []),
    `filter calico_kernel_${v} {`,
    ...(family === 4 ? [`  if source = RTS_BGP && calico_tunnelled_v4() then reject;`] : []),
    `  if source = RTS_BGP && calico_in_pools_${v}() then accept;`,
    `  if proto = "Blocks_${v}" then accept;`,
    `  reject;`,
    `}`,
    '',
    `# learn: the kernel's routes to local cali interfaces (written by the`,
    `# node's dataplane) come into BIRD. persist: routes BIRD put in the kernel`,
    `# stay there when BIRD stops, so a node stop or restart leaves cross-host`,
    `# traffic flowing.`,
    `protocol kernel Kernel_${v} {`,
    `  learn;`,
    `  persist;`,
    `  scan time 10;`,
    `  graceful restart;`,
    `  ${IPV[family]} {`,
    `    import all;`,
    `    export filter calico_kernel_${v};`,
    `  };`,
    `}`,
    '',
    `protocol static Blocks_${v} {`,
    `  ${IPV[family]};`,
    ...blocks.map((b) => `  route ${b} blackhole;`),
    `}`,
  ];
  return lines.join('\n') + '\n';
}

function template(family: Family, source: string, as: string): string {
  const v = V[family];
  return [
    `template bgp calico_${v} {`,
    `  local ${source} as ${as};`,
    `  multihop;`,
    `  graceful restart;`,
    `  # A peer that vanished (link or host gone, no TCP close) is declared down`,
    `  # after 9 s instead of BIRD's default 240 s, and its routes withdrawn; a`,
    `  # peer whose BIRD restarted closes the session and keeps its routes stale.`,
    `  hold time 9;`,
    `  keepalive time 3;`,
    `  connect delay time 2;`,
    `  connect retry time 5;`,
    `  error wait time 5, 30;`,
    `  ${IPV[family]} {`,
    `    import filter calico_import_${v};`,
    `    export filter calico_export_${v};`,
    `    gateway recursive;`,
    `    # Keep what each peer sent before the import filter: when a filter`,
    `    # changes (a host claimed a block), BIRD filters it again at once`,
    `    # instead of asking the peer to send everything again.`,
    `    import table on;`,
    `  };`,
    `}`,
  ].join('\n') + '\n';
}

/**
 * `password "<pw>";` for BIRD. BIRD 2's strings have no escapes, so a
 * password that cannot sit between two quotes as it is is refused (the
 * config is not rendered and the running one stays), never altered.
 */
export function birdPassword(pw: string, session: string): string {
  const problem = bgpPasswordProblem(pw);
  if (problem) throw new BirdRenderError(`rendering the BIRD config: the password of session ${session} cannot be used: ${problem}`);
  return `password "${pw}";`;
}

/**
 * A mesh session's import: only routes the peer's host holds (its blocks,
 * any prefix inside them, and the addresses it borrowed), inside a pool.
 * The whole mesh is ours, so anything else from it is a spoofed or stray
 * announcement. A peer that holds nothing gets nothing in.
 */
function meshImport(family: Family, routes: HostRoutes | undefined): string[] {
  const v = V[family];
  const blocks = new Set(sortedCidrs(routes?.blocks ?? [], family));
  const held = sortedCidrs([...blocks, ...(routes?.borrowed ?? [])], family).map((c) => (blocks.has(c) ? `${c}+` : c));
  if (!held.length) return [`  ${IPV[family]} {`, `    import none;`, `  };`];
  return [
    `  ${IPV[family]} {`,
    `    import filter {`,
    `      if calico_in_pools_${v}() && net ~ [ ${held.join(', ')} ] then accept;`,
    `      reject;`,
    `    };`,
    `  };`,
  ];
}

function protocolText(s: RenderedSession, input: BirdInput): string {
  const lines = [`protocol bgp ${s.name} from calico_${V[s.family]} {`, `  neighbor ${s.neighbor} as ${s.as};`];
  if (s.passive) lines.push('  passive on;');
  if (s.password !== undefined) lines.push(`  ${birdPassword(s.password, s.name)}`);
  if (s.type === 'mesh') lines.push(...meshImport(s.family, input.hostRoutes[s.host!]));
  lines.push('}');
  return lines.join('\n');
}

const SECTION_TITLE: Record<SessionType, string> = {
  node: "This host's own peers",
  global: 'Global peers',
  rr: 'Route reflectors (no next hop self: the reflector keeps each route\'s next hop, the host that owns it)',
  mesh: "Node-to-node mesh (each peer's imports: only the blocks and borrowed addresses its host holds)",
};

/**
 * Renders bird.conf for `input.hostname`. Deterministic: the same input
 * gives the same text, so the supervisor reloads only on a real change.
 */
export function renderBirdConfig(input: BirdInput): string {
  const me = thisHost(input);
  const localAs = me.as ?? input.config.as ?? DEFAULT_AS;
  const pools = input.pools.map((p) => p.cidr);
  const sessions = sessionsFor(input);
  const parts: string[] = [];
  parts.push(
    [
      `# BIRD 2 configuration of host ${me.host}, rendered by calico-docker from the`,
      `# datastore. Do not edit: the node rewrites it on every change.`,
      `router id ${canonicalAddress(me.ip)};`,
      `log stderr all;`,
      `# After a restart (bird -R), wait this long at most for peers before`,
      `# dropping the routes kept from before.`,
      `graceful restart wait 60;`,
      '',
      `protocol device {`,
      `  scan time 10;`,
      `}`,
      '',
      `# Connected networks (not the cali interfaces): they resolve the next`,
      `# hops of multihop sessions. Never exported anywhere.`,
      `protocol direct {`,
      `  ipv4;`,
      `  ipv6;`,
      `  interface -"cali*", "*";`,
      `}`,
    ].join('\n') + '\n',
  );
  for (const f of [4, 6] as Family[]) {
    parts.push(familySection(f, sortedCidrs(pools, f), sortedCidrs(input.affineBlocks, f), input));
  }
  const sources: Record<Family, string | undefined> = { 4: canonicalAddress(me.ip), 6: me.ip6 && canonicalAddress(me.ip6) };
  parts.push(`# ---------- BGP sessions (local AS ${localAs}) ----------\n`);
  for (const f of [4, 6] as Family[]) {
    const src = sources[f];
    parts.push(src ? template(f, src, localAs) : `# No IPv${f === 4 ? 4 : 6} address on this host: no IPv${f} sessions.\n`);
  }
  if (!meshEnabled(input)) parts.push('# Node-to-node mesh off.\n');
  for (const type of ['node', 'global', 'rr', 'mesh'] as SessionType[]) {
    const of = sessions.filter((s) => s.type === type);
    if (!of.length) continue;
    parts.push(
      [
        `# ${SECTION_TITLE[type]}`,
        ...of.map((s) => protocolText(s, input)),
      ].join('\n') + '\n',
    );
  }
  return parts.join('\n');
}

// `calicoctl endpoint show [CONTAINER] [--detailed]`: one container's
// endpoint from any host (the datastore knows where it lives): its host,
// name and id, interface, MAC, addresses, profiles and tags, the route that
// reaches it from this host, and — on its own host — whether its chains,
// dispatch rules and tag-set memberships are in the kernel, with their
// packet counters. Without CONTAINER: a table of this host's endpoints
// (every host's with --all).
import os from 'node:os';
import type { Command } from 'commander';
import { EndpointStore, ProfileStore, type Datastore, type Endpoint, type Profile } from '../../datastore';
import { classIpset, endpointClassKey, fromClassChain, fromEndpointDispatchChain, tagIpset, toClassChain, toEndpointDispatchChain } from '../../names/kernel';
import { classPair } from '../../policy/chains';
import { dockerClient } from '../../node/docker-client';
import { withDatastore } from '../datastore';
import { addOutputOption, outputFormat, renderJson, renderTable } from '../output';
import { byContainer, findContainer, ipamName } from './endpoint-lookup';
import { chainCounters, inIpset, ipsetCounters, routeGet, type RuleCounter } from './kernel-view';

export interface ProfileView {
  name: string;
  /** False: named by the endpoint but not stored (matches nothing). */
  stored: boolean;
  tags: string[];
}

export interface ChainView {
  family: 4 | 6;
  name: string;
  present: boolean;
  rules: RuleCounter[];
}

export interface KernelView {
  /** The dispatch rules that send its class's packets to the class's chains (their counters: packets of the whole class). */
  dispatch: { family: 4 | 6; chain: string; rule?: RuleCounter }[];
  /** Its (address, interface) pairs in its class's set: present, and the packets dispatched on each (this endpoint's own). */
  pairs: { family: 4 | 6; set: string; member: string; present: boolean; packets?: number }[];
  chains: ChainView[];
  /** Tag sets the endpoint should be in: member true/false, or undefined when no such set (no rule names the tag). */
  sets: { family: 4 | 6; name: string; tag: string; member?: boolean }[];
}

export interface EndpointView {
  host: string;
  containerId: string;
  name?: string;
  endpointId: string;
  state: string;
  interface: string;
  containerInterface: string;
  mac: string;
  ipv4_nets: string[];
  ipv6_nets: string[];
  ipv4_gateway?: string | null;
  ipv6_gateway?: string | null;
  profiles: ProfileView[];
  /** Every tag of its stored profiles: tag sets hold its addresses while it is active. */
  tags: string[];
  /** `ip route get` from the host that ran the command. */
  routes: { from: string; address: string; route: string }[];
  /** Only on the endpoint's own host. */
  kernel?: KernelView;
}

/** The datastore part of the view (pure). */
export function endpointView(ep: Endpoint, profiles: Profile[], name?: string): EndpointView {
  const byName = new Map(profiles.map((p) => [p.name, p]));
  const pv = ep.profile_ids.map((id) => ({ name: id, stored: byName.has(id), tags: byName.get(id)?.tags ?? [] }));
  const v: EndpointView = {
    host: ep.host, containerId: ep.containerId, ...(name ? { name } : {}), endpointId: ep.endpointId, state: ep.state, interface: ep.name,
    containerInterface: ep['container:if_name'], mac: ep.mac, ipv4_nets: ep.ipv4_nets, ipv6_nets: ep.ipv6_nets,
    profiles: pv, tags: [...new Set(pv.flatMap((p) => p.tags))].sort(), routes: [],
  };
  if (ep.ipv4_gateway !== undefined) v.ipv4_gateway = ep.ipv4_gateway;
  if (ep.ipv6_gateway !== undefined) v.ipv6_gateway = ep.ipv6_gateway;
  return v;
}

/** Reads this host's kernel for the endpoint (root). */
async function kernelView(v: EndpointView): Promise<KernelView> {
  const families = ([4, 6] as const).filter((f) => (f === 4 ? v.ipv4_nets : v.ipv6_nets).length);
  const dispatch: KernelView['dispatch'] = [];
  const pairs: KernelView['pairs'] = [];
  const chains: ChainView[] = [];
  const sets: KernelView['sets'] = [];
  const key = endpointClassKey(v.profiles.filter((p) => p.stored).map((p) => p.name));
  for (const f of families.length ? families : [4 as const]) {
    const set = classIpset(f, key);
    for (const [chain, dir] of [[fromEndpointDispatchChain(), 'src'], [toEndpointDispatchChain(), 'dst']] as const) {
      const rule = (await chainCounters(f, chain))?.find((r) => r.rule.includes(`--match-set ${set} ${dir},${dir} `));
      dispatch.push({ family: f, chain, ...(rule ? { rule } : {}) });
    }
    const counters = await ipsetCounters(set);
    for (const n of f === 4 ? v.ipv4_nets : v.ipv6_nets) {
      const member = classPair(n, v.interface);
      const packets = counters?.get(member);
      pairs.push({ family: f, set, member, present: packets !== undefined, ...(packets !== undefined ? { packets } : {}) });
    }
    for (const name of [fromClassChain(key), toClassChain(key)]) {
      const rules = await chainCounters(f, name);
      chains.push({ family: f, name, present: rules !== undefined, rules: rules ?? [] });
    }
    const addrs = (f === 4 ? v.ipv4_nets : v.ipv6_nets).map((n) => n.split('/')[0]!);
    for (const tag of v.tags) {
      const set = tagIpset(f, tag);
      let member: boolean | undefined;
      for (const a of addrs) {
        const m = await inIpset(set, a);
        member = m === undefined ? member : (member ?? true) && m;
      }
      sets.push({ family: f, name: set, tag, ...(member !== undefined ? { member } : {}) });
    }
  }
  return { dispatch, pairs, chains, sets };
}

/** The text of one endpoint's view (pure). */
export function renderEndpoint(v: EndpointView, detailed: boolean): string {
  const lines: string[] = [];
  const kv = (k: string, val: string) => lines.push(`${(k + ':').padEnd(14)}${val}`);
  kv('Container', v.name ? `${v.name} (${v.containerId})` : v.containerId);
  kv('Host', v.host);
  kv('Endpoint', `${v.endpointId} (${v.state})`);
  kv('Interface', `${v.interface} (host side); ${v.containerInterface} in the container`);
  kv('MAC', v.mac);
  kv('Addresses', [...v.ipv4_nets, ...v.ipv6_nets].join(', ') || '(none)');
  const gw = [v.ipv4_gateway, v.ipv6_gateway].filter((g): g is string => !!g);
  if (gw.length) kv('Gateways', gw.join(', '));
  kv('Profiles', v.profiles.map((p) => (p.stored ? p.name : `${p.name} (not stored: matches nothing)`)).join(', ') || '(none: all its traffic is dropped)');
  kv('Tags', v.tags.join(', ') || '(none)');
  for (const r of v.routes) kv(`Route`, `from ${r.from}: ${r.route}`);
  if (v.kernel) {
    lines.push(`Kernel (this host):`);
    for (const d of v.kernel.dispatch) {
      const fam = d.family === 6 ? 'IPv6 ' : '';
      lines.push(
        d.rule
          ? `  ${fam}dispatch ${d.chain}: ${d.rule.rule}  [${d.rule.packets} packets, its class's]`
          : `  ${fam}dispatch ${d.chain}: MISSING (no rule for its class; its packets are dropped as unknown)`,
      );
    }
    for (const p of v.kernel.pairs) {
      const fam = p.family === 6 ? 'IPv6 ' : '';
      lines.push(
        p.present
          ? `  ${fam}set ${p.set}: holds ${p.member}  [${p.packets} packets]`
          : `  ${fam}set ${p.set}: MISSING ${p.member}${v.state === 'active' ? ' (its packets are dropped as spoofed or unknown)' : ' (the endpoint is inactive: expected)'}`,
      );
    }
    for (const c of v.kernel.chains) {
      const fam = c.family === 6 ? 'IPv6 ' : '';
      if (!c.present) {
        lines.push(`  ${fam}chain ${c.name}: MISSING${v.state === 'active' ? '' : ' (the endpoint is inactive: expected)'}`);
        continue;
      }
      const drops = c.rules.filter((r) => / -j DROP$/.test(r.rule));
      const dropped = drops.reduce((n, r) => n + r.packets, 0);
      lines.push(`  ${fam}chain ${c.name}: present, ${c.rules.length} rules, ${dropped} packets dropped`);
      const shown = detailed ? c.rules : drops.filter((r) => r.packets > 0);
      for (const r of shown) lines.push(`    [${String(r.packets).padStart(6)} packets] ${r.rule}`);
    }
    for (const s of v.kernel.sets) {
      const state = s.member === true ? 'member' : s.member === false ? 'NOT a member' : 'no such set (no rule of this host names the tag)';
      lines.push(`  set ${s.name}: ${state}`);
    }
  } else {
    lines.push(`Kernel:       on host ${v.host} only (run this there, as root, for its chains and counters)`);
  }
  return lines.join('\n') + '\n';
}

interface Flags {
  detailed?: boolean;
  all?: boolean;
  docker: string;
  hostname: string;
  output?: string;
}

/** Names of this host's containers, as its Docker knows them (empty when Docker cannot be asked). */
async function localNames(docker: string): Promise<Map<string, string>> {
  try {
    const list = (await dockerClient(docker).listContainers({ all: true })) as { Id: string; Names?: string[] }[];
    return new Map(list.map((c) => [c.Id, (c.Names?.[0] ?? '').replace(/^\//, '')]));
  } catch {
    return new Map();
  }
}

async function listEndpoints(ds: Datastore, flags: Flags): Promise<EndpointView[]> {
  const [eps, profiles] = await Promise.all([new EndpointStore(ds).list(flags.all ? undefined : flags.hostname), new ProfileStore(ds).list()]);
  const names = await localNames(flags.docker);
  const out: EndpointView[] = [];
  for (const [id, list] of byContainer(eps)) {
    const name = names.get(id) ?? (await ipamName(ds, list));
    for (const ep of list) out.push(endpointView(ep, profiles, name));
  }
  return out.sort((a, b) => a.host.localeCompare(b.host) || (a.name ?? a.containerId).localeCompare(b.name ?? b.containerId));
}

async function show(container: string | undefined, flags: Flags, cmd: Command): Promise<void> {
  const format = outputFormat(flags.output);
  if (container === undefined) {
    const views = await withDatastore(cmd, (ds) => listEndpoints(ds, flags));
    if (format === 'json') {
      process.stdout.write(renderJson(views));
      return;
    }
    if (!views.length) {
      process.stdout.write(flags.all ? 'No endpoints.\n' : `No endpoints on host ${flags.hostname} (--all for every host's).\n`);
      return;
    }
    process.stdout.write(
      renderTable(
        ['Host', 'Container', 'Endpoint ID', 'Interface', 'Addresses', 'Profiles', 'State'].map((header) => ({ header })),
        views.map((v) => [
          v.host, v.name ?? v.containerId.slice(0, 12), v.endpointId.slice(0, 12), v.interface,
          [...v.ipv4_nets, ...v.ipv6_nets].join('\n') || 'None', v.profiles.map((p) => p.name).join('\n') || 'None', v.state,
        ]),
      ),
    );
    return;
  }
  const views = await withDatastore(cmd, async (ds) => {
    const [all, profiles] = await Promise.all([new EndpointStore(ds).list(), new ProfileStore(ds).list()]);
    const c = await findContainer(ds, all, container, flags.docker);
    const name = c.name ?? (await ipamName(ds, c.endpoints));
    return c.endpoints.map((ep) => endpointView(ep, profiles, name));
  });
  for (const v of views) {
    for (const n of [v.ipv4_nets[0], v.ipv6_nets[0]]) {
      if (n === undefined) continue;
      const address = n.split('/')[0]!;
      v.routes.push({ from: flags.hostname, address, route: await routeGet(address) });
    }
    // Reading iptables needs root; elsewhere the datastore part is the whole answer.
    const root = typeof process.getuid !== 'function' || process.getuid() === 0;
    if (v.host === flags.hostname && root) v.kernel = await kernelView(v);
  }
  if (format === 'json') {
    process.stdout.write(renderJson(views.length === 1 ? views[0] : views));
    return;
  }
  process.stdout.write(views.map((v) => renderEndpoint(v, flags.detailed === true)).join('\n'));
}

export function registerEndpoint(program: Command): void {
  const endpoint = program
    .command('endpoint')
    .description('Show containers\' endpoints: where they live, their addresses, profiles, routes and kernel state')
    .addHelpText('after', '\nExample:\n  calicoctl endpoint show group1-node1');
  const cmd = endpoint
    .command('show')
    .description('One container\'s endpoint, from any host (by name, id prefix or address); without CONTAINER, a table of this host\'s endpoints')
    .argument('[CONTAINER]', 'a container name (known to this host\'s Docker, or recorded by the proxy), id or id prefix, or an endpoint address')
    .option('--detailed', 'with CONTAINER: every rule of its chains with its packet counter (default: the DROP rules that counted packets)')
    .option('--all', 'without CONTAINER: the endpoints of every host, not only this one\'s')
    .option('--docker <URL>', 'this host\'s Docker daemon, for container names', 'unix:///var/run/docker.sock')
    .option('--hostname <NAME>', 'this host\'s name in the datastore', os.hostname());
  addOutputOption(cmd).action((container: string | undefined, flags: Flags, c: Command) => show(container, flags, c));
  cmd.addHelpText(
    'after',
    [
      '',
      'Examples:',
      '  calicoctl endpoint show                          # this host\'s endpoints',
      '  calicoctl endpoint show --all                    # every host\'s',
      '  calicoctl endpoint show group1-node1             # host, addresses, profiles, route; on its host the chains and counters',
      '  calicoctl endpoint show 192.168.89.2 -o json',
      '  calicoctl endpoint show group1-node1 --detailed  # every rule of its chains with its counter',
    ].join('\n'),
  );
}

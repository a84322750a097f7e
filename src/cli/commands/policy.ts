// `calicoctl policy trace A B [--port P]`: why A can (not) reach B, from the
// datastore alone (src/policy/trace.ts evaluates; this file finds A and B,
// prints the steps as the operator wrote the rules, and with --probe reads
// the deciding chain's counters on this host around the user's own traffic).
import os from 'node:os';
import type { Command } from 'commander';
import { isAddress, parseAddress } from '../../address/cidr';
import { EndpointStore, HostStore, ProfileStore, type Endpoint, type Host } from '../../datastore';
import { ENDPOINT_TO_HOST_ACTIONS, type EndpointToHostAction } from '../../policy';
import {
  EPHEMERAL_PORT,
  endpointAddress,
  parsePortSpec,
  tracePolicy,
  type TracePacket,
  type TraceParty,
  type TraceResult,
  type TraceStep,
} from '../../policy/trace';
import { withDatastore } from '../datastore';
import { CliError, requireRoot } from '../errors';
import { addOutputOption, outputFormat, renderJson } from '../output';
import { findContainer } from './endpoint-lookup';
import { chainCounters, countersMoved, type RuleCounter } from './kernel-view';
import { ruleText } from './profile-spec';

/** One line for one step, the rule as `profile P rule show` prints it. */
export function stepText(s: TraceStep): string {
  const toHost = s.toHost ? ' (to this host)' : '';
  switch (s.kind) {
    case 'rule':
      return `profile ${s.profile} ${s.side} rule ${s.ruleNumber}: ${ruleText(s.rule!)}${toHost}`;
    case 'no-match':
      return `profile ${s.profile} ${s.side}: no rule matched${s.toHost ? ' (to this host only its deny rules and the allows that name a dst_net apply)' : ''}`;
    case 'missing-profile':
      return `profile ${s.profile}: not stored, matches nothing (the next profile is tried)`;
    case 'default-drop':
      return s.toHost
        ? 'Default DROP if no profile allowed it: to this host only an outbound allow naming a dst_net opens it (endpoint-to-host action drop)'
        : 'Default DROP if no profile allowed it';
    case 'anti-spoof':
      return s.verdict === 'deny'
        ? 'Anti-spoof DROP: the source address is not one of the endpoint\'s (no class set holds it with its interface)'
        : 'anti-spoof: the source is the endpoint\'s own address, on its own interface';
    case 'inactive':
      return s.side === 'outbound'
        ? 'endpoint is inactive (its container is stopped): no class set holds its addresses, DROP "Anti-spoof DROP: no endpoint of this host has this source address on this interface"'
        : 'endpoint is inactive (its container is stopped): no class set holds its addresses, DROP "Unknown destination interface or address"';
    case 'host-reaches':
      return `host ${s.host} reaches its own containers: ACCEPT (inbound rules are not consulted)`;
    case 'neighbour-discovery':
      return 'IPv6 neighbour discovery: allowed ahead of policy';
    case 'host-service':
      return `${s.note ?? 'host service'}: allowed ahead of policy (endpoint-to-host action accept)`;
    case 'not-calico':
      return 'not a Calico endpoint: no rules of ours on this side';
  }
}

export interface PartyView {
  /** What the user typed. */
  query: string;
  kind: 'container' | 'host' | 'address';
  address: string;
  host?: string;
  containerId?: string;
  name?: string;
  endpointId?: string;
  interface?: string;
  profiles?: string[];
  state?: string;
}

function partyLine(p: PartyView): string {
  if (p.kind === 'container') {
    const who = p.name ? `container ${p.name} (${p.containerId!.slice(0, 12)})` : `container ${p.containerId!.slice(0, 12)}`;
    return `${who} on host ${p.host}, ${p.address}, interface ${p.interface}, profiles ${p.profiles!.join(', ') || '(none)'}${p.state === 'active' ? '' : ` [${p.state}]`}`;
  }
  if (p.kind === 'host') return `host ${p.host} (${p.address})`;
  return `${p.address} (not a Calico endpoint or host)`;
}

function packetText(p: TracePacket): string {
  const what =
    p.protocol === 'tcp' || p.protocol === 'udp'
      ? `${p.protocol} ${p.srcPort ?? EPHEMERAL_PORT} -> ${p.dstPort}`
      : `${p.protocol} type ${p.icmpType}${p.icmpCode ? ` code ${p.icmpCode}` : ''}`;
  return `${p.src} -> ${p.dst}, ${what} (IPv${p.family}, the first packet of a new connection)`;
}

/** The whole trace as text (pure). */
export function traceText(t: TraceResult, from?: PartyView, to?: PartyView): string {
  const lines: string[] = [];
  if (from) lines.push(`From:   ${partyLine(from)}`);
  if (to) lines.push(`To:     ${partyLine(to)}`);
  lines.push(`Packet: ${packetText(t.packet)}`);
  for (const side of ['outbound', 'inbound'] as const) {
    const steps = t.steps.filter((s) => s.side === side);
    if (!steps.length) continue;
    const host = steps.find((s) => s.host)?.host;
    lines.push(`${side === 'outbound' ? 'A\'s outbound side' : 'B\'s inbound side'}${host ? ` (host ${host})` : ''}:`);
    for (const s of steps) lines.push(`  ${s.verdict === 'pass' ? '-' : s.verdict.toUpperCase()} ${stepText(s)}${s.chain ? `  [${s.chain}]` : ''}`);
  }
  const d = t.decidedBy;
  lines.push(`Verdict: ${t.verdict.toUpperCase()} by ${stepText(d)}${d.chain ? ` (chain ${d.chain}${d.host ? ` on ${d.host}` : ''})` : ''}`);
  return lines.join('\n') + '\n';
}

/** Whose address is this: an endpoint's (active first), a registered host's, or nobody's of ours. */
async function resolveParty(
  query: string,
  all: Endpoint[],
  hosts: Host[],
  ds: Parameters<typeof findContainer>[0],
  docker: string,
): Promise<{ view: Omit<PartyView, 'address'>; party: (family: 4 | 6) => { party: TraceParty; address: string | undefined } }> {
  if (isAddress(query)) {
    const a = parseAddress(query);
    const canon = query.toLowerCase();
    const host = hosts.find((h) => h.ip === query || (h.ip6 && parseAddress(h.ip6).value === a.value && a.family === 6));
    const hasEp = all.some((e) => [...e.ipv4_nets, ...e.ipv6_nets].some((n) => n.split('/')[0] === canon));
    if (host && !hasEp) {
      return {
        view: { query, kind: 'host', host: host.host },
        party: () => ({ party: { kind: 'address', address: canon, host: host.host }, address: canon }),
      };
    }
    if (!hasEp) return { view: { query, kind: 'address' }, party: () => ({ party: { kind: 'address', address: canon }, address: canon }) };
  }
  const c = await findContainer(ds, all, query, docker);
  // One endpoint per container (Docker's one calico network); an active one first.
  const ep = c.endpoints.find((e) => e.state === 'active') ?? c.endpoints[0]!;
  return {
    view: {
      query, kind: 'container', host: c.host, containerId: c.containerId, ...(c.name ? { name: c.name } : {}),
      endpointId: ep.endpointId, interface: ep.name, profiles: ep.profile_ids, state: ep.state,
    },
    party: (family) => {
      // An address the user gave is the one used (anti-spoof checks it), else the endpoint's first.
      const address = isAddress(query) && parseAddress(query).family === family ? query.toLowerCase() : endpointAddress(ep, family);
      return { party: { kind: 'endpoint', endpoint: ep }, address };
    },
  };
}

interface Flags {
  port?: string;
  ipv6?: boolean;
  endpointToHostAction: string;
  probe?: string;
  docker: string;
  hostname: string;
  output?: string;
}

export interface ProbeResult {
  host: string;
  chain: string;
  seconds: number;
  /** Rules of the chain whose packet counter moved while probing. */
  moved: (RuleCounter & { index: number })[];
}

/** Reads `chain`'s counters, waits, reads them again: what the user's own traffic hit meanwhile. */
async function probe(family: 4 | 6, chain: string, seconds: number, host: string): Promise<ProbeResult> {
  const before = await chainCounters(family, chain);
  if (!before) throw new CliError(`Chain ${chain} is not in this host's IPv${family} filter table: is the node running here, and is this host ${host}?`);
  process.stderr.write(`Probing ${chain} for ${seconds} s: send the traffic now (e.g. ping or connect from A to B).\n`);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = (await chainCounters(family, chain)) ?? [];
  return { host, chain, seconds, moved: countersMoved(before, after) };
}

function probeText(p: ProbeResult): string {
  const head = `Probe: ${p.chain} on ${p.host} over ${p.seconds} s: `;
  if (!p.moved.length) return `${head}no rule counted a packet (no traffic of that kind was sent, or it never reached this chain)\n`;
  return head + `\n${p.moved.map((m) => `  +${m.packets} packets  rule ${m.index + 1}: ${m.rule}`).join('\n')}\n`;
}

async function trace(a: string, b: string, flags: Flags, cmd: Command): Promise<void> {
  const format = outputFormat(flags.output);
  const family: 4 | 6 = flags.ipv6 ? 6 : 4;
  const action = flags.endpointToHostAction as EndpointToHostAction;
  if (!ENDPOINT_TO_HOST_ACTIONS.includes(action)) {
    throw new CliError(`Invalid --endpoint-to-host-action "${flags.endpointToHostAction}": expected ${ENDPOINT_TO_HOST_ACTIONS.join(' or ')}.`, 2);
  }
  let ports: ReturnType<typeof parsePortSpec>;
  try {
    ports = parsePortSpec(flags.port, family);
  } catch (e) {
    const why = (e as Error).message;
    throw new CliError(`Invalid --port: ${why}${/expected/.test(why) ? '' : ' (expected PORT[/tcp|/udp] or icmp[/TYPE[/CODE]])'}.`, 2);
  }
  let seconds: number | undefined;
  if (flags.probe !== undefined) {
    seconds = Number(flags.probe);
    if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) throw new CliError(`Invalid --probe "${flags.probe}": expected seconds, 1 to 600.`, 2);
    requireRoot('policy trace --probe');
  }
  const { result, from, to } = await withDatastore(cmd, async (ds) => {
    const [endpoints, profiles, hosts] = await Promise.all([new EndpointStore(ds).list(), new ProfileStore(ds).list(), new HostStore(ds).list()]);
    const ra = await resolveParty(a, endpoints, hosts, ds, flags.docker);
    const rb = await resolveParty(b, endpoints, hosts, ds, flags.docker);
    const pa = ra.party(family);
    const pb = rb.party(family);
    if (!pa.address) throw new CliError(`${a} has no IPv${family} address${family === 4 ? ' (try --ipv6)' : ''}.`);
    if (!pb.address) throw new CliError(`${b} has no IPv${family} address${family === 4 ? ' (try --ipv6)' : ''}.`);
    if (parseAddress(pa.address).family !== family || parseAddress(pb.address).family !== family) {
      throw new CliError(`${a} and ${b} must be addresses of one family (IPv${family}${family === 4 ? '; --ipv6 for IPv6' : ''}).`, 2);
    }
    const packet: TracePacket = { family, src: pa.address, dst: pb.address, ...ports };
    if (packet.protocol === 'tcp' || packet.protocol === 'udp') packet.srcPort = EPHEMERAL_PORT;
    const r = tracePolicy({ endpoints, profiles, options: { endpointToHostAction: action } }, pa.party, pb.party, packet);
    return { result: r, from: { ...ra.view, address: pa.address } as PartyView, to: { ...rb.view, address: pb.address } as PartyView };
  });
  let probed: ProbeResult | undefined;
  if (seconds !== undefined) {
    // The deciding chain if it is on this host, else the last chain of this host's side.
    const here = [result.decidedBy, ...[...result.steps].reverse()].find((s) => s.chain && s.host === flags.hostname);
    if (!here) {
      const hosts = [...new Set(result.steps.map((s) => s.host).filter(Boolean))];
      throw new CliError(`--probe reads this host's counters, and no chain of this trace is on ${flags.hostname}: run it on ${hosts.join(' or ') || 'the host of A or B'}.`);
    }
    probed = await probe(family, here.chain!, seconds, flags.hostname);
  }
  if (format === 'json') {
    const steps = result.steps.map((s) => ({ ...s, text: stepText(s) }));
    process.stdout.write(renderJson({ from, to, packet: result.packet, verdict: result.verdict, decidedBy: { ...result.decidedBy, text: stepText(result.decidedBy) }, steps, ...(probed ? { probe: probed } : {}) }));
    return;
  }
  process.stdout.write(traceText(result, from, to) + (probed ? probeText(probed) : ''));
}

export function registerPolicy(program: Command): void {
  const policy = program
    .command('policy')
    .description('Explain the policy: what the profiles of two endpoints do to a packet between them')
    .addHelpText('after', '\nExample:\n  calicoctl policy trace group1-node1 group1-node2 --port 80/tcp');
  const cmd = policy
    .command('trace')
    .description('Why A can or cannot reach B: A\'s outbound and B\'s inbound rules evaluated for one new packet, from the datastore')
    .argument('<A>', 'the source: a container name or id (prefix), an endpoint\'s address, a host\'s address, or any address')
    .argument('<B>', 'the destination: the same forms')
    .option('--port <P>', 'the packet: PORT[/tcp|/udp] (a bare port is tcp), or icmp[/TYPE[/CODE]] (default: a ping, icmp echo request)')
    .option('--ipv6', 'trace the IPv6 packet (default IPv4)')
    .option('--endpoint-to-host-action <drop|accept>', 'what the nodes run with (calicoctl node --endpoint-to-host-action); decides traffic from a container to its own host', 'drop')
    .option('--probe <SECONDS>', 'also read the deciding chain\'s packet counters on this host before and after SECONDS, while you send the traffic yourself (root)')
    .option('--docker <URL>', 'this host\'s Docker daemon, to resolve container names', 'unix:///var/run/docker.sock')
    .option('--hostname <NAME>', 'this host\'s name in the datastore (for --probe)', os.hostname());
  addOutputOption(cmd).action((a: string, b: string, flags: Flags, c: Command) => trace(a, b, flags, c));
  cmd.addHelpText(
    'after',
    [
      '',
      'Examples:',
      '  calicoctl policy trace group1-node1 group1-node2            # a ping between two containers',
      '  calicoctl policy trace 198.18.1.2 group1-node1 --port 80/tcp   # from an address on the LAN',
      '  calicoctl policy trace web 10.0.0.5 --port 2379 -o json        # a container to its own host',
      '  calicoctl policy trace group1-node1 group1-node2 --probe 5     # then ping within 5 s; prints the counters that moved',
    ].join('\n'),
  );
}

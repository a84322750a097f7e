// `policy trace` against the compiled rules: for each row of a table of rule
// sets, trace's verdict and deciding chain/rule must equal what the
// compiler's iptables rules do to the same packet (walked by iptables-sim).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { compilePolicy, ruleMatches } from '../../src/policy';
import { parsePortSpec, tracePolicy, type TraceOptions, type TracePacket, type TraceParty, type TraceResult } from '../../src/policy/trace';
import { defaultProfile, DEFAULT_PROFILE, Endpoint, Profile, ProfileRulesInput, RuleValue } from '../../src/datastore';
import { stepText, traceText } from '../../src/cli/commands/policy';
import { simulate, type SimPacket, type SimResult } from './iptables-sim';

const ROOT = path.join(__dirname, '..', '..', '..');
const BLOG = ProfileRulesInput.parse(JSON.parse(fs.readFileSync(path.join(ROOT, 'examples', 'blog', 'prof_group1.json'), 'utf8')));
const PROF_GROUP1: Profile = { name: 'PROF_GROUP1', tags: ['PROF_GROUP1'], rules: BLOG };
const PROF_GROUP2: Profile = { name: 'PROF_GROUP2', tags: ['PROF_GROUP2'], rules: { inbound_rules: [{ action: 'allow', src_tag: 'PROF_GROUP2' }], outbound_rules: [{ action: 'allow' }] } };

let n = 0;
function ep(host: string, profiles: string[], v4: string[], v6: string[] = [], state: 'active' | 'inactive' = 'active'): Endpoint {
  n++;
  const hex = n.toString(16).padStart(11, '0');
  return {
    host, containerId: `c${n}`, endpointId: `e${hex}`, state, name: `cali${hex}`, mac: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`,
    'container:if_name': 'eth0', profile_ids: profiles, ipv4_nets: v4, ipv6_nets: v6,
  };
}

const HOST_IP: Record<string, string> = { h1: '10.0.0.1', h3: '10.0.0.3' };

interface Row {
  name: string;
  profiles: Profile[];
  /** A, B: an endpoint, or an address (optionally of host h1/h3). */
  a: Endpoint | { address: string; host?: string };
  b: Endpoint | { address: string; host?: string };
  /** Extra endpoints (tag members). */
  others?: Endpoint[];
  port?: string;
  family?: 4 | 6;
  options?: TraceOptions;
  expect: 'allow' | 'deny';
  /** The deciding step's text, as `policy trace` prints it. */
  text: string;
}

const isEp = (x: Row['a']): x is Endpoint => 'endpointId' in x;
const party = (x: Row['a']): TraceParty => (isEp(x) ? { kind: 'endpoint', endpoint: x } : { kind: 'address', address: x.address, ...(x.host ? { host: x.host } : {}) });
const addrOf = (x: Row['a'], f: 4 | 6): string => (isEp(x) ? (f === 4 ? x.ipv4_nets : x.ipv6_nets)[0]!.split('/')[0]! : x.address);

/** What the kernels of the hosts involved do with the packet (each side on its own host). */
function kernel(row: Row, pkt: TracePacket): { verdict: 'allow' | 'deny'; runs: SimResult[] } {
  const endpoints = [row.a, row.b, ...(row.others ?? [])].filter(isEp);
  const base = (): SimPacket => ({
    family: pkt.family, src: pkt.src, dst: pkt.dst, protocol: pkt.protocol,
    ...(pkt.dstPort !== undefined ? { dport: pkt.dstPort, sport: 40000 } : {}),
    ...(pkt.icmpType !== undefined ? { icmpType: pkt.icmpType, icmpCode: pkt.icmpCode ?? 0 } : {}),
    ...(isEp(row.a) ? { mac: row.a.mac } : {}),
  });
  const state = (host: string) =>
    compilePolicy({ host, endpoints, profiles: row.profiles, options: { endpointToHostAction: row.options?.endpointToHostAction ?? 'drop' } });
  const runs: SimResult[] = [];
  const a = row.a;
  const b = row.b;
  if (isEp(a)) {
    if (isEp(b) && b.host === a.host) runs.push(simulate(state(a.host), 'cali-FORWARD', { ...base(), iif: a.name, oif: b.name }));
    else if (!isEp(b) && b.host === a.host) runs.push(simulate(state(a.host), 'cali-INPUT', { ...base(), iif: a.name, dstLocal: true }));
    else runs.push(simulate(state(a.host), 'cali-FORWARD', { ...base(), iif: a.name, oif: 'eth0' }));
  }
  if (isEp(b) && !(isEp(a) && a.host === b.host)) {
    if (!isEp(a) && a.host === b.host) runs.push(simulate(state(b.host), 'cali-OUTPUT', { ...base(), oif: b.name }));
    else runs.push(simulate(state(b.host), 'cali-FORWARD', { ...base(), iif: 'eth0', oif: b.name }));
  }
  return { verdict: runs.every((r) => r.verdict === 'ACCEPT') ? 'allow' : 'deny', runs };
}

function trace(row: Row): TraceResult {
  const family = row.family ?? 4;
  const endpoints = [row.a, row.b, ...(row.others ?? [])].filter(isEp);
  const pkt: TracePacket = { family, src: addrOf(row.a, family), dst: addrOf(row.b, family), ...parsePortSpec(row.port, family) };
  if (pkt.dstPort !== undefined) pkt.srcPort = 40000;
  return tracePolicy({ endpoints, profiles: row.profiles, ...(row.options ? { options: row.options } : {}) }, party(row.a), party(row.b), pkt);
}

const DEF = defaultProfile(DEFAULT_PROFILE);
const P = (name: string, inbound: RuleValue[], outbound: RuleValue[] = [{ action: 'allow' }], tags = [name]): Profile => ({
  name, tags, rules: { inbound_rules: inbound, outbound_rules: outbound },
});

function rows(): Row[] {
  const g1a = ep('h1', ['PROF_GROUP1'], ['192.168.0.1/32']);
  const g1b = ep('h1', ['PROF_GROUP1'], ['192.168.0.2/32']);
  const g1c3 = ep('h3', ['PROF_GROUP1'], ['192.168.0.3/32']);
  const g2a = ep('h1', ['PROF_GROUP2'], ['192.168.0.4/32']);
  const g2c3 = ep('h3', ['PROF_GROUP2'], ['192.168.0.5/32']);
  const d1 = ep('h1', [DEFAULT_PROFILE], ['192.168.1.1/32', '192.168.1.100/32'], ['fd80::1/128']);
  const d3 = ep('h3', [DEFAULT_PROFILE], ['192.168.1.3/32'], ['fd80::3/128']);
  const web = P('WEB', [{ action: 'deny', protocol: 'tcp', dst_ports: [22] }, { protocol: 'tcp', dst_ports: [80, '8000:8080'] }, { protocol: 'udp', dst_ports: [53] }]);
  const w = ep('h3', ['WEB'], ['192.168.2.1/32'], ['fd80::21/128']);
  const lan = P('LAN', [{ action: 'allow', src_net: '10.0.0.0/24' }, { action: 'allow', src_net: 'fd00::/64', protocol: 'icmpv6' }]);
  const l = ep('h3', ['LAN'], ['192.168.3.1/32'], ['fd80::31/128']);
  const multi = ep('h3', ['DENYUDP', 'MISSING', 'WEB'], ['192.168.4.1/32']);
  const denyudp = P('DENYUDP', [{ action: 'deny', protocol: 'udp' }], [{ action: 'allow' }], []);
  const only6 = P('ONLY6', [{ ip_version: 6 }]);
  const o6 = ep('h3', ['ONLY6'], ['192.168.5.1/32'], ['fd80::51/128']);
  const out = P('OUTDENY', [{}], [{ action: 'deny', dst_net: '192.168.2.0/24' }, { action: 'allow', dst_net: '10.0.0.1/32', protocol: 'tcp', dst_ports: [2379] }, { action: 'allow' }]);
  const od = ep('h1', ['OUTDENY'], ['192.168.6.1/32']);
  const icmp = P('ICMP', [{ protocol: 'icmp', icmp_type: 8 }, { protocol: 'icmp', icmp_type: 3, icmp_code: 1 }]);
  const ic = ep('h3', ['ICMP'], ['192.168.7.1/32']);
  const gone = ep('h3', ['PROF_GROUP1'], ['192.168.8.1/32'], [], 'inactive');
  const all = [PROF_GROUP1, PROF_GROUP2, DEF, web, lan, denyudp, only6, out, icmp];
  return [
    // The blog post: group 1 members reach each other, and its second inbound rule lets anything else in.
    { name: 'blog: group1 -> group1, same host', profiles: all, a: g1a, b: g1b, expect: 'allow', text: 'profile PROF_GROUP1 inbound rule 1: allow from tag PROF_GROUP1' },
    { name: 'blog: group1 -> group1 across hosts', profiles: all, a: g1a, b: g1c3, expect: 'allow', text: 'profile PROF_GROUP1 inbound rule 1: allow from tag PROF_GROUP1' },
    { name: 'blog: group2 -> group1 (its allow-all)', profiles: all, a: g2a, b: g1c3, expect: 'allow', text: 'profile PROF_GROUP1 inbound rule 2: allow' },
    { name: 'blog: group1 -> group2 denied', profiles: all, a: g1a, b: g2c3, others: [g2a], expect: 'deny', text: /Default DROP/.source },
    { name: 'blog: group2 -> group2 across hosts', profiles: all, a: g2a, b: g2c3, expect: 'allow', text: 'profile PROF_GROUP2 inbound rule 1: allow from tag PROF_GROUP2' },
    { name: 'default profile: members reach each other', profiles: all, a: d1, b: d3, expect: 'allow', text: 'profile calico:default inbound rule 1: allow from tag calico:default' },
    { name: 'default profile: the LAN does not reach it', profiles: all, a: { address: '10.0.0.50' }, b: d3, expect: 'deny', text: /Default DROP/.source },
    { name: 'default profile, IPv6', profiles: all, a: d1, b: d3, family: 6, expect: 'allow', text: 'profile calico:default inbound rule 1: allow from tag calico:default' },
    { name: 'ports: deny before allow', profiles: all, a: d1, b: w, port: '22', expect: 'deny', text: 'profile WEB inbound rule 1: deny tcp to ports 22' },
    { name: 'ports: tcp 80', profiles: all, a: d1, b: w, port: '80/tcp', expect: 'allow', text: 'profile WEB inbound rule 2: allow tcp to ports 80,8000:8080' },
    { name: 'ports: in a range', profiles: all, a: d1, b: w, port: '8080', expect: 'allow', text: 'profile WEB inbound rule 2: allow tcp to ports 80,8000:8080' },
    { name: 'ports: udp 80 is not tcp 80', profiles: all, a: d1, b: w, port: '80/udp', expect: 'deny', text: /Default DROP/.source },
    { name: 'ports: udp 53', profiles: all, a: d1, b: w, port: '53/udp', expect: 'allow', text: 'profile WEB inbound rule 3: allow udp to ports 53' },
    { name: 'ports: ping is not tcp', profiles: all, a: d1, b: w, expect: 'deny', text: /Default DROP/.source },
    { name: 'CIDR: from the LAN', profiles: all, a: { address: '10.0.0.50' }, b: l, expect: 'allow', text: 'profile LAN inbound rule 1: allow from 10.0.0.0/24' },
    { name: 'CIDR: from elsewhere', profiles: all, a: { address: '172.16.0.1' }, b: l, expect: 'deny', text: /Default DROP/.source },
    { name: 'CIDR: a v6 rule in v6', profiles: all, a: { address: 'fd00::50' }, b: l, family: 6, expect: 'allow', text: 'profile LAN inbound rule 2: allow icmpv6 from fd00::/64' },
    { name: 'CIDR: a v4 net does not apply in v6', profiles: all, a: { address: 'fd01::50' }, b: l, family: 6, expect: 'deny', text: /Default DROP/.source },
    { name: 'multiple profiles: a deny in the first stops', profiles: all, a: d1, b: multi, port: '53/udp', expect: 'deny', text: 'profile DENYUDP inbound rule 1: deny udp' },
    { name: 'multiple profiles: missing skipped, the third allows', profiles: all, a: d1, b: multi, port: '80', expect: 'allow', text: 'profile WEB inbound rule 2: allow tcp to ports 80,8000:8080' },
    { name: 'ip_version 6 only: v4 dropped', profiles: all, a: d1, b: o6, expect: 'deny', text: /Default DROP/.source },
    { name: 'ip_version 6 only: v6 allowed', profiles: all, a: d1, b: o6, family: 6, expect: 'allow', text: 'profile ONLY6 inbound rule 1: allow (IPv6 only)' },
    { name: 'outbound deny to a net', profiles: all, a: od, b: w, port: '80', expect: 'deny', text: 'profile OUTDENY outbound rule 1: deny to 192.168.2.0/24' },
    { name: 'outbound allow-all elsewhere', profiles: all, a: od, b: l, others: [], port: '80', expect: 'deny', text: /Default DROP/.source },
    { name: 'endpoint-to-host drop: allow-all does not open the host', profiles: all, a: d1, b: { address: HOST_IP.h1!, host: 'h1' }, port: '2379', expect: 'deny', text: /Default DROP.*this host/.source },
    { name: 'endpoint-to-host drop: a rule naming the host opens it', profiles: all, a: od, b: { address: HOST_IP.h1!, host: 'h1' }, port: '2379', expect: 'allow', text: 'profile OUTDENY outbound rule 2: allow tcp to ports 2379 10.0.0.1/32 (to this host)' },
    { name: 'endpoint-to-host accept: allow-all opens the host', profiles: all, a: d1, b: { address: HOST_IP.h1!, host: 'h1' }, port: '2379', options: { endpointToHostAction: 'accept' }, expect: 'allow', text: 'profile calico:default outbound rule 1: allow' },
    { name: 'another host is not "this host"', profiles: all, a: d1, b: { address: HOST_IP.h3!, host: 'h3' }, port: '2379', expect: 'allow', text: 'profile calico:default outbound rule 1: allow' },
    { name: 'the host reaches its containers', profiles: all, a: { address: HOST_IP.h3!, host: 'h3' }, b: d3, port: '22', expect: 'allow', text: /host h3 reaches its own containers/.source },
    { name: 'another host does not', profiles: all, a: { address: HOST_IP.h1!, host: 'h1' }, b: d3, port: '22', expect: 'deny', text: /Default DROP/.source },
    { name: 'icmp type', profiles: all, a: d1, b: ic, port: 'icmp/8', expect: 'allow', text: 'profile ICMP inbound rule 1: allow icmp type 8' },
    { name: 'icmp type/code', profiles: all, a: d1, b: ic, port: 'icmp/3/1', expect: 'allow', text: 'profile ICMP inbound rule 2: allow icmp type 3 code 1' },
    { name: 'icmp other code', profiles: all, a: d1, b: ic, port: 'icmp/3/2', expect: 'deny', text: /Default DROP/.source },
    { name: 'inactive endpoint: fail closed', profiles: all, a: g1a, b: gone, expect: 'deny', text: /inactive.*Unknown destination interface/.source },
    { name: 'inactive source: fail closed', profiles: all, a: gone, b: g1c3, expect: 'deny', text: /inactive.*no class set holds its addresses/.source },
    { name: 'a second address of the source', profiles: all, a: { ...d1, ipv4_nets: ['192.168.1.100/32', '192.168.1.1/32'] }, b: d3, expect: 'allow', text: 'profile calico:default inbound rule 1: allow from tag calico:default' },
    { name: 'IPv6 neighbour discovery to the workload', profiles: all, a: { address: 'fd00::99' }, b: l, family: 6, port: 'icmpv6/135', expect: 'allow', text: /neighbour discovery/.source },
    { name: 'no profiles at all', profiles: all, a: d1, b: ep('h3', [], ['192.168.9.1/32']), expect: 'deny', text: /Default DROP/.source },
  ];
}

for (const row of rows()) {
  test(`trace = compiled rules: ${row.name}`, () => {
    const t = trace(row);
    const k = kernel(row, t.packet);
    assert.equal(t.verdict, row.expect, `trace's verdict: ${traceText(t)}`);
    assert.equal(k.verdict, row.expect, `the compiled rules: ${JSON.stringify(k.runs.map((r) => [r.verdict, r.chain, r.index, r.lastProfileRule]))}`);
    const text = stepText(t.decidedBy);
    assert.match(text, new RegExp(row.text.startsWith('profile ') ? `^${row.text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$` : row.text), text);
    // The deciding rule is where the kernel decided too.
    const d = t.decidedBy;
    const last = k.runs[k.runs.length - 1]!;
    const decisive = t.verdict === 'deny' ? k.runs.find((r) => r.verdict === 'DROP')! : last;
    if (d.kind === 'rule') {
      const pr = decisive.verdict === 'DROP' ? { chain: decisive.chain, rule: '' } : decisive.lastProfileRule!;
      assert.equal(pr.chain, d.chain, 'the profile chain that decided');
      if (d.verdict === 'allow') {
        const specs = ruleMatches(d.rule!, t.packet.family).map((m) => (m ? `${m} -j RETURN` : '-j RETURN'));
        assert.ok(specs.includes(decisive.lastProfileRule!.rule), `${decisive.lastProfileRule!.rule} is one of ${JSON.stringify(specs)}`);
      }
    } else if (d.verdict === 'deny') {
      assert.equal(decisive.chain.replace(/-[0-9a-f]$/, ''), d.chain, 'the chain that dropped');
    }
  });
}

test('a spoofed source is dropped by the anti-spoof rule, as in the kernel', () => {
  const a = ep('h1', [DEFAULT_PROFILE], ['192.168.1.1/32']);
  const b = ep('h1', [DEFAULT_PROFILE], ['192.168.1.2/32']);
  const input = { endpoints: [a, b], profiles: [DEF] };
  const t = tracePolicy(input, { kind: 'endpoint', endpoint: a }, { kind: 'endpoint', endpoint: b }, { family: 4, src: '192.168.1.9', dst: '192.168.1.2', protocol: 'icmp', icmpType: 8 });
  assert.equal(t.verdict, 'deny');
  assert.match(stepText(t.decidedBy), /Anti-spoof/);
  const k = simulate(compilePolicy({ host: 'h1', ...input }), 'cali-FORWARD', { family: 4, iif: a.name, oif: b.name, src: '192.168.1.9', dst: '192.168.1.2', protocol: 'icmp', icmpType: 8, mac: a.mac });
  assert.equal(k.verdict, 'DROP');
  assert.equal(k.chain, t.decidedBy.chain);
});

test('--port parsing: bare port is tcp, icmp forms, errors name the input', () => {
  assert.deepEqual(parsePortSpec('80', 4), { protocol: 'tcp', dstPort: 80 });
  assert.deepEqual(parsePortSpec('53/udp', 4), { protocol: 'udp', dstPort: 53 });
  assert.deepEqual(parsePortSpec(undefined, 4), { protocol: 'icmp', icmpType: 8, icmpCode: 0 });
  assert.deepEqual(parsePortSpec(undefined, 6), { protocol: 'icmpv6', icmpType: 128, icmpCode: 0 });
  assert.deepEqual(parsePortSpec('icmp/3/1', 4), { protocol: 'icmp', icmpType: 3, icmpCode: 1 });
  assert.throws(() => parsePortSpec('70000', 4), /invalid port "70000"/);
  assert.throws(() => parsePortSpec('80/sctp', 4), /80\/sctp/);
  assert.throws(() => parsePortSpec('icmp', 6), /not IPv6's ICMP/);
});

test('the trace text lists every step and the verdict', () => {
  const [row] = rows().filter((r) => r.name.startsWith('multiple profiles: missing'));
  const text = traceText(trace(row!));
  assert.match(text, /profile DENYUDP inbound: no rule matched/);
  assert.match(text, /profile MISSING: not stored/);
  assert.match(text, /Verdict: ALLOW/);
});

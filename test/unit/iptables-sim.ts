// A tiny iptables interpreter for the filter chains our compiler emits (and
// only those matches): it walks one new packet through a DesiredState the
// way the kernel would, so a unit test can hold `policy trace` against the
// compiled rules without a kernel. An unknown match or target is an error,
// never a silent pass: a compiler change this does not understand fails the
// test instead of passing it.
import { cidrContains, parseAddress, parseCidr } from '../../src/address/cidr';
import type { DesiredState, IpFamily } from '../../src/dataplane/applier/types';

export interface SimPacket {
  family: IpFamily;
  /** Inbound and outbound interface (FORWARD has both; INPUT only iif; OUTPUT only oif). */
  iif?: string;
  oif?: string;
  src: string;
  dst: string;
  mac?: string;
  protocol: 'tcp' | 'udp' | 'icmp' | 'icmpv6';
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  /** The destination is an address of this host (addrtype LOCAL). */
  dstLocal?: boolean;
}

export interface SimResult {
  /** ACCEPT/DROP by one of our rules, or RETURN: fell off our hook chain (to Docker's rules). */
  verdict: 'ACCEPT' | 'DROP' | 'RETURN';
  /** The chain and 0-based index of the terminal rule (for RETURN: the hook chain). */
  chain: string;
  index: number;
  /** Every chain entered, in order. */
  path: string[];
  /** The last profile chain (cali-pri/pro/prh-) whose rule RETURNed or DROPped the packet, and that rule. */
  lastProfileRule?: { chain: string; index: number; rule: string };
}

function tokens(rule: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(rule); m; m = re.exec(rule)) out.push(m[1] ?? m[2]!);
  return out;
}

function ifMatch(pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false;
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function inNet(net: string, addr: string): boolean {
  const a = parseAddress(addr);
  const c = parseCidr(net.includes('/') ? net : `${net}/${a.family === 4 ? 32 : 128}`);
  return cidrContains(c, a.family, a.value);
}

function portIn(list: string, port: number | undefined): boolean {
  if (port === undefined) return false;
  return list.split(',').some((p) => {
    const [lo, hi] = p.split(':').map(Number);
    return hi === undefined ? port === lo : port >= lo! && port <= hi;
  });
}

function markMatch(spec: string, mark: number): boolean {
  const [v, m] = spec.split('/').map((x) => Number(x));
  return (mark & m!) === v;
}

function xmark(spec: string, mark: number): number {
  const [v, m] = spec.split('/').map((x) => Number(x));
  return ((mark & ~m!) ^ v!) >>> 0;
}

interface Ctx {
  pkt: SimPacket;
  mark: number;
  sets: Map<string, string[]>;
}

/** Whether the match part holds; returns the index of the target word ("-j"/"-g") too. */
function matches(t: string[], ctx: Ctx): { ok: boolean; at: number } {
  const p = ctx.pkt;
  let i = 0;
  let ok = true;
  while (i < t.length && t[i] !== '-j' && t[i] !== '-g') {
    let neg = false;
    if (t[i] === '!') {
      neg = true;
      i++;
    }
    const w = t[i]!;
    const hold = (b: boolean) => {
      if (neg ? b : !b) ok = false;
    };
    switch (w) {
      case '-i': hold(ifMatch(t[i + 1]!, p.iif)); i += 2; break;
      case '-o': hold(ifMatch(t[i + 1]!, p.oif)); i += 2; break;
      case '-s': hold(inNet(t[i + 1]!, p.src)); i += 2; break;
      case '-d': hold(inNet(t[i + 1]!, p.dst)); i += 2; break;
      case '-p': {
        const proto = t[i + 1] === 'ipv6-icmp' ? 'icmpv6' : t[i + 1];
        hold(proto === p.protocol);
        i += 2;
        break;
      }
      case '-m': {
        const mod = t[i + 1]!;
        i += 2;
        // The module's own options follow, each possibly negated.
        while (i < t.length && t[i] !== '-m' && t[i] !== '-j' && t[i] !== '-g' && !['-i', '-o', '-s', '-d', '-p'].includes(t[i]!)) {
          let n = false;
          if (t[i] === '!') {
            n = true;
            i++;
          }
          const opt = t[i]!;
          const val = t[i + 1]!;
          const h = (b: boolean) => {
            if (n ? b : !b) ok = false;
          };
          switch (`${mod} ${opt}`) {
            case 'tcp --dport': case 'udp --dport': h(Number(val) === p.dport); i += 2; break;
            case 'tcp --sport': case 'udp --sport': h(Number(val) === p.sport); i += 2; break;
            case 'multiport --dports': h(portIn(val, p.dport)); i += 2; break;
            case 'multiport --sports': h(portIn(val, p.sport)); i += 2; break;
            case 'icmp --icmp-type': case 'icmp6 --icmpv6-type': {
              const [ty, code] = val.split('/').map(Number);
              h(p.icmpType === ty && (code === undefined || (p.icmpCode ?? 0) === code));
              i += 2;
              break;
            }
            case 'set --match-set': {
              // `src`/`dst`: the packet's address; a second one (hash:net,iface): `src` the incoming interface, `dst` the outgoing one.
              const [dir, ifDir, extra] = t[i + 2]!.split(',');
              const members = ctx.sets.get(val);
              if (!members) throw new Error(`rule names set ${val}, which the state does not define`);
              if (extra !== undefined || !['src', 'dst'].includes(dir!) || (ifDir !== undefined && !['src', 'dst'].includes(ifDir))) throw new Error(`iptables-sim does not know set flags ${t[i + 2]}`);
              const addr = dir === 'src' ? p.src : p.dst;
              if (ifDir === undefined) h(members.some((m) => inNet(m, addr)));
              else {
                const iface = ifDir === 'src' ? p.iif : p.oif;
                h(members.some((m) => m.slice(m.lastIndexOf(',') + 1) === iface && inNet(m.slice(0, m.lastIndexOf(',')), addr)));
              }
              i += 3;
              break;
            }
            case 'mark --mark': h(markMatch(val, ctx.mark)); i += 2; break;
            case 'connmark --mark': h(markMatch(val, 0)); i += 2; break; // a new flow's connmark is 0
            case 'conntrack --ctstate': h(val.split(',').includes('NEW')); i += 2; break;
            case 'conntrack --ctdir': h(val === 'ORIGINAL'); i += 2; break;
            case 'comment --comment': i += 2; break;
            case 'addrtype --dst-type': h(val === 'LOCAL' ? p.dstLocal === true : false); i += 2; break;
            default: throw new Error(`iptables-sim does not know -m ${mod} ${opt} (in "${t.join(' ')}")`);
          }
        }
        break;
      }
      default:
        throw new Error(`iptables-sim does not know "${w}" (in "${t.join(' ')}")`);
    }
  }
  return { ok, at: i };
}

/** Runs the packet from `hook` (cali-FORWARD, cali-INPUT or cali-OUTPUT) through the family's filter chains. */
export function simulate(state: DesiredState, hook: string, pkt: SimPacket): SimResult {
  const fam = pkt.family === 4 ? state.v4 : state.v6;
  const chains = new Map(fam.chains.filter((c) => c.table === 'filter').map((c) => [c.name, c.rules]));
  const ctx: Ctx = { pkt, mark: 0, sets: new Map(fam.ipsets.map((s) => [s.name, s.members])) };
  const path: string[] = [];
  let lastProfileRule: SimResult['lastProfileRule'];
  const isProfile = (c: string) => /^cali-pr[ioh]-/.test(c);
  // A call stack of [chain, next index]; goto replaces the top frame.
  const stack: [string, number][] = [[hook, 0]];
  path.push(hook);
  for (let steps = 0; steps < 100_000; steps++) {
    const top = stack[stack.length - 1];
    if (!top) return { verdict: 'RETURN', chain: hook, index: -1, path, lastProfileRule };
    const [name, idx] = top;
    const rules = chains.get(name);
    if (!rules) throw new Error(`jump to chain ${name}, which the state does not define`);
    if (idx >= rules.length) {
      stack.pop();
      continue;
    }
    top[1] = idx + 1;
    const t = tokens(rules[idx]!);
    const { ok, at } = matches(t, ctx);
    if (!ok) continue;
    if (at >= t.length) continue; // no target: a counting rule
    const kind = t[at];
    const target = t[at + 1]!;
    if (kind === '-g' || !['ACCEPT', 'DROP', 'RETURN', 'MARK', 'CONNMARK'].includes(target)) {
      if (!chains.has(target)) throw new Error(`jump to chain ${target}, which the state does not define`);
      if (kind === '-g') stack.pop();
      stack.push([target, 0]);
      path.push(target);
      continue;
    }
    if (isProfile(name) && (target === 'RETURN' || target === 'DROP')) lastProfileRule = { chain: name, index: idx, rule: rules[idx]! };
    switch (target) {
      case 'ACCEPT': return { verdict: 'ACCEPT', chain: name, index: idx, path, lastProfileRule };
      case 'DROP': return { verdict: 'DROP', chain: name, index: idx, path, lastProfileRule };
      case 'RETURN': stack.pop(); break;
      case 'MARK': ctx.mark = xmark(t[at + 3]!, ctx.mark); break;
      case 'CONNMARK': break; // the recheck bit: never set on a new flow
    }
  }
  throw new Error('iptables-sim: a loop');
}

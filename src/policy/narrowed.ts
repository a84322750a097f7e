// Pure: which local endpoints may have lost access between two compiled
// states, so their conntrack entries are flushed. The chains accept
// ESTABLISHED traffic before any policy, so a connection that a rule update
// (or a profile change) no longer allows would otherwise live on.
//
// Conservative on purpose: any change to the rules an endpoint's chains run
// (its own fw/tw chains and the profile chains they jump to), and any member
// leaving a set those rules match on, counts as narrowing. Members joining a
// set only widen access (a new container in a tag), which happens on every
// container start, and must not flush anybody's connections.
import type { DesiredChain, DesiredState, IpFamily } from '../dataplane/applier/types';
import type { Endpoint } from '../datastore/endpoint-store';
import { fromEndpointChain, toEndpointChain } from '../names/kernel';

/** An address whose flows are to be forgotten, by family. */
export interface FlushTarget {
  family: IpFamily;
  address: string;
}

interface FamilyIndex {
  chains: Map<string, string[]>;
  sets: Map<string, Set<string>>;
}

function index(state: DesiredState, v: IpFamily): FamilyIndex {
  const fam = v === 4 ? state.v4 : state.v6;
  return {
    chains: new Map(fam.chains.filter((c: DesiredChain) => c.table === 'filter').map((c) => [c.name, c.rules])),
    sets: new Map(fam.ipsets.map((s) => [s.name, new Set(s.members)])),
  };
}

const JUMP = /(?:^|\s)-[jg]\s+(cali-\S+)/;
const MATCH_SET = /--match-set\s+(\S+)/g;

/** The rules one endpoint's packets meet (its chains, then the profile chains they jump to), and the sets those match. */
function endpointView(ix: FamilyIndex, ifName: string): { rules: string[]; sets: string[] } | undefined {
  const own = [fromEndpointChain(ifName), toEndpointChain(ifName)];
  if (!own.some((c) => ix.chains.has(c))) return undefined;
  const rules: string[] = [];
  const sets = new Set<string>();
  const seen = new Set<string>();
  const walk = (chain: string) => {
    if (seen.has(chain)) return;
    seen.add(chain);
    rules.push(`:${chain}`);
    for (const r of ix.chains.get(chain) ?? []) {
      rules.push(r);
      for (const m of r.matchAll(MATCH_SET)) sets.add(m[1]!);
      const j = JUMP.exec(r);
      if (j && ix.chains.has(j[1]!)) walk(j[1]!);
    }
  };
  own.forEach(walk);
  return { rules, sets: [...sets] };
}

function addresses(ep: Endpoint, v: IpFamily): string[] {
  return (v === 4 ? ep.ipv4_nets : ep.ipv6_nets).map((n) => n.split('/')[0]!);
}

/**
 * The addresses of endpoints (programmed in `prev`, by their previous record
 * in `prevEndpoints`) whose access may be narrower in `next`: their rules
 * changed, a set they match lost a member, or they lost their chains.
 */
export function narrowedEndpoints(prev: DesiredState, next: DesiredState, prevEndpoints: Endpoint[]): FlushTarget[] {
  const out: FlushTarget[] = [];
  for (const v of [4, 6] as const) {
    const a = index(prev, v);
    const b = index(next, v);
    for (const ep of prevEndpoints) {
      const was = endpointView(a, ep.name);
      if (!was) continue;
      const now = endpointView(b, ep.name);
      const narrowed =
        !now ||
        was.rules.length !== now.rules.length ||
        was.rules.some((r, i) => r !== now.rules[i]) ||
        was.sets.some((s) => {
          const before = a.sets.get(s);
          const after = b.sets.get(s);
          if (!before) return false;
          if (!after) return true;
          for (const m of before) if (!after.has(m)) return true;
          return false;
        });
      if (narrowed) for (const address of addresses(ep, v)) out.push({ family: v, address });
    }
  }
  return out;
}

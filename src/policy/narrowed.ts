// Pure: which local endpoints may have lost access between two compiled
// states, so their open connections are checked again (conntrack.ts). The chains accept
// ESTABLISHED traffic before any policy, so a connection that a rule update
// (or a profile change) no longer allows would otherwise live on.
//
// Conservative on purpose: any change to the rules an endpoint's chains run
// (its class's fc/tc chains and the profile chains they jump to) counts as
// narrowing that endpoint. An endpoint that leaves its class's set (it went,
// or moved to another class) is narrowed by the set rule below. A member leaving a tag set narrows the flows
// *of that member's address* (those are the only flows the set decided on
// its account), not those of every endpoint whose rules name the tag: a
// container of a group that stops must not disturb the group's other
// flows. Members joining a set only widen access (a new container in a
// tag, on every container start) and touch nobody's connections.
import type { DesiredChain, DesiredState, IpFamily } from '../dataplane/applier/types';
import type { Endpoint } from '../datastore/endpoint-store';
import { fromEndpointDispatchChain, toEndpointDispatchChain } from '../names/kernel';

/** An address whose open flows are to be checked again, by family. */
export interface RecheckTarget {
  family: IpFamily;
  address: string;
}

interface FamilyIndex {
  chains: Map<string, string[]>;
  sets: Map<string, string[]>;
  /** Interface -> the chains of its endpoint's class (from the dispatch rules and the class sets' members); built when first asked. */
  own?: Map<string, string[]>;
}

// A state is compared twice (as next, then as prev): indexed once.
const indexes = new WeakMap<DesiredState, { 4?: FamilyIndex; 6?: FamilyIndex }>();

function index(state: DesiredState, v: IpFamily): FamilyIndex {
  let known = indexes.get(state);
  if (!known) indexes.set(state, (known = {}));
  const have = known[v];
  if (have) return have;
  const fam = v === 4 ? state.v4 : state.v6;
  const ix = {
    chains: new Map(fam.chains.filter((c: DesiredChain) => c.table === 'filter').map((c) => [c.name, c.rules])),
    sets: new Map(fam.ipsets.map((s) => [s.name, s.members])),
  };
  known[v] = ix;
  return ix;
}

const DISPATCH = /--match-set\s+(\S+)\s+(?:src,src|dst,dst)\s+-g\s+(\S+)/;

/** The chains an interface's packets are dispatched to: its class's, found through the class set holding one of its pairs. */
function ownChains(ix: FamilyIndex, ifName: string): string[] {
  if (!ix.own) {
    const own = new Map<string, string[]>();
    for (const dispatch of [fromEndpointDispatchChain(), toEndpointDispatchChain()]) {
      for (const r of ix.chains.get(dispatch) ?? []) {
        const m = DISPATCH.exec(r);
        if (!m) continue;
        for (const member of ix.sets.get(m[1]!) ?? []) {
          const iface = member.slice(member.lastIndexOf(',') + 1);
          const list = own.get(iface);
          if (!list) own.set(iface, [m[2]!]);
          else if (!list.includes(m[2]!)) list.push(m[2]!);
        }
      }
    }
    ix.own = own;
  }
  return ix.own.get(ifName) ?? [];
}

// The chains a rule list jumps to, remembered per list (the compiler hands the same lists again while they are unchanged).
const jumpsOf = new WeakMap<string[], string[]>();

function jumps(rules: string[]): string[] {
  let j = jumpsOf.get(rules);
  if (!j) {
    j = [];
    for (const r of rules) {
      const m = JUMP.exec(r);
      if (m) j.push(m[1]!);
    }
    jumpsOf.set(rules, j);
  }
  return j;
}

/**
 * Whether the endpoint's view is certainly the same in `b` as in `a`: every
 * chain it reaches in `a` is the very same rule list in `b`, and no chain it
 * jumps to that `a` lacks appeared in `b`. Cheap (no rule is read twice);
 * false means "compare the rules".
 */
function sameLists(a: FamilyIndex, b: FamilyIndex, ifName: string): boolean {
  const seen = new Set<string>();
  const walk = (chain: string): boolean => {
    if (seen.has(chain)) return true;
    seen.add(chain);
    const rules = a.chains.get(chain);
    if (rules !== b.chains.get(chain)) return false;
    if (!rules) return true;
    return jumps(rules).every(walk);
  };
  const own = ownChains(a, ifName);
  return own.join(' ') === ownChains(b, ifName).join(' ') && own.every(walk);
}

const JUMP = /(?:^|\s)-[jg]\s+(cali-\S+)/;
const MATCH_SET = /--match-set\s+(\S+)/g;

/** The rules one endpoint's packets meet (its chains, then the profile chains they jump to), and the sets those match. */
function endpointView(ix: FamilyIndex, ifName: string): { rules: string[]; sets: string[] } | undefined {
  const own = ownChains(ix, ifName);
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

/** Chains whose rule list is not the very same object in both (present in one only included). */
function changedChains(a: FamilyIndex, b: FamilyIndex): Set<string> {
  const out = new Set<string>();
  for (const [name, rules] of a.chains) if (b.chains.get(name) !== rules) out.add(name);
  for (const name of b.chains.keys()) if (!a.chains.has(name)) out.add(name);
  return out;
}

/** Whether a chain is changed or reaches (jumps, further on) a changed one, in either state; remembered per chain for one comparison. */
function reachesChanged(a: FamilyIndex, b: FamilyIndex, changed: Set<string>): (chain: string) => boolean {
  const memo = new Map<string, boolean>();
  const visit = (c: string): boolean => {
    const known = memo.get(c);
    if (known !== undefined) return known;
    memo.set(c, false); // a loop reaches nothing new
    const r = changed.has(c) || [a, b].some((ix) => jumps(ix.chains.get(c) ?? []).some(visit));
    memo.set(c, r);
    return r;
  };
  return visit;
}

/**
 * The addresses whose open flows may be allowed no longer in `next`: those
 * of endpoints (programmed in `prev`, by their previous record in
 * `prevEndpoints`) whose rules changed or that lost their chains, and the
 * members that left a set (of a set that is gone: all its members). Each
 * address once per family, in order.
 */
export function narrowedEndpoints(prev: DesiredState, next: DesiredState, prevEndpoints: Endpoint[]): RecheckTarget[] {
  const out: RecheckTarget[] = [];
  for (const v of [4, 6] as const) {
    const a = index(prev, v);
    const b = index(next, v);
    const found = new Set<string>();
    const changed = changedChains(a, b);
    // When nothing an endpoint chain jumps to changed (an endpoint came or
    // went: its own chains and the dispatch), only endpoints whose own chains
    // changed are looked at; otherwise (a profile's rules) each is checked.
    const dirty = reachesChanged(a, b, changed);
    for (const ep of prevEndpoints) {
      const own = ownChains(a, ep.name);
      if (!own.some((c) => a.chains.has(c))) continue;
      if (!own.some((c) => changed.has(c) || [a, b].some((ix) => jumps(ix.chains.get(c) ?? []).some(dirty)))) continue;
      if (sameLists(a, b, ep.name)) continue;
      const was = endpointView(a, ep.name);
      if (!was) continue;
      const now = endpointView(b, ep.name);
      const narrowed = !now || was.rules.length !== now.rules.length || was.rules.some((r, i) => r !== now.rules[i]);
      if (narrowed) addresses(ep, v).forEach((x) => found.add(x));
    }
    for (const [name, before] of a.sets) {
      const list = b.sets.get(name);
      if (list === before) continue;
      const after = new Set(list);
      // A class set's member is `<address>,<interface>`: its address's flows.
      for (const m of before) if (!after.has(m)) found.add(m.includes(',') ? m.slice(0, m.lastIndexOf(',')) : m);
    }
    for (const address of found) out.push({ family: v, address });
  }
  return out;
}

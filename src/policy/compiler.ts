// The policy compiler kept up to date across changes (pure; no I/O): the
// node's policy component hands it the datastore's state on every change and
// gets compilePolicy's output at the cost of what changed.
import type { Endpoint } from '../datastore/endpoint-store';
import type { Profile } from '../datastore/profile-store';
import type { DesiredChain, DesiredIpset, DesiredState, IpFamily } from '../dataplane/applier/types';
import { classIpset, endpointClassKey, tagIpset } from '../names/kernel';
import { byName, classMembers, compareMembers, dispatchChains, endpointClass, fromClass, policyHooks, profileFamily, sameRules, setMember, toClass, topChains } from './chains';
import { DEFAULT_NO_MATCH_MARK, DEFAULT_RECHECK_MARK, DEFAULT_TO_HOST_MARK, programmedEndpoints, type PolicyInput } from './compile';

/** One class of endpoints as the compiler remembers it between calls. */
interface ClassMemo {
  ids: string[];
  chains: DesiredChain[];
  eps: Endpoint[];
  4: string[];
  6: string[];
}

/**
 * The same compilation as compilePolicy, kept up to date across calls so
 * that a change costs what it changes (pure; no I/O). Remembered between
 * calls, by object (the syncer hands the same Endpoint and Profile objects
 * again while they are unchanged):
 * - each local endpoint's class (its stored profiles, in order) and its
 *   (address, interface) pairs (anew when its record or the set of its
 *   profiles that exist changes); each class's chains, by its key,
 * - each profile's chains and the tags its rules name,
 * - every tag's members, as counts updated by the endpoints that came,
 *   went or changed (and those of a profile whose tags changed),
 * - the output objects themselves: an unchanged chain or set is the same
 *   object as last time, which the applier and the narrowing check compare
 *   by reference instead of by content.
 * A scan that looks at each endpoint object once remains (which are new?);
 * all other work is per change. Same input, same output as compilePolicy
 * (test/unit/policy-incremental.test.ts).
 */
export class PolicyCompiler {
  private optionsKey?: string;
  /** Each local endpoint's class and pairs, valid while the stored profiles' names are those of `namesEpoch`. */
  private endpointClasses = new WeakMap<Endpoint, { epoch: number; key: string; ids: string[]; 4: string[]; 6: string[] }>();
  private namesKey?: string;
  private namesEpoch = 0;
  /** Each class of the last compile: its two chains (they depend on its key and the options only), its endpoints and their pairs per family. */
  private classes = new Map<string, ClassMemo>();
  private profileChains = new WeakMap<Profile, { 4: { chains: DesiredChain[]; tags: string[] }; 6: { chains: DesiredChain[]; tags: string[] } }>();
  /** Last output's chains and sets by name, per family: computed chains equal to one of them are replaced by it. */
  private lastChains: { 4: Map<string, DesiredChain>; 6: Map<string, DesiredChain> } = { 4: new Map(), 6: new Map() };
  private lastSets: { 4: Map<string, DesiredIpset>; 6: Map<string, DesiredIpset> } = { 4: new Map(), 6: new Map() };
  /** Tag membership: every active endpoint's contribution, and per family tag -> member -> how many endpoints give it. */
  private contributions = new Map<Endpoint, { tags: string[]; 4: string[]; 6: string[] }>();
  private counts: { 4: Map<string, Map<string, number>>; 6: Map<string, Map<string, number>> } = { 4: new Map(), 6: new Map() };
  private dirtyTags = new Set<string>();
  private profilesSeen = new Map<string, Profile>();
  private byProfile = new Map<string, Set<Endpoint>>();
  private dispatch: { 4?: { names: string; hostReaches: boolean; chains: DesiredChain[] }; 6?: { names: string; hostReaches: boolean; chains: DesiredChain[] } } = {};

  compile(input: PolicyInput): DesiredState {
    const optionsKey = JSON.stringify(input.options ?? {});
    if (optionsKey !== this.optionsKey) this.reset(optionsKey);
    const profiles = new Map(input.profiles.map((p) => [p.name, p]));
    this.updateMembership(input.endpoints, profiles);
    const local = programmedEndpoints(input);
    this.groupClasses(local, profiles, input);
    const out = { v4: this.family(input, profiles, 4), v6: this.family(input, profiles, 6) };
    this.dirtyTags.clear();
    return out;
  }

  /**
   * The local endpoints by class, in their order. A class that holds the
   * very same endpoint objects as last time keeps its pair lists (and so its
   * set objects); only a class an endpoint joined or left builds them again.
   */
  private groupClasses(local: Endpoint[], profiles: Map<string, Profile>, input: PolicyInput): void {
    const namesKey = [...profiles.keys()].sort().join('\n');
    if (namesKey !== this.namesKey) {
      this.namesKey = namesKey;
      this.namesEpoch++;
    }
    const grouped = new Map<string, { ids: string[]; eps: Endpoint[] }>();
    for (const ep of local) {
      let memo = this.endpointClasses.get(ep);
      if (!memo || memo.epoch !== this.namesEpoch) {
        const ids = endpointClass(ep, profiles);
        memo = { epoch: this.namesEpoch, key: endpointClassKey(ids), ids, 4: classMembers(ep, 4), 6: classMembers(ep, 6) };
        this.endpointClasses.set(ep, memo);
      }
      const g = grouped.get(memo.key);
      if (g) g.eps.push(ep);
      else grouped.set(memo.key, { ids: memo.ids, eps: [ep] });
    }
    const mark = input.options?.noMatchMark ?? DEFAULT_NO_MATCH_MARK;
    const hostServices = (input.options?.endpointToHostAction ?? 'drop') === 'accept';
    const next = new Map<string, ClassMemo>();
    for (const [key, g] of grouped) {
      const was = this.classes.get(key);
      if (was && was.eps.length === g.eps.length && was.eps.every((ep, i) => ep === g.eps[i])) {
        next.set(key, was);
        continue;
      }
      const pairs = (v: IpFamily) => g.eps.flatMap((ep) => this.endpointClasses.get(ep)![v]).sort(compareMembers);
      const chains = was?.chains ?? [fromClass(g.ids, mark, hostServices), toClass(g.ids, mark)];
      next.set(key, { ids: g.ids, chains, eps: g.eps, 4: pairs(4), 6: pairs(6) });
    }
    this.classes = next;
  }

  private reset(optionsKey: string): void {
    this.optionsKey = optionsKey;
    this.endpointClasses = new WeakMap();
    this.classes = new Map();
    this.profileChains = new WeakMap();
    this.dispatch = {};
  }

  /** Tag members follow the endpoints that are new, gone or in a profile whose tags changed. */
  private updateMembership(endpoints: Endpoint[], profiles: Map<string, Profile>): void {
    const changedProfiles = new Set<string>();
    for (const [name, p] of profiles) {
      const was = this.profilesSeen.get(name);
      if (was !== p && (!was || was.tags.join('\n') !== p.tags.join('\n'))) changedProfiles.add(name);
    }
    for (const name of this.profilesSeen.keys()) if (!profiles.has(name)) changedProfiles.add(name);
    this.profilesSeen = new Map(profiles);
    const now = new Set(endpoints);
    const redo = new Set<Endpoint>();
    for (const ep of this.contributions.keys()) if (!now.has(ep)) this.drop(ep);
    for (const name of changedProfiles) for (const ep of this.byProfile.get(name) ?? []) if (now.has(ep)) redo.add(ep);
    for (const ep of endpoints) if (!this.contributions.has(ep)) redo.add(ep);
    for (const ep of redo) {
      this.drop(ep);
      this.add(ep, profiles);
    }
  }

  private add(ep: Endpoint, profiles: Map<string, Profile>): void {
    const tags = ep.state === 'active' ? [...new Set(ep.profile_ids.flatMap((id) => profiles.get(id)?.tags ?? []))] : [];
    const c = { tags, 4: tags.length ? [...new Set(ep.ipv4_nets.map(setMember))] : [], 6: tags.length ? [...new Set(ep.ipv6_nets.map(setMember))] : [] };
    this.contributions.set(ep, c);
    for (const id of ep.profile_ids) {
      let s = this.byProfile.get(id);
      if (!s) this.byProfile.set(id, (s = new Set()));
      s.add(ep);
    }
    this.count(c, 1);
  }

  private drop(ep: Endpoint): void {
    const c = this.contributions.get(ep);
    if (!c) return;
    this.contributions.delete(ep);
    for (const id of ep.profile_ids) {
      const s = this.byProfile.get(id);
      s?.delete(ep);
      if (s && !s.size) this.byProfile.delete(id);
    }
    this.count(c, -1);
  }

  private count(c: { tags: string[]; 4: string[]; 6: string[] }, by: 1 | -1): void {
    for (const v of [4, 6] as const) {
      for (const tag of c.tags) {
        let m = this.counts[v].get(tag);
        if (!m) this.counts[v].set(tag, (m = new Map()));
        for (const a of c[v]) {
          const n = (m.get(a) ?? 0) + by;
          if (n > 0) m.set(a, n);
          else m.delete(a);
        }
        if (!m.size) this.counts[v].delete(tag);
        if (c[v].length) this.dirtyTags.add(tag);
      }
    }
  }

  private family(input: PolicyInput, profiles: Map<string, Profile>, family: IpFamily): DesiredState['v4'] {
    const mark = input.options?.noMatchMark ?? DEFAULT_NO_MATCH_MARK;
    const hostReaches = input.options?.hostReachesContainers ?? true;
    const hostServices = (input.options?.endpointToHostAction ?? 'drop') === 'accept';
    const toHostMark = hostServices ? undefined : input.options?.toHostMark ?? DEFAULT_TO_HOST_MARK;
    const last = this.lastChains[family];
    const next = new Map<string, DesiredChain>();
    const keep = (c: DesiredChain) => {
      const was = last.get(c.name);
      next.set(c.name, was && sameRules(was.rules, c.rules) ? was : c);
    };
    topChains(hostReaches, input.options?.recheckMark ?? DEFAULT_RECHECK_MARK, toHostMark).forEach(keep);
    const classes = this.classes;
    const keys = [...classes.keys()].sort(compareMembers);
    // The dispatch chains depend on the classes only: an endpoint of a class already here changes no rule.
    const names = keys.join(' ');
    let tree = this.dispatch[family];
    if (!tree || tree.names !== names || tree.hostReaches !== hostReaches) {
      tree = { names, hostReaches, chains: dispatchChains(family, keys, hostReaches, hostServices) };
      this.dispatch[family] = tree;
    }
    tree.chains.forEach(keep);
    for (const key of keys) classes.get(key)!.chains.forEach(keep);
    const used = [...new Set(keys.flatMap((key) => classes.get(key)!.ids))].sort();
    const tags = new Set<string>();
    for (const id of used) {
      const p = profiles.get(id)!;
      let memo = this.profileChains.get(p);
      if (!memo) {
        memo = { 4: profileFamily(p, 4, mark, toHostMark), 6: profileFamily(p, 6, mark, toHostMark) };
        this.profileChains.set(p, memo);
      }
      memo[family].chains.forEach(keep);
      memo[family].tags.forEach((t) => tags.add(t));
    }
    this.lastChains[family] = next;

    const lastSets = this.lastSets[family];
    const sets = new Map<string, DesiredIpset>();
    for (const key of keys) {
      const name = classIpset(family, key);
      const was = lastSets.get(name);
      const members = classes.get(key)![family];
      sets.set(name, was && sameRules(was.members, members) ? was : { name, type: 'hash:net,iface', family, members });
    }
    for (const tag of [...tags].sort()) {
      const name = tagIpset(family, tag);
      const was = lastSets.get(name);
      if (was && !this.dirtyTags.has(tag)) {
        sets.set(name, was);
        continue;
      }
      const members = [...(this.counts[family].get(tag)?.keys() ?? [])].sort(compareMembers);
      sets.set(name, was && sameRules(was.members, members) ? was : { name, type: 'hash:net', family, members });
    }
    this.lastSets[family] = sets;
    return {
      chains: [...next.values()].sort(byName),
      hooks: policyHooks(),
      ipsets: [...sets.values()],
    };
  }
}

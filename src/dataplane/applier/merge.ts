// Pure: every owner's desired state checked and merged into the one state the
// kernel should hold. A mistake an owner can make (a name that is not ours, a
// jump to a chain nobody declares, two owners defining one chain differently)
// is refused here, naming the owner, instead of reaching the kernel as a
// refused restore that would hold back every other owner's changes too.
import { applierTempIpset, isOurChain, isOurIpset, MAX_CHAIN_NAME, MAX_IPSET_NAME } from '../../names/kernel';
import { canonicalMember } from './ipset-save';
import { ruleIpsets, ruleTarget } from './iptables-save';
import type { BuiltinChain, DesiredIpset, DesiredState, IpFamily, TableName } from './types';

export const TABLES: readonly TableName[] = ['raw', 'mangle', 'nat', 'filter'];
const BUILTINS: Record<TableName, readonly BuiltinChain[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
};

export interface MergedHooks {
  /** In order: the first is rule 1 of the built-in chain. */
  top: string[];
  /** In order: the last is the chain's last rule. */
  bottom: string[];
}

export interface MergedFamily {
  /** table -> our chain -> its rules. */
  chains: Map<TableName, Map<string, string[]>>;
  /** table -> built-in chain -> our jumps into it. */
  hooks: Map<TableName, Map<BuiltinChain, MergedHooks>>;
}

export interface MergedIpset {
  name: string;
  type: DesiredIpset['type'];
  family: IpFamily;
  /** Canonical (as the kernel prints them), unique, sorted. */
  members: string[];
}

export interface MergedState {
  v4: MergedFamily;
  v6: MergedFamily;
  ipsets: Map<string, MergedIpset>;
}

export function emptyMerged(): MergedState {
  return { v4: { chains: new Map(), hooks: new Map() }, v6: { chains: new Map(), hooks: new Map() }, ipsets: new Map() };
}

/** Merges in the Map's order (hooks of an earlier owner come first). Throws, naming owner and object, on any mistake. */
export function mergeStates(states: ReadonlyMap<string, DesiredState>): MergedState {
  const out = emptyMerged();
  const chainOwner = new Map<string, string>();
  const setOwner = new Map<string, string>();
  for (const [owner, state] of states) {
    for (const v of [4, 6] as const) {
      const fam = v === 4 ? state.v4 : state.v6;
      const into = v === 4 ? out.v4 : out.v6;
      for (const c of fam.chains) {
        // Runs for every chain on every set() (thousands): the message is built only for an error.
        const what = () => `owner ${owner}: IPv${v} ${c.table} chain ${c.name}`;
        if (!TABLES.includes(c.table)) throw new Error(`${what()}: unknown table`);
        if (!isOurChain(c.name) || c.name.length > MAX_CHAIN_NAME) throw new Error(`${what()}: not a name of ours (cali- prefix, at most ${MAX_CHAIN_NAME} characters)`);
        if (!linesChecked.has(c.rules)) {
          for (const r of c.rules) if (!isOneLine(r)) throw new Error(`${what()} rule "${r}": a rule is one non-empty line`);
          linesChecked.add(c.rules);
        }
        const t = mapOf(into.chains, c.table);
        const prev = t.get(c.name);
        if (prev) {
          if (prev !== c.rules && prev.join('\n') !== c.rules.join('\n')) throw new Error(`${what()}: also defined, differently, by owner ${chainOwner.get(`${v} ${c.table} ${c.name}`)}`);
          continue;
        }
        // Not copied: an owner's rule list is immutable once handed over, and
        // the same array from one set() to the next tells plan.ts "unchanged"
        // without comparing its rules.
        t.set(c.name, c.rules);
        // Only the first owner of a chain is remembered, and only when another owner follows (for the message).
        if (states.size > 1) chainOwner.set(`${v} ${c.table} ${c.name}`, owner);
      }
      for (const h of fam.hooks) {
        const what = `owner ${owner}: IPv${v} ${h.table} hook "${h.rule}" in ${h.chain}`;
        if (!TABLES.includes(h.table) || !BUILTINS[h.table].includes(h.chain)) throw new Error(`${what}: ${h.chain} is not a built-in chain of table ${h.table}`);
        checkRuleText(what, h.rule);
        const target = ruleTarget(h.rule);
        if (!target || !isOurChain(target)) throw new Error(`${what}: a hook must jump to one of our chains`);
        const hooks = mapOf(into.hooks, h.table);
        const slot = hooks.get(h.chain) ?? { top: [], bottom: [] };
        hooks.set(h.chain, slot);
        // The same jump from two owners is one rule in the kernel.
        if (slot.top.includes(h.rule) || slot.bottom.includes(h.rule)) continue;
        (h.position === 'top' ? slot.top : slot.bottom).push(h.rule);
      }
      for (const s of fam.ipsets) {
        const what = `owner ${owner}: ipset ${s.name}`;
        if (!isOurIpset(s.name) || s.name.length > MAX_IPSET_NAME || s.name === applierTempIpset()) {
          throw new Error(`${what}: not a name of ours (cali prefix, at most ${MAX_IPSET_NAME} characters, not ${applierTempIpset()})`);
        }
        if (s.type !== 'hash:ip' && s.type !== 'hash:net' && s.type !== 'hash:net,iface') throw new Error(`${what}: type ${s.type} is not supported`);
        if (s.family !== v) throw new Error(`${what}: family ${s.family} listed under IPv${v}`);
        const merged = mergedIpset(what, s);
        const prev = out.ipsets.get(s.name);
        if (prev) {
          if (JSON.stringify(prev) !== JSON.stringify(merged)) throw new Error(`${what}: also defined, differently, by owner ${setOwner.get(s.name)}`);
          continue;
        }
        out.ipsets.set(s.name, merged);
        setOwner.set(s.name, owner);
      }
    }
  }
  checkReferences(out);
  return out;
}

/**
 * Work that depends on one owner's object alone is done once per object: an
 * owner that hands over the same chain or set object again (the policy
 * compiler keeps an unchanged endpoint's chains) is not checked again. Weak:
 * the memory is the live desired state's.
 */
const linesChecked = new WeakSet<string[]>();
const mergedSets = new WeakMap<DesiredIpset, { from: string[]; merged: MergedIpset }>();
const refsOfRules = new WeakMap<string[], { targets: string[]; ipsets: string[] }>();

function mergedIpset(what: string, s: DesiredIpset): MergedIpset {
  const known = mergedSets.get(s);
  // The same object with the same fields and member list: the owner did not change it (its members are read once).
  if (known && known.from === s.members && known.merged.name === s.name && known.merged.type === s.type && known.merged.family === s.family) return known.merged;
  const members = [...new Set(s.members.map((m) => canonicalMemberOf(what, s, m)))].sort();
  const merged: MergedIpset = { name: s.name, type: s.type, family: s.family, members };
  mergedSets.set(s, { from: s.members, merged });
  return merged;
}

/** The chains (targets) and ipsets a rule list refers to, each once. */
function refsOf(rules: string[]): { targets: string[]; ipsets: string[] } {
  let r = refsOfRules.get(rules);
  if (r) return r;
  const targets = new Set<string>();
  const ipsets = new Set<string>();
  for (const rule of rules) {
    const t = ruleTarget(rule);
    if (t) targets.add(t);
    for (const s of ruleIpsets(rule)) ipsets.add(s);
  }
  r = { targets: [...targets], ipsets: [...ipsets] };
  refsOfRules.set(rules, r);
  return r;
}

function canonicalMemberOf(what: string, s: DesiredIpset, m: string): string {
  try {
    return canonicalMember(s.type, s.family, m);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
}

/** A rule reaches iptables-restore as one line: a newline would smuggle in another command. */
function checkRuleText(what: string, rule: string): void {
  if (!isOneLine(rule)) throw new Error(`${what}: a rule is one non-empty line`);
}

/** Checked for every rule on every set() (tens of thousands): no regex, no copy, no message built. */
function isOneLine(rule: string): boolean {
  let blank = true;
  for (let i = 0; i < rule.length; i++) {
    const c = rule.charCodeAt(i);
    if (c === 10 || c === 13) return false;
    if (c !== 32 && c !== 9) blank = false;
  }
  return !blank;
}

/** Our rules jump only to our chains that exist and match only our sets of their family that exist. */
function checkReferences(m: MergedState): void {
  for (const v of [4, 6] as const) {
    const fam = v === 4 ? m.v4 : m.v6;
    // `where` is built only for the message: this runs for every rule on every set().
    const check = (table: TableName, where: () => string, rule: string) => {
      const target = ruleTarget(rule);
      if (target && isOurChain(target) && !fam.chains.get(table)?.has(target)) {
        throw new Error(`IPv${v} ${table} ${where()} rule "${rule}" jumps to ${target}, which no owner declares`);
      }
      for (const s of ruleIpsets(rule)) {
        const set = m.ipsets.get(s);
        if (isOurIpset(s) && (!set || set.family !== v)) throw new Error(`IPv${v} ${table} ${where()} rule "${rule}" matches ipset ${s}, which no owner declares for IPv${v}`);
      }
    };
    for (const [table, chains] of fam.chains) {
      for (const [name, rules] of chains) {
        // Per chain, what it refers to (remembered per rule list); the rule is looked up only for the message.
        const refs = refsOf(rules);
        const bad = refs.targets.some((t) => isOurChain(t) && !chains.has(t)) || refs.ipsets.some((s) => isOurIpset(s) && m.ipsets.get(s)?.family !== v);
        if (!bad) continue;
        const where = () => `chain ${name}`;
        for (const r of rules) check(table, where, r);
      }
    }
    for (const [table, hooks] of fam.hooks) {
      for (const [chain, h] of hooks) [...h.top, ...h.bottom].forEach((r) => check(table, () => `hook in ${chain}`, r));
    }
  }
}

function mapOf<K, K2, V>(m: Map<K, Map<K2, V>>, k: K): Map<K2, V> {
  let inner = m.get(k);
  if (!inner) m.set(k, (inner = new Map()));
  return inner;
}

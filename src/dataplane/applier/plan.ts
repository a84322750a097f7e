// Pure: what to run so the kernel holds the merged desired state, from what
// the kernel holds now. Only our objects are looked at: chains named cali-*,
// ipsets named cali*, and the rules in built-in chains that jump to one of
// our chains (our hooks). Everything else is never written, flushed or
// deleted, whoever made it.
//
// Order (Felix's): create/refresh sets -> program chains -> delete stale sets,
// so a rule never refers to a set that is not there yet or no longer there.
import { applierTempIpset, isOurChain, isOurIpset } from '../../names/kernel';
import { canonicalMember, NOMATCH, SavedIpset } from './ipset-save';
import { ruleIpsets, ruleTarget, SavedTable, SavedTables } from './iptables-save';
import type { MergedFamily, MergedHooks, MergedIpset, MergedState } from './merge';
import type { BuiltinChain, IpFamily, TableName } from './types';

/** What the kernel holds, as read back. A family whose tables cannot be read is absent. */
export interface KernelState {
  tables: { 4?: SavedTables; 6?: SavedTables };
  ipsets: Map<string, SavedIpset>;
}

export type Step =
  /** iptables-restore --noflush input; `purpose` unreference runs before the sets are recreated. */
  | { kind: 'iptables'; family: IpFamily; purpose: 'unreference' | 'program'; text: string }
  | { kind: 'ipset-restore'; text: string }
  | { kind: 'ipset-destroy'; name: string };

/** The chains a program step rewrote and the built-in chains whose hooks it rewrote, to learn the kernel's spelling from. */
export interface Written {
  family: IpFamily;
  table: TableName;
  chains: string[];
  hooks: BuiltinChain[];
}

export interface Plan {
  steps: Step[];
  written: Written[];
  /** Things left alone on purpose that an operator may want to know about. */
  warnings: string[];
}

/**
 * How the kernel prints back a rule we wrote (iptables-save adds `-m tcp`,
 * `/32`, moves matches around). Unknown rules compare by our own text; after
 * the first write the applier learns the kernel's spelling from the read-back.
 */
export type Spelling = (family: IpFamily, table: TableName, rule: string) => string;

export const IPSET_MAXELEM = 1048576;

export function planApply(desired: MergedState, actual: KernelState, spell: Spelling): Plan {
  const plan: Plan = { steps: [], written: [], warnings: [] };
  let tables = actual.tables;
  const sets = planIpsets(desired, actual.ipsets);
  if (sets.recreate.length) {
    // Only this step changes the tables before they are planned against: copied for it.
    tables = { 4: cloneTables(actual.tables[4]), 6: cloneTables(actual.tables[6]) };
    // A set whose type or family changed cannot be swapped; it is destroyed and
    // made anew, which the kernel allows only once no rule refers to it.
    for (const v of [4, 6] as const) {
      const t = tables[v];
      if (!t) continue;
      const text = renderUnreference(t, new Set(sets.recreate), plan.warnings, v);
      if (text) plan.steps.push({ kind: 'iptables', family: v, purpose: 'unreference', text });
    }
  }
  if (sets.restore.length) plan.steps.push({ kind: 'ipset-restore', text: sets.restore.join('\n') + '\n' });
  for (const v of [4, 6] as const) {
    const fam = v === 4 ? desired.v4 : desired.v6;
    const t = tables[v];
    if (!t) {
      if (fam.chains.size || fam.hooks.size) plan.warnings.push(`IPv${v} tables cannot be read; the IPv${v} chains and hooks are not programmed`);
      continue;
    }
    const lines: string[] = [];
    for (const table of tableOrder(fam, t)) {
      const r = planTable(v, table, fam, t.get(table), spell, plan.warnings);
      if (!r.lines.length) continue;
      lines.push(`*${table}`, ...r.lines, 'COMMIT');
      plan.written.push({ family: v, table, chains: r.chains, hooks: r.hooks });
    }
    if (lines.length) plan.steps.push({ kind: 'iptables', family: v, purpose: 'program', text: lines.join('\n') + '\n' });
  }
  const foreign = foreignIpsetUsers(actual);
  for (const name of sets.stale) {
    const users = foreign.get(name);
    // The kernel refuses to destroy a set in use; a rule that is not ours keeps it.
    if (users) plan.warnings.push(`ipset ${name} is ours and no longer wanted, but ${users.join('; ')} (not ours) refers to it: left in place`);
    else plan.steps.push({ kind: 'ipset-destroy', name });
  }
  return plan;
}

/** Set name -> where a rule that is not ours matches on it. */
function foreignIpsetUsers(actual: KernelState): Map<string, string[]> {
  const users = new Map<string, string[]>();
  for (const v of [4, 6] as const) {
    for (const [table, chains] of actual.tables[v] ?? []) {
      for (const [name, chain] of chains) {
        if (!chain.builtin && isOurChain(name)) continue;
        for (const r of chain.rules) {
          if (chain.builtin && isOurHook(r)) continue;
          for (const s of ruleIpsets(r)) users.set(s, [...(users.get(s) ?? []), `IPv${v} ${table} chain ${name}`]);
        }
      }
    }
  }
  return users;
}

interface IpsetPlan {
  /** ipset restore lines: creates, refreshes (fill a temporary set, swap), recreates. */
  restore: string[];
  recreate: string[];
  stale: string[];
}

function planIpsets(desired: MergedState, actual: Map<string, SavedIpset>): IpsetPlan {
  const tmp = applierTempIpset();
  const restore: string[] = [];
  const recreate: string[] = [];
  const fill = (name: string, s: MergedIpset) => s.members.forEach((m) => restore.push(`add ${name} ${m}`));
  const create = (name: string, s: MergedIpset) =>
    restore.push(`create ${name} ${s.type} family ${s.family === 4 ? 'inet' : 'inet6'} maxelem ${IPSET_MAXELEM}${s.type === 'hash:net,iface' ? ' counters' : ''}`);
  for (const s of [...desired.ipsets.values()].sort((a, b) => cmp(a.name, b.name))) {
    const have = actual.get(s.name);
    // Written from this very member list (merge.ts keeps it while the owner's set object is the same): unchanged.
    if (have && have.from === s.members && have.type === s.type && have.family === s.family) continue;
    if (!have) {
      // Nothing refers to a set that does not exist yet: filled in place.
      create(s.name, s);
      fill(s.name, s);
    } else if (have.type !== s.type || have.family !== s.family) {
      recreate.push(s.name);
      restore.push(`destroy ${s.name}`);
      create(s.name, s);
      fill(s.name, s);
    } else {
      const d = memberDelta(have, s);
      if (!d.add.length && !d.del.length) continue;
      if (d.add.length + d.del.length < d.kept && !d.nomatch) {
        // A few members in or out of a set that keeps most: only those, removals
        // first (for a moment the set is narrower, never wider, than either state).
        d.del.forEach((m) => restore.push(`del ${s.name} ${m}`));
        d.add.forEach((m) => restore.push(`add ${s.name} ${m}`));
        continue;
      }
      // Mostly new, or holding nomatch exceptions (whose order matters): filled
      // under the temporary name and swapped in, so packets in flight never
      // see the live set half full.
      create(tmp, s);
      fill(tmp, s);
      restore.push(`swap ${tmp} ${s.name}`, `destroy ${tmp}`);
    }
  }
  const stale = [...actual.keys()].filter((n) => isOurIpset(n) && !desired.ipsets.has(n)).sort(cmp);
  // A temporary set left by an interrupted restore would make `create` fail if
  // its type differs: it goes first when we are about to use the name.
  if (actual.has(tmp) && restore.includes(`destroy ${tmp}`)) {
    restore.unshift(`destroy ${tmp}`);
    stale.splice(stale.indexOf(tmp), 1);
  }
  return { restore, recreate, stale };
}

/** Members to add and to delete (canonical, sorted), how many stay, and whether either side has a nomatch exception. */
export function memberDelta(have: SavedIpset, want: MergedIpset): { add: string[]; del: string[]; kept: number; nomatch: boolean } {
  const wanted = new Set(want.members);
  // A member read from the kernel that we want as it is needs no respelling (most of them, on a repair pass).
  const spell = (m: string) => {
    if (wanted.has(m)) return m;
    try {
      return canonicalMember(want.type, want.family, m);
    } catch {
      return m;
    }
  };
  const spelled = new Set(have.from === have.members ? have.members : have.members.map(spell));
  const add = want.members.filter((m) => !spelled.has(m));
  const del = [...spelled].filter((m) => !wanted.has(m)).sort(cmp);
  const nomatch = [...spelled, ...want.members].some((m) => m.endsWith(` ${NOMATCH}`));
  return { add, del, kept: want.members.length - add.length, nomatch };
}

/** Flushes our chains and deletes our hooks that refer to any of `sets`, in every table of one family. */
function renderUnreference(tables: SavedTables, sets: Set<string>, warnings: string[], v: IpFamily): string {
  const lines: string[] = [];
  for (const [table, chains] of tables) {
    const body: string[] = [];
    for (const [name, chain] of chains) {
      const refers = (r: string) => ruleIpsets(r).some((s) => sets.has(s));
      if (isOurChain(name)) {
        if (chain.rules.some(refers)) {
          body.push(`-F ${name}`);
          chain.rules = [];
        }
        continue;
      }
      const keep: string[] = [];
      for (const r of chain.rules) {
        if (!refers(r)) keep.push(r);
        else if (chain.builtin && isOurHook(r)) body.push(`-D ${name} ${r}`);
        else {
          warnings.push(`IPv${v} ${table} chain ${name} (not ours) refers to ipset ${ruleIpsets(r).join(',')}, which must be recreated: "${r}"`);
          keep.push(r);
        }
      }
      chain.rules = keep;
    }
    if (body.length) lines.push(`*${table}`, ...body, 'COMMIT');
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

interface TablePlan {
  lines: string[];
  chains: string[];
  hooks: BuiltinChain[];
}

function planTable(
  v: IpFamily,
  table: TableName,
  fam: MergedFamily,
  have: SavedTable | undefined,
  spell: Spelling,
  warnings: string[],
): TablePlan {
  const want = fam.chains.get(table) ?? new Map<string, string[]>();
  const hooks = fam.hooks.get(table) ?? new Map<BuiltinChain, MergedHooks>();
  const declare: string[] = [];
  const rules: string[] = [];
  const unhook: string[] = [];
  const hook: string[] = [];
  const edits: string[] = [];
  const changed: string[] = [];
  const rehooked: BuiltinChain[] = [];
  for (const [name, wantRules] of want) {
    const cur = have?.get(name);
    // Written from this very rule list since the kernel was last read: unchanged, nothing compared.
    if (cur && !cur.builtin && cur.from === wantRules) continue;
    const spelled = wantRules.map((r) => spell(v, table, r));
    if (cur && !cur.builtin && sameList(cur.rules, spelled)) continue;
    changed.push(name);
    const edit = cur && !cur.builtin ? ruleEdit(name, cur.rules, spelled, wantRules) : undefined;
    if (edit) {
      // A few rules in or out (an endpoint's entry in a dispatch chain): only those.
      edits.push(...edit);
      continue;
    }
    // In --noflush mode, declaring an existing chain flushes it; the rewrite is
    // atomic with the rest of the table's transaction.
    declare.push(`:${name} - [0:0]`);
    wantRules.forEach((r) => rules.push(`-A ${name} ${r}`));
  }
  const builtins = new Set<BuiltinChain>(hooks.keys());
  for (const [name, chain] of have ?? []) if (chain.builtin && chain.rules.some(isOurHook)) builtins.add(name as BuiltinChain);
  for (const b of [...builtins].sort(cmp)) {
    const cur = have?.get(b)?.rules ?? [];
    const h = hooks.get(b) ?? { top: [], bottom: [] };
    const top = h.top.map((r) => spell(v, table, r));
    const bottom = h.bottom.map((r) => spell(v, table, r));
    const ours = cur.filter(isOurHook);
    const inPlace =
      ours.length === top.length + bottom.length &&
      top.every((r, i) => cur[i] === r) &&
      bottom.every((r, i) => cur[cur.length - bottom.length + i] === r);
    if (inPlace) continue;
    // Any of ours missing, duplicated, stale or out of place: all of ours in
    // this chain are taken out and put back in order, foreign rules untouched.
    ours.forEach((r) => unhook.push(`-D ${b} ${r}`));
    h.top.forEach((r, i) => hook.push(`-I ${b} ${i + 1} ${r}`));
    h.bottom.forEach((r) => hook.push(`-A ${b} ${r}`));
    rehooked.push(b);
  }
  const flush: string[] = [];
  const drop: string[] = [];
  for (const [name, chain] of have ?? []) {
    if (chain.builtin || !isOurChain(name) || want.has(name)) continue;
    if (chain.rules.length) flush.push(`-F ${name}`);
    const users = [...(have ?? [])].filter(([n, c]) => !c.builtin && !isOurChain(n) && c.rules.some((r) => ruleTarget(r) === name)).map(([n]) => n);
    if (users.length) {
      warnings.push(`IPv${v} ${table} chain ${name} is ours and no longer wanted, but chain ${users.join(', ')} (not ours) jumps to it: emptied, not deleted`);
      continue;
    }
    drop.push(`-X ${name}`);
  }
  // New chains before the entries that jump to them; entries removed (edits,
  // rewrites) before the chains they reached are flushed and deleted. One
  // transaction per table either way: nothing in between is ever seen.
  return { lines: [...declare, ...unhook, ...rules, ...edits, ...hook, ...flush, ...drop], chains: changed, hooks: rehooked };
}

/** At most this many rules deleted plus inserted make an edit in place; more, and the chain is rewritten. */
export const MAX_RULE_EDIT = 8;

/**
 * The change from `cur` (the kernel's, spelled as it prints) to `spelled`
 * (the same rules as wanted, in the kernel's spelling where known) as
 * `-D <chain> <n>` / `-I <chain> <n> <rule>` lines, when they differ in one
 * run of at most MAX_RULE_EDIT rules and at most half the chain (an endpoint
 * added to or removed from a dispatch chain); undefined otherwise. `ours` is what is written for an
 * inserted rule (our own text).
 */
export function ruleEdit(chain: string, cur: string[], spelled: string[], ours: string[]): string[] | undefined {
  let head = 0;
  const most = Math.min(cur.length, spelled.length);
  while (head < most && cur[head] === spelled[head]) head++;
  let tail = 0;
  while (tail < most - head && cur[cur.length - 1 - tail] === spelled[spelled.length - 1 - tail]) tail++;
  const gone = cur.length - head - tail;
  const added = spelled.length - head - tail;
  // A short chain, or one changed by half or more: rewritten (as cheap, and simpler to read in the log).
  if (gone + added > MAX_RULE_EDIT || (gone + added) * 2 > spelled.length) return undefined;
  const out: string[] = [];
  // Deleting rule head+1 again and again takes out the run; the new rules go in at the same place.
  for (let i = 0; i < gone; i++) out.push(`-D ${chain} ${head + 1}`);
  for (let i = 0; i < added; i++) out.push(`-I ${chain} ${head + 1 + i} ${ours[head + i]}`);
  return out;
}

/** A rule in a built-in chain is ours when it jumps to one of our chains. */
export function isOurHook(rule: string): boolean {
  const t = ruleTarget(rule);
  return t !== undefined && isOurChain(t);
}

function tableOrder(fam: MergedFamily, have: SavedTables): TableName[] {
  const names = new Set<string>(fam.chains.keys());
  for (const t of fam.hooks.keys()) names.add(t);
  for (const [t, chains] of have) {
    for (const [n, c] of chains) if ((!c.builtin && isOurChain(n)) || (c.builtin && c.rules.some(isOurHook))) names.add(t);
  }
  return [...names].sort(cmp) as TableName[];
}

function cloneTables(t: SavedTables | undefined): SavedTables | undefined {
  if (!t) return undefined;
  return new Map([...t].map(([name, chains]) => [name, new Map([...chains].map(([c, v]) => [c, { builtin: v.builtin, rules: [...v.rules] }]))]));
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * What the kernel holds once `planApply(desired, actual, spell)` ran without
 * error: every object of ours as desired (spelled as `spell` knows it), the
 * stale ones gone (or emptied / kept where a foreign rule refers to them, as
 * the plan does), everything else as it was in `actual`. The applier trusts
 * it for the passes set() and flush() ask for, instead of reading the whole
 * kernel back each time; the periodic resync reads the real thing.
 * Invariant: planning `desired` against it finds nothing to do.
 */
export function expectedKernel(desired: MergedState, actual: KernelState, spell: Spelling): KernelState {
  const foreignSets = foreignIpsetUsers(actual);
  // Shallow: an unchanged chain keeps its object (nothing of `actual` is modified), so this costs the number of chains, not rules.
  const tables = { 4: shallowTables(actual.tables[4]), 6: shallowTables(actual.tables[6]) };
  for (const v of [4, 6] as const) {
    const t = tables[v];
    if (!t) continue;
    const fam = v === 4 ? desired.v4 : desired.v6;
    for (const table of tableOrder(fam, t)) {
      let chains = t.get(table);
      if (!chains) t.set(table, (chains = new Map()));
      const want = fam.chains.get(table) ?? new Map<string, string[]>();
      const hooks = fam.hooks.get(table) ?? new Map<BuiltinChain, MergedHooks>();
      for (const [name, c] of [...chains]) {
        if (c.builtin || !isOurChain(name) || want.has(name)) continue;
        const jumped = [...chains].some(([n, o]) => !o.builtin && !isOurChain(n) && o.rules.some((r) => ruleTarget(r) === name));
        if (jumped) chains.set(name, { builtin: false, rules: [] });
        else chains.delete(name);
      }
      for (const [name, rules] of want) {
        if (chains.get(name)?.from === rules) continue;
        chains.set(name, { builtin: false, rules: rules.map((r) => spell(v, table, r)), from: rules });
      }
      for (const b of hooks.keys()) if (!chains.has(b)) chains.set(b, { builtin: true, rules: [] });
      for (const [name, c] of chains) {
        if (!c.builtin) continue;
        const h = hooks.get(name as BuiltinChain) ?? { top: [], bottom: [] };
        chains.set(name, {
          builtin: true,
          rules: [...h.top.map((r) => spell(v, table, r)), ...c.rules.filter((r) => !isOurHook(r)), ...h.bottom.map((r) => spell(v, table, r))],
        });
      }
    }
  }
  const ipsets = new Map<string, SavedIpset>();
  for (const [name, s] of actual.ipsets) {
    if (!isOurIpset(name) || desired.ipsets.has(name) || foreignSets.has(name)) ipsets.set(name, s);
  }
  for (const s of desired.ipsets.values()) {
    const had = actual.ipsets.get(s.name);
    ipsets.set(s.name, had?.from === s.members && had.type === s.type && had.family === s.family ? had : { name: s.name, type: s.type, family: s.family, members: s.members, from: s.members });
  }
  return { tables, ipsets };
}

function shallowTables(t: SavedTables | undefined): SavedTables | undefined {
  if (!t) return undefined;
  return new Map([...t].map(([name, chains]) => [name, new Map(chains)]));
}

// How the kernel spells back the rules we wrote. iptables-save does not print
// a rule the way it was given (`-p tcp --dport 80` comes back as
// `-p tcp -m tcp --dport 80`, `-s 10.0.0.1` as `-s 10.0.0.1/32`, a comment
// moves before the target), and guessing its canonical form rule by rule is
// fragile. Instead, right after a chain (or a built-in chain's hooks) was
// written, its read-back is lined up with what we wrote, rule by rule, and
// remembered: from then on an unchanged rule compares equal. A rule never
// seen before compares by its own text, so the worst case is one extra
// rewrite of its chain (e.g. after a restart), never a missed change.
import type { MergedState } from './merge';
import type { SavedTables } from './iptables-save';
import { isOurHook, Written } from './plan';
import type { IpFamily, TableName } from './types';

export class RuleSpelling {
  /** family+table -> our rule -> the kernel's spelling (only where they differ). Nested: no key string built per lookup. */
  private readonly byTable = new Map<string, Map<string, string>>();

  // Called for every desired rule on every pass: a miss (most rules, spelled as the kernel prints them) costs one lookup.
  readonly spell = (family: IpFamily, table: TableName, rule: string): string => this.byTable.get(tableKey(family, table))?.get(rule) ?? rule;

  private get known(): KnownView {
    return new KnownView(this.byTable);
  }

  /**
   * Learns from the kernel's read-back of what `written` says was just rewritten.
   * Returns the chains whose read-back does not line up (a rule that became
   * several, or a concurrent writer): they are left unlearned.
   */
  learn(written: Written[], desired: MergedState, after: { 4?: SavedTables; 6?: SavedTables }): string[] {
    const misfits: string[] = [];
    for (const w of written) {
      const fam = w.family === 4 ? desired.v4 : desired.v6;
      const table = after[w.family]?.get(w.table);
      const pairUp = (where: string, ours: string[], back: string[]) => {
        if (ours.length !== back.length) {
          misfits.push(`IPv${w.family} ${w.table} ${where}: wrote ${ours.length} rules, read back ${back.length}`);
          return;
        }
        ours.forEach((r, i) => {
          if (back[i] === r) this.known.delete(key(w.family, w.table, r));
          else this.known.set(key(w.family, w.table, r), back[i]);
        });
      };
      for (const c of w.chains) pairUp(`chain ${c}`, fam.chains.get(w.table)?.get(c) ?? [], table?.get(c)?.rules ?? []);
      for (const b of w.hooks) {
        const h = fam.hooks.get(w.table)?.get(b) ?? { top: [], bottom: [] };
        pairUp(`hooks in ${b}`, [...h.top, ...h.bottom], (table?.get(b)?.rules ?? []).filter(isOurHook));
      }
    }
    return misfits;
  }

  /** Forgets rules nobody wants any more, so the memory stays the size of the desired state. */
  retain(desired: MergedState): void {
    const live = new Set<string>();
    for (const v of [4, 6] as const) {
      const fam = v === 4 ? desired.v4 : desired.v6;
      for (const [t, chains] of fam.chains) for (const rules of chains.values()) rules.forEach((r) => live.add(key(v, t, r)));
      for (const [t, hooks] of fam.hooks) for (const h of hooks.values()) [...h.top, ...h.bottom].forEach((r) => live.add(key(v, t, r)));
    }
    for (const k of this.known.keys()) if (!live.has(k)) this.known.delete(k);
  }

  get size(): number {
    return this.known.size;
  }
}

function key(family: IpFamily, table: TableName, rule: string): string {
  return `${tableKey(family, table)}\u0000${rule}`;
}

function tableKey(family: IpFamily, table: TableName): string {
  return `${family}\u0000${table}`;
}

/** The nested maps seen as one map keyed by key(family, table, rule), for the learning side. */
class KnownView {
  constructor(private readonly byTable: Map<string, Map<string, string>>) {}

  set(k: string, v: string): void {
    const [t, rule] = split(k);
    let m = this.byTable.get(t);
    if (!m) this.byTable.set(t, (m = new Map()));
    m.set(rule, v);
  }

  delete(k: string): void {
    const [t, rule] = split(k);
    const m = this.byTable.get(t);
    m?.delete(rule);
    if (m && m.size === 0) this.byTable.delete(t);
  }

  keys(): string[] {
    const out: string[] = [];
    for (const [t, m] of this.byTable) for (const rule of m.keys()) out.push(`${t}\u0000${rule}`);
    return out;
  }

  get size(): number {
    let n = 0;
    for (const m of this.byTable.values()) n += m.size;
    return n;
  }
}

function split(k: string): [string, string] {
  const a = k.indexOf('\u0000');
  const b = k.indexOf('\u0000', a + 1);
  return [k.slice(0, b), k.slice(b + 1)];
}

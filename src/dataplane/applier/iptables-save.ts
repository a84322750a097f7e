// Pure: what `iptables-save` / `ip6tables-save` print, as tables of chains of
// rules. A rule is kept as the text after `-A <chain> `, exactly as printed:
// that text is what the applier compares against and deletes by.

/** One chain as the kernel has it. */
export interface SavedChain {
  /** Built-in chains carry a policy (ACCEPT/DROP); user chains print `-`. */
  builtin: boolean;
  rules: string[];
  /**
   * Only in the applier's model of the kernel (plan.ts expectedKernel), never
   * in a read-back: the desired rule list this chain was written from. The
   * same list desired again is the same chain, compared without its rules.
   */
  from?: string[];
}

/** Chain name -> chain, in the order iptables-save printed them. */
export type SavedTable = Map<string, SavedChain>;
/** Table name (filter, nat, ...) -> its chains. A table nobody used is absent. */
export type SavedTables = Map<string, SavedTable>;

export function parseIptablesSave(text: string): SavedTables {
  const tables: SavedTables = new Map();
  let table: SavedTable | undefined;
  let tableName = '';
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const where = () => `iptables-save line ${i + 1} "${line}"`;
    if (line === '' || line.startsWith('#')) return;
    if (line.startsWith('*')) {
      tableName = line.slice(1);
      table = new Map();
      tables.set(tableName, table);
      return;
    }
    if (line === 'COMMIT') {
      table = undefined;
      return;
    }
    if (!table) throw new Error(`${where()}: outside any table`);
    if (line.startsWith(':')) {
      const m = /^:(\S+)\s+(\S+)/.exec(line);
      if (!m) throw new Error(`${where()}: not a chain declaration`);
      table.set(m[1], { builtin: m[2] !== '-', rules: [] });
      return;
    }
    // With -c, a rule starts with its counters: "[12:345] -A ..."
    const m = /^(?:\[\d+:\d+\]\s+)?-A\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) throw new Error(`${where()}: not a rule`);
    const chain = table.get(m[1]);
    if (!chain) throw new Error(`${where()}: rule in undeclared chain ${m[1]} of table ${tableName}`);
    chain.rules.push(m[2]);
  });
  return tables;
}

/**
 * Splits a rule the way the iptables command line does: on blanks, with
 * double-quoted words (comments) kept whole and `\"` inside them unescaped.
 */
export function ruleWords(rule: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < rule.length; i++) {
    const c = rule[i];
    if (quoted) {
      if (c === '\\' && i + 1 < rule.length) cur += rule[++i];
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = true;
      inWord = true;
    } else if (c === ' ' || c === '\t') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** The chain or target a rule jumps (-j) or goes (-g) to, if any. */
export function ruleTarget(rule: string): string | undefined {
  return refsOf(rule).target;
}

/** The ipsets a rule matches on (`-m set --match-set NAME src`). */
export function ruleIpsets(rule: string): string[] {
  return refsOf(rule).ipsets;
}

// Every pass looks at every rule (tens of thousands with 1,000 endpoints),
// and nearly all of them are the same strings as in the last pass: what a
// rule refers to is remembered by its text (bounded).
const REFS_CACHE_MAX = 200000;
const refsCache = new Map<string, { target?: string; ipsets: string[] }>();

function refsOf(rule: string): { target?: string; ipsets: string[] } {
  let r = refsCache.get(rule);
  if (r) return r;
  const w = ruleWords(rule);
  r = { ipsets: [] };
  for (let i = 0; i + 1 < w.length; i++) {
    if (r.target === undefined && (w[i] === '-j' || w[i] === '--jump' || w[i] === '-g' || w[i] === '--goto')) r.target = w[i + 1];
    if (w[i] === '--match-set') r.ipsets.push(w[i + 1]!);
  }
  if (refsCache.size >= REFS_CACHE_MAX) refsCache.clear();
  refsCache.set(rule, r);
  return r;
}

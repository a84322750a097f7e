// The applier's incremental diff (plan.ts): between reads of the kernel, a
// pass plans against what the last pass left, and writes only what changed —
// a few rules in or out of a long chain in place, set members by delta, an
// unchanged chain not even compared. Against a read-back kernel the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpsetSave } from '../../src/dataplane/applier/ipset-save';
import { mergeStates } from '../../src/dataplane/applier/merge';
import { expectedKernel, KernelState, MAX_RULE_EDIT, planApply, ruleEdit } from '../../src/dataplane/applier/plan';
import { RuleSpelling } from '../../src/dataplane/applier/spelling';
import type { DesiredState } from '../../src/dataplane/applier/types';
import { applierTempIpset } from '../../src/names/kernel';

const empty = (): KernelState => ({ tables: { 4: new Map(), 6: new Map() }, ipsets: new Map() });

function state(entries: string[], members: string[]): DesiredState {
  const dispatch = { table: 'filter' as const, name: 'cali-disp', rules: [...entries.map((e) => `-i ${e} -g cali-ep-${e}`), '-j DROP'] };
  const eps = entries.map((e) => ({ table: 'filter' as const, name: `cali-ep-${e}`, rules: ['-m set --match-set cali4-tag src -j RETURN', '-j DROP'] }));
  return {
    v4: {
      chains: [dispatch, ...eps],
      hooks: [{ table: 'filter', chain: 'FORWARD', rule: '-j cali-disp', position: 'top' }],
      ipsets: [{ name: 'cali4-tag', type: 'hash:net', family: 4, members }],
    },
    v6: { chains: [], hooks: [], ipsets: [] },
  };
}

const names = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `cali${String(i + from).padStart(3, '0')}`);
const addrs = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `10.0.${Math.floor((i + from) / 250)}.${((i + from) % 250) + 1}`);

function program(p: ReturnType<typeof planApply>): string[] {
  const s = p.steps.find((x) => x.kind === 'iptables' && x.purpose === 'program');
  return s && s.kind === 'iptables' ? s.text.split('\n').filter(Boolean) : [];
}

function ipset(p: ReturnType<typeof planApply>): string[] {
  const s = p.steps.find((x) => x.kind === 'ipset-restore');
  return s && s.kind === 'ipset-restore' ? s.text.split('\n').filter(Boolean) : [];
}

test('incremental: an endpoint added among 50 is its chain, one dispatch entry inserted in place after it, one set member; nothing else', () => {
  const spell = new RuleSpelling().spell;
  const before = mergeStates(new Map([['o', state(names(50), addrs(50))]]));
  const k = expectedKernel(before, planApplied(before, spell), spell);
  const all = names(51);
  // The new one sorts in the middle: cali050 renamed to sort between 024 and 025.
  all[50] = 'cali024x';
  all.sort();
  const after = mergeStates(new Map([['o', state(all, [...addrs(50), '10.0.9.9'])]]));
  const p = planApply(after, k, spell);
  assert.deepEqual(program(p), [
    '*filter',
    ':cali-ep-cali024x - [0:0]',
    '-A cali-ep-cali024x -m set --match-set cali4-tag src -j RETURN',
    '-A cali-ep-cali024x -j DROP',
    '-I cali-disp 26 -i cali024x -g cali-ep-cali024x',
    'COMMIT',
  ]);
  assert.deepEqual(ipset(p), ['add cali4-tag 10.0.9.9']);
  // Planning the same again against the model after it: nothing.
  assert.deepEqual(planApply(after, expectedKernel(after, k, spell), spell).steps, []);
});

test('incremental: an endpoint removed: its dispatch entry deleted before its chain is flushed and deleted; its member deleted', () => {
  const spell = new RuleSpelling().spell;
  const before = mergeStates(new Map([['o', state(names(50), addrs(50))]]));
  const k = expectedKernel(before, planApplied(before, spell), spell);
  const after = mergeStates(new Map([['o', state(names(50).filter((n) => n !== 'cali007'), addrs(50).filter((a) => a !== '10.0.0.8'))]]));
  const p = planApply(after, k, spell);
  assert.deepEqual(program(p), ['*filter', '-D cali-disp 8', '-F cali-ep-cali007', '-X cali-ep-cali007', 'COMMIT']);
  assert.deepEqual(ipset(p), ['del cali4-tag 10.0.0.8']);
  assert.deepEqual(planApply(after, expectedKernel(after, k, spell), spell).steps, []);
});

test('incremental: unchanged lists (the same arrays) are not compared at all; equal copies are compared and found equal', () => {
  let calls = 0;
  const spelling = new RuleSpelling();
  const spell: typeof spelling.spell = (v, t, r) => {
    calls++;
    return spelling.spell(v, t, r);
  };
  const desired = state(names(200), addrs(200));
  const m = mergeStates(new Map([['o', desired]]));
  const k = expectedKernel(m, planApplied(m, spell), spell);
  calls = 0;
  // The owner hands over the same objects again: merged anew, the same lists.
  const again = mergeStates(new Map([['o', { v4: { ...desired.v4, chains: [...desired.v4.chains] }, v6: desired.v6 }]]));
  assert.deepEqual(planApply(again, k, spell).steps, []);
  assert.equal(calls, 1, 'only the hook is spelled; no chain rule is');
  // Equal copies: compared rule by rule, still nothing to do.
  const copy = mergeStates(new Map([['o', JSON.parse(JSON.stringify(desired)) as DesiredState]]));
  assert.deepEqual(planApply(copy, k, spell).steps, []);
});

test('ruleEdit: one run of at most MAX_RULE_EDIT rules in or out is edited in place; more, or most of the chain, is rewritten', () => {
  const cur = ['a', 'b', 'c', 'd', 'z'];
  assert.deepEqual(ruleEdit('ch', cur, ['a', 'b', 'x', 'c', 'd', 'z'], ['a', 'b', 'X', 'c', 'd', 'z']), ['-I ch 3 X']);
  assert.deepEqual(ruleEdit('ch', cur, ['a', 'c', 'd', 'z'], ['a', 'c', 'd', 'z']), ['-D ch 2']);
  const ten = [...cur, 'e', 'f', 'g', 'h', 'i'];
  const swapped = ['a', 'x', 'y', ...ten.slice(3)];
  assert.deepEqual(ruleEdit('ch', ten, swapped, swapped), ['-D ch 2', '-D ch 2', '-I ch 2 x', '-I ch 3 y']);
  assert.equal(ruleEdit('ch', cur, ['a', 'x', 'y', 'd', 'z'], ['a', 'x', 'y', 'd', 'z']), undefined, 'four of five rules changed: rewritten');
  assert.deepEqual(ruleEdit('ch', cur, ['a', 'b', 'c', 'd', 'z', 'w'], ['a', 'b', 'c', 'd', 'z', 'w']), ['-I ch 6 w']);
  assert.equal(ruleEdit('ch', cur, ['q'], ['q']), undefined);
  const long = Array.from({ length: 40 }, (_, i) => `r${i}`);
  const many = [...long.slice(0, 10), ...Array.from({ length: MAX_RULE_EDIT + 1 }, (_, i) => `n${i}`), ...long.slice(10)];
  assert.equal(ruleEdit('ch', long, many, many), undefined);
});

test('set members: a few in or out by delta (removals first); mostly new, or nomatch exceptions, filled aside and swapped', () => {
  const spell = new RuleSpelling().spell;
  const tmp = applierTempIpset();
  const have = (members: string[]): KernelState => ({ ...empty(), ipsets: parseIpsetSave(`create cali4-tag hash:net family inet\n${members.map((m) => `add cali4-tag ${m}\n`).join('')}`) });
  const want = (members: string[]) => mergeStates(new Map([['o', { v4: { chains: [], hooks: [], ipsets: [{ name: 'cali4-tag', type: 'hash:net' as const, family: 4 as const, members }] }, v6: { chains: [], hooks: [], ipsets: [] } }]]));
  assert.deepEqual(ipset(planApply(want(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.9']), have(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']), spell)), ['del cali4-tag 10.0.0.1', 'add cali4-tag 10.0.0.9']);
  assert.deepEqual(ipset(planApply(want(['10.0.0.8', '10.0.0.9']), have(['10.0.0.1']), spell)), [
    `create ${tmp} hash:net family inet maxelem 1048576`, `add ${tmp} 10.0.0.8`, `add ${tmp} 10.0.0.9`, `swap ${tmp} cali4-tag`, `destroy ${tmp}`,
  ]);
  const nomatch = ipset(planApply(want(['10.0.0.0/8', '10.1.0.0/16 nomatch', '10.2.0.0/16', '10.3.0.0/16']), have(['10.0.0.0/8', '10.2.0.0/16', '10.3.0.0/16']), spell));
  assert.equal(nomatch.at(-2), `swap ${tmp} cali4-tag`);
});

/** The kernel once `m` was applied onto an empty one (as read back, no model marks). */
function planApplied(m: ReturnType<typeof mergeStates>, spell: RuleSpelling['spell']): KernelState {
  const k = expectedKernel(m, empty(), spell);
  for (const t of [k.tables[4]!, k.tables[6]!]) for (const chains of t.values()) for (const [n, c] of chains) chains.set(n, { builtin: c.builtin, rules: [...c.rules] });
  for (const [n, s] of k.ipsets) k.ipsets.set(n, { name: s.name, type: s.type, family: s.family, members: [...s.members] });
  return k;
}

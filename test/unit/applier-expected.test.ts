// plan.ts expectedKernel: what the applier trusts between resyncs. Planning
// the same desired state against it must find nothing to do, and it must
// keep everything that is not ours exactly as read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpsetSave } from '../../src/dataplane/applier/ipset-save';
import { parseIptablesSave } from '../../src/dataplane/applier/iptables-save';
import { mergeStates } from '../../src/dataplane/applier/merge';
import { expectedKernel, KernelState, planApply } from '../../src/dataplane/applier/plan';
import { RuleSpelling } from '../../src/dataplane/applier/spelling';
import { DesiredState, emptyState } from '../../src/dataplane/applier/types';
import { renderNat } from '../../src/dataplane/nat-outgoing/render';
import { compilePolicy } from '../../src/policy';
import { defaultProfile, Endpoint } from '../../src/datastore';
import { isOurChain, isOurIpset } from '../../src/names/kernel';
import { IPSET_V4_SAVE, IPTABLES_V4_SAVE, IPTABLES_V6_SAVE } from './applier-fixtures';

function kernel(v4 = IPTABLES_V4_SAVE, v6: string | undefined = IPTABLES_V6_SAVE, sets = IPSET_V4_SAVE): KernelState {
  return { tables: { 4: parseIptablesSave(v4), 6: v6 === undefined ? undefined : parseIptablesSave(v6) }, ipsets: parseIpsetSave(sets) };
}

function endpoint(i: number, profile: string): Endpoint {
  return {
    host: 'h1', containerId: `c${i}`, endpointId: `e${i}`, state: 'active', mac: '02:00:00:00:00:01', 'container:if_name': 'eth0',
    name: `cali${i.toString(16).padStart(11, '0')}`, profile_ids: [profile], ipv4_nets: [`10.1.0.${i}/32`], ipv6_nets: [`fd80::${i}/128`],
  };
}

function policy(n: number): DesiredState {
  return compilePolicy({ host: 'h1', endpoints: Array.from({ length: n }, (_, i) => endpoint(i + 1, i % 2 ? 'A' : 'B')), profiles: [defaultProfile('A'), defaultProfile('B')] });
}

const nat = renderNat([{ cidr: '10.1.0.0/16', natOutgoing: true }, { cidr: 'fd80::/64', natOutgoing: true }]);

/** Foreign chains and sets of a kernel state, as text. */
function foreign(k: KernelState): string {
  const out: string[] = [];
  for (const v of [4, 6] as const) {
    for (const [table, chains] of k.tables[v] ?? []) {
      for (const [name, c] of chains) {
        const rules = c.builtin ? c.rules.filter((r) => !/-[jg] cali-/.test(r)) : isOurChain(name) ? undefined : c.rules;
        if (rules && (rules.length || !c.builtin)) out.push(`${v} ${table} ${name}: ${rules.join(' | ')}`);
      }
    }
  }
  for (const [name, s] of k.ipsets) if (!isOurIpset(name)) out.push(`set ${name} ${s.members.join(',')}`);
  return out.sort().join('\n');
}

const cases: [string, Record<string, DesiredState>, () => KernelState][] = [
  ['policy and NAT onto the fixture (Docker\'s rules, stale chains and sets of ours)', { policy: policy(40), 'nat-outgoing': nat }, () => kernel()],
  ['onto an empty kernel', { policy: policy(3), 'nat-outgoing': nat }, () => kernel('', '', '')],
  ['policy gone, NAT stays', { 'nat-outgoing': nat }, () => kernel()],
  ['everything removed', {}, () => kernel()],
  ['IPv6 unreadable', { policy: policy(5) }, () => kernel(IPTABLES_V4_SAVE, undefined)],
  ['an empty state', { policy: emptyState() }, () => kernel()],
];

for (const [what, states, actual] of cases) {
  test(`expectedKernel: ${what}: planning again finds nothing to do, foreign objects as read`, () => {
    const m = mergeStates(new Map(Object.entries(states)));
    const spell = new RuleSpelling().spell;
    const k = actual();
    const first = planApply(m, k, spell);
    const exp = expectedKernel(m, k, spell);
    const again = planApply(m, exp, spell);
    assert.deepEqual(again.steps, [], `steps left: ${JSON.stringify(again.steps).slice(0, 500)}`);
    assert.equal(foreign(exp), foreign(k));
    assert.ok(first.steps.length > 0 || Object.keys(states).length === 0 || what === 'an empty state');
  });
}

test('expectedKernel: a change planned against it is the change alone (one endpoint added to its class: its pair and its tag member, no rule)', () => {
  const spell = new RuleSpelling().spell;
  const m1 = mergeStates(new Map([['policy', policy(20)]]));
  const k1 = expectedKernel(m1, kernel('', '', ''), spell);
  const m2 = mergeStates(new Map([['policy', policy(21)]]));
  const p = planApply(m2, k1, spell);
  assert.deepEqual(p.steps.map((s) => s.kind), ['ipset-restore'], 'no iptables step');
  const sets = p.steps[0]!;
  assert.ok(sets.kind === 'ipset-restore');
  assert.match(sets.text, /^add cali4-ep-\S+ 10\.1\.0\.21,cali00000000015\nadd cali4-tag-\S+ 10\.1\.0\.21\nadd cali6-ep-\S+ fd80::21,cali00000000015\nadd cali6-tag-\S+ fd80::21\n$/);
});

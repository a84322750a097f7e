import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpsetSave } from '../../src/dataplane/applier/ipset-save';
import { parseIptablesSave } from '../../src/dataplane/applier/iptables-save';
import { mergeStates } from '../../src/dataplane/applier/merge';
import { KernelState, Plan, planApply, Step } from '../../src/dataplane/applier/plan';
import { RuleSpelling } from '../../src/dataplane/applier/spelling';
import { DesiredState, emptyState } from '../../src/dataplane/applier/types';
import { renderNat } from '../../src/dataplane/nat-outgoing/render';
import { applierTempIpset } from '../../src/names/kernel';
import { IPSET_V4_SAVE, IPTABLES_V4_SAVE, IPTABLES_V6_SAVE } from './applier-fixtures';

/** The policy-like owner whose chains the fixture holds, written in short form (as an owner writes rules). */
function policy(): DesiredState {
  const s = emptyState();
  s.v4.chains.push(
    { table: 'filter', name: 'cali-FORWARD', rules: ['-i cali+ -m comment --comment "from workloads" -j cali-from-wl', '-o cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'] },
    { table: 'filter', name: 'cali-from-wl', rules: ['-p tcp --dport 80 -m set --match-set cali4-wl src -j ACCEPT', '-s 10.1.0.5 ! -d 10.0.0.0/8 -p udp --sport 53 -j RETURN', '-j DROP'] },
  );
  s.v4.hooks.push({ table: 'filter', chain: 'FORWARD', rule: '-j cali-FORWARD', position: 'top' });
  s.v4.ipsets.push({ name: 'cali4-wl', type: 'hash:ip', family: 4, members: ['10.1.0.5'] });
  s.v6.chains.push({ table: 'filter', name: 'cali-FORWARD', rules: ['-s fd80:24e2:f998:72d6::5 -p ipv6-icmp --icmpv6-type 128 -j ACCEPT', '-m set --match-set cali60all-ipam-pools dst -j ACCEPT'] });
  s.v6.hooks.push({ table: 'filter', chain: 'FORWARD', rule: '-j cali-FORWARD', position: 'top' });
  s.v6.ipsets.push({ name: 'cali60all-ipam-pools', type: 'hash:net', family: 6, members: ['fd80:24e2:f998:72d6::/64'] });
  return s;
}

const natPools = [
  { cidr: '10.1.0.0/16', natOutgoing: true },
  { cidr: '192.168.0.0/16', natOutgoing: false },
  { cidr: '10.9.9.9/32', natOutgoing: false },
];

function kernel(v4 = IPTABLES_V4_SAVE, v6: string | undefined = IPTABLES_V6_SAVE, sets = IPSET_V4_SAVE): KernelState {
  return { tables: { 4: parseIptablesSave(v4), 6: v6 === undefined ? undefined : parseIptablesSave(v6) }, ipsets: parseIpsetSave(sets) };
}

function merged(states: Record<string, DesiredState>) {
  return mergeStates(new Map(Object.entries(states)));
}

/** Desired state and a spelling that already learned the fixture's rendering (as after one apply). */
function learned(states: Record<string, DesiredState>) {
  const m = merged(states);
  const spelling = new RuleSpelling();
  const first = planApply(m, kernel(), spelling.spell);
  // What the kernel printed after that first write is the fixture itself.
  assert.deepEqual(spelling.learn(first.written, m, kernel().tables), []);
  return { m, spelling };
}

const iptables = (p: Plan, v: 4 | 6, purpose = 'program') =>
  p.steps.find((s): s is Extract<Step, { kind: 'iptables' }> => s.kind === 'iptables' && s.family === v && s.purpose === purpose)?.text ?? '';
const kinds = (p: Plan) => p.steps.map((s) => (s.kind === 'iptables' ? `iptables${s.family}-${s.purpose}` : s.kind === 'ipset-destroy' ? `destroy ${s.name}` : s.kind));

function assertNoForeign(p: Plan): void {
  for (const s of p.steps) {
    const text = s.kind === 'ipset-destroy' ? `destroy ${s.name}` : s.text;
    assert.doesNotMatch(text, /DOCKER|docker0|docker-foreign|172\.17/, 'a plan never names what is not ours');
  }
}

test('the kernel as wanted, rules written in short form: the first pass rewrites only chains whose text differs, then learns, then nothing', () => {
  const m = merged({ policy: policy(), 'nat-outgoing': renderNat(natPools) });
  const spelling = new RuleSpelling();
  const first = planApply(m, kernel(), spelling.spell);
  // cali-from-wl and v6 cali-FORWARD were written short (`--dport 80`, `-s ...::5`); iptables-save prints them long.
  assert.deepEqual(first.written, [
    { family: 4, table: 'filter', chains: ['cali-from-wl'], hooks: [] },
    { family: 6, table: 'filter', chains: ['cali-FORWARD'], hooks: [] },
  ]);
  assert.deepEqual(kinds(first), ['iptables4-program', 'iptables6-program'], 'sets are as wanted (10.9.9.9/32 is printed 10.9.9.9)');
  assert.deepEqual(spelling.learn(first.written, m, kernel().tables), []);
  const again = planApply(m, kernel(), spelling.spell);
  assert.deepEqual(again.steps, [], 'unchanged -> empty plan');
  assert.deepEqual(again.warnings, []);
});

test('rules written the way iptables-save prints them compare equal without learning', () => {
  const s = policy();
  s.v4.chains[1].rules = ['-p tcp -m tcp --dport 80 -m set --match-set cali4-wl src -j ACCEPT', '-s 10.1.0.5/32 ! -d 10.0.0.0/8 -p udp -m udp --sport 53 -j RETURN', '-j DROP'];
  s.v6.chains[0].rules[0] = '-s fd80:24e2:f998:72d6::5/128 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT';
  const p = planApply(merged({ policy: s, 'nat-outgoing': renderNat(natPools) }), kernel(), new RuleSpelling().spell);
  assert.deepEqual(p.steps, []);
});

test('a changed rule rewrites that chain only: declared (flushed) and re-added in one transaction', () => {
  const s = policy();
  const { spelling } = learned({ policy: s, 'nat-outgoing': renderNat(natPools) });
  s.v4.chains[1].rules[2] = '-j REJECT';
  const p = planApply(merged({ policy: s, 'nat-outgoing': renderNat(natPools) }), kernel(), spelling.spell);
  assert.deepEqual(kinds(p), ['iptables4-program']);
  assert.equal(
    iptables(p, 4),
    [
      '*filter',
      ':cali-from-wl - [0:0]',
      '-A cali-from-wl -p tcp --dport 80 -m set --match-set cali4-wl src -j ACCEPT',
      '-A cali-from-wl -s 10.1.0.5 ! -d 10.0.0.0/8 -p udp --sport 53 -j RETURN',
      '-A cali-from-wl -j REJECT',
      'COMMIT',
      '',
    ].join('\n'),
  );
  assertNoForeign(p);
});

test('a stale chain is deleted after every reference to it (a rewritten chain of ours), and its set after the chains', () => {
  const s = policy();
  const { spelling } = learned({ policy: s, 'nat-outgoing': renderNat(natPools) });
  s.v4.chains = [{ table: 'filter', name: 'cali-FORWARD', rules: ['-o cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'] }];
  s.v4.ipsets = [];
  const p = planApply(merged({ policy: s, 'nat-outgoing': renderNat(natPools) }), kernel(), spelling.spell);
  assert.deepEqual(kinds(p), ['iptables4-program', 'destroy cali4-wl'], 'the set goes once no chain refers to it');
  const lines = iptables(p, 4).split('\n');
  assert.deepEqual(lines, [
    '*filter',
    ':cali-FORWARD - [0:0]',
    '-A cali-FORWARD -o cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-F cali-from-wl',
    '-X cali-from-wl',
    'COMMIT',
    '',
  ]);
  assertNoForeign(p);
});

test('an owner gone: its hooks deleted before its chains, every other owner intact, foreign rules and chains untouched', () => {
  const { spelling } = learned({ policy: policy(), 'nat-outgoing': renderNat(natPools) });
  const p = planApply(merged({ 'nat-outgoing': renderNat(natPools) }), kernel(), spelling.spell);
  assert.deepEqual(kinds(p), ['iptables4-program', 'iptables6-program', 'destroy cali4-wl', 'destroy cali60all-ipam-pools']);
  assert.deepEqual(iptables(p, 4).split('\n'), [
    '*filter',
    '-D FORWARD -j cali-FORWARD',
    '-F cali-FORWARD',
    '-F cali-from-wl',
    '-X cali-FORWARD',
    '-X cali-from-wl',
    'COMMIT',
    '',
  ]);
  assert.doesNotMatch(iptables(p, 4), /nat/, "NAT outgoing's table is not touched");
  assert.equal(iptables(p, 6), '*filter\n-D FORWARD -j cali-FORWARD\n-F cali-FORWARD\n-X cali-FORWARD\nCOMMIT\n');
  assertNoForeign(p);
});

test('removing everything (removeAll) names only our objects', () => {
  const p = planApply(mergeStates(new Map()), kernel(), new RuleSpelling().spell);
  assert.deepEqual(kinds(p), ['iptables4-program', 'iptables6-program', 'destroy cali4-wl', 'destroy cali40all-ipam-pools', 'destroy cali40masq-ipam-pools', 'destroy cali60all-ipam-pools']);
  assert.match(iptables(p, 4), /\*nat\n-D POSTROUTING -j cali-nat-outgoing\n-F cali-nat-outgoing\n-X cali-nat-outgoing\nCOMMIT/);
  assertNoForeign(p);
  // Once gone, nothing more to do: removeAll is idempotent.
  const clean = kernel(
    IPTABLES_V4_SAVE.split('\n').filter((l) => !l.includes('cali')).join('\n'),
    IPTABLES_V6_SAVE.split('\n').filter((l) => !l.includes('cali')).join('\n'),
    'create docker-foreign hash:ip family inet hashsize 1024 maxelem 65536\nadd docker-foreign 172.17.0.2\n',
  );
  assert.deepEqual(planApply(mergeStates(new Map()), clean, new RuleSpelling().spell).steps, []);
});

test('hooks: missing one inserted at the top, duplicates and out-of-place ones taken out and put back, bottom ones appended', () => {
  const { m, spelling } = learned({ policy: policy(), 'nat-outgoing': renderNat(natPools) });
  const without = IPTABLES_V4_SAVE.replace('-A FORWARD -j cali-FORWARD\n', '');
  assert.equal(iptables(planApply(m, kernel(without), spelling.spell), 4), '*filter\n-I FORWARD 1 -j cali-FORWARD\nCOMMIT\n');

  const doubled = IPTABLES_V4_SAVE.replace('-A FORWARD -j DOCKER-USER\n', '-A FORWARD -j DOCKER-USER\n-A FORWARD -j cali-FORWARD\n');
  assert.equal(iptables(planApply(m, kernel(doubled), spelling.spell), 4), '*filter\n-D FORWARD -j cali-FORWARD\n-D FORWARD -j cali-FORWARD\n-I FORWARD 1 -j cali-FORWARD\nCOMMIT\n');

  // Docker re-inserted its DOCKER-USER jump above ours (it does on restart).
  const below = IPTABLES_V4_SAVE.replace('-A FORWARD -j cali-FORWARD\n-A FORWARD -j DOCKER-USER\n', '-A FORWARD -j DOCKER-USER\n-A FORWARD -j cali-FORWARD\n');
  assert.equal(iptables(planApply(m, kernel(below), spelling.spell), 4), '*filter\n-D FORWARD -j cali-FORWARD\n-I FORWARD 1 -j cali-FORWARD\nCOMMIT\n');

  // A stale jump of ours (to a chain nobody wants) in a built-in chain.
  const stale = IPTABLES_V4_SAVE.replace(':cali-from-wl - [0:0]\n', ':cali-from-wl - [0:0]\n:cali-old - [0:0]\n').replace('-A FORWARD -j DOCKER-USER\n', '-A FORWARD -j DOCKER-USER\n-A FORWARD -i eth9 -j cali-old\n');
  assert.equal(
    iptables(planApply(m, kernel(stale), spelling.spell), 4),
    '*filter\n-D FORWARD -j cali-FORWARD\n-D FORWARD -i eth9 -j cali-old\n-I FORWARD 1 -j cali-FORWARD\n-X cali-old\nCOMMIT\n',
  );

  const s = policy();
  s.v4.chains.push({ table: 'filter', name: 'cali-INPUT', rules: ['-j RETURN'] });
  s.v4.hooks.push({ table: 'filter', chain: 'INPUT', rule: '-j cali-INPUT', position: 'bottom' }, { table: 'filter', chain: 'FORWARD', rule: '-o cali+ -j cali-FORWARD', position: 'top' });
  const p = planApply(merged({ policy: s }), kernel(IPTABLES_V4_SAVE.replace('-A FORWARD -j cali-FORWARD\n', '-A INPUT -i lo -j ACCEPT\n-A FORWARD -j cali-FORWARD\n')), spelling.spell);
  assert.match(iptables(p, 4), /:cali-INPUT - \[0:0\]\n-D FORWARD -j cali-FORWARD\n-A cali-INPUT -j RETURN\n-I FORWARD 1 -j cali-FORWARD\n-I FORWARD 2 -o cali\+ -j cali-FORWARD\n-A INPUT -j cali-INPUT\n/);
});

test('set members changed: filled under the temporary name and swapped in; a type change recreates after unreferencing', () => {
  const s = policy();
  const { spelling } = learned({ policy: s, 'nat-outgoing': renderNat(natPools) });
  s.v4.ipsets[0].members = ['10.1.0.6', '10.1.0.5'];
  const tmp = applierTempIpset();
  let p = planApply(merged({ policy: s, 'nat-outgoing': renderNat(natPools) }), kernel(), spelling.spell);
  assert.deepEqual(p.steps, [
    { kind: 'ipset-restore', text: `create ${tmp} hash:ip family inet maxelem 1048576\nadd ${tmp} 10.1.0.5\nadd ${tmp} 10.1.0.6\nswap ${tmp} cali4-wl\ndestroy ${tmp}\n` },
  ]);

  // A leftover temporary set from an interrupted restore is destroyed before the name is used again.
  p = planApply(merged({ policy: s, 'nat-outgoing': renderNat(natPools) }), kernel(undefined, undefined, IPSET_V4_SAVE + `create ${tmp} hash:net family inet6\n`), spelling.spell);
  assert.match((p.steps[0] as { text: string }).text, new RegExp(`^destroy ${tmp}\ncreate ${tmp} hash:ip`));

  s.v4.ipsets[0].type = 'hash:net';
  p = planApply(merged({ policy: s, 'nat-outgoing': renderNat(natPools) }), kernel(), spelling.spell);
  assert.deepEqual(kinds(p), ['iptables4-unreference', 'ipset-restore', 'iptables4-program']);
  assert.equal(iptables(p, 4, 'unreference'), '*filter\n-F cali-from-wl\nCOMMIT\n');
  assert.equal((p.steps[1] as { text: string }).text, 'destroy cali4-wl\ncreate cali4-wl hash:net family inet maxelem 1048576\nadd cali4-wl 10.1.0.5\nadd cali4-wl 10.1.0.6\n');
  assert.match(iptables(p, 4), /^\*filter\n:cali-from-wl - \[0:0\]\n-A cali-from-wl -p tcp --dport 80/, 'the emptied chain is written again after the set is back');
});

test('a foreign chain that jumps to a stale chain of ours, or matches a stale set of ours: emptied / left, with a warning', () => {
  const foreign = IPTABLES_V4_SAVE.replace(':DOCKER-USER - [0:0]\n', ':DOCKER-USER - [0:0]\n:my-chain - [0:0]\n').replace(
    '-A DOCKER-USER -j RETURN\n',
    '-A DOCKER-USER -j RETURN\n-A my-chain -j cali-from-wl\n-A my-chain -m set --match-set cali4-wl dst -j DROP\n',
  );
  const s = policy();
  s.v4.chains = [{ table: 'filter', name: 'cali-FORWARD', rules: ['-j RETURN'] }];
  s.v4.ipsets = [];
  const p = planApply(merged({ policy: s }), kernel(foreign), new RuleSpelling().spell);
  assert.match(iptables(p, 4), /-F cali-from-wl\n/);
  assert.doesNotMatch(iptables(p, 4), /-X cali-from-wl|my-chain/);
  assert.ok(!kinds(p).includes('destroy cali4-wl'));
  assert.equal(p.warnings.length, 2);
  assert.match(p.warnings.join('\n'), /cali-from-wl .*my-chain \(not ours\) jumps to it/);
  assert.match(p.warnings.join('\n'), /ipset cali4-wl .*my-chain \(not ours\) refers to it/);
});

test('an empty kernel (fresh namespace: iptables-save prints nothing) gets NAT outgoing in one restore per tool', () => {
  const p = planApply(merged({ 'nat-outgoing': renderNat(natPools) }), kernel('', '', ''), new RuleSpelling().spell);
  assert.deepEqual(kinds(p), ['ipset-restore', 'iptables4-program']);
  assert.equal(
    iptables(p, 4),
    '*nat\n:cali-nat-outgoing - [0:0]\n-A cali-nat-outgoing -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE\n-I POSTROUTING 1 -j cali-nat-outgoing\nCOMMIT\n',
  );
  assert.equal(
    (p.steps[0] as { text: string }).text,
    'create cali40all-ipam-pools hash:net family inet maxelem 1048576\nadd cali40all-ipam-pools 10.1.0.0/16\nadd cali40all-ipam-pools 10.9.9.9\nadd cali40all-ipam-pools 192.168.0.0/16\n' +
      'create cali40masq-ipam-pools hash:net family inet maxelem 1048576\nadd cali40masq-ipam-pools 10.1.0.0/16\n',
  );
});

test('IPv6 tables unreadable: IPv4 is still planned, IPv6 chains are named in a warning', () => {
  const p = planApply(merged({ policy: policy() }), kernel(undefined, undefined), new RuleSpelling().spell);
  const none = planApply(merged({ policy: policy() }), { ...kernel(), tables: { 4: kernel().tables[4] } }, new RuleSpelling().spell);
  assert.ok(kinds(p).includes('iptables6-program'));
  assert.ok(!kinds(none).includes('iptables6-program'));
  assert.ok(kinds(none).includes('iptables4-program'));
  assert.match(none.warnings.join('\n'), /IPv6 tables cannot be read/);
});

test('merge: two owners side by side; the same hook from both is one rule; mistakes refused naming the owner', () => {
  const a = emptyState();
  a.v4.chains.push({ table: 'filter', name: 'cali-a', rules: ['-j RETURN'] });
  a.v4.hooks.push({ table: 'filter', chain: 'FORWARD', rule: '-j cali-a', position: 'top' });
  const b = emptyState();
  b.v4.chains.push({ table: 'filter', name: 'cali-a', rules: ['-j RETURN'] }, { table: 'filter', name: 'cali-b', rules: ['-j cali-a'] });
  b.v4.hooks.push({ table: 'filter', chain: 'FORWARD', rule: '-j cali-a', position: 'top' }, { table: 'filter', chain: 'FORWARD', rule: '-j cali-b', position: 'top' });
  const m = merged({ a, b });
  assert.deepEqual(m.v4.hooks.get('filter')!.get('FORWARD'), { top: ['-j cali-a', '-j cali-b'], bottom: [] });
  assert.deepEqual([...m.v4.chains.get('filter')!.keys()], ['cali-a', 'cali-b']);

  const clash = emptyState();
  clash.v4.chains.push({ table: 'filter', name: 'cali-a', rules: ['-j DROP'] });
  assert.throws(() => merged({ a, clash }), /owner clash: IPv4 filter chain cali-a: also defined, differently, by owner a/);
  const bad = (f: (s: DesiredState) => void, re: RegExp) => {
    const s = emptyState();
    f(s);
    assert.throws(() => merged({ x: s }), re);
  };
  bad((s) => s.v4.chains.push({ table: 'filter', name: 'DOCKER', rules: [] }), /owner x: IPv4 filter chain DOCKER: not a name of ours/);
  bad((s) => s.v4.chains.push({ table: 'filter', name: 'cali-a', rules: ['-j ACCEPT\n-A FORWARD -j DROP'] }), /one non-empty line/);
  bad((s) => s.v4.chains.push({ table: 'filter', name: 'cali-a', rules: ['-j cali-nobody'] }), /jumps to cali-nobody, which no owner declares/);
  bad((s) => s.v4.hooks.push({ table: 'filter', chain: 'FORWARD', rule: '-j ACCEPT', position: 'top' }), /must jump to one of our chains/);
  bad((s) => s.v4.hooks.push({ table: 'nat', chain: 'FORWARD', rule: '-j cali-a', position: 'top' }), /not a built-in chain of table nat/);
  bad((s) => s.v6.ipsets.push({ name: 'cali4-x', type: 'hash:ip', family: 4, members: [] }), /family 4 listed under IPv6/);
  bad((s) => s.v4.ipsets.push({ name: 'cali4-x', type: 'hash:ip', family: 4, members: ['10.0.0.0/8'] }), /ipset cali4-x: .*must be one address/);
  bad((s) => s.v4.ipsets.push({ name: applierTempIpset(), type: 'hash:ip', family: 4, members: [] }), /not a name of ours/);
  bad((s) => s.v4.chains.push({ table: 'filter', name: 'cali-a', rules: ['-m set --match-set cali6-x src -j DROP'] }), /matches ipset cali6-x, which no owner declares for IPv4/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalMember, parseIpsetSave } from '../../src/dataplane/applier/ipset-save';
import { mergeStates } from '../../src/dataplane/applier/merge';
import { planApply } from '../../src/dataplane/applier/plan';
import { RuleSpelling } from '../../src/dataplane/applier/spelling';
import { emptyState } from '../../src/dataplane/applier/types';
import { masqueradeMembers, renderNat } from '../../src/dataplane/nat-outgoing/render';
import {
  applierTempIpset,
  isOurChain,
  isOurIpset,
  MAX_CHAIN_NAME,
  MAX_IPSET_NAME,
  natAllPoolsIpset,
  natMasqPoolsIpset,
  natOutgoingChain,
} from '../../src/names/kernel';

/** The restore texts the applier writes for NAT outgoing's state, on a kernel whose sets exist (so they are swapped in). */
function texts(state: ReturnType<typeof renderNat>, existingSets: string) {
  const plan = planApply(mergeStates(new Map([['nat-outgoing', state]])), { tables: { 4: new Map(), 6: new Map() }, ipsets: parseIpsetSave(existingSets) }, new RuleSpelling().spell);
  const ipt = (v: 4 | 6) => plan.steps.find((s) => s.kind === 'iptables' && s.family === v) as { text: string } | undefined;
  const ipset = plan.steps.find((s) => s.kind === 'ipset-restore') as { text: string } | undefined;
  return { iptables: (v: 4 | 6) => ipt(v)?.text, ipset: ipset?.text };
}

test('renderNat: masquerade from nat-outgoing pools to outside every pool, per family', () => {
  const r = renderNat([
    { cidr: '10.1.0.0/16', natOutgoing: true },
    { cidr: '192.168.0.0/16', natOutgoing: false },
    { cidr: 'fd80::/64', natOutgoing: false },
  ]);
  // IPv4 asks for it, IPv6 does not.
  assert.deepEqual(r.v4.chains, [
    {
      table: 'nat',
      name: 'cali-nat-outgoing',
      rules: ['-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE'],
    },
  ]);
  assert.deepEqual(r.v4.hooks, [{ table: 'nat', chain: 'POSTROUTING', rule: '-j cali-nat-outgoing', position: 'top' }]);
  assert.deepEqual(r.v4.ipsets, [
    { name: 'cali40masq-ipam-pools', type: 'hash:net', family: 4, members: ['10.1.0.0/16'] },
    { name: 'cali40all-ipam-pools', type: 'hash:net', family: 4, members: ['10.1.0.0/16', '192.168.0.0/16'] },
  ]);
  assert.deepEqual(r.v6, emptyState().v6);

  // As the applier writes it: the chain hooked first in POSTROUTING, in one nat-table transaction.
  const t = texts(r, 'create cali40masq-ipam-pools hash:net family inet\ncreate cali40all-ipam-pools hash:net family inet\n');
  assert.equal(
    t.iptables(4),
    '*nat\n:cali-nat-outgoing - [0:0]\n' +
      '-A cali-nat-outgoing -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE\n' +
      '-I POSTROUTING 1 -j cali-nat-outgoing\n' +
      'COMMIT\n',
  );
  assert.equal(t.iptables(6), undefined);
  // Filled under a temporary name and swapped in: the live set is never seen half full.
  const tmp = applierTempIpset();
  assert.equal(
    t.ipset,
    [
      `create ${tmp} hash:net family inet maxelem 1048576`,
      `add ${tmp} 10.1.0.0/16`,
      `add ${tmp} 192.168.0.0/16`,
      `swap ${tmp} cali40all-ipam-pools`,
      `destroy ${tmp}`,
      `create ${tmp} hash:net family inet maxelem 1048576`,
      `add ${tmp} 10.1.0.0/16`,
      `swap ${tmp} cali40masq-ipam-pools`,
      `destroy ${tmp}`,
    ].join('\n') + '\n',
  );

  // An IPv6 pool with the flag: the IPv6 sets hold the IPv6 pools, family inet6.
  const r6 = renderNat([
    { cidr: 'fd80::/64', natOutgoing: false },
    { cidr: 'fd81::/64', natOutgoing: true },
    { cidr: '10.1.0.0/16', natOutgoing: false },
  ]);
  const t6 = texts(r6, '');
  assert.match(t6.ipset!, /create cali60all-ipam-pools hash:net family inet6 maxelem 1048576\nadd cali60all-ipam-pools fd80::\/64\nadd cali60all-ipam-pools fd81::\/64\n/);
  assert.match(t6.ipset!, /create cali60masq-ipam-pools hash:net family inet6 maxelem 1048576\nadd cali60masq-ipam-pools fd81::\/64\n/);
  assert.doesNotMatch(t6.ipset!, /add cali60masq-ipam-pools fd80/);
  assert.match(t6.iptables(6)!, /-A cali-nat-outgoing -m set --match-set cali60masq-ipam-pools src -m set ! --match-set cali60all-ipam-pools dst -j MASQUERADE\n/);
  assert.equal(t6.iptables(4), undefined, 'no IPv4 pool asks for it');
});

test('renderNat: nested pools: the narrowest pool holding the source decides (unflagged pools inside a flagged one are nomatch exceptions)', () => {
  // The case: a wide pool with the flag, a narrow one without it inside.
  const r = renderNat([
    { cidr: '10.0.0.0/8', natOutgoing: true },
    { cidr: '10.1.0.0/16', natOutgoing: false },
    { cidr: '10.1.2.0/24', natOutgoing: true },
    { cidr: '192.168.0.0/16', natOutgoing: false },
    { cidr: '192.168.5.0/24', natOutgoing: true },
  ]);
  assert.deepEqual(r.v4.ipsets[0], {
    name: 'cali40masq-ipam-pools',
    type: 'hash:net',
    family: 4,
    // 10.1.0.0/16 is an exception inside 10.0.0.0/8; 10.1.2.0/24 (flagged) inside that exception is masqueraded again;
    // 192.168.0.0/16 is inside no flagged pool, so it needs no entry, and its flagged /24 is a plain member.
    members: ['10.0.0.0/8', '10.1.0.0/16 nomatch', '10.1.2.0/24', '192.168.5.0/24'],
  });
  assert.deepEqual(masqueradeMembers([{ cidr: 'fd00::/48', natOutgoing: true }, { cidr: 'fd00:0:0:1::/64', natOutgoing: false }]), ['fd00::/48', 'fd00:0:0:1::/64 nomatch']);
  // Not nested: as before, the unflagged pools are only in the all-pools set.
  assert.deepEqual(masqueradeMembers([{ cidr: '10.1.0.0/16', natOutgoing: true }, { cidr: '10.2.0.0/16', natOutgoing: false }]), ['10.1.0.0/16']);

  // As the applier writes it and reads it back: the option is part of the member.
  const t = texts(r, '');
  assert.match(t.ipset!, /add cali40masq-ipam-pools 10\.1\.0\.0\/16 nomatch\n/);
  const saved = parseIpsetSave('create cali40masq-ipam-pools hash:net family inet hashsize 1024 maxelem 65536\nadd cali40masq-ipam-pools 10.1.0.0/16 nomatch\nadd cali40masq-ipam-pools 10.0.0.0/8\n');
  assert.deepEqual(saved.get('cali40masq-ipam-pools')!.members, ['10.1.0.0/16 nomatch', '10.0.0.0/8']);
  assert.equal(canonicalMember('hash:net', 4, '10.1.2.3/16 nomatch'), '10.1.0.0/16 nomatch');
  assert.throws(() => canonicalMember('hash:ip', 4, '10.1.2.3 nomatch'), /only a hash:net member may carry an option/);
  assert.throws(() => canonicalMember('hash:net', 4, '10.1.0.0/16 timeout'), /only "nomatch"/);
  // The kernel's copy of that state compares equal: nothing to do on the next pass.
  const again = planApply(
    mergeStates(new Map([['nat-outgoing', r]])),
    {
      tables: { 4: new Map(), 6: new Map() },
      ipsets: parseIpsetSave(
        'create cali40masq-ipam-pools hash:net family inet\nadd cali40masq-ipam-pools 192.168.5.0/24\nadd cali40masq-ipam-pools 10.1.2.0/24\nadd cali40masq-ipam-pools 10.1.0.0/16 nomatch\nadd cali40masq-ipam-pools 10.0.0.0/8\n' +
          'create cali40all-ipam-pools hash:net family inet\n' +
          ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '192.168.0.0/16', '192.168.5.0/24'].map((m) => `add cali40all-ipam-pools ${m}\n`).join(''),
      ),
    },
    new RuleSpelling().spell,
  );
  assert.equal(again.steps.filter((s) => s.kind === 'ipset-restore').length, 0, 'sets as wanted');
});

test('renderNat: no pool with the flag leaves nothing (the rule is gone, and its chain, jump and sets with it)', () => {
  const r = renderNat([{ cidr: '10.1.0.0/16', natOutgoing: false }]);
  assert.deepEqual(r, emptyState());
  assert.deepEqual(renderNat([]), emptyState());
});

test('NAT outgoing names: one function each, ours, within kernel name limits', () => {
  assert.equal(natOutgoingChain(), 'cali-nat-outgoing');
  assert.equal(natMasqPoolsIpset(4), 'cali40masq-ipam-pools');
  assert.equal(natAllPoolsIpset(6), 'cali60all-ipam-pools');
  assert.ok(isOurChain(natOutgoingChain()) && natOutgoingChain().length <= MAX_CHAIN_NAME);
  for (const v of [4, 6] as const) {
    for (const n of [natMasqPoolsIpset(v), natAllPoolsIpset(v), applierTempIpset()]) assert.ok(isOurIpset(n) && n.length <= MAX_IPSET_NAME, n);
  }
});

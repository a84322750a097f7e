import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIptablesSave, ruleIpsets, ruleTarget, ruleWords } from '../../src/dataplane/applier/iptables-save';
import { canonicalMember, parseIpsetSave } from '../../src/dataplane/applier/ipset-save';
import { membersOnly, refused } from '../../src/dataplane/applier/steps';
import { IPSET_V4_SAVE, IPTABLES_V4_SAVE, IPTABLES_V6_SAVE } from './applier-fixtures';

test('parseIptablesSave: tables, built-in and user chains, rules as printed (captured from iptables-nft 1.8.9)', () => {
  const t = parseIptablesSave(IPTABLES_V4_SAVE);
  assert.deepEqual([...t.keys()], ['filter', 'nat']);
  const filter = t.get('filter')!;
  assert.deepEqual([...filter.keys()], ['INPUT', 'FORWARD', 'OUTPUT', 'DOCKER', 'DOCKER-USER', 'cali-FORWARD', 'cali-from-wl']);
  assert.equal(filter.get('FORWARD')!.builtin, true);
  assert.equal(filter.get('DOCKER-USER')!.builtin, false);
  assert.equal(filter.get('cali-FORWARD')!.builtin, false);
  assert.deepEqual(filter.get('FORWARD')!.rules, ['-j cali-FORWARD', '-j DOCKER-USER', '-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT']);
  assert.deepEqual(filter.get('cali-FORWARD')!.rules, [
    '-i cali+ -m comment --comment "from workloads" -j cali-from-wl',
    '-o cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  ]);
  assert.deepEqual(filter.get('INPUT')!.rules, []);
  assert.deepEqual(t.get('nat')!.get('POSTROUTING')!.rules, ['-j cali-nat-outgoing', '-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE']);

  const v6 = parseIptablesSave(IPTABLES_V6_SAVE);
  assert.deepEqual(v6.get('filter')!.get('cali-FORWARD')!.rules[0], '-s fd80:24e2:f998:72d6::5/128 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT');
});

test('parseIptablesSave: counters (-c), an empty save (a fresh namespace prints nothing), and refusing garbage', () => {
  const t = parseIptablesSave('*filter\n:INPUT ACCEPT [1:2]\n:FORWARD DROP [0:0]\n[3:4] -A FORWARD -j cali-FORWARD\n:cali-FORWARD - [0:0]\nCOMMIT\n');
  assert.equal(t.get('filter')!.get('FORWARD')!.rules[0], '-j cali-FORWARD');
  assert.equal(parseIptablesSave('').size, 0);
  assert.throws(() => parseIptablesSave('*filter\n-A NOPE -j ACCEPT\nCOMMIT\n'), /line 2 .*undeclared chain NOPE/);
  assert.throws(() => parseIptablesSave('-A X -j ACCEPT\n'), /line 1 .*outside any table/);
});

test('rule words: quoted comments stay whole, escaped quotes are unescaped; targets and ipsets found', () => {
  assert.deepEqual(ruleWords('-m comment --comment "a \\"q\\" b" -j ACCEPT'), ['-m', 'comment', '--comment', 'a "q" b', '-j', 'ACCEPT']);
  assert.equal(ruleTarget('-i cali+ -m comment --comment "from workloads" -j cali-from-wl'), 'cali-from-wl');
  assert.equal(ruleTarget('-m comment --comment "-j cali-x" -j ACCEPT'), 'ACCEPT', 'a -j inside a comment is not a jump');
  assert.equal(ruleTarget('-o cali+ -g cali-to-wl'), 'cali-to-wl');
  assert.equal(ruleTarget('-m conntrack --ctstate INVALID'), undefined);
  assert.deepEqual(ruleIpsets('-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE'), [
    'cali40masq-ipam-pools',
    'cali40all-ipam-pools',
  ]);
});

test('parseIpsetSave: names, types, families, members as printed (captured from ipset 7.17)', () => {
  const s = parseIpsetSave(IPSET_V4_SAVE);
  assert.deepEqual([...s.keys()], ['cali40masq-ipam-pools', 'cali40all-ipam-pools', 'cali60all-ipam-pools', 'cali4-wl', 'docker-foreign']);
  assert.deepEqual(s.get('cali40all-ipam-pools'), {
    name: 'cali40all-ipam-pools',
    type: 'hash:net',
    family: 4,
    members: ['192.168.0.0/16', '10.1.0.0/16', '10.9.9.9'],
  });
  assert.equal(s.get('cali60all-ipam-pools')!.family, 6);
  assert.equal(s.get('cali4-wl')!.type, 'hash:ip');
  assert.equal(parseIpsetSave('').size, 0);
  assert.throws(() => parseIpsetSave('add nope 1.2.3.4\n'), /unknown set/);
});

test('parseIpsetSave: class sets with counters, members of sets in turn, nomatch, odd spacing: the fast path and the general one agree', () => {
  const s = parseIpsetSave(
    [
      'create cali4-ep-A hash:net,iface family inet hashsize 1024 maxelem 1048576 counters bucketsize 12 initval 0x1',
      'add cali4-ep-A 10.0.0.1,cali0000000001 packets 12 bytes 1008',
      'add cali4-ep-A 10.0.0.2,cali0000000002',
      'create cali4-tag-A hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x2',
      'add cali4-tag-A 10.0.0.1',
      'add cali4-ep-A 10.0.0.3,cali0000000003',
      'add  cali4-tag-A   10.0.0.2 ',
      'add cali4-tag-A 10.0.0.0/24 nomatch',
      'add cali4-tag-A 10.0.0.4',
      '',
    ].join('\n'),
  );
  assert.deepEqual(s.get('cali4-ep-A'), { name: 'cali4-ep-A', type: 'hash:net,iface', family: 4, members: ['10.0.0.1,cali0000000001', '10.0.0.2,cali0000000002', '10.0.0.3,cali0000000003'] });
  assert.deepEqual(s.get('cali4-tag-A')!.members, ['10.0.0.1', '10.0.0.2', '10.0.0.0/24 nomatch', '10.0.0.4']);
  assert.throws(() => parseIpsetSave('create a hash:net family inet\nadd b 1.2.3.4\n'), /unknown set/);
});

test('canonicalMember: spelled as the kernel prints it back', () => {
  // Each pair: what was added, what `ipset save` printed (seen on this kernel).
  assert.equal(canonicalMember('hash:net', 4, '10.1.2.3/16'), '10.1.0.0/16');
  assert.equal(canonicalMember('hash:net', 4, '10.9.9.9/32'), '10.9.9.9');
  assert.equal(canonicalMember('hash:net', 4, '10.8.0.0/31'), '10.8.0.0/31');
  assert.equal(canonicalMember('hash:net', 6, 'fd80::1/128'), 'fd80::1');
  assert.equal(canonicalMember('hash:net', 6, 'FD80:24E2:F998:72D6:0:0:0:0/64'), 'fd80:24e2:f998:72d6::/64');
  assert.equal(canonicalMember('hash:ip', 6, '2001:DB8:0:0::1'), '2001:db8::1');
  assert.equal(canonicalMember('hash:ip', 4, '10.1.0.5/32'), '10.1.0.5');
  assert.throws(() => canonicalMember('hash:ip', 4, '10.0.0.0/24'), /must be one address/);
  assert.throws(() => canonicalMember('hash:net', 4, 'fd80::/64'), /not IPv4/);
  assert.throws(() => canonicalMember('hash:net', 6, 'zz'), /"zz" is not an IPv6 network/);
});

test('refused: the error names the command, family, table and the input line the kernel refused (stderr as captured)', () => {
  const text = '*filter\n:cali-x - [0:0]\n-A cali-x -j RETURN\nCOMMIT\n*nat\n:cali-y - [0:0]\n-A cali-y -m set --match-set nosuch src -j ACCEPT\nCOMMIT\n';
  const step = { kind: 'iptables' as const, family: 4 as const, purpose: 'program' as const, text };
  const nft = "iptables-restore v1.8.9 (nf_tables): Set nosuch doesn't exist.\n\nError occurred at line: 7\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n";
  const e = refused('iptables-restore --noflush -w', step, nft, 2);
  assert.equal(e.family, 4);
  assert.equal(e.table, 'nat');
  assert.equal(e.line, '-A cali-y -m set --match-set nosuch src -j ACCEPT');
  assert.match(e.message, /^iptables-restore --noflush -w \(IPv4 table nat\) exited 2 at line 7 "-A cali-y -m set --match-set nosuch src -j ACCEPT": iptables-restore v1.8.9 \(nf_tables\): Set nosuch doesn't exist\./);
  const busy = refused('iptables-restore --noflush -w', step, 'iptables-restore v1.8.9 (nf_tables): \nline 3: CHAIN_DEL failed (Device or resource busy): chain cali-x\n', 4);
  assert.equal(busy.table, 'filter');
  assert.equal(busy.line, '-A cali-x -j RETURN');
  const ipset = refused('ipset restore', { kind: 'ipset-restore', text: 'create cali-a hash:ip family inet\nadd cali-a zz\n' }, 'ipset v7.17: Error in line 2: Syntax error: cannot parse zz: resolving to IPv4 address failed\n', 1);
  assert.equal(ipset.line, 'add cali-a zz');
  assert.match(ipset.message, /^ipset restore exited 1 at line 2 "add cali-a zz": ipset v7.17: Error in line 2/);
});

test('membersOnly: an ipset step that only adds or deletes members may run beside the restores; one that creates, swaps or destroys may not', () => {
  assert.equal(membersOnly('add cali40t-a 10.0.0.1\ndel cali40t-b 10.0.0.2\n'), true);
  assert.equal(membersOnly('create cali40t-a hash:net family inet maxelem 1048576\nadd cali40t-a 10.0.0.1\n'), false);
  assert.equal(membersOnly('create cali4-tmp hash:net family inet maxelem 1048576\nswap cali4-tmp cali40t-a\ndestroy cali4-tmp\n'), false);
  assert.equal(membersOnly('destroy cali40t-a\n'), false);
});

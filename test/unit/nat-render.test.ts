import { test } from 'node:test';
import assert from 'node:assert/strict';
import { natNames, renderNat } from '../../src/dataplane/nat-outgoing/render';

const names = natNames('cali');

test('renderNat: masquerade from nat-outgoing pools to outside every pool, per family', () => {
  const r = renderNat(
    [
      { cidr: '10.1.0.0/16', natOutgoing: true },
      { cidr: '192.168.0.0/16', natOutgoing: false },
      { cidr: 'fd80::/64', natOutgoing: false },
    ],
    names,
  );
  assert.equal(r.active(4), true);
  assert.equal(r.active(6), false);
  assert.equal(
    r.iptables(4),
    '*nat\n:cali-nat-outgoing - [0:0]\n-F cali-nat-outgoing\n' +
      '-A cali-nat-outgoing -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE\n' +
      'COMMIT\n',
  );
  assert.equal(r.iptables(6), '*nat\n:cali-nat-outgoing - [0:0]\n-F cali-nat-outgoing\nCOMMIT\n');
  assert.equal(
    r.ipset(4),
    [
      'create cali40masq-ipam-pools hash:net family inet -exist',
      'create cali40masq-ipam-pools-tmp hash:net family inet -exist',
      'flush cali40masq-ipam-pools-tmp',
      'add cali40masq-ipam-pools-tmp 10.1.0.0/16',
      'swap cali40masq-ipam-pools-tmp cali40masq-ipam-pools',
      'destroy cali40masq-ipam-pools-tmp',
      'create cali40all-ipam-pools hash:net family inet -exist',
      'create cali40all-ipam-pools-tmp hash:net family inet -exist',
      'flush cali40all-ipam-pools-tmp',
      'add cali40all-ipam-pools-tmp 10.1.0.0/16',
      'add cali40all-ipam-pools-tmp 192.168.0.0/16',
      'swap cali40all-ipam-pools-tmp cali40all-ipam-pools',
      'destroy cali40all-ipam-pools-tmp',
    ].join('\n') + '\n',
  );
  assert.match(r.ipset(6), /create cali60all-ipam-pools hash:net family inet6 -exist\n[^]*add cali60all-ipam-pools-tmp fd80::\/64\n/);
  assert.doesNotMatch(r.ipset(6), /add cali60masq/);
});

test('renderNat: no pool with the flag leaves an empty chain (the rule is gone)', () => {
  const r = renderNat([{ cidr: '10.1.0.0/16', natOutgoing: false }], names);
  assert.equal(r.iptables(4), '*nat\n:cali-nat-outgoing - [0:0]\n-F cali-nat-outgoing\nCOMMIT\n');
  assert.equal(r.active(4), false);
});

test('natNames: prefixes keep kernel name limits', () => {
  assert.equal(natNames('t1234').chain, 't1234-nat-outgoing');
  assert.throws(() => natNames('a-very-long-prefix-for-names'), /too long/);
});

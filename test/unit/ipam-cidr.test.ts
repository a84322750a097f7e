import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressAt,
  blockAt,
  blockCount,
  blockOf,
  candidateBlocks,
  canonicalAddress,
  cidrContains,
  cidrSize,
  cidrsOverlap,
  holdsBlock,
  normaliseCidr,
  ordinalOf,
  parseAddress,
  parseCidr,
} from '../../src/address/cidr';

test('CIDRs are normalised: host bits cleared, IPv6 compressed', () => {
  assert.equal(normaliseCidr('10.1.1.1/8'), '10.0.0.0/8');
  assert.equal(normaliseCidr(' 192.168.7.9/16 '), '192.168.0.0/16');
  assert.equal(normaliseCidr('fd80:24e2:f998:72d6:0:0:0:1/64'), 'fd80:24e2:f998:72d6::/64');
  assert.equal(normaliseCidr('0.0.0.0/0'), '0.0.0.0/0');
  assert.equal(normaliseCidr('10.0.0.5/32'), '10.0.0.5/32');
});

test('malformed CIDRs and addresses are refused with the reason', () => {
  assert.throws(() => parseCidr('10.0.0.0'), /expected <address>\/<prefix length>/);
  assert.throws(() => parseCidr('10.0.0.256/24'), /not a valid IPv4 or IPv6 address/);
  assert.throws(() => parseCidr('10.0.0.0/33'), /0 to 32/);
  assert.throws(() => parseCidr('fd00::/129'), /0 to 128/);
  assert.throws(() => parseCidr('10.0.0.0/x'), /prefix length/);
  assert.throws(() => parseCidr('10.0.0.0/-1'), /prefix length/);
  assert.throws(() => parseAddress('10.1'), /not a valid/);
  assert.throws(() => parseAddress('hello'), /not a valid/);
});

test('addresses: canonical text and value round trip', () => {
  assert.equal(canonicalAddress('fd00:0::0001'), 'fd00::1');
  assert.equal(canonicalAddress('10.0.0.1'), '10.0.0.1');
  assert.equal(parseAddress('0.0.1.0').value, 256n);
});

test('containment and overlap are per family', () => {
  const p = parseCidr('10.0.0.0/8');
  assert.ok(cidrContains(p, 4, parseAddress('10.255.255.255').value));
  assert.ok(!cidrContains(p, 4, parseAddress('11.0.0.0').value));
  assert.ok(!cidrContains(p, 6, parseAddress('::a00:1').value));
  assert.ok(cidrsOverlap(p, parseCidr('10.5.0.0/16')));
  assert.ok(cidrsOverlap(parseCidr('10.5.0.0/16'), p));
  assert.ok(!cidrsOverlap(p, parseCidr('11.0.0.0/8')));
  assert.ok(!cidrsOverlap(parseCidr('0.0.0.0/0'), parseCidr('::/0')));
});

test('blocks: /26 and /122, 64 ordinals each, every address usable', () => {
  const v = parseAddress('192.168.1.77').value;
  const b = blockOf(4, v);
  assert.equal(b.text, '192.168.1.64/26');
  assert.equal(ordinalOf(b, v), 13);
  assert.equal(addressAt(b, 0), '192.168.1.64');
  assert.equal(addressAt(b, 63), '192.168.1.127');
  const b6 = blockOf(6, parseAddress('fd00::7f').value);
  assert.equal(b6.text, 'fd00::40/122');
  assert.equal(addressAt(b6, 63), 'fd00::7f');
  assert.equal(blockCount(parseCidr('192.168.0.0/16')), 1024n);
  assert.equal(blockCount(parseCidr('fd80:24e2:f998:72d6::/64')), 1n << 58n);
  assert.equal(cidrSize(parseCidr('fd80:24e2:f998:72d6::/64')), 1n << 64n);
  assert.equal(blockAt(parseCidr('10.0.0.0/24'), 3n).text, '10.0.0.192/26');
  assert.ok(holdsBlock(parseCidr('10.0.0.0/26')));
  assert.ok(!holdsBlock(parseCidr('10.0.0.0/27')));
  assert.ok(holdsBlock(parseCidr('fd00::/122')));
  assert.ok(!holdsBlock(parseCidr('fd00::/123')));
});

test('claim candidates: start depends on the host, cover the pool, stay inside it', () => {
  const pool = parseCidr('10.0.0.0/24');
  const a = [...candidateBlocks(pool, 'host-a', 10)].map((c) => c.text);
  const b = [...candidateBlocks(pool, 'host-b', 10)].map((c) => c.text);
  assert.equal(a.length, 4);
  assert.deepEqual([...a].sort(), ['10.0.0.0/26', '10.0.0.128/26', '10.0.0.192/26', '10.0.0.64/26']);
  assert.deepEqual([...b].sort(), [...a].sort());
  assert.deepEqual([...candidateBlocks(pool, 'host-a', 10)].map((c) => c.text), a, 'stable per host');
  const big = [...candidateBlocks(parseCidr('fd00::/64'), 'h', 3)];
  assert.equal(big.length, 3);
  for (const c of big) assert.ok(cidrContains(parseCidr('fd00::/64'), 6, c.network));
});

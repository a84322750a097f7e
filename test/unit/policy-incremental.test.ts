// PolicyCompiler: the policy compiled incrementally. After any sequence of
// changes its output equals compilePolicy's for the same input, and a change
// yields exactly the expected delta: the objects that are not the same as
// last time are the chains and sets the change touches, nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicy, type PolicyInput } from '../../src/policy/compile';
import { PolicyCompiler } from '../../src/policy/compiler';
import type { DesiredState } from '../../src/dataplane/applier/types';
import type { Endpoint, Profile } from '../../src/datastore';

function ep(i: number, profiles: string[], host = 'h1'): Endpoint {
  const hex = (i * 2654435761 % 2 ** 32).toString(16).padStart(11, '0');
  return {
    host, containerId: `c${i}`, endpointId: `e${i}`, state: 'active', mac: '02:00:00:00:00:01', 'container:if_name': 'eth0',
    name: `cali${hex}`, profile_ids: profiles, ipv4_nets: [`10.1.${i >> 8}.${i & 255}/32`], ipv6_nets: [`fd80::${i.toString(16)}/128`],
  };
}

function prof(name: string, port: number, tags = [name], peer = name): Profile {
  return {
    name, tags,
    rules: {
      inbound_rules: [{ action: 'allow', src_tag: peer }, { action: 'allow', protocol: 'tcp', dst_ports: [port] }, { action: 'deny', dst_tag: 'T' }],
      outbound_rules: [{ action: 'deny', dst_net: '10.99.0.0/16' }, { action: 'allow' }],
    },
  };
}

/** Output objects of `next` that are not the very objects of `prev` (by kind and name). */
function changed(prev: DesiredState, next: DesiredState): string[] {
  const out: string[] = [];
  for (const v of [4, 6] as const) {
    const was = new Map<string, unknown>([...prev[`v${v}`].chains, ...prev[`v${v}`].ipsets].map((o) => [o.name, o]));
    for (const o of [...next[`v${v}`].chains, ...next[`v${v}`].ipsets]) if (was.get(o.name) !== o) out.push(`${v} ${o.name}`);
  }
  return out.sort();
}

test('PolicyCompiler: equal to compilePolicy after every change of a random sequence (endpoints come, go, move profile, stop; profiles and tags change)', () => {
  let seed = 7;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const profiles = new Map(['A', 'B', 'C', 'D'].map((n, i) => [n, prof(n, 80 + i)]));
  const endpoints = new Map<number, Endpoint>();
  for (let i = 0; i < 30; i++) endpoints.set(i, ep(i, [['A', 'B', 'C'][i % 3]!], i % 4 ? 'h1' : 'h2'));
  const c = new PolicyCompiler();
  let next = 30;
  for (let step = 0; step < 150; step++) {
    const what = rnd(8);
    const keys = [...endpoints.keys()];
    const k = keys[rnd(keys.length)]!;
    if (what === 0) endpoints.set(next, ep(next++, [['A', 'B', 'C', 'D', 'X'][rnd(5)]!], rnd(3) ? 'h1' : 'h2'));
    else if (what === 1) endpoints.delete(k);
    else if (what === 2) endpoints.set(k, { ...endpoints.get(k)!, profile_ids: [['A', 'B', 'D'][rnd(3)]!, 'C'] });
    else if (what === 3) endpoints.set(k, { ...endpoints.get(k)!, state: rnd(2) ? 'inactive' : 'active' } as Endpoint);
    else if (what === 4) profiles.set('B', prof('B', 1000 + step));
    else if (what === 5) profiles.set('C', prof('C', 90, rnd(2) ? ['C', 'T'] : ['C']));
    else if (what === 6) profiles.set('A', prof('A', 80, ['A'], rnd(2) ? 'T' : 'A'));
    else if (rnd(2)) profiles.delete('D');
    else profiles.set('D', prof('D', 83));
    const input: PolicyInput = { host: 'h1', endpoints: [...endpoints.values()], profiles: [...profiles.values()] };
    assert.deepEqual(c.compile(input), compilePolicy(input), `step ${step} (change ${what})`);
  }
  // Options change: everything follows.
  const input: PolicyInput = { host: 'h1', endpoints: [...endpoints.values()], profiles: [...profiles.values()], options: { endpointToHostAction: 'accept', noMatchMark: 0x100000 } };
  assert.deepEqual(c.compile(input), compilePolicy(input));
});

test("PolicyCompiler: an endpoint added to or removed from a class already here changes its class's set and its tag sets only; a new class its chains and the dispatch; a rule update the profile chain only; a remote endpoint its sets only", () => {
  const profiles = ['A', 'B'].map((n, i) => prof(n, 80 + i));
  const endpoints = Array.from({ length: 200 }, (_, i) => ep(i, [i % 2 ? 'A' : 'B']));
  const c = new PolicyCompiler();
  const s0 = c.compile({ host: 'h1', endpoints, profiles });
  assert.deepEqual(changed(s0, c.compile({ host: 'h1', endpoints, profiles })), [], 'nothing changed: every object the same');

  const added = ep(500, ['A']);
  const s1 = c.compile({ host: 'h1', endpoints: [...endpoints, added], profiles });
  const mine = (v: number) => [`${v} cali${v}-ep-A`, `${v} cali${v}-tag-A`];
  assert.deepEqual(changed(s0, s1), [...mine(4), ...mine(6)].sort(), 'no chain: its pairs and its tag members');

  const s2 = c.compile({ host: 'h1', endpoints, profiles });
  assert.deepEqual(changed(s1, s2), [...mine(4), ...mine(6)].sort());

  const s3 = c.compile({ host: 'h1', endpoints, profiles: [prof('A', 8080), profiles[1]!] });
  assert.deepEqual(changed(s2, s3), ['4 cali-pri-A', '6 cali-pri-A']);

  const s4 = c.compile({ host: 'h1', endpoints: [...endpoints, ep(600, ['B'], 'h2')], profiles: [prof('A', 8080), profiles[1]!] });
  assert.deepEqual(changed(s3, s4), ['4 cali4-tag-B', '6 cali6-tag-B']);

  // The first endpoint of a class (B then A): the class's chains and set, and the three dispatch chains.
  const s5 = c.compile({ host: 'h1', endpoints: [...endpoints, ep(600, ['B'], 'h2'), ep(700, ['B', 'A'])], profiles: [prof('A', 8080), profiles[1]!] });
  const fresh = (v: number) => [`${v} cali-fc-B+A`, `${v} cali-from-wl-dispatch`, `${v} cali-host-wl-dispatch`, `${v} cali-tc-B+A`, `${v} cali-to-wl-dispatch`, `${v} cali${v}-ep-B+A`, `${v} cali${v}-tag-A`, `${v} cali${v}-tag-B`];
  assert.deepEqual(changed(s4, s5), [...fresh(4), ...fresh(6)].sort());
});

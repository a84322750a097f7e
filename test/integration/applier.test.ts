// The kernel applier on a real kernel, inside a network namespace each test
// makes: v4 and v6, filter and nat, foreign rules beside ours, repair of what
// an operator flushes or destroys, two owners, and refused rules reported.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Netns, teardownAll, onTeardown, waitFor, isRoot } from '../harness';
import { ApplierError, IptablesApplier } from '../../src/dataplane/applier/iptables-applier';
import { DesiredState, emptyState } from '../../src/dataplane/applier/types';
import { silentLogger } from '../../src/log/logger';

after(teardownAll);

const skip = !isRoot();

async function save(h: Netns, v: 4 | 6, ...args: string[]): Promise<string> {
  return (await h.ok(v === 4 ? 'iptables-save' : 'ip6tables-save', args)).stdout.replace(/^#.*\n/gm, '');
}

/**
 * Every rule and chain of the save that is not ours (no cali name in it), with
 * its table: what we must never change. (A table we used may appear, empty.)
 */
function foreign(text: string): string[] {
  let table = '';
  const out: string[] = [];
  for (const l of text.split('\n')) {
    if (l.startsWith('*')) table = l;
    else if (!/cali/.test(l) && (l.startsWith('-A') || /^:\S+ (-|DROP)/.test(l))) out.push(`${table} ${l}`);
  }
  return out;
}

async function applierIn(h: Netns, o: Partial<ConstructorParameters<typeof IptablesApplier>[0]> = {}): Promise<IptablesApplier> {
  const a = new IptablesApplier({ netns: h.name, log: silentLogger(), ...o });
  onTeardown('kernel applier', () => a.stop());
  await a.start();
  return a;
}

/** A policy-like owner: filter chains hooked into FORWARD and OUTPUT, a set per family, both families. */
function policy(): DesiredState {
  const s = emptyState();
  s.v4.chains.push(
    { table: 'filter', name: 'cali-FORWARD', rules: ['-i cali+ -m comment --comment "from workloads" -j cali-from-wl', '-o cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'] },
    { table: 'filter', name: 'cali-from-wl', rules: ['-p tcp --dport 80 -m set --match-set cali4-wl src -j ACCEPT', '-s 10.1.0.5 ! -d 10.0.0.0/8 -p udp --sport 53 -j RETURN', '-j DROP'] },
    { table: 'filter', name: 'cali-OUTPUT', rules: ['-o lo -p icmp -j RETURN'] },
  );
  s.v4.hooks.push(
    { table: 'filter', chain: 'FORWARD', rule: '-j cali-FORWARD', position: 'top' },
    { table: 'filter', chain: 'OUTPUT', rule: '-j cali-OUTPUT', position: 'top' },
  );
  s.v4.ipsets.push({ name: 'cali4-wl', type: 'hash:ip', family: 4, members: ['10.1.0.5', '10.1.0.6'] });
  s.v6.chains.push({ table: 'filter', name: 'cali-FORWARD', rules: ['-s fd80::5 -p ipv6-icmp --icmpv6-type 128 -j ACCEPT', '-m set --match-set cali6-wl dst -j ACCEPT'] });
  s.v6.hooks.push({ table: 'filter', chain: 'FORWARD', rule: '-j cali-FORWARD', position: 'top' });
  s.v6.ipsets.push({ name: 'cali6-wl', type: 'hash:net', family: 6, members: ['fd80::/64', 'fd81::1/128'] });
  return s;
}

/** A NAT-like owner in the nat table, v4 and v6. */
function nat(): DesiredState {
  const s = emptyState();
  for (const v of [4, 6] as const) {
    const f = v === 4 ? s.v4 : s.v6;
    f.ipsets.push({ name: `cali${v}-pools`, type: 'hash:net', family: v, members: [v === 4 ? '10.1.0.0/16' : 'fd80::/64'] });
    f.chains.push({ table: 'nat', name: 'cali-nat-outgoing', rules: [`-m set --match-set cali${v}-pools src -m set ! --match-set cali${v}-pools dst -j MASQUERADE`] });
    f.hooks.push({ table: 'nat', chain: 'POSTROUTING', rule: '-j cali-nat-outgoing', position: 'top' });
  }
  return s;
}

/** Docker-like neighbours: a foreign rule in FORWARD (first), a foreign chain, a foreign set. */
async function neighbours(h: Netns): Promise<void> {
  await h.ok('ipset', ['create', 'docker-foreign', 'hash:ip']);
  await h.ok('iptables', ['-w', '-N', 'DOCKER-USER']);
  await h.ok('iptables', ['-w', '-A', 'DOCKER-USER', '-m', 'set', '--match-set', 'docker-foreign', 'src', '-j', 'RETURN']);
  await h.ok('iptables', ['-w', '-A', 'FORWARD', '-j', 'DOCKER-USER']);
  await h.ok('iptables', ['-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '172.17.0.0/16', '!', '-o', 'docker0', '-j', 'MASQUERADE']);
  await h.ok('ip6tables', ['-w', '-A', 'FORWARD', '-o', 'docker0', '-j', 'ACCEPT']);
}

test('applier: desired state in the kernel (v4 and v6, filter and nat), hooks first, foreign rules untouched; a no-op pass rewrites nothing', { skip }, async () => {
  const h = await Netns.create('cdta');
  await neighbours(h);
  const before = { 4: foreign(await save(h, 4)), 6: foreign(await save(h, 6)) };
  const a = await applierIn(h);
  a.set('policy', policy());
  a.set('nat', nat());
  await a.flush();

  const v4 = await save(h, 4);
  assert.match(v4, /\*filter\n(?:.*\n)*:FORWARD ACCEPT \[0:0\]\n(?:.*\n)*-A FORWARD -j cali-FORWARD\n-A FORWARD -j DOCKER-USER\n/, 'our hook first, Docker\'s after it');
  assert.match(v4, /-A cali-from-wl -p tcp -m tcp --dport 80 -m set --match-set cali4-wl src -j ACCEPT\n-A cali-from-wl -s 10.1.0.5\/32 ! -d 10.0.0.0\/8 -p udp -m udp --sport 53 -j RETURN\n-A cali-from-wl -j DROP\n/);
  assert.match(v4, /-A POSTROUTING -j cali-nat-outgoing\n-A POSTROUTING -s 172.17.0.0\/16 ! -o docker0 -j MASQUERADE\n/);
  const v6 = await save(h, 6);
  assert.match(v6, /-A FORWARD -j cali-FORWARD\n-A FORWARD -o docker0 -j ACCEPT\n/);
  assert.match(v6, /-A cali-FORWARD -s fd80::5\/128 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT\n/);
  assert.match(v6, /\*nat\n(?:.*\n)*-A cali-nat-outgoing -m set --match-set cali6-pools src -m set ! --match-set cali6-pools dst -j MASQUERADE\n/);
  const sets = (await h.ok('ipset', ['save'])).stdout;
  assert.match(sets, /create cali4-wl hash:ip family inet /);
  assert.match(sets, /add cali6-wl fd81::1\n/);
  assert.match(sets, /create docker-foreign hash:ip/);
  assert.deepEqual({ 4: foreign(v4), 6: foreign(v6) }, before, 'nothing that is not ours changed');

  // Counters only survive when a chain is not rewritten: a no-op pass must keep them.
  await h.ok('busybox', ['ping', '-c', '2', '-W', '1', '127.0.0.1']);
  const counted = /\[(\d+):\d+\] -A cali-OUTPUT -o lo -p icmp -j RETURN/;
  const n = Number(counted.exec(await save(h, 4, '-c'))![1]);
  assert.ok(n >= 2, `icmp counted (${n})`);
  const applied = a.stats.applied;
  const started = Date.now();
  await a.flush();
  const noop = Date.now() - started;
  assert.equal(a.stats.applied, applied, 'the second pass found nothing to do');
  assert.equal(Number(counted.exec(await save(h, 4, '-c'))![1]), n, 'the chain was not rewritten');
  assert.ok(noop < 2000, `a no-op pass is a read (${noop} ms)`);
});

test('applier: an operator flushing our chain, emptying our set, or (after flushing the chain) destroying it is repaired within 10 s', { skip }, async (t) => {
  const h = await Netns.create('cdta');
  const a = await applierIn(h); // default resync period
  a.set('nat', nat());
  await a.flush();
  const rule = /-A cali-nat-outgoing -m set --match-set cali4-pools src -m set ! --match-set cali4-pools dst -j MASQUERADE/;

  await h.ok('iptables', ['-w', '-t', 'nat', '-F', 'cali-nat-outgoing']);
  assert.doesNotMatch(await save(h, 4), rule);
  let t0 = Date.now();
  await waitFor('flushed chain repaired', async () => rule.test(await save(h, 4)), 10000, 200);
  const chainRepairMs = Date.now() - t0;

  await h.ok('ipset', ['flush', 'cali4-pools']);
  t0 = Date.now();
  await waitFor('emptied set refilled', async () => /add cali4-pools 10.1.0.0\/16/.test((await h.ok('ipset', ['save'])).stdout), 10000, 200);
  const setRepairMs = Date.now() - t0;

  // The kernel refuses to destroy a set a rule refers to; an operator must flush the chain first.
  const refused = await h.exec('ipset', ['destroy', 'cali4-pools']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /in use/);
  await h.ok('iptables', ['-w', '-t', 'nat', '-F', 'cali-nat-outgoing']);
  await h.ok('ipset', ['destroy', 'cali4-pools']);
  t0 = Date.now();
  await waitFor('destroyed set and its chain repaired', async () => rule.test(await save(h, 4)) && /add cali4-pools 10.1.0.0\/16/.test((await h.ok('ipset', ['save'])).stdout), 10000, 200);
  const destroyRepairMs = Date.now() - t0;

  // A hook deleted, and a foreign rule put above ours: ours goes back to the top, the foreign one stays.
  await h.ok('iptables', ['-w', '-t', 'nat', '-D', 'POSTROUTING', '-j', 'cali-nat-outgoing']);
  await h.ok('iptables', ['-w', '-t', 'nat', '-I', 'POSTROUTING', '1', '-d', '192.0.2.1', '-j', 'RETURN']);
  await waitFor('hook back on top', async () => /-A POSTROUTING -j cali-nat-outgoing\n-A POSTROUTING -d 192.0.2.1\/32 -j RETURN\n/.test(await save(h, 4)), 10000, 200);
  t.diagnostic(`repaired: flushed chain ${chainRepairMs} ms, emptied set ${setRepairMs} ms, destroyed set ${destroyRepairMs} ms`);
});

test('applier: two owners merged; removing one leaves the other intact; removeAll removes ours only, twice', { skip }, async () => {
  const h = await Netns.create('cdta');
  await neighbours(h);
  const before = { 4: foreign(await save(h, 4)), 6: foreign(await save(h, 6)) };
  const a = await applierIn(h);
  a.set('policy', policy());
  a.set('nat', nat());
  await a.flush();
  const natLines = (t: string) => t.split('\n').filter((l) => /cali-nat-outgoing|cali[46]-pools/.test(l));
  const withBoth = { 4: natLines(await save(h, 4)), 6: natLines(await save(h, 6)) };

  a.set('policy', emptyState());
  await a.flush();
  const v4 = await save(h, 4);
  assert.doesNotMatch(v4, /cali-FORWARD|cali-from-wl|cali-OUTPUT/);
  assert.doesNotMatch(await save(h, 6), /cali-FORWARD/);
  assert.deepEqual({ 4: natLines(v4), 6: natLines(await save(h, 6)) }, withBoth, "the other owner's chains and hooks are as they were");
  const sets = (await h.ok('ipset', ['list', '-n'])).stdout.split('\n').filter(Boolean).sort();
  assert.deepEqual(sets, ['cali4-pools', 'cali6-pools', 'docker-foreign']);

  await a.removeAll();
  for (const v of [4, 6] as const) {
    const t = await save(h, v);
    assert.doesNotMatch(t, /cali/);
    assert.deepEqual(foreign(t), before[v], 'foreign rules, chains untouched by removeAll');
  }
  assert.equal((await h.ok('ipset', ['list', '-n'])).stdout.trim(), 'docker-foreign');
  await a.removeAll();
  assert.equal((await h.ok('ipset', ['list', '-n'])).stdout.trim(), 'docker-foreign');
});

test('applier: set members swapped in, a type change recreated, a stale set destroyed after its chain', { skip }, async () => {
  const h = await Netns.create('cdta');
  const a = await applierIn(h);
  const s = policy();
  a.set('policy', s);
  await a.flush();
  s.v4.ipsets[0] = { ...s.v4.ipsets[0], members: ['10.1.0.7'] };
  a.set('policy', s);
  await a.flush();
  let saved = (await h.ok('ipset', ['save'])).stdout;
  assert.match(saved, /add cali4-wl 10.1.0.7\n/);
  assert.doesNotMatch(saved, /10.1.0.5|applier-tmp/);

  s.v4.ipsets[0] = { ...s.v4.ipsets[0], type: 'hash:net', members: ['10.2.0.0/16'] };
  a.set('policy', s);
  await a.flush();
  saved = (await h.ok('ipset', ['save'])).stdout;
  assert.match(saved, /create cali4-wl hash:net family inet /);
  assert.match(saved, /add cali4-wl 10.2.0.0\/16\n/);
  assert.match(await save(h, 4), /-A cali-from-wl -p tcp -m tcp --dport 80 -m set --match-set cali4-wl src -j ACCEPT\n/, 'the chain refers to it again');

  s.v4.chains[1].rules = ['-j DROP'];
  s.v4.ipsets = [];
  a.set('policy', s);
  await a.flush();
  assert.doesNotMatch((await h.ok('ipset', ['list', '-n'])).stdout, /cali4-wl/);
});

test('applier: a rule the kernel refuses fails flush() naming command, family, table and line; fixed, it applies', { skip }, async () => {
  const h = await Netns.create('cdta');
  const a = await applierIn(h, { retryMs: 50, maxRetryMs: 200 });
  const s = emptyState();
  s.v6.chains.push({ table: 'filter', name: 'cali-bad', rules: ['-j RETURN', '-m nosuchmatch --x -j ACCEPT'] });
  s.v6.hooks.push({ table: 'filter', chain: 'INPUT', rule: '-j cali-bad', position: 'bottom' });
  a.set('bad', s);
  await assert.rejects(a.flush(), (e: unknown) => {
    assert.ok(e instanceof ApplierError);
    assert.equal(e.family, 6);
    assert.equal(e.table, 'filter');
    assert.match(e.message, /^ip6tables-restore --noflush -w \(IPv6 table filter\) exited \d+ at line \d+ "-A cali-bad -m nosuchmatch --x -j ACCEPT"/);
    return true;
  });
  assert.doesNotMatch(await save(h, 6), /cali-bad/, 'the refused transaction left nothing half done');
  const failed = a.stats.failed;
  await waitFor('retried with backoff', async () => a.stats.failed >= failed + 2, 5000);

  s.v6.chains[0].rules = ['-j RETURN'];
  a.set('bad', s);
  await a.flush();
  assert.match(await save(h, 6), /-A INPUT -j cali-bad\n(?:.*\n)*-A cali-bad -j RETURN\n/);
});

test('applier: set() calls are batched into few passes; flush() covers every set() before it', { skip }, async () => {
  const h = await Netns.create('cdta');
  const a = await applierIn(h);
  const passes = a.stats.passes;
  for (let i = 0; i < 30; i++) {
    const s = emptyState();
    s.v4.chains.push({ table: 'filter', name: 'cali-n', rules: [`-m comment --comment "v${i}" -j RETURN`] });
    a.set('counter', s);
  }
  await a.flush();
  assert.match(await save(h, 4), /-A cali-n -m comment --comment v29 -j RETURN/);
  assert.ok(a.stats.passes - passes <= 3, `30 set() calls took ${a.stats.passes - passes} passes`);
});

test('applier: expected owners hold every pass until each has spoken', { skip }, async () => {
  const h = await Netns.create('cdta');
  await h.ok('iptables', ['-w', '-N', 'cali-policy-chain']);
  const a = await applierIn(h, { expectOwners: ['nat', 'policy'] });
  a.set('nat', nat());
  const flushed = a.flush();
  await new Promise((r) => setTimeout(r, 300));
  assert.doesNotMatch(await save(h, 4), /cali-nat-outgoing/, 'nothing applied while policy has not spoken');
  assert.match(await save(h, 4), /cali-policy-chain/, "policy's chain not taken for stale");
  a.set('policy', emptyState());
  await flushed;
  assert.match(await save(h, 4), /cali-nat-outgoing/);
  assert.doesNotMatch(await save(h, 4), /cali-policy-chain/);
});

test('applier: scale (policy-sized): 1000 rules in 50 chains, 50 sets of 20 members; full apply and no-op pass timed', { skip }, async (t) => {
  const h = await Netns.create('cdta');
  // No repair pass in the middle: under load the steps below can outlast 5 s, and the first
  // repair pass rewrites the new chains once to learn the kernel's spelling (not a no-op).
  const a = await applierIn(h, { resyncMs: 600000 });
  const s = emptyState();
  const dispatch: string[] = [];
  for (let c = 0; c < 50; c++) {
    const set = `cali4-s${c}`;
    s.v4.ipsets.push({ name: set, type: 'hash:ip', family: 4, members: Array.from({ length: 20 }, (_, i) => `10.${c}.0.${i + 1}`) });
    const rules = Array.from({ length: 20 }, (_, i) =>
      i === 19 ? '-j DROP' : `-p tcp --dport ${1000 + i} -m set --match-set ${set} src -m comment --comment "rule ${c}.${i}" -j ACCEPT`,
    );
    s.v4.chains.push({ table: 'filter', name: `cali-pol-${c}`, rules });
    dispatch.push(`-i cali${c.toString(16).padStart(2, '0')}+ -j cali-pol-${c}`);
  }
  s.v4.chains.push({ table: 'filter', name: 'cali-FORWARD', rules: dispatch });
  s.v4.hooks.push({ table: 'filter', chain: 'FORWARD', rule: '-j cali-FORWARD', position: 'top' });
  let t0 = Date.now();
  a.set('policy', s);
  await a.flush();
  const full = Date.now() - t0;
  const v4 = await save(h, 4);
  assert.equal(v4.split('\n').filter((l) => l.startsWith('-A cali-pol-')).length, 1000);
  assert.equal((await h.ok('ipset', ['list', '-n'])).stdout.split('\n').filter((n) => n.startsWith('cali4-s')).length, 50);
  const applied = a.stats.applied;
  t0 = Date.now();
  await a.flush();
  const noop = Date.now() - t0;
  assert.equal(a.stats.applied, applied, 'nothing rewritten on the no-op pass');
  // A new list (an owner's lists are not changed once handed over).
  s.v4.chains[7] = { ...s.v4.chains[7]!, rules: s.v4.chains[7]!.rules.map((r, i) => (i === 3 ? '-j REJECT' : r)) };
  t0 = Date.now();
  a.set('policy', s);
  await a.flush();
  const one = Date.now() - t0;
  assert.equal(a.stats.applied, applied + 1);
  assert.match(await save(h, 4), /-A cali-pol-7 -j REJECT/);
  t.diagnostic(`scale: full apply ${full} ms, no-op pass ${noop} ms, one chain changed ${one} ms`);
});

test('applier: incremental passes on a real kernel (an entry inserted into / deleted from a long chain in place, set members in and out) leave exactly what a fresh full apply writes', { skip }, async () => {
  const h = await Netns.create('cdappinc');
  await neighbours(h);
  const ifs = (n: number[]) => n.map((i) => `cali${String(i).padStart(4, '0')}`);
  const state = (names: string[], members: string[]): DesiredState => {
    const s = emptyState();
    for (const v of [4, 6] as const) {
      const f = v === 4 ? s.v4 : s.v6;
      f.chains.push(
        { table: 'filter', name: 'cali-disp', rules: [...names.map((n) => `-i ${n} -g cali-ep-${n}`), '-m comment --comment "Unknown interface" -j DROP'] },
        ...names.map((n) => ({ table: 'filter' as const, name: `cali-ep-${n}`, rules: [`-m set --match-set cali${v}-tag src -j RETURN`, '-j DROP'] })),
      );
      f.hooks.push({ table: 'filter', chain: 'FORWARD', rule: '-j cali-disp', position: 'top' });
      f.ipsets.push({ name: `cali${v}-tag`, type: 'hash:net', family: v, members: members.map((m) => (v === 4 ? `10.2.0.${m}` : `fd82::${m}`)) });
    }
    return s;
  };
  const a = await applierIn(h, { resyncMs: 60000 });
  const all = Array.from({ length: 40 }, (_, i) => i * 2);
  a.set('policy', state(ifs(all), all.map(String)));
  await a.flush();
  // One in (sorts in the middle), then one out, then both; members likewise.
  const with21 = [...all, 21].sort((x, y) => x - y);
  const steps: [number[], number[]][] = [
    [with21, with21],
    [with21.filter((i) => i !== 30), with21.filter((i) => i !== 30)],
    [with21.filter((i) => i !== 30).map((i) => (i === 4 ? 5 : i)), with21.filter((i) => i !== 30 && i !== 4)],
  ];
  const dispatch = async () => (await save(h, 4, '-t', 'filter')).split('\n').filter((l) => l.startsWith('-A cali-disp -i')).map((l) => l.split(' ')[3]);
  for (const [n, m] of steps) {
    const applied = a.stats.applied;
    a.set('policy', state(ifs(n), m.map(String)));
    await a.flush();
    assert.equal(a.stats.applied, applied + 1);
    // The entries in the kernel in their order after each pass: the edit went in where it belongs.
    assert.deepEqual(await dispatch(), ifs(n));
  }
  const last = steps[steps.length - 1]!;
  const got = { v4: await save(h, 4, '-t', 'filter'), v6: await save(h, 6, '-t', 'filter'), sets: (await h.ok('ipset', ['save'])).stdout };
  // The same final state applied at once, from scratch, in a namespace of its own.
  const h2 = await Netns.create('cdappfull');
  await neighbours(h2);
  const b = await applierIn(h2, { resyncMs: 60000 });
  b.set('policy', state(ifs(last[0]), last[1].map(String)));
  await b.flush();
  const ours = (t: string) => t.split('\n').filter((l) => /cali/.test(l)).sort().join('\n');
  const sorted = (t: string) => t.replace(/ initval 0x[0-9a-f]+/g, '').split('\n').sort().join('\n');
  assert.equal(ours(got.v4), ours(await save(h2, 4, '-t', 'filter')));
  assert.equal(ours(got.v6), ours(await save(h2, 6, '-t', 'filter')));
  assert.equal(sorted(got.sets), sorted((await h2.ok('ipset', ['save'])).stdout));
});

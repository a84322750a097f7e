// Policy benchmark (not a test), one run, in network namespaces of its own:
//   full:        1,000 local endpoints in 50 profiles compiled and programmed
//                from scratch through the real applier (set + flush)
//   incremental: 200 times one endpoint added and one rule changed (set + flush)
// Each beside a raw `ipset restore` + `iptables-restore --noflush` +
// `ip6tables-restore --noflush` of the same text (the full final state, and
// each step's changed chains and set members), in a second namespace that
// goes through the same states; plus this process's RSS with the 1,000
// endpoints programmed (the compiler and applier in a process of their own).
// Targets: full <= 1 s, incremental p99 <= 50 ms, each <= 1.5x raw, RSS <= 150 MB.
// Run: npm run bench:policy   (root)
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import pino from 'pino';
import { Netns, teardownAll } from '../../test/harness';
import { IptablesApplier } from '../../src/dataplane/applier/iptables-applier';
import type { DesiredState, IpFamily } from '../../src/dataplane/applier/types';
import type { Endpoint, Profile } from '../../src/datastore';
import { compilePolicy } from '../../src/policy';
import { PolicyComponent } from '../../src/policy/component';

const ENDPOINTS = 1000;
const PROFILES = 50;
const STEPS = 200;
const HOST = 'bench-host';

function endpoint(i: number): Endpoint {
  // Interface names as the plugin makes them: cali + the start of a random-looking endpoint id.
  const hex = createHash('sha1').update(String(i)).digest('hex').slice(0, 11);
  return {
    host: HOST, containerId: `c${hex}`, endpointId: `e${hex}`, state: 'active', mac: '02:00:00:00:00:01', 'container:if_name': 'eth0',
    name: `cali${hex}`, profile_ids: [`prof${i % PROFILES}`],
    ipv4_nets: [`10.70.${Math.floor(i / 250)}.${(i % 250) + 1}/32`], ipv6_nets: [`fd70::${i.toString(16)}/128`],
  };
}

function profile(p: number, port = 8080): Profile {
  const name = `prof${p}`;
  return {
    name, tags: [name],
    rules: {
      inbound_rules: [
        { action: 'allow', src_tag: name },
        { action: 'allow', protocol: 'tcp', dst_ports: [port, 443], src_net: '192.0.2.0/24' },
        { action: 'deny', protocol: 'udp', dst_ports: ['1000:2000'] },
        { action: 'allow', protocol: 'icmp', icmp_type: 8 },
      ],
      outbound_rules: [{ action: 'deny', dst_net: '10.99.0.0/16' }, { action: 'allow' }],
    },
  };
}

function tool(ns: string, cmd: string, args: string[], input: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const c = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    c.on('close', (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`))));
    c.stdin!.end(input);
  });
}

/** The restore text that takes the kernel from `prev` to `next` (everything of `next` when prev is empty): changed chains, hooks once, set members. */
function rawText(prev: DesiredState | undefined, next: DesiredState): { sets: string; v4: string; v6: string } {
  const sets: string[] = [];
  const tables = { 4: [] as string[], 6: [] as string[] };
  for (const v of [4, 6] as IpFamily[]) {
    const n = v === 4 ? next.v4 : next.v6;
    const p = prev ? (v === 4 ? prev.v4 : prev.v6) : undefined;
    const before = new Map((p?.chains ?? []).map((c) => [c.name, c.rules.join('\n')]));
    const body: string[] = [];
    const rules: string[] = [];
    for (const c of n.chains) {
      if (before.get(c.name) === c.rules.join('\n')) continue;
      body.push(`:${c.name} - [0:0]`);
      c.rules.forEach((r) => rules.push(`-A ${c.name} ${r}`));
    }
    if (!prev) n.hooks.forEach((h) => rules.push(`-I ${h.chain} 1 ${h.rule}`));
    if (body.length || rules.length) tables[v] = ['*filter', ...body, ...rules, 'COMMIT', ''];
    const had = new Map((p?.ipsets ?? []).map((s) => [s.name, new Set(s.members)]));
    for (const s of n.ipsets) {
      const old = had.get(s.name);
      if (!old) sets.push(`create ${s.name} ${s.type} family ${v === 4 ? 'inet' : 'inet6'} maxelem 1048576`);
      s.members.filter((m) => !old?.has(m)).forEach((m) => sets.push(`add ${s.name} ${m}`));
    }
  }
  return { sets: sets.length ? sets.join('\n') + '\n' : '', v4: tables[4].join('\n'), v6: tables[6].join('\n') };
}

async function rawApply(ns: string, t: { sets: string; v4: string; v6: string }): Promise<number> {
  let ms = 0;
  if (t.sets) ms += await tool(ns, 'ipset', ['restore'], t.sets);
  if (t.v4) ms += await tool(ns, 'iptables-restore', ['--noflush', '-w'], t.v4);
  if (t.v6) ms += await tool(ns, 'ip6tables-restore', ['--noflush', '-w'], t.v6);
  return ms;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

const f1 = (n: number) => n.toFixed(1);
const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED');

async function main(): Promise<void> {
  const ours = await Netns.create('cdbpol');
  const raw = await Netns.create('cdbraw');
  const log = pino({ level: process.env.BENCH_LOG ?? 'warn' });
  // A long resync: the measured passes are the ones set()/flush() trigger.
  const applier = new IptablesApplier({ log, netns: ours.name, expectOwners: [PolicyComponent.OWNER], resyncMs: 60000 });
  await applier.start();
  const endpoints = Array.from({ length: ENDPOINTS }, (_, i) => endpoint(i));
  const profiles = Array.from({ length: PROFILES }, (_, p) => profile(p));
  const rssBefore = process.memoryUsage().rss;

  const t0 = performance.now();
  let desired = compilePolicy({ host: HOST, endpoints, profiles });
  applier.set(PolicyComponent.OWNER, desired);
  await applier.flush();
  const fullMs = performance.now() - t0;
  const rawFullMs = await rawApply(raw.name, rawText(undefined, desired));
  global.gc?.();
  const rss = process.memoryUsage().rss;
  const rules = desired.v4.chains.reduce((n, c) => n + c.rules.length, 0) + desired.v6.chains.reduce((n, c) => n + c.rules.length, 0);

  const inc: number[] = [];
  const rawInc: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    endpoints.push(endpoint(ENDPOINTS + i));
    profiles[i % PROFILES] = profile(i % PROFILES, 9000 + i);
    const s = performance.now();
    const next = compilePolicy({ host: HOST, endpoints, profiles });
    applier.set(PolicyComponent.OWNER, next);
    await applier.flush();
    inc.push(performance.now() - s);
    rawInc.push(await rawApply(raw.name, rawText(desired, next)));
    desired = next;
  }
  await applier.stop();

  const p50 = pct(inc, 50);
  const p99 = pct(inc, 99);
  const r50 = pct(rawInc, 50);
  const r99 = pct(rawInc, 99);
  console.log(`bench/policy: ${ENDPOINTS} local endpoints, ${PROFILES} profiles, ${rules} rules (IPv4 + IPv6), ${desired.v4.ipsets.length + desired.v6.ipsets.length} tag sets`);
  console.log(`  full program:       ${f1(fullMs)} ms   raw restore ${f1(rawFullMs)} ms   ratio ${(fullMs / rawFullMs).toFixed(2)}x   (target <= 1000 ms: ${verdict(fullMs <= 1000)}; <= 1.5x: ${verdict(fullMs / rawFullMs <= 1.5)})`);
  console.log(`  incremental (${STEPS}x: +1 endpoint, 1 rule changed):`);
  console.log(`    p50 ${f1(p50)} ms   raw ${f1(r50)} ms   ratio ${(p50 / r50).toFixed(2)}x`);
  console.log(`    p99 ${f1(p99)} ms   raw ${f1(r99)} ms   ratio ${(p99 / r99).toFixed(2)}x   (target p99 <= 50 ms: ${verdict(p99 <= 50)}; <= 1.5x: ${verdict(p99 / r99 <= 1.5)})`);
  console.log(`  RSS with ${ENDPOINTS} endpoints programmed: ${f1(rss / 2 ** 20)} MB (process start ${f1(rssBefore / 2 ** 20)} MB; target <= 150 MB: ${verdict(rss <= 150 * 2 ** 20)})`);
  console.log(`  applier: ${applier.stats.passes} passes, ${applier.stats.applied} applied, ${applier.stats.failed} failed`);
}

main()
  .catch((e) => {
    console.error(`bench/policy failed: ${(e as Error).stack}`);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());

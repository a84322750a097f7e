// bench/scale: one real node with a cluster-sized datastore. The lab host
// (its own netns, etcd, dockerd, calico node) gets an etcd holding
// `hosts` simulated hosts x `perHost` endpoints in `profiles` profiles
// (written straight to etcd; each endpoint in one to three profiles), and
// `local` real containers of its own, in those profiles. Printed:
//   snapshot:  the node's first datastore read at its start (its log), and its start to serving
//   RSS:       the node process's resident memory
//   remote:    a remote endpoint added/removed in etcd until this host's tag ipset has/lacks it (p50/p99)
//   rules:     a profile's rule changed in etcd until the kernel's chain has it (p50/p99)
//   reachable: a local `docker run -d` in profile prof0 until a peer in prof0 pings it (p50/p99)
// Targets (issue 16): RSS <= 250 MB, remote p99 <= 200 ms, rules p99 <= 500 ms, snapshot <= 3 s.
// Not a test: timings depend on the machine; the load average is printed beside them.
// Usage: node dist/bench/scale/main.js [--hosts 100] [--per-host 100] [--profiles 50] [--local 50] [--samples 30]
//   a quick run: --hosts 10 --per-host 20 --local 5 --samples 5
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { teardownAll } from '../../test/harness';
import { CalicoLab } from '../../test/e2e/calico-lab';
import { calicoNetworkName } from '../../src/names';
import { profileName } from './cluster';

const DRIVER = path.join(__dirname, 'driver.js');
const ETCD_URL = 'http://127.0.0.1:2379';

interface Args {
  hosts: number;
  perHost: number;
  profiles: number;
  local: number;
  samples: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { hosts: 100, perHost: 100, profiles: 50, local: 50, samples: 30 };
  const names: Record<string, keyof Args> = { '--hosts': 'hosts', '--per-host': 'perHost', '--profiles': 'profiles', '--local': 'local', '--samples': 'samples' };
  for (let i = 0; i < argv.length; i++) {
    const k = names[argv[i]];
    const v = Number(argv[++i]);
    if (!k || !Number.isInteger(v) || v < 0) throw new Error(`usage: [--hosts N] [--per-host N] [--profiles N] [--local N] [--samples N] (at ${argv[i - 1]})`);
    a[k] = v;
  }
  if (a.profiles < 1) throw new Error('--profiles must be at least 1');
  return a;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const load = () => `load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} on ${os.cpus().length} cores`;
const dist = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(0).padStart(6)} ms   p99 ${pct(xs, 99).toFixed(0).padStart(6)} ms   (n=${xs.length})`;
const verdict = (v: number, target: number) => (v <= target ? 'met' : 'MISSED');

async function driver<T>(lab: CalicoLab, mode: string, args: unknown): Promise<T> {
  const r = await lab.ns.exec(process.execPath, [DRIVER, ETCD_URL, mode, JSON.stringify(args)], { timeoutMs: 900000 });
  if (r.code !== 0) throw new Error(`driver ${mode}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The node's log lines with `msg`, parsed. */
function logLines(file: string, msg: string): Record<string, unknown>[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The node's kernel applies logged since the `from`-th: how long each took (what a phase's figures wait on). */
function appliesSince(file: string, from: number): number[] {
  return logLines(file, 'kernel applier: applied')
    .slice(from)
    .map((l) => Number(l.ms));
}

const applies = (file: string) => logLines(file, 'kernel applier: applied').length;
const applierLine = (ms: number[]) => (ms.length ? `  kernel applier meanwhile: ${ms.length} applies, ${dist(ms).replace(/\(n=\d+\)/, '').trim()}` : '  kernel applier meanwhile: no applies logged');

/** Resolves with the ms until `busybox ping` from inside `pid`'s network namespace gets a reply from `address`. */
function pingFrom(pid: number, address: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    // One echo every 20 ms until the first reply (or 20 s).
    const c = spawn('nsenter', ['-t', String(pid), '-n', 'busybox', 'ping', '-q', '-c', '1', '-i', '0.02', '-w', '20', address], { stdio: 'ignore' });
    c.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`no reply from ${address} in 20 s`))));
  });
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const total = a.hosts * a.perHost;
  console.log(`bench/scale: ${total} endpoints on ${a.hosts} simulated hosts, ${a.profiles} profiles, ${a.local} local containers (${load()})`);
  const lab = await CalicoLab.start({ pools: ['10.68.0.0/16'], bridge: true, logLevel: 'info', sweepIntervalMs: 30000, gcGraceMs: 120000 });
  const logFile = path.join(lab.dir, 'node.log');

  const pop = await driver<{ keys: number; ms: number }>(lab, 'populate', { hosts: a.hosts, perHost: a.perHost, profiles: a.profiles });
  console.log(`etcd populated: ${pop.keys} keys in ${(pop.ms / 1000).toFixed(1)} s`);

  // The node's start against that datastore.
  await lab.stopNode();
  const t0 = performance.now();
  await lab.startNode();
  const startMs = performance.now() - t0;
  const snap = logLines(logFile, 'datastore snapshot read').pop() as { keys: number; ms: number; buildMs?: number } | undefined;
  console.log(`\nnode start with ${total} endpoints in etcd (${load()}):`);
  console.log(`  snapshot read               ${snap ? `${snap.ms} ms (${snap.keys} keys; decoding and building ${snap.buildMs ?? '?'} ms of it, page by page as etcd answers)` : 'not logged'}   (target <= 3000 ms: ${snap ? verdict(snap.ms, 3000) : '?'})`);
  console.log(`  start to serving            ${startMs.toFixed(0)} ms`);
  const pid = lab.node!.pid!;
  console.log(`  RSS after start             ${rssMb(pid).toFixed(0)} MB`);

  // The host's own containers, in the cluster's profiles.
  const t1 = performance.now();
  const ids: string[] = [];
  const refusals: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < a.local) {
      const k = next++;
      // A refusal (the node too busy to answer the proxy's check of its plugin in time) is counted, then tried again.
      for (let attempt = 0; ; attempt++) {
        const r = await lab.docker(['run', '-d', '-e', 'CALICO_IP=auto', '-e', `CALICO_PROFILE=${profileName(k % a.profiles)}`, lab.image, 'sleep', '86400']);
        if (r.code === 0) {
          ids[k] = r.stdout.trim();
          break;
        }
        refusals.push(r.stderr.trim().split('\n')[0]);
        if (attempt === 4) throw new Error(`local container ${k}: ${r.stderr}`);
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  console.log(`  ${a.local} local containers started in ${((performance.now() - t1) / 1000).toFixed(1)} s, 3 at a time; ${refusals.length} refused and tried again${refusals.length ? ` (first: ${refusals[0]})` : ''}`);
  await new Promise((r) => setTimeout(r, 3000));
  const rss = rssMb(pid);
  console.log(`  RSS with ${a.local} local containers  ${rss.toFixed(0)} MB   (target <= 250 MB: ${verdict(rss, 250)})`);

  const profilesInUse = Math.min(a.profiles, Math.max(1, a.local));
  let mark = applies(logFile);
  const remote = await driver<{ add: number[]; remove: number[] }>(lab, 'remote', { samples: a.samples, profiles: profilesInUse });
  console.log(`\nremote endpoint to this host's tag ipset (${load()}):`);
  console.log(`  added    ${dist(remote.add)}   (target p99 <= 200 ms: ${verdict(pct(remote.add, 99), 200)})`);
  console.log(`  removed  ${dist(remote.remove)}   (target p99 <= 200 ms: ${verdict(pct(remote.remove, 99), 200)})`);
  console.log(applierLine(appliesSince(logFile, mark)));
  mark = applies(logFile);

  const rules = await driver<{ ms: number[] }>(lab, 'rules', { samples: a.samples, profiles: profilesInUse });
  console.log(`\nprofile rule update to the kernel (${load()}):`);
  console.log(`  updated  ${dist(rules.ms)}   (target p99 <= 500 ms: ${verdict(pct(rules.ms, 99), 500)})`);
  console.log(applierLine(appliesSince(logFile, mark)));

  if (a.local > 0) {
    const peerPid = Number((await lab.direct(['inspect', '-f', '{{.State.Pid}}', ids[0]])).stdout.trim());
    const runs: number[] = [];
    const reach: number[] = [];
    for (let i = 0; i < Math.min(a.samples, 20); i++) {
      const s0 = performance.now();
      const r = await lab.docker(['run', '-d', '-e', 'CALICO_IP=auto', '-e', `CALICO_PROFILE=${profileName(0)}`, lab.image, 'sleep', '86400']);
      if (r.code !== 0) throw new Error(`docker run: ${r.stderr}`);
      runs.push(performance.now() - s0);
      const id = r.stdout.trim();
      const ip = (await lab.direct(['inspect', '-f', `{{.NetworkSettings.Networks.${calicoNetworkName()}.IPAddress}}`, id])).stdout.trim();
      await pingFrom(peerPid, ip);
      reach.push(performance.now() - s0);
      await lab.direct(['rm', '-f', id]);
    }
    console.log(`\nlocal docker run -d (profile ${profileName(0)}) until a peer in ${profileName(0)} gets a ping reply (${load()}):`);
    console.log(`  docker run -d returned   ${dist(runs)}`);
    console.log(`  reachable from the peer  ${dist(reach)}`);
  }
  console.log(`\nnode RSS at the end: ${rssMb(pid).toFixed(0)} MB`);
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());

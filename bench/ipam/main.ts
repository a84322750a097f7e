// IPAM benchmark (not a test): allocations/s and p50/p99 latency at
// concurrency 1, 8 and 32 on a three-member etcd cluster on loopback, beside
// the raw rate of single-key etcd transactions measured in the same run.
// Run: npm run bench:ipam   (root: the etcd members' data goes on a tmpfs)
import os from 'node:os';
import { EtcdCluster, teardownAll } from '../../test/harness';
import { Datastore, PoolStore } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';

const LEVELS = [1, 8, 32];
const HOSTS = 8;
const ALLOCS = Number(process.env.BENCH_IPAM_ALLOCS ?? 2000);
const TXNS = Number(process.env.BENCH_IPAM_TXNS ?? 2000);

interface Result {
  rate: number;
  p50: number;
  p99: number;
}

function summarise(lat: number[], ms: number): Result {
  lat.sort((a, b) => a - b);
  const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { rate: (lat.length * 1000) / ms, p50: q(0.5), p99: q(0.99) };
}

/** Raw etcd: each worker CASes its own key (compare mod revision, put): one round trip per op. */
async function rawTxns(ds: Datastore, conc: number): Promise<Result> {
  const lat: number[] = [];
  let left = TXNS;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conc }, async (_, w) => {
      const key = `/bench/raw/${w}`;
      let rev = '0';
      while (left-- > 0) {
        const s = performance.now();
        const r = await ds.cas('bench txn', [{ key, modRevision: rev }], [{ key, value: { w, at: Date.now() } }]);
        lat.push(performance.now() - s);
        rev = r.succeeded ? r.revision : r.current.get(key)!.modRevision;
      }
    }),
  );
  return summarise(lat, performance.now() - t0);
}

/** IPAM: one EtcdIpam per host (one node process per host), workers spread over min(conc, 8) hosts. */
async function allocations(endpoints: string[], ds: Datastore, conc: number): Promise<Result> {
  await ds.deletePrefix('/calico/');
  await new PoolStore(ds).add('10.200.0.0/16');
  const hosts = Math.min(conc, HOSTS);
  const ipams = Array.from({ length: hosts }, () => new EtcdIpam(new Datastore({ endpoints })));
  // Warm-up: each host claims its first block and loads its affinities, as a running node would have.
  await Promise.all(ipams.map((ipam, h) => ipam.allocate({ handle: `warm-${h}`, host: `bench-${h}`, ipv4: 'auto' })));
  const lat: number[] = [];
  let left = ALLOCS;
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conc }, async (_, w) => {
      const h = w % hosts;
      while (left-- > 0) {
        const s = performance.now();
        await ipams[h].allocate({ handle: `b-${w}-${n++}`, host: `bench-${h}`, ipv4: 'auto' });
        lat.push(performance.now() - s);
      }
    }),
  );
  return summarise(lat, performance.now() - t0);
}

async function main(): Promise<void> {
  const etcd = await EtcdCluster.start({ size: 3 });
  const ds = new Datastore({ endpoints: etcd.endpoints, timeoutMs: 10_000 });
  const f = (x: number): string => x.toFixed(1).padStart(8);
  console.log(`IPAM benchmark: 3-member etcd on loopback, ${ALLOCS} allocations and ${TXNS} raw txns per level`);
  // Latency on a shared machine follows its load: print it beside the figures.
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(1)} at start`);
  console.log(`${'conc'.padStart(4)} | ${'raw txn/s'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} | ${'alloc/s'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} | ratio`);
  const rows: { conc: number; raw: Result; ipam: Result }[] = [];
  for (const conc of LEVELS) {
    const raw = await rawTxns(ds, conc);
    const ipam = await allocations(etcd.endpoints, ds, conc);
    rows.push({ conc, raw, ipam });
    console.log(
      `${String(conc).padStart(4)} | ${f(raw.rate).padStart(9)} ${f(raw.p50)} ${f(raw.p99)} | ${f(ipam.rate).padStart(9)} ${f(ipam.p50)} ${f(ipam.p99)} | ${(ipam.rate / raw.rate).toFixed(2)}`,
    );
  }
  const top = rows[rows.length - 1];
  const okRatio = top.ipam.rate >= 0.5 * top.raw.rate;
  const okP99 = top.ipam.p99 <= 50;
  console.log(
    `target at concurrency 32: alloc/s >= 0.5 x raw txn/s: ${okRatio ? 'met' : 'MISSED'} (${(top.ipam.rate / top.raw.rate).toFixed(2)}); p99 <= 50 ms: ${okP99 ? 'met' : 'MISSED'} (${top.ipam.p99.toFixed(1)} ms)`,
  );
  console.log(`load average ${os.loadavg()[0].toFixed(1)} at end`);
  ds.close();
  await teardownAll();
  process.exit(0);
}

main().catch(async (e) => {
  console.error(e);
  await teardownAll();
  process.exit(1);
});

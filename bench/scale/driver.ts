// bench/scale's hands inside the lab host's namespace (where its etcd
// listens and its kernel state lives). Prints one JSON object.
// Usage: node driver.js <etcd url> <mode> <json args>
//   populate {hosts, perHost, profiles}          writes the simulated cluster straight to etcd
//   remote   {samples, profiles, settleMs}       a remote endpoint added then removed, each timed
//                                                until this host's tag ipset has (has not) its address
//   rules    {samples, profiles}                 a profile's rule changed, timed until the kernel has it
import { spawn } from 'node:child_process';
import { Datastore } from '../../src/datastore';
import { keys } from '../../src/datastore/keys';
import { profileInboundChain, tagIpset } from '../../src/names';
import { clusterKvs, endpointValue, profileName, profileRules, remoteHost, type ClusterSize } from './cluster';

function exitCode(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    c.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

/** ms until `check` holds, polling as fast as the tool answers; Infinity after `limitMs`. */
async function until(check: () => Promise<boolean>, limitMs = 30000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < limitMs) {
    if (await check()) return performance.now() - t0;
  }
  return Infinity;
}

async function populate(ds: Datastore, size: ClusterSize): Promise<unknown> {
  const t0 = performance.now();
  const all = [...clusterKvs(size)];
  let next = 0;
  const worker = async () => {
    while (next < all.length) {
      const [k, v] = all[next++];
      await ds.client.put(k).value(v);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return { keys: all.length, ms: Math.round(performance.now() - t0) };
}

const inSet = (set: string, address: string) => async () => (await exitCode('ipset', ['test', set, address])).code === 0;

async function remote(ds: Datastore, o: { samples: number; profiles: number }): Promise<unknown> {
  const add: number[] = [];
  const remove: number[] = [];
  for (let i = 0; i < o.samples; i++) {
    const p = i % o.profiles;
    const address = `10.89.${i >> 8}.${(i & 255) + 1}`;
    const key = keys.endpoint(remoteHost(0), `benchc${i}`, `benche${i}`);
    const set = tagIpset(4, profileName(p));
    const t0 = performance.now();
    await ds.client.put(key).value(JSON.stringify(endpointValue(`bench${String(i).padStart(7, '0')}`, address, [profileName(p)])));
    const wrote = performance.now() - t0;
    add.push(wrote + (await until(inSet(set, address))));
    const t1 = performance.now();
    await ds.client.delete().key(key);
    const deleted = performance.now() - t1;
    remove.push(deleted + (await until(async () => !(await inSet(set, address)()))));
  }
  return { add, remove };
}

async function rules(ds: Datastore, o: { samples: number; profiles: number }): Promise<unknown> {
  const ms: number[] = [];
  for (let i = 0; i < o.samples; i++) {
    const p = i % o.profiles;
    const port = 20000 + i;
    const t0 = performance.now();
    await ds.client.put(keys.profileRules(profileName(p))).value(JSON.stringify(profileRules(p, port)));
    const wrote = performance.now() - t0;
    const chain = profileInboundChain(profileName(p));
    ms.push(wrote + (await until(async () => new RegExp(`\\b${port}\\b`).test((await exitCode('iptables', ['-w', '-S', chain])).out))));
  }
  // Back to the rules every profile started with.
  for (let p = 0; p < o.profiles; p++) await ds.client.put(keys.profileRules(profileName(p))).value(JSON.stringify(profileRules(p)));
  return { ms };
}

async function main(): Promise<void> {
  const [url, mode, json = '{}'] = process.argv.slice(2);
  const args = JSON.parse(json);
  // A loaded machine (the bench's own node and dockerd besides) may answer slowly: no short deadline here.
  const ds = new Datastore({ endpoints: [url], timeoutMs: 60000 });
  try {
    let out: unknown;
    if (mode === 'populate') out = await populate(ds, args);
    else if (mode === 'remote') out = await remote(ds, args);
    else if (mode === 'rules') out = await rules(ds, args);
    else throw new Error(`unknown mode ${mode}`);
    process.stdout.write(JSON.stringify(out));
  } finally {
    ds.close();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});

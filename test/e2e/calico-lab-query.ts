// Reads (or, for error tests, fills) what a lab's etcd holds; runs inside the
// lab's host namespace, where its etcd listens.
// Usage: node calico-lab-query.js <etcd url> <host> [state | fill <n> | release <n>]
// state prints JSON { allocations, endpoints }; fill allocates n addresses
// under test handles (to exhaust a pool); release frees them again.
import { Datastore, EndpointStore } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';

async function main(): Promise<void> {
  const [url, host, mode = 'state', n = '0'] = process.argv.slice(2);
  const ds = new Datastore({ endpoints: [url] });
  const ipam = new EtcdIpam(ds);
  try {
    if (mode === 'state') {
      const allocations = await ipam.listByHost(host);
      const endpoints = await new EndpointStore(ds).list();
      process.stdout.write(JSON.stringify({ allocations, endpoints }));
    } else if (mode === 'fill') {
      for (let i = 0; i < Number(n); i++) await ipam.allocate({ handle: `test-fill-${i}`, host, ipv4: 'auto' });
    } else if (mode === 'release') {
      for (let i = 0; i < Number(n); i++) await ipam.releaseByHandle(`test-fill-${i}`);
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    ds.close();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});

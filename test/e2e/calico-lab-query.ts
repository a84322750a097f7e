// Reads what a lab's etcd holds (runs inside the lab's host namespace, where
// its etcd listens). Usage: node calico-lab-query.js <etcd url> <host>
// Prints JSON { allocations, endpoints }.
import { Datastore, EndpointStore } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';

async function main(): Promise<void> {
  const [url, host] = process.argv.slice(2);
  const ds = new Datastore({ endpoints: [url] });
  try {
    const allocations = await new EtcdIpam(ds).listByHost(host);
    const endpoints = await new EndpointStore(ds).list();
    process.stdout.write(JSON.stringify({ allocations, endpoints }));
  } finally {
    ds.close();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});

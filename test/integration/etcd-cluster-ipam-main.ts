// Run inside a lab host's network namespace by etcd-cluster.test.ts: one
// address from the cluster through EtcdIpam, as the node's IPAM driver
// allocates. argv: <endpoints,comma> <ca> <cert> <key> <host> <handle>.
// Prints the address.
import { Datastore } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { loadEtcdTls } from '../../src/etcd/tls';

async function main(): Promise<void> {
  const [endpoints, ca, cert, key, host, handle] = process.argv.slice(2);
  if (!endpoints || !ca || !cert || !key || !host || !handle) throw new Error('usage: etcd-cluster-ipam-main <endpoints> <ca> <cert> <key> <host> <handle>');
  const tls = loadEtcdTls({ ca: { path: ca, from: 'argv' }, cert: { path: cert, from: 'argv' }, key: { path: key, from: 'argv' } });
  const ds = new Datastore({ endpoints: endpoints.split(','), tls, timeoutMs: 5000 });
  try {
    const [a] = await new EtcdIpam(ds).allocate({ handle, host, ipv4: 'auto' });
    process.stdout.write(`${a!.address}\n`);
  } finally {
    ds.close();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});

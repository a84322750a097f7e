// A tiny TCP server on the lab host: a container's first instruction asks
// it whether the container's own endpoint is in etcd yet. It answers
// "found <container id>" when an endpoint record holds the caller's address,
// "missing" otherwise, and prints the same line on its stdout for the test
// (the client's stdin may close before the answer arrives; what counts is
// what etcd held when the connection came). Runs inside the lab's host
// namespace (plain TCP: the test image's static busybox has nc; its wget crashes).
// Usage: node endpoint-probe-main.js <etcd url> <host> <listen ip> <port>; prints "READY".
import net from 'node:net';
import { Datastore, EndpointStore } from '../../src/datastore';

const [url, host, ip, port] = process.argv.slice(2);
const ds = new Datastore({ endpoints: [url] });
const store = new EndpointStore(ds);

const server = net.createServer((socket) => {
  socket.on('error', () => undefined);
  const caller = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
  store
    .list(host)
    .then((eps) => {
      const ep = eps.find((e) => e.ipv4_nets.includes(`${caller}/32`));
      const line = ep ? `found ${ep.containerId}\n` : `missing ${caller}\n`;
      process.stdout.write(line);
      socket.end(line);
    })
    .catch((e) => {
      process.stdout.write(`error ${(e as Error).message}\n`);
      socket.end();
    });
});
server.listen(Number(port), ip, () => process.stdout.write('READY\n'));
process.once('SIGTERM', () => {
  server.close();
  ds.close();
  process.exit(0);
});

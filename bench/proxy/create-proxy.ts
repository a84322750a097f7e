/**
 * A proxy with the node's create interceptor, in a process of its own, for
 * bench/proxy's create row: `node create-proxy.js <port> <upstream>`, prints
 * READY once listening. A `--proxy-only` node has no create interceptor, and
 * a proxy inside the bench process shares its event loop with the bench's
 * client, as in no deployment (against a stand-in dockerd that cost about
 * 0.2 ms a call more than a proxy in its own process). Its IPAM and datastore are never reached by a create without
 * CALICO_IP, so they are left out.
 */
import { DockerProxy } from '../../src/proxy';
import { CreateContainerInterceptor, type CreateContainerDeps } from '../../src/proxy/interceptors/create-container';
import { silentLogger } from '../../src/log/logger';

const [port, upstream] = process.argv.slice(2);
const proxy = new DockerProxy(
  { listen: `tcp://127.0.0.1:${port}`, upstream, interceptors: [new CreateContainerInterceptor({} as CreateContainerDeps)] },
  silentLogger(),
);
proxy.start().then(
  () => process.stdout.write('READY\n'),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
process.on('SIGTERM', () => void proxy.stop().then(() => process.exit(0)));

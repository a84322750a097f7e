// Whether containers can join the calico network right now. Asked on every
// CALICO_IP create: without the network, dockerd would answer 404 "network
// calico not found" and the docker CLI would take that for a missing image
// and try to pull it; without the plugin, start would fail obscurely.
import net from 'node:net';
import type Dockerode from 'dockerode';
import { inspectCalicoNetwork } from '../../plugin/docker-network';
import { CALICO_NETWORK } from './calico-request';

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    const t = setTimeout(() => (s.destroy(), resolve(false)), 1000);
    s.once('connect', () => (clearTimeout(t), s.destroy(), resolve(true)));
    s.once('error', () => (clearTimeout(t), resolve(false)));
  });
}

/**
 * Returns a check that says what is wrong, or undefined when all is well.
 * A good answer is remembered for `okForMs` (default 5 s) so the create
 * path pays for it once in a while, not per container.
 */
export function calicoNetworkCheck(docker: Dockerode, pluginSocket: string, okForMs = 5000): () => Promise<string | undefined> {
  let okUntil = 0;
  return async () => {
    if (Date.now() < okUntil) return undefined;
    if (!(await socketAnswers(pluginSocket))) {
      return `the Calico Docker plugin is not serving on ${pluginSocket}: is \`calicoctl node\` running on this host? Start it and retry`;
    }
    let exists: boolean;
    try {
      exists = (await inspectCalicoNetwork(docker)) !== undefined;
    } catch (e) {
      return `checking the ${CALICO_NETWORK} Docker network: ${(e as Error).message}`;
    }
    if (!exists) {
      return `the ${CALICO_NETWORK} Docker network does not exist on this host: restart \`calicoctl node\`, which creates it`;
    }
    okUntil = Date.now() + okForMs;
    return undefined;
  };
}

// Whether containers can join the calico network right now. Asked on every
// CALICO_IP create: without the network, dockerd would answer 404 "network
// calico not found" and the docker CLI would take that for a missing image
// and try to pull it; without the plugin, start would fail obscurely.
import { calicoNetworkName } from '../../names';
import net from 'node:net';
import type Dockerode from 'dockerode';
import { inspectCalicoNetwork } from '../../plugin/docker-network';

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    const t = setTimeout(() => (s.destroy(), resolve(false)), 1000);
    s.once('connect', () => (clearTimeout(t), s.destroy(), resolve(true)));
    s.once('error', () => (clearTimeout(t), resolve(false)));
  });
}

/**
 * What a CALICO_IP create needs to know about the calico network: what is
 * wrong with it (the create is refused), or which families it carries
 * (Docker asks our IPAM driver for an address of each).
 */
export type CalicoNetworkState = { problem: string } | { problem?: undefined; ipv6: boolean };

/**
 * Returns a check of the calico network. A good answer is remembered for
 * `okForMs` (default 5 s) so the create path pays for it once in a while,
 * not per container.
 */
export function calicoNetworkCheck(docker: Dockerode, pluginSocket: string, okForMs = 5000): () => Promise<CalicoNetworkState> {
  let ok: { until: number; ipv6: boolean } | undefined;
  return async () => {
    if (ok && Date.now() < ok.until) return { ipv6: ok.ipv6 };
    if (!(await socketAnswers(pluginSocket))) {
      return { problem: `the Calico Docker plugin is not serving on ${pluginSocket}: is \`calicoctl node\` running on this host? Start it and retry` };
    }
    let net;
    try {
      net = await inspectCalicoNetwork(docker);
    } catch (e) {
      return { problem: `checking the ${calicoNetworkName()} Docker network: ${(e as Error).message}` };
    }
    if (!net) {
      return { problem: `the ${calicoNetworkName()} Docker network does not exist on this host: restart \`calicoctl node\`, which creates it` };
    }
    ok = { until: Date.now() + okForMs, ipv6: net.EnableIPv6 === true };
    return { ipv6: ok.ipv6 };
  };
}

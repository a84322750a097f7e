import type { Address } from '../listen/address';
import { formatAddress, isLoopbackHost, parseAddress } from '../listen/address';
import type { TlsOptions } from '../listen/listener';

export const DEFAULT_METRICS_PORT = 9099;

export class MetricsListenError extends Error {}

/**
 * Where /metrics and /healthz may be served: like the proxy, loopback or a
 * unix socket as they are; any other address only with verified client
 * certificates (the node's --tlsverify set, which the metrics endpoint
 * shares with the proxy). Pure: parses and checks, opens nothing.
 */
export function metricsAddress(listen: string, tls?: TlsOptions): Address {
  let a: Address;
  try {
    a = parseAddress(listen, '--metrics', DEFAULT_METRICS_PORT);
  } catch (e) {
    throw new MetricsListenError((e as Error).message);
  }
  if (a.kind === 'tcp' && !isLoopbackHost(a.host) && !(tls?.verify && tls.ca)) {
    throw new MetricsListenError(
      `refusing to serve metrics on ${formatAddress(a)} without verified client certificates: anyone who can reach it ` +
        `reads this node's containers, addresses and health. Serve them on loopback (--metrics tcp://127.0.0.1:${DEFAULT_METRICS_PORT}) ` +
        'and scrape through a local agent, or require client certificates with the node\'s TLS flags, which the metrics endpoint shares ' +
        'with the proxy: --tlsverify --tlscacert=ca.pem --tlscert=server-cert.pem --tlskey=server-key.pem',
    );
  }
  return a;
}

// The Calico interceptors the node hands the proxy, and what they need.
import type Dockerode from 'dockerode';
import type { Ipam } from '../../ipam/types';
import type { Interceptor } from '../interceptor';
import type { InflightHandles } from '../../endpoints/inflight';
import type { ReservationBook } from '../../endpoints/reservations';
import { CreateContainerInterceptor } from './create-container';
import { InspectContainerInterceptor } from './inspect-container';
import { calicoNetworkCheck } from './network-check';

export { CreateContainerInterceptor } from './create-container';

export interface CalicoInterceptorDeps {
  ipam: Ipam;
  host: string;
  /** Client of the upstream dockerd (never the proxy). */
  docker: Dockerode;
  /** The node's plugin socket (/run/docker/plugins/<name>.sock). */
  pluginSocket: string;
  inflight: InflightHandles;
  /** etcd client URLs, named when etcd does not answer. */
  etcdEndpoints?: string[];
  /** Where created containers' reservations are noted: the plugin's Join names the container from them. */
  reservations: ReservationBook;
  /** Creates missing CALICO_PROFILE profiles with the 2015 defaults; the names it created. */
  ensureProfiles?(names: string[]): Promise<string[] | void>;
}

/**
 * Create (reserve + rewrite) and inspect (top-level address). Start needs no
 * interceptor: the plugin records the endpoint at Join, before the process runs.
 */
export function calicoInterceptors(d: CalicoInterceptorDeps): Interceptor[] {
  return [
    new CreateContainerInterceptor({
      ipam: d.ipam,
      host: d.host,
      inflight: d.inflight,
      reservations: d.reservations,
      ensureProfiles: d.ensureProfiles,
      network: calicoNetworkCheck(d.docker, d.pluginSocket),
      datastoreName: d.etcdEndpoints?.length ? `etcd at ${d.etcdEndpoints.join(', ')}` : undefined,
    }),
    new InspectContainerInterceptor(),
  ];
}

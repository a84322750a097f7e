// The Calico interceptors the node hands the proxy, and what they need.
import type Dockerode from 'dockerode';
import type { Ipam } from '../../ipam/types';
import type { Interceptor } from '../interceptor';
import type { EndpointRecorder } from '../../reconciler/endpoint-recorder';
import { CreateContainerInterceptor } from './create-container';
import { StartContainerInterceptor } from './start-container';
import { InspectContainerInterceptor } from './inspect-container';
import { InflightHandles } from './inflight';
import { calicoNetworkCheck } from './network-check';
import type { ReservationBook } from './reservations';

export { InflightHandles } from './inflight';
export { ReservationBook } from './reservations';
export { CreateContainerInterceptor } from './create-container';
export { StartContainerInterceptor } from './start-container';

export interface CalicoInterceptorDeps {
  ipam: Ipam | (() => Ipam);
  host: string;
  /** Client of the upstream dockerd (never the proxy). */
  docker: Dockerode;
  /** The node's plugin socket (/run/docker/plugins/<name>.sock). */
  pluginSocket: string;
  recorder: EndpointRecorder;
  inflight: InflightHandles;
  /** etcd client URLs, named when etcd does not answer. */
  etcdEndpoints?: string[];
  /** Where created containers' reservations are noted for their start. */
  reservations?: ReservationBook;
}

/** Create (reserve + rewrite), start (record the endpoint), inspect (top-level address). */
export function calicoInterceptors(d: CalicoInterceptorDeps): Interceptor[] {
  return [
    new CreateContainerInterceptor({
      ipam: d.ipam,
      host: d.host,
      inflight: d.inflight,
      reservations: d.reservations,
      network: calicoNetworkCheck(d.docker, d.pluginSocket),
      datastoreName: d.etcdEndpoints?.length ? `etcd at ${d.etcdEndpoints.join(', ')}` : undefined,
    }),
    new StartContainerInterceptor(d.recorder),
    new InspectContainerInterceptor(),
  ];
}

// A Reconciler wired as the node wires it (endpoint store, lifecycle,
// recorder, in-flight handles), for integration tests that drive its sweep
// against real etcd and a real dockerd. One place, so a change of the
// endpoint or lifecycle constructors is made once for every such test.
import Dockerode from 'dockerode';
import type { Logger } from 'pino';
import { Datastore, EndpointStore } from '../../src/datastore';
import type { Ipam } from '../../src/ipam/types';
import { EndpointRegistry } from '../../src/endpoints/registry';
import { EndpointLifecycle } from '../../src/endpoints/lifecycle';
import { EndpointRecorder } from '../../src/endpoints/recorder';
import { ReservationBook } from '../../src/endpoints/reservations';
import { InflightHandles } from '../../src/endpoints/inflight';
import { Reconciler } from '../../src/reconciler/reconciler';

export function sweeper(o: { ds: Datastore; ipam: Ipam; dockerSocket: string; host: string; log: Logger; gcGraceMs: number }): Reconciler {
  const docker = new Dockerode({ socketPath: o.dockerSocket });
  const store = new EndpointStore(o.ds);
  const lifecycle = new EndpointLifecycle({ host: o.host, store, registry: new EndpointRegistry(), reservations: new ReservationBook(), ipam: o.ipam, log: o.log });
  return new Reconciler({
    docker,
    ipam: o.ipam,
    store,
    lifecycle,
    recorder: new EndpointRecorder(docker, lifecycle),
    inflight: new InflightHandles(),
    host: o.host,
    log: o.log,
    gcGraceMs: o.gcGraceMs,
  });
}

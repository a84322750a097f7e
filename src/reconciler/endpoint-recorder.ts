// Records a container's Calico endpoint from what dockerd says about it.
// Shared by the start interceptor (client starts through the proxy) and the
// reconciler (starts that bypass it: restart policies, dockerd restarts,
// `docker run --net calico` on the real socket).
import type Dockerode from 'dockerode';
import type { Logger } from 'pino';
import { ContainerView, EndpointRecord, endpointFromContainer, sameEndpoint } from './container-endpoint';
import type { EndpointPort } from './endpoint-port';

/** How long a removed container is remembered (covers a record still on its way). */
const TOMBSTONE_MS = 60000;

/** What the node already knows about a container's endpoint, without asking dockerd. */
export type KnownEndpoint = (containerId: string) => EndpointRecord | undefined;

export class EndpointRecorder {
  private readonly removed = new Map<string, number>();
  /** What this process last wrote per container: a start seen twice (proxy and event) is written once. */
  private readonly written = new Map<string, EndpointRecord>();

  constructor(
    private readonly docker: Dockerode,
    private readonly endpoints: EndpointPort,
    private readonly host: string,
    private readonly ifNameFor: (endpointId: string) => string,
    private readonly log: Logger,
    private readonly known?: KnownEndpoint,
  ) {}

  /**
   * Inspects the container and writes its endpoint if it runs on the calico
   * network. Returns the record written, or undefined when there is nothing
   * to record (not on the network, gone, or no longer running).
   */
  async record(idOrName: string): Promise<EndpointRecord | undefined> {
    let ep = this.known?.(idOrName);
    if (!ep) {
      const view = await this.inspect(idOrName);
      ep = view && endpointFromContainer(view, this.host, this.ifNameFor);
    }
    if (!ep) return undefined;
    const id = ep.workloadId;
    const before = this.written.get(id);
    if (before && sameEndpoint(before, ep)) return ep;
    try {
      await this.endpoints.put(ep);
    } catch (e) {
      throw new Error(`recording endpoint ${ep.endpointId.slice(0, 12)} of container ${id.slice(0, 12)}: ${(e as Error).message}`);
    }
    // A container that exits at once (`run --rm true`) may have been
    // destroyed, and its destroy event handled, while the record was on its
    // way: then the record goes again. (A destroy handled after this point
    // removes the record itself; one missed altogether, the sweep catches.)
    if (this.removed.has(id)) {
      await this.endpoints.removeWorkload(this.host, id);
      return undefined;
    }
    this.written.set(id, ep);
    this.log.debug({ container: id, endpoint: ep.endpointId, addresses: [...ep.ipv4Nets, ...ep.ipv6Nets] }, 'endpoint recorded');
    return ep;
  }

  /** Removes the container's endpoints on this host (it is gone). Idempotent. */
  forget(containerId: string): Promise<number> {
    const now = Date.now();
    this.removed.set(containerId, now);
    this.written.delete(containerId);
    for (const [id, at] of this.removed) if (now - at > TOMBSTONE_MS) this.removed.delete(id);
    return this.endpoints.removeWorkload(this.host, containerId);
  }

  private async inspect(idOrName: string): Promise<ContainerView | undefined> {
    try {
      return (await this.docker.getContainer(idOrName).inspect()) as unknown as ContainerView;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw new Error(`inspecting container ${idOrName}: ${(e as Error).message}`);
    }
  }
}

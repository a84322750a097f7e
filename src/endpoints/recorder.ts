// Records a container's endpoint from what dockerd says about it: for starts
// the plugin's Join could not name (containers started without the proxy,
// a restart policy after a node restart) and for `calicoctl container add`.
import type Dockerode from 'dockerode';
import { ContainerView, endpointFromContainer } from './container-view';
import type { EndpointLifecycle } from './lifecycle';
import type { Endpoint } from './model';

export class EndpointRecorder {
  constructor(private readonly docker: Dockerode, private readonly lifecycle: EndpointLifecycle) {}

  /**
   * Inspects the container and records its endpoint if it runs on the calico
   * network. Returns the record, or undefined when there is nothing to record
   * (not on the network, gone, no longer running, or deleted meanwhile).
   */
  async record(idOrName: string): Promise<Endpoint | undefined> {
    const view = await this.inspect(idOrName);
    const ep = view && endpointFromContainer(view, this.lifecycle.host);
    if (!ep) return undefined;
    return this.lifecycle.record(ep);
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

// POST /containers/{id}/start: the network was plumbed by our driver while
// dockerd started the container; here, once dockerd says it started, the
// endpoint is recorded in the datastore before the client sees the answer,
// so `calicoctl shownodes` and policy know it as soon as `docker run` returns.
import type { Interceptor, InterceptContext, RequestDecision, UpstreamOutcome } from '../interceptor';
import type { EndpointRecorder } from '../../reconciler/endpoint-recorder';

const START_PATH = /^\/containers\/([^/]+)\/start$/;

export class StartContainerInterceptor implements Interceptor {
  readonly name = 'start-container';

  constructor(private readonly recorder: EndpointRecorder) {}

  matches(method: string, path: string): boolean {
    return method === 'POST' && START_PATH.test(path);
  }

  async onRequest(): Promise<RequestDecision> {
    // The start body (old clients may send a HostConfig) is dockerd's to judge:
    // since API 1.24 dockerd refuses one, and older clients never set CALICO_IP.
    return { action: 'pass' };
  }

  async onResponse(ctx: InterceptContext, outcome: UpstreamOutcome): Promise<void> {
    // 204 started; 304 already running (its endpoint may still be unrecorded).
    if (!('status' in outcome) || (outcome.status !== 204 && outcome.status !== 304)) return;
    const id = START_PATH.exec(ctx.path)?.[1];
    if (!id) return;
    const started = process.hrtime.bigint();
    try {
      const ep = await this.recorder.record(id);
      ctx.log.debug({ container: id, endpoint: ep?.endpointId, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'endpoint recorded at start');
    } catch (e) {
      // The container runs with its network; the reconciler records the
      // endpoint on its next pass. Refusing the start now would not undo it.
      ctx.log.error({ container: id, err: e }, 'recording the endpoint at start failed; the reconciler will retry');
    }
  }
}

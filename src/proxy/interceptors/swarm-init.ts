import type { Interceptor, InterceptorResponse, UpstreamOutcome } from '../interceptor';
import { dockerError } from '../interceptor';

/**
 * Docker swarm mode's management port is 2377, the proxy's default port too:
 * `docker swarm init` (or `join`) on a host whose proxy listens on
 * 127.0.0.1:2377 fails in dockerd with `listen tcp 0.0.0.0:2377: bind:
 * address already in use`, which does not say who holds the port. When the
 * port in that error is the proxy's own, the answer (same status, Docker's
 * {"message": ...} shape) names the proxy and the two ways out. The proxy
 * installs this itself (it is about the proxy's own listener), also with
 * `calicoctl node --proxy-only`; every other answer passes untouched.
 */

/** The address dockerd could not bind in a swarm init/join error, if that is what the message says. Pure. */
export function addressInUse(message: string): { host: string; port: number } | undefined {
  const m = /listen tcp (\[[^\]]*\]|[^\s:]*):(\d+): bind: address already in use/.exec(message);
  return m ? { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) } : undefined;
}

const isWildcard = (h: string) => h === '' || h === '0.0.0.0' || h === '::';

/** Whether binding `wanted` fails because of a listener on `own` (same port; same host or either a wildcard). Pure. */
export function collides(wanted: { host: string; port: number }, own: { host: string; port: number }): boolean {
  return wanted.port === own.port && (isWildcard(wanted.host) || isWildcard(own.host) || wanted.host === own.host);
}

/** The explained error for `docker swarm <verb>` colliding with the proxy on `port`. Pure. */
export function explainSwarmPortConflict(original: string, verb: 'init' | 'join', port: number, listen: string): string {
  return (
    `${original}: port ${port} is taken by the calico-docker proxy (Docker API on ${listen}), ` +
    `and ${port} is also Docker swarm's default management port. Either give swarm another port: ` +
    `\`docker swarm ${verb} --listen-addr <ip>:2378\`, or move the proxy: \`calicoctl node --listen tcp://127.0.0.1:<port>\` ` +
    '(and DOCKER_HOST to match)'
  );
}

function messageOf(body: Buffer): string | undefined {
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null && typeof (v as { message?: unknown }).message === 'string' ? (v as { message: string }).message : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `ownListener()` gives the proxy's bound TCP address (host, port) and its
 * spelling, or undefined (unix socket, not listening yet).
 */
export function swarmPortInterceptor(ownListener: () => { host: string; port: number; label: string } | undefined): Interceptor {
  return {
    name: 'swarm-port',
    matches: (method, path) => method === 'POST' && (path === '/swarm/init' || path === '/swarm/join'),
    async onResponse(ctx, outcome: UpstreamOutcome): Promise<InterceptorResponse | void> {
      if ('error' in outcome || outcome.status < 400) return;
      const own = ownListener();
      const message = messageOf(outcome.body);
      const wanted = message === undefined ? undefined : addressInUse(message);
      if (!own || !wanted || !collides(wanted, own)) return;
      const verb = ctx.path === '/swarm/join' ? 'join' : 'init';
      ctx.log.info({ port: own.port }, `docker swarm ${verb} collided with the proxy's port ${own.port}`);
      return dockerError(outcome.status, explainSwarmPortConflict(message!, verb, own.port, own.label));
    },
  };
}

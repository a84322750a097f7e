// GET /containers/{id}/json: a Calico container's address also appears in the
// top-level NetworkSettings fields (IPAddress, MacAddress,
// GlobalIPv6Address), where Docker leaves them empty for any network but
// the default bridge. In 2015 users found them empty and had to go to
// `calicoctl shownodes --detailed` (the seed blog post says so); scripts
// that read `{{.NetworkSettings.IPAddress}}` work again.
import { calicoNetworkName } from '../../names';
import type { Interceptor, InterceptContext, InterceptorResponse, UpstreamOutcome } from '../interceptor';
import { hasUnsafeInteger } from './calico-request';

const INSPECT_PATH = /^\/containers\/[^/]+\/json$/;

type Json = Record<string, unknown>;

/**
 * Pure: the inspect body with the calico network's address copied to the
 * top-level fields, or undefined when there is nothing to fill (not a calico
 * container, fields already set, or a body we do not understand).
 */
export function fillTopLevelAddress(body: string): string | undefined {
  let doc: Json;
  try {
    doc = JSON.parse(body) as Json;
  } catch {
    return undefined;
  }
  // A rewrite must not alter numbers JSON cannot carry exactly. (The digit
  // run alone is no test: 64-hex ids hold 16 digits in a row often enough.)
  if (/\d{16,}/.test(body) && hasUnsafeInteger(doc)) return undefined;
  const ns = doc?.NetworkSettings as Json | undefined;
  const net = (ns?.Networks as Json | undefined)?.[calicoNetworkName()] as Json | undefined;
  if (!ns || !net) return undefined;
  let changed = false;
  const copy = (from: string, to: string, extra?: [string, unknown]) => {
    if (typeof net[from] === 'string' && net[from] && !ns[to]) {
      ns[to] = net[from];
      if (extra) ns[extra[0]] = extra[1];
      changed = true;
    }
  };
  copy('IPAddress', 'IPAddress', ['IPPrefixLen', 32]);
  copy('GlobalIPv6Address', 'GlobalIPv6Address', ['GlobalIPv6PrefixLen', 128]);
  copy('MacAddress', 'MacAddress');
  copy('Gateway', 'Gateway');
  copy('IPv6Gateway', 'IPv6Gateway');
  return changed ? JSON.stringify(doc) : undefined;
}

export class InspectContainerInterceptor implements Interceptor {
  readonly name = 'inspect-container';

  matches(method: string, path: string): boolean {
    return method === 'GET' && INSPECT_PATH.test(path);
  }

  async onResponse(_ctx: InterceptContext, outcome: UpstreamOutcome): Promise<InterceptorResponse | void> {
    // Only 200s: error bodies reach the client untouched (`docker logs nosuch`).
    if (!('status' in outcome) || outcome.status !== 200) return;
    const filled = fillTopLevelAddress(outcome.body.toString('utf8'));
    if (!filled) return;
    return { status: 200, body: Buffer.from(filled + '\n') };
  }
}

// Where calicoctl and the node find etcd. Pure: flag and environment in, a
// list of client URLs (and where they came from) out.

/** Where the 2015 tools, and a node's embedded member, listen. */
export const DEFAULT_ETCD_ENDPOINT = 'http://127.0.0.1:2379';

export type EndpointSource = '--etcd-endpoints' | 'ETCD_ENDPOINTS' | 'ETCD_AUTHORITY' | 'default' | 'embedded';

export interface ResolvedEndpoints {
  /** Normalised client URLs, e.g. `http://10.0.0.1:2379`; never empty. */
  endpoints: string[];
  source: EndpointSource;
}

export class EndpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EndpointError';
  }
}

/**
 * Normalises one endpoint: `host:port` (the 2015 ETCD_AUTHORITY form) gets
 * `http://`; a URL keeps its scheme; a missing port means 2379. http and
 * https are etcd client schemes, and unix:///absolute/path (the embedded
 * member's socket, see embedded.ts).
 */
export function normaliseEndpoint(text: string, from: string): string {
  const raw = text.trim();
  if (!raw) throw new EndpointError(`${from}: empty etcd endpoint`);
  if (/^unix:/i.test(raw)) {
    const p = raw.replace(/^unix:\/\//i, '');
    if (!p.startsWith('/')) throw new EndpointError(`${from}: "${raw}" must name an absolute socket path (unix:///path/to/socket)`);
    return `unix://${p}`;
  }
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new EndpointError(`${from}: "${raw}" is not a valid etcd endpoint (expected http://host:port or host:port)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new EndpointError(`${from}: "${raw}" uses ${u.protocol.replace(/:$/, '')}; etcd endpoints are http://, https:// or unix://`);
  }
  if (!u.hostname) throw new EndpointError(`${from}: "${raw}" has no host`);
  if ((u.pathname && u.pathname !== '/') || u.search || u.hash) {
    throw new EndpointError(`${from}: "${raw}" must not have a path or query (expected http://host:port)`);
  }
  const port = u.port || '2379';
  return `${u.protocol}//${u.hostname}:${port}`;
}

/** Splits a comma list (ETCD_ENDPOINTS / --etcd-endpoints), dropping duplicates, keeping order. */
export function parseEndpointList(list: string, from: string): string[] {
  const parts = list.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length === 0) throw new EndpointError(`${from}: no etcd endpoint given`);
  return [...new Set(parts.map((p) => normaliseEndpoint(p, from)))];
}

/**
 * Precedence: the flag, then ETCD_ENDPOINTS, then ETCD_AUTHORITY (one
 * host:port, as calicoctl read it in 2015), then 127.0.0.1:2379. Empty
 * variables count as unset, so `ETCD_ENDPOINTS= calicoctl ...` means default.
 */
export function resolveEndpoints(flag: string | undefined, env: NodeJS.ProcessEnv): ResolvedEndpoints {
  if (flag !== undefined) {
    return { endpoints: parseEndpointList(flag, '--etcd-endpoints'), source: '--etcd-endpoints' };
  }
  const list = env.ETCD_ENDPOINTS?.trim();
  if (list) return { endpoints: parseEndpointList(list, 'ETCD_ENDPOINTS'), source: 'ETCD_ENDPOINTS' };
  const authority = env.ETCD_AUTHORITY?.trim();
  if (authority) {
    if (authority.includes(',')) {
      throw new EndpointError('ETCD_AUTHORITY holds one host:port; use ETCD_ENDPOINTS for a comma list');
    }
    return { endpoints: [normaliseEndpoint(authority, 'ETCD_AUTHORITY')], source: 'ETCD_AUTHORITY' };
  }
  return { endpoints: [DEFAULT_ETCD_ENDPOINT], source: 'default' };
}

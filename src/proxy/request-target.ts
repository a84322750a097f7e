/**
 * Docker API request targets: '/v1.41/containers/abc/start?x=1' is the same
 * call as '/containers/abc/start?x=1'. Interceptors match on the unversioned,
 * decoded path, so a client cannot slip past them by choosing a version or by
 * percent-encoding (the lesson of Tecnativa's allowlist, which matches decoded).
 */
export interface RequestTarget {
  /** Unversioned, percent-decoded path, no query. */
  path: string;
  /** '1.41' for '/v1.41/...', undefined when unversioned. */
  apiVersion?: string;
  query: URLSearchParams;
}

const VERSION_PREFIX = /^\/v(\d+(?:\.\d+)*)(?=\/|$)/;

export function parseRequestTarget(url: string): RequestTarget {
  const q = url.indexOf('?');
  const rawPath = q >= 0 ? url.slice(0, q) : url;
  const query = new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
  let path = safeDecode(rawPath);
  // Go's mux cleans repeated slashes before routing; do the same so '//containers/create' still matches.
  path = path.replace(/\/{2,}/g, '/');
  let apiVersion: string | undefined;
  const m = VERSION_PREFIX.exec(path);
  if (m) {
    apiVersion = m[1];
    path = path.slice(m[0].length) || '/';
  }
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  return { path, apiVersion, query };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}


/**
 * Docker API request targets, read as dockerd routes them, so that what an
 * interceptor matches is what dockerd's router dispatches. Pure.
 *
 * dockerd (moby api/server/server.go, createMux) builds a gorilla/mux router
 * with `mux.NewRouter()` and registers each route twice:
 * `m.Path("/v{version:[0-9.]+}" + r.Path())` and `m.Path(r.Path())`. It sets
 * neither SkipClean nor UseEncodedPath, so (gorilla/mux mux.go,
 * Router.ServeHTTP and routeRegexp.Match):
 * - routes match `req.URL.Path`, the percent-DECODED path (net/url
 *   ParseRequestURI → URL.setPath → unescape): `/containers/%63reate` and
 *   `/containers%2Fcreate` are the create route;
 * - a path that `cleanPath` (path.Clean, keeping a trailing slash) changes is
 *   answered 301 to its clean form and routed nowhere (`//containers/create`,
 *   `/v1.41/./containers/create`);
 * - the version is any run of digits and dots: `/v1.41./containers/create`
 *   and `/v./containers/create` are the create route (the version middleware
 *   then judges the version);
 * - route templates match the whole path: `/containers/create/` is not create.
 */
export interface RequestTarget {
  /** Unversioned, percent-decoded path as the router matches it, no query. */
  path: string;
  /** '1.41' for '/v1.41/...', undefined when unversioned. */
  apiVersion?: string;
  query: URLSearchParams;
}

/** moby's versionMatcher, `/v{version:[0-9.]+}`, as a prefix of a route template. */
const VERSION_PREFIX = /^\/v([0-9.]+)(?=\/)/;

export function parseRequestTarget(url: string): RequestTarget {
  const q = url.indexOf('?');
  const rawPath = q >= 0 ? url.slice(0, q) : url;
  let path = unescapePath(rawPath) ?? rawPath;
  let apiVersion: string | undefined;
  const m = path.startsWith('/v') ? VERSION_PREFIX.exec(path) : null;
  if (m) {
    apiVersion = m[1];
    path = path.slice(m[0].length);
  }
  return new Target(path, apiVersion, q >= 0 ? url.slice(q + 1) : '');
}

/** A RequestTarget whose query is parsed when first read: it is an interceptor's business only, not every request's. */
class Target implements RequestTarget {
  private q?: URLSearchParams;

  constructor(readonly path: string, readonly apiVersion: string | undefined, private readonly rawQuery: string) {}

  get query(): URLSearchParams {
    return (this.q ??= new URLSearchParams(this.rawQuery));
  }
}

export type TargetCheck = { ok: true; target: RequestTarget } | { ok: false; message: string };

/**
 * The request target as dockerd will route it, or why the proxy refuses it
 * (400): only origin-form targets whose decoded path is already clean are
 * taken, so there is no second reading of the path for a request to hide in.
 * - absolute-form (`http://x/v1.41/containers/create`): Go's ParseRequestURI
 *   takes it and mux routes its path; no Docker client sends it;
 * - asterisk-form (`*`), authority-form: routed nowhere by dockerd;
 * - a malformed escape (`%zz`): Go's ParseRequestURI fails (400);
 * - control bytes, `#`: Go refuses CTLs; a fragment has no place in a request;
 * - an unclean path: mux answers 301, Docker clients do not follow a POST's
 *   redirect; refusing it keeps the rule simple: the path matched is the path routed.
 */
export function checkRequestTarget(url: string): TargetCheck {
  if (!url.startsWith('/')) {
    return { ok: false, message: `request target ${JSON.stringify(url.slice(0, 100))} is not a path (absolute-form, authority-form and "*" are refused)` };
  }
  if (/[\x00-\x20\x7f#]/.test(url)) return { ok: false, message: 'request target holds a control character, a space or "#"' };
  const q = url.indexOf('?');
  const rawPath = q >= 0 ? url.slice(0, q) : url;
  const decoded = unescapePath(rawPath);
  if (decoded === undefined) return { ok: false, message: `request path ${JSON.stringify(rawPath.slice(0, 100))} holds a malformed percent-escape` };
  // Clean unless it holds an empty, '.' or '..' segment (each begins with '/' followed by '/' or '.').
  const clean = decoded.includes('//') || decoded.includes('/.') ? cleanPath(decoded) : decoded;
  if (clean !== decoded) {
    return { ok: false, message: `request path ${JSON.stringify(decoded.slice(0, 100))} is not in canonical form (Docker's router reads it as ${JSON.stringify(clean.slice(0, 100))}); send that` };
  }
  return { ok: true, target: parseRequestTarget(url) };
}

/**
 * Go's url.unescape in path mode: `%XX` becomes the byte, `+` stays, a `%`
 * not followed by two hex digits is an error (undefined). Bytes are read as
 * UTF-8 (invalid sequences as U+FFFD; no Docker route has any).
 */
export function unescapePath(s: string): string | undefined {
  if (!s.includes('%')) return s;
  const out: number[] = [];
  const src = Buffer.from(s, 'utf8');
  for (let i = 0; i < src.length; i++) {
    if (src[i] !== 0x25) {
      out.push(src[i]);
      continue;
    }
    const h = src.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9a-fA-F]{2}$/.test(h)) return undefined;
    out.push(parseInt(h, 16));
    i += 2;
  }
  return Buffer.from(out).toString('utf8');
}

/** gorilla/mux cleanPath: Go's path.Clean, a trailing slash kept (mux.go). */
export function cleanPath(p: string): string {
  if (p === '') return '/';
  if (p[0] !== '/') p = '/' + p;
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  let np = '/' + parts.join('/');
  if (p.endsWith('/') && np !== '/') np += '/';
  return np;
}

/**
 * Where Docker hijacks the connection (the only places an Upgrade is
 * honoured): attach, exec start, BuildKit's /session and /grpc (POST), and
 * attach over a websocket (GET). Paths are unversioned, as parseRequestTarget
 * gives them; moby's templates are `/containers/{name:.*}/attach`,
 * `/exec/{name:.*}/start`, `/session`, `/grpc`, `/containers/{name:.*}/attach/ws`.
 */
export function isHijackRoute(method: string, path: string): boolean {
  if (method === 'POST') {
    if (path.endsWith('/attach')) return /^\/containers\/.*\/attach$/.test(path);
    return path.endsWith('/start') ? /^\/exec\/.*\/start$/.test(path) : path === '/session' || path === '/grpc';
  }
  return method === 'GET' && path.endsWith('/attach/ws') && /^\/containers\/.*\/attach\/ws$/.test(path);
}

/**
 * Closed to web pages. The proxy's API is root on this host, as Docker's
 * socket is; a page open in the operator's browser can send it requests
 * (`fetch('http://127.0.0.1:2377/build?remote=…', {method: 'POST', mode:
 * 'no-cors'})`), or reach it under its own name after DNS rebinding. Browsers
 * mark every such request: an `Origin` on every cross-origin and every POST
 * request, `Sec-Fetch-*` on every request, and the page's host name in
 * `Host`. Docker clients (the CLI, compose, dockerode, docker-py,
 * testcontainers) send none of these, and over TCP a loopback `Host`. Pure.
 */

export interface WebGuardPolicy {
  /** Check `Host` (a loopback TCP listener); a unix socket's clients send `docker` or `api.moby.localhost`. */
  checkHost: boolean;
  /** Origins the operator allowed (`calicoctl node --allow-origin`), e.g. `http://localhost:9000`. */
  allowOrigins: readonly string[];
}

const PREFIX = 'requests from web pages are refused: ';

/** Why a request is refused (403), or undefined when it may pass. */
export function webRefusal(rawHeaders: readonly string[], policy: WebGuardPolicy): string | undefined {
  let origin: string | undefined;
  let origins = 0;
  let secFetch: string | undefined;
  const hosts: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const n = rawHeaders[i].toLowerCase();
    if (n === 'origin') {
      origin = rawHeaders[i + 1];
      origins++;
    } else if (n.startsWith('sec-fetch-')) secFetch ??= rawHeaders[i];
    else if (n === 'host') hosts.push(rawHeaders[i + 1]);
  }
  const allowed = origin !== undefined && origins === 1 && policy.allowOrigins.some((o) => sameOrigin(o, origin!));
  if (origin !== undefined && !allowed) {
    return `${PREFIX}Origin ${JSON.stringify(origin.slice(0, 200))} is not allowed (calicoctl node --allow-origin <origin> allows one)`;
  }
  if (secFetch !== undefined && !allowed) {
    return `${PREFIX}the request carries ${secFetch} and no allowed Origin (calicoctl node --allow-origin <origin> allows one)`;
  }
  if (policy.checkHost) {
    for (const h of hosts) {
      if (!isLoopbackHostHeader(h)) {
        return `${PREFIX}Host ${JSON.stringify(h.slice(0, 200))} names neither localhost nor a loopback address (a DNS-rebound name); use 127.0.0.1 or localhost`;
      }
    }
  }
  return undefined;
}

/**
 * Names Docker clients send as Host that no page can be served under: the
 * socket names some clients send over TCP too (the Go client's `docker`,
 * Jenkins' attach connector's `docker.sock`), in no public DNS zone, so no
 * attacker's name server can answer for them; and `*.localhost`, which
 * browsers resolve to loopback themselves (RFC 6761).
 */
const SOCKET_NAMES = new Set(['docker', 'docker.sock']);

/** Whether a Host header names localhost, 127.0.0.0/8 or [::1] (or a socket name), with or without a port. */
export function isLoopbackHostHeader(h: string): boolean {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(h.trim());
  if (!m) return false;
  const host = m[1].toLowerCase();
  if (host === 'localhost' || host === '[::1]' || SOCKET_NAMES.has(host) || /^[a-z0-9-]+(\.[a-z0-9-]+)*\.localhost$/.test(host)) return true;
  const v4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return v4 !== null && v4.slice(1).every((o) => Number(o) <= 255);
}

/** Origins compare by scheme, host and port, case-insensitively, a trailing slash ignored. */
export function sameOrigin(a: string, b: string): boolean {
  const norm = (s: string) => s.trim().replace(/\/+$/, '').toLowerCase();
  return norm(a) === norm(b);
}

/** An --allow-origin value: scheme://host[:port], nothing else. Throws with the reason. */
export function checkAllowOrigin(o: string): string {
  if (!/^https?:\/\/[^/\s?#]+\/?$/i.test(o.trim())) {
    throw new Error(`--allow-origin ${JSON.stringify(o)} is not an origin: give scheme://host[:port], e.g. http://localhost:9000`);
  }
  return o.trim().replace(/\/+$/, '');
}

// Calico's variables in a container's environment: CALICO_IP (auto, an IPv4
// or an IPv6 address), CALICO_IP6 (dual stack) and CALICO_PROFILE, as 2015's
// `docker run -e CALICO_IP=...` and `calicoctl container add` take them. The
// proxy's create interceptor and the CLI read them here. Pure.
import ipaddr from 'ipaddr.js';

/** 2015 calicoctl v0.4.9 profile name rule. */
const PROFILE_RE = /^[a-zA-Z0-9_.-]{1,40}$/;

export interface CalicoRequest {
  /** 'auto', an IPv4 address, or undefined (no IPv4). */
  ipv4?: string;
  /** 'auto', an IPv6 address, or undefined (no IPv6). */
  ipv6?: string;
  profiles: string[];
}

/** A request refused before anything is reserved: status + message for the docker client (or the CLI). */
export class RequestRefused extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'RequestRefused';
  }
}

/** Last value of NAME in a Docker Env list (Docker itself keeps the last one). */
export function envValue(env: unknown, name: string): string | undefined {
  if (!Array.isArray(env)) return undefined;
  let value: string | undefined;
  for (const entry of env) {
    if (typeof entry !== 'string') continue;
    if (entry.startsWith(name + '=')) value = entry.slice(name.length + 1);
  }
  return value;
}

function parseAddress(name: string, raw: string, allow: 4 | 6 | 'any'): { family: 4 | 6; text: string } | 'auto' {
  const v = raw.trim();
  if (v.toLowerCase() === 'auto') return 'auto';
  if (v === '') {
    throw new RequestRefused(400, `${name} is empty: set ${name}=auto or ${name}=<address in a Calico pool>`);
  }
  if (v.includes('/')) {
    throw new RequestRefused(400, `${name}=${v} is not an address: give one address without a prefix length, or auto`);
  }
  if (!ipaddr.isValid(v)) {
    throw new RequestRefused(400, `${name}=${v} is not a valid IP address: use auto, an IPv4 or an IPv6 address`);
  }
  const parsed = ipaddr.parse(v);
  const family = parsed.kind() === 'ipv4' ? 4 : 6;
  if (family === 4 && !ipaddr.IPv4.isValidFourPartDecimal(v)) {
    throw new RequestRefused(400, `${name}=${v} is not a dotted-quad IPv4 address`);
  }
  if (allow !== 'any' && family !== allow) {
    throw new RequestRefused(400, `${name}=${v} is an IPv${family} address; ${name} takes auto or an IPv${allow} address`);
  }
  return { family, text: parsed.toString() };
}

/**
 * Reads Calico's variables from a create body's Env. Returns undefined when
 * CALICO_IP is absent (the request is none of our business). CALICO_IP may be
 * auto (IPv4), an IPv4 or an IPv6 address; CALICO_IP6 adds IPv6 (auto or an
 * address) for dual stack.
 */
export function parseCalicoEnv(env: unknown): CalicoRequest | undefined {
  const ip = envValue(env, 'CALICO_IP');
  if (ip === undefined) return undefined;
  const req: CalicoRequest = { profiles: [] };
  const first = parseAddress('CALICO_IP', ip, 'any');
  if (first === 'auto') req.ipv4 = 'auto';
  else if (first.family === 4) req.ipv4 = first.text;
  else req.ipv6 = first.text;

  const ip6 = envValue(env, 'CALICO_IP6');
  if (ip6 !== undefined) {
    const second = parseAddress('CALICO_IP6', ip6, 6);
    const text = second === 'auto' ? 'auto' : second.text;
    if (req.ipv6 !== undefined && req.ipv6 !== text) {
      throw new RequestRefused(400, `CALICO_IP=${ip} and CALICO_IP6=${ip6} both ask for an IPv6 address; give one`);
    }
    req.ipv6 = text;
  }

  const profile = envValue(env, 'CALICO_PROFILE');
  if (profile !== undefined) {
    const names = profile.split(',').map((p) => p.trim()).filter(Boolean);
    const bad = names.filter((n) => !PROFILE_RE.test(n));
    if (bad.length) {
      throw new RequestRefused(
        400,
        `CALICO_PROFILE: invalid profile name ${bad.map((b) => JSON.stringify(b)).join(', ')}: ` +
          'names are 1-40 letters, digits, "_", "." or "-"',
      );
    }
    req.profiles = [...new Set(names)];
  }
  return req;
}

/**
 * The request completed with an automatic address for each family the calico
 * network carries and the client did not name: every calico network carries
 * IPv4; it carries IPv6 when an IPv6 pool existed when it was created.
 */
export function withNetworkFamilies(req: CalicoRequest, networkHasIpv6: boolean): CalicoRequest {
  return {
    ...req,
    ipv4: req.ipv4 ?? 'auto',
    ipv6: req.ipv6 ?? (networkHasIpv6 ? 'auto' : undefined),
  };
}

// Pure logic of the create interceptor: what a create body asks of Calico
// (CALICO_IP, CALICO_IP6, CALICO_PROFILE in Env) and how the body is rewritten
// onto the host's `calico` Docker network. No sockets, no etcd: unit-tested.
import ipaddr from 'ipaddr.js';
import { HANDLE_LABEL, PROFILES_LABEL, calicoNetworkName } from '../../names';



/** 2015 calicoctl v0.4.9 profile name rule. */
const PROFILE_RE = /^[a-zA-Z0-9_.-]{1,40}$/;

export interface CalicoRequest {
  /** 'auto', an IPv4 address, or undefined (no IPv4). */
  ipv4?: string;
  /** 'auto', an IPv6 address, or undefined (no IPv6). */
  ipv6?: string;
  profiles: string[];
}

/** A request the proxy refuses before anything is reserved: status + message for the docker client. */
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

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The network the client asked for, refused when it cannot be combined with a
 * Calico address. Empty, `default` and `bridge` mean "Docker's default", which
 * Calico replaces; a named user network is replaced too, its endpoint settings
 * (aliases, links) carried over to the calico endpoint.
 */
export function checkNetworkMode(mode: unknown): void {
  if (typeof mode !== 'string') return;
  const why = (m: string) =>
    new RequestRefused(
      400,
      `CALICO_IP cannot be combined with --net=${m}: ${m === 'host' ? 'a host-network container has no network of its own to give an address to' : m === 'none' ? '--net=none asks for no network at all' : 'the container shares another container\'s network namespace'}; drop --net or drop CALICO_IP`,
    );
  if (mode === 'host' || mode === 'none') throw why(mode);
  if (mode.startsWith('container:')) throw why(mode);
}

export interface Rewrite {
  handle: string;
  ipv4?: string; // concrete address reserved
  ipv6?: string;
  profiles: string[];
}

/**
 * Rewrites a parsed create body onto the calico network with the reserved
 * addresses, keeping every field Calico does not own. Returns a new object;
 * the input is not modified.
 */
export function rewriteCreateBody(body: Json, r: Rewrite): Json {
  const out: Json = { ...body };
  const hostConfig: Json = isObject(body.HostConfig) ? { ...body.HostConfig } : {};
  const previousMode = typeof hostConfig.NetworkMode === 'string' ? hostConfig.NetworkMode : '';
  hostConfig.NetworkMode = calicoNetworkName();
  out.HostConfig = hostConfig;

  const networking: Json = isObject(body.NetworkingConfig) ? { ...body.NetworkingConfig } : {};
  const endpoints: Json = isObject(networking.EndpointsConfig) ? { ...networking.EndpointsConfig } : {};
  // Settings the client gave for the network it asked for (e.g. compose's
  // service aliases on <project>_default) move to the calico endpoint.
  let carried: Json = {};
  for (const key of [previousMode, 'default', 'bridge', calicoNetworkName()]) {
    if (key && isObject(endpoints[key])) {
      carried = { ...carried, ...(endpoints[key] as Json) };
      delete endpoints[key];
    }
  }
  const ipam: Json = isObject(carried.IPAMConfig) ? { ...carried.IPAMConfig } : {};
  delete ipam.IPv4Address;
  delete ipam.IPv6Address;
  if (r.ipv4) ipam.IPv4Address = r.ipv4;
  if (r.ipv6) ipam.IPv6Address = r.ipv6;
  endpoints[calicoNetworkName()] = { ...carried, IPAMConfig: ipam };
  networking.EndpointsConfig = endpoints;
  out.NetworkingConfig = networking;

  const labels: Json = isObject(body.Labels) ? { ...body.Labels } : {};
  labels[HANDLE_LABEL] = r.handle;
  if (r.profiles.length) labels[PROFILES_LABEL] = r.profiles.join(',');
  else delete labels[PROFILES_LABEL];
  out.Labels = labels;
  return out;
}

/**
 * The deepest nesting of a create body the interceptor rewrites. V8's
 * JSON.stringify (and any recursive walk) overflows the stack a few thousand
 * levels down, while JSON.parse does not; a real create body is about 4
 * levels deep, and Go's decoder in dockerd stops at 10,000.
 */
export const MAX_CREATE_DEPTH = 1000;

/** Whether JSON text nests arrays/objects deeper than `limit` (strings skipped; linear, no recursion). */
export function jsonNestedDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * Parses a create body. Returns undefined for a body that is not a JSON
 * object: that is dockerd's to refuse, not ours. Integers beyond 2^53 would
 * lose precision in a JSON round trip; Docker's create body has none in
 * practice, but a body that has one is refused rather than silently altered.
 * A body nested deeper than MAX_CREATE_DEPTH is refused too: it could not be
 * walked or written back.
 */
export function parseCreateBody(raw: Buffer): Json | undefined {
  let body: unknown;
  const text = raw.toString('utf8');
  // Before JSON.parse: a million levels of [ parse into a million arrays.
  if (jsonNestedDeeperThan(text, MAX_CREATE_DEPTH)) {
    throw new RequestRefused(400, `container create request is nested more than ${MAX_CREATE_DEPTH} levels deep: too deep to rewrite for CALICO_IP`);
  }
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(body)) return undefined;
  if (/\d{16,}/.test(text) && hasUnsafeInteger(body)) {
    throw new RequestRefused(400, 'container create request holds an integer too large to rewrite safely for CALICO_IP');
  }
  return body;
}

/**
 * Whether a parsed JSON value holds an integer that JSON.parse could not carry
 * exactly (so re-serialising it would alter the number). Callers test the raw
 * text for a run of 16 digits first: cheap, and ids (hex strings) make that
 * pre-test true often, so it can never be the whole check.
 */
export function hasUnsafeInteger(v: unknown): boolean {
  if (typeof v === 'number') return Number.isInteger(v) && !Number.isSafeInteger(v);
  if (Array.isArray(v)) return v.some(hasUnsafeInteger);
  if (isObject(v)) return Object.values(v).some(hasUnsafeInteger);
  return false;
}

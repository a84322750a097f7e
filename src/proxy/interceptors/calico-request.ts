// Pure checks of the create interceptor: the network a CALICO_IP container
// may not combine with, and the limits of a body it rewrites (create-body.ts
// reads and rewrites it). No sockets, no etcd: unit-tested.
import { RequestRefused } from '../../endpoints/calico-env';

// CALICO_* env parsing lives in endpoints/ (the CLI's `container add` reads it too).
export { RequestRefused, envValue, parseCalicoEnv, withNetworkFamilies } from '../../endpoints/calico-env';
export type { CalicoRequest } from '../../endpoints/calico-env';

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

/**
 * The deepest nesting of a create body the interceptor reads (its reader
 * recurses); a real create body is about 4 levels deep, and Go's decoder in
 * dockerd stops at 10,000. Deeper bodies are refused, never passed unread.
 */
export const MAX_CREATE_DEPTH = 1000;

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

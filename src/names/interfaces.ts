import { createHash } from 'node:crypto';

// Every name and fixed address the host side of a
// container endpoint uses. Felix, the reconciler and the tests derive the same
// names from the same functions.

/** Prefix of every host-side workload interface (policy matches `cali+`). */
export const HOST_IF_PREFIX = 'cali';
/** Prefix of the container end while it still sits in the host namespace. */
export const PEER_IF_PREFIX = 'ctmp';
/** Every host-side veth has this MAC, so every container sees the same gateway MAC. */
export const HOST_VETH_MAC = 'ee:ee:ee:ee:ee:ee';
/** The container's IPv4 gateway: answered by proxy ARP on the host veth, never routed. */
export const GATEWAY_V4 = '169.254.1.1';

const HEX_ID = /^[0-9a-f]{11,}$/;

/** 11 hex chars that stand for the endpoint (Docker ids are 64 hex; anything else is hashed). */
function idHex(endpointId: string): string {
  const id = endpointId.toLowerCase();
  if (HEX_ID.test(id)) return id.slice(0, 11);
  return createHash('sha1').update(endpointId).digest('hex').slice(0, 11);
}

/** Host end of the endpoint's veth: `cali` + 11 hex chars of the endpoint id (15 chars, the kernel's limit). */
export function hostIfName(endpointId: string): string {
  return HOST_IF_PREFIX + idHex(endpointId);
}

/** Container end before Docker moves it into the container and renames it eth0. */
export function peerIfName(endpointId: string): string {
  return PEER_IF_PREFIX + idHex(endpointId);
}

/**
 * Container-side MAC: locally administered unicast (02:...), derived from the
 * endpoint id so a retried CreateEndpoint answers the same MAC.
 */
export function containerMac(endpointId: string): string {
  const h = createHash('sha1').update(endpointId).digest();
  const bytes = [0x02, h[0], h[1], h[2], h[3], h[4]];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** IPv6 link-local (EUI-64) of an interface with this MAC. */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  if (b.length !== 6 || b.some((x) => !(x >= 0 && x <= 255))) throw new Error(`invalid MAC address "${mac}"`);
  const words = [(b[0] ^ 0x02) << 8 | b[1], b[2] << 8 | 0xff, 0xfe << 8 | b[3], b[4] << 8 | b[5]];
  return 'fe80::' + words.map((w) => w.toString(16)).join(':');
}

/** The container's IPv6 gateway: the link-local of every host veth (they share one MAC). */
export const GATEWAY_V6 = linkLocalFromMac(HOST_VETH_MAC);

import ipaddr from 'ipaddr.js';

// Address text as Docker sends and expects it in the plugin API.

import type { Family } from '../address/cidr';
export type { Family };

/** `10.0.0.5/32` -> `10.0.0.5`; canonical text; throws with a readable message when malformed. */
export function parseAddress(text: string, what: string): { address: string; family: Family } {
  const bare = text.split('/')[0];
  if (!ipaddr.isValid(bare)) throw new PluginError(`${what} "${text}" is not an IP address`);
  const a = ipaddr.parse(bare);
  return { address: a.toString(), family: a.kind() === 'ipv4' ? 4 : 6 };
}

/** Routing is per address: Docker gets /32 and /128, never a subnet. */
export function withHostPrefix(address: string, family: Family): string {
  return `${address}/${family === 4 ? 32 : 128}`;
}

/** An error whose message is shown to the Docker client as is. */
export class PluginError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PluginError';
  }
}

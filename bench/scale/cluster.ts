// bench/scale's simulated cluster: what etcd holds for `hosts` hosts that
// each run `perHost` containers, in `profiles` profiles (each endpoint in
// one to three of them, as a CI fleet's jobs and their data sources are).
// Pure and deterministic: the same sizes give the same keys and values.
import { createHash } from 'node:crypto';
import { keys } from '../../src/datastore/keys';
import type { EndpointValue, ProfileRulesValue } from '../../src/datastore/schemas';

export interface ClusterSize {
  hosts: number;
  perHost: number;
  profiles: number;
}

export const profileName = (p: number) => `prof${p}`;
export const remoteHost = (h: number) => `sim${h}`;

/** Profile p's rules: its members talk to each other; a web port from a client net; some denies; ping. */
export function profileRules(p: number, port = 8080): ProfileRulesValue {
  const name = profileName(p);
  return {
    inbound_rules: [
      { action: 'allow', src_tag: name },
      { action: 'allow', protocol: 'tcp', dst_ports: [port, 443], src_net: '192.0.2.0/24' },
      { action: 'deny', protocol: 'udp', dst_ports: ['1000:2000'] },
      { action: 'allow', protocol: 'icmp', icmp_type: 8 },
    ],
    outbound_rules: [{ action: 'deny', dst_net: '10.99.0.0/16' }, { action: 'allow' }],
  } as ProfileRulesValue;
}

function hash(s: string): string {
  return createHash('sha1').update(s).digest('hex');
}

/** The profiles of endpoint i: one to three, spread over all of them. */
export function profilesOf(i: number, profiles: number): string[] {
  const h = parseInt(hash(`p${i}`).slice(0, 8), 16);
  const n = 1 + (h % 3);
  const out = new Set<string>();
  for (let k = 0; k < n; k++) out.add(profileName((h >>> (4 + 5 * k)) % profiles));
  return [...out];
}

/** Address of endpoint j on simulated host h: 10.90.0.0/15, a /26-ish run per host. */
export function remoteAddress(h: number, j: number): string {
  const n = h * 256 + j + 1;
  return `10.${90 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

export function endpointValue(ifHex: string, address: string, profiles: string[]): EndpointValue {
  return {
    state: 'active',
    name: `cali${ifHex.slice(0, 11)}`,
    mac: 'ee:ee:ee:ee:ee:ee',
    'container:if_name': 'eth0',
    profile_ids: profiles,
    ipv4_nets: [`${address}/32`],
    ipv6_nets: [],
  } as EndpointValue;
}

/** Every key and value of the simulated cluster (profiles, hosts, endpoints), in write order. */
export function* clusterKvs(size: ClusterSize): Generator<[string, string]> {
  for (let p = 0; p < size.profiles; p++) {
    yield [keys.profileTags(profileName(p)), JSON.stringify([profileName(p)])];
    yield [keys.profileRules(profileName(p)), JSON.stringify(profileRules(p))];
  }
  let i = 0;
  for (let h = 0; h < size.hosts; h++) {
    const host = remoteHost(h);
    yield [keys.hostBirdIp(host), `198.19.${h >> 8}.${(h & 255) + 1}`];
    for (let j = 0; j < size.perHost; j++, i++) {
      const id = hash(`${host}/${j}`);
      const ep = hash(`ep/${host}/${j}`);
      yield [keys.endpoint(host, id, ep), JSON.stringify(endpointValue(ep, remoteAddress(h, j), profilesOf(i, size.profiles)))];
    }
  }
}

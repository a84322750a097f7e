// `birdc show protocols [all]` as data: the BGP sessions of this host with
// their peer, kind (from the protocol names the renderer gives), state and
// since. Pure: the caller runs birdc.
import { isAddress, canonicalAddress, parseAddress } from '../address/cidr';
import type { Family } from '../address/cidr';
import { parseProtocolName } from './render';
import type { SessionType } from './types';

/** One row of `show protocols`, with the details `show protocols all` adds. */
export interface BirdProtocol {
  name: string;
  /** BGP, Kernel, Device, Direct, Static... */
  proto: string;
  table: string;
  /** up, start, down... */
  state: string;
  since: string;
  /** The Info column (for BGP: Established, Active, Connect, Passive, Idle... and any error). */
  info: string;
  /** From `all`: BGP state, neighbor, AS numbers, last error. */
  bgpState?: string;
  neighbor?: string;
  neighborAs?: string;
  localAs?: string;
  lastError?: string;
}

export interface BgpSession {
  /** BIRD protocol name (Mesh_10_0_0_2). */
  name: string;
  peer: string;
  family: Family;
  type: SessionType;
  /** BIRD's protocol state: up, start, down. */
  state: string;
  since: string;
  /** BGP state and detail as BIRD reports it: Established, Active, "Connect  Socket: Connection refused"... */
  info: string;
  established: boolean;
  neighborAs?: string;
  lastError?: string;
}

const HEADER_RE = /^Name\s+Proto\s+Table\s+State\s+Since\s+Info\s*$/;

// Name Proto Table State Since Info; Since is "time" or "date time" (older than a day).
const ROW_RE = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d{4}-\d{2}-\d{2} \S+|\S+)\s*(.*?)\s*$/;

function parseRow(line: string): BirdProtocol | undefined {
  const m = ROW_RE.exec(line);
  if (!m) return undefined;
  const [, name, proto, table, state, since, info] = m as unknown as string[];
  return { name: name!, proto: proto!, table: table!, state: state!, since: since!, info: info! };
}

/**
 * Parses `birdc show protocols` or `show protocols all` output (with or
 * without birdc's "BIRD x.y ready." banner and numeric reply codes).
 */
export function parseBirdProtocols(text: string): BirdProtocol[] {
  const out: BirdProtocol[] = [];
  let cur: BirdProtocol | undefined;
  for (const raw of text.split('\n')) {
    // birdc -v style numeric codes ("1002-...") and plain banners.
    const line = raw.replace(/^\d{4}[- ]/, '');
    if (!line.trim() || /^BIRD \S+ ready\.$/.test(line.trim()) || HEADER_RE.test(line)) continue;
    if (!/^\s/.test(line)) {
      cur = parseRow(line);
      if (cur) out.push(cur);
      continue;
    }
    if (!cur) continue;
    const m = /^\s+([A-Za-z][A-Za-z ]*?):\s*(.*)$/.exec(line);
    if (!m) continue;
    const [, key, value] = m as unknown as [string, string, string];
    if (key === 'BGP state') cur.bgpState = value.trim();
    else if (key === 'Neighbor address') cur.neighbor = value.trim();
    else if (key === 'Neighbor AS') cur.neighborAs = value.trim();
    else if (key === 'Local AS') cur.localAs = value.trim();
    else if (key === 'Last error') cur.lastError = value.trim();
  }
  return out;
}

/** The BGP sessions we rendered (Mesh_/Rr_/Global_/Node_ protocols), IPv4 first, then by peer. */
export function bgpSessions(protocols: BirdProtocol[]): BgpSession[] {
  const out: BgpSession[] = [];
  for (const p of protocols) {
    if (p.proto !== 'BGP') continue;
    const named = parseProtocolName(p.name);
    if (!named) continue;
    const peer = p.neighbor && isAddress(p.neighbor) ? canonicalAddress(p.neighbor) : named.ip;
    const bgpState = p.bgpState ?? p.info.split(/\s+/)[0] ?? '';
    out.push({
      name: p.name,
      peer,
      family: parseAddress(peer).family,
      type: named.type,
      state: p.state,
      since: p.since,
      info: p.info,
      established: bgpState === 'Established',
      ...(p.neighborAs ? { neighborAs: p.neighborAs } : {}),
      ...(p.lastError ? { lastError: p.lastError } : {}),
    });
  }
  const key = (s: BgpSession) => parseAddress(s.peer);
  return out.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    return x.family - y.family || (x.value < y.value ? -1 : x.value > y.value ? 1 : 0);
  });
}

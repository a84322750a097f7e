// Workload endpoints: /calico/v1/host/<h>/workload/docker/<cid>/endpoint/<epid>,
// the 2015 endpoint JSON. Felix on every host reads them; the container
// networking writes them.
import { backoff, CAS_RETRIES, Codec, Datastore, Versioned } from './datastore';
import { DatastoreError } from './errors';
import { checkId, keys, parseEndpointKey } from './keys';
import { EndpointValue, fastEndpointValue } from './schemas';

/** Endpoint records: the schema, with its fast path for the common shape (a cluster's endpoints are read at once). */
export const endpointCodec: Codec<EndpointValue> = { schema: EndpointValue, fast: fastEndpointValue };

export interface EndpointId {
  host: string;
  containerId: string;
  endpointId: string;
}

/** An endpoint: where it lives (from the key) plus the stored 2015 JSON. */
export interface Endpoint extends EndpointId, Omit<EndpointValue, never> {}

export function endpointValue(ep: Endpoint): EndpointValue {
  const v: EndpointValue = {
    state: ep.state,
    name: ep.name,
    mac: ep.mac,
    'container:if_name': ep['container:if_name'],
    profile_ids: ep.profile_ids,
    ipv4_nets: ep.ipv4_nets,
    ipv6_nets: ep.ipv6_nets,
  };
  if (ep.ipv4_gateway !== undefined) v.ipv4_gateway = ep.ipv4_gateway;
  if (ep.ipv6_gateway !== undefined) v.ipv6_gateway = ep.ipv6_gateway;
  return v;
}

/** The endpoint stored at `id`'s key with value `v`. */
export function endpointFromValue(id: EndpointId, v: EndpointValue): Endpoint {
  return { host: id.host, containerId: id.containerId, endpointId: id.endpointId, ...v };
}

/**
 * Every write of an endpoint record is a compare-and-swap on the mod
 * revisions of what it read: a write that lost a race reads again and
 * re-plans, it never overwrites. The record's profiles are the operator's
 * once it exists (`calicoctl profile P member add|remove`): the node's own
 * writes (Join after a restart, a sweep, a stop) keep the profiles they find.
 */
export class EndpointStore {
  constructor(private readonly ds: Datastore) {}

  private static key(id: EndpointId): string {
    checkId('host name', id.host);
    checkId('container id', id.containerId);
    checkId('endpoint id', id.endpointId);
    return keys.endpoint(id.host, id.containerId, id.endpointId);
  }

  private validated(key: string, ep: Endpoint): EndpointValue {
    const value = endpointValue(ep);
    this.ds.decode(key, JSON.stringify(value), endpointCodec);
    return value;
  }

  /**
   * Writes the endpoint as the node sees it and deletes every other record of
   * the same container on the same host, in one transaction guarded by the
   * mod revision of every record it read: a restarted container's new record
   * (new endpoint id, same address) never coexists with the old. When the
   * container already has a record, its profiles are kept (the one on this
   * endpoint id first, else the newest). Returns what was written.
   */
  async record(ep: Endpoint): Promise<Endpoint> {
    const key = EndpointStore.key(ep);
    this.validated(key, ep);
    const dir = keys.containerEndpointsDir(ep.host, ep.containerId);
    for (let attempt = 0; attempt < CAS_RETRIES; attempt++) {
      const found = await this.ds.list(dir, endpointCodec);
      const next: Endpoint = { ...ep, profile_ids: keptProfiles(key, found) ?? ep.profile_ids };
      const value = this.validated(key, next);
      const compares = found.map((f) => ({ key: f.key, modRevision: f.modRevision }));
      if (!found.some((f) => f.key === key)) compares.push({ key, modRevision: '0' });
      const others = found.map((f) => f.key).filter((k) => k !== key);
      const r = await this.ds.cas(`writing endpoint ${key}`, compares, [{ key, value }], others);
      if (r.succeeded) return next;
      await backoff(attempt);
    }
    throw new DatastoreError('CONFLICT', `writing endpoint ${key}: still conflicting after ${CAS_RETRIES} attempts`, key);
  }

  /** Same as record(): kept for callers that create records (tests, tools). */
  put(ep: Endpoint): Promise<Endpoint> {
    return this.record(ep);
  }

  /**
   * The container stopped (Docker deleted its endpoint): its record stays,
   * inactive, with its profiles, so the next start keeps them. Revision-checked.
   * False when there is no such record.
   */
  async deactivate(id: EndpointId): Promise<boolean> {
    const key = EndpointStore.key(id);
    let found = false;
    await this.ds.update(key, endpointCodec, (cur) => {
      found = cur !== undefined;
      return cur && cur.state !== 'inactive' ? { ...cur, state: 'inactive' as const } : undefined;
    });
    return found;
  }

  /**
   * Sets the profiles of every record of the container on the host (the
   * operator's `profile P member add|remove`): each a compare-and-swap on the
   * record read, retried on fresh data. Returns the records as written.
   */
  async setProfiles(host: string, containerId: string, fn: (ids: string[]) => string[]): Promise<Endpoint[]> {
    checkId('host name', host);
    checkId('container id', containerId);
    const out: Endpoint[] = [];
    for (const f of await this.ds.list(keys.containerEndpointsDir(host, containerId), endpointCodec)) {
      const id = parseEndpointKey(f.key);
      if (!id) continue;
      const v = await this.ds.update(f.key, endpointCodec, (cur) => (cur ? { ...cur, profile_ids: fn(cur.profile_ids) } : undefined));
      if (v) out.push({ ...id, ...v });
    }
    return out;
  }

  async get(id: EndpointId): Promise<Endpoint | undefined> {
    const v = await this.ds.get(EndpointStore.key(id), endpointCodec);
    return v ? { ...id, ...v.value } : undefined;
  }

  /** The record goes (its container is gone). Idempotent: false when it was already gone. */
  async delete(id: EndpointId): Promise<boolean> {
    return this.ds.delete(EndpointStore.key(id));
  }

  /** Removes every endpoint of a container on a host; returns how many. */
  async deleteContainer(host: string, containerId: string): Promise<number> {
    checkId('host name', host);
    checkId('container id', containerId);
    return this.ds.deletePrefix(keys.containerEndpointsDir(host, containerId));
  }

  /** Endpoints of one host, or of every host. Invalid values are reported and skipped. */
  async list(host?: string): Promise<Endpoint[]> {
    if (host) checkId('host name', host);
    const prefix = host ? keys.hostWorkloadsDir(host) : keys.hostsDir();
    const vs = await this.ds.list(prefix, endpointCodec, (k) => parseEndpointKey(k) !== undefined);
    return vs.map((v) => ({ ...parseEndpointKey(v.key)!, ...v.value }));
  }

  /** Endpoints of one container wherever it runs (a container id is unique cluster-wide). */
  async listForContainer(containerId: string): Promise<Endpoint[]> {
    return (await this.list()).filter((e) => e.containerId === containerId);
  }
}

/** The profiles a container's existing records hold: the record at `key` first, else the newest. */
export function keptProfiles(key: string, found: Pick<Versioned<EndpointValue>, 'key' | 'value' | 'modRevision'>[]): string[] | undefined {
  const same = found.find((f) => f.key === key);
  if (same) return same.value.profile_ids;
  const newest = [...found].sort((a, b) => (BigInt(b.modRevision) > BigInt(a.modRevision) ? 1 : -1))[0];
  return newest?.value.profile_ids;
}

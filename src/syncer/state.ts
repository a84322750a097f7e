// The syncer's model of the served keys: raw key changes in, typed
// snapshots out. Pure (no etcd): the snapshot read and the watch feed it the
// same KeyChange batches. Published maps are never mutated: each is a
// LayeredMap, whose next version costs what a batch changed (not the map's
// size), so a consumer may keep a snapshot as long as it likes and an update
// among 10,000 endpoints copies none of them.
import type { IKeyValue } from 'etcd3/lib/rpc';
import { Codec, json } from '../datastore/datastore';
import { Endpoint, endpointCodec, endpointFromValue } from '../datastore/endpoint-store';
import { Host, HostLeaf, hostLeafCodec, withHostLeaf } from '../datastore/host-store';
import { parseEndpointKey, parseHostLeafKey, parsePoolKey, parseProfileKey, ROOT } from '../datastore/keys';
import { Pool, poolFromValue } from '../datastore/pool-store';
import { defaultProfile, Profile, profileRulesCodec, profileTagsCodec } from '../datastore/profile-store';
import { PoolValue, ProfileRulesValue, ProfileTagsValue } from '../datastore/schemas';
import { LayeredMap, LayeredMapDraft } from './layered-map';
import type { DatastoreSnapshot, SyncedKind } from './types';

/** Everything the syncer serves: one range read, one watch. Block IPAM (/calico/ipam/v2) is not under it. */
export const SERVED_PREFIX = `${ROOT}/`;

/** One key's new state: `kv` absent means deleted. */
export interface KeyChange {
  key: string;
  kv?: IKeyValue;
}

/** Decodes a stored value; undefined when it fails its schema (the decoder reports it, naming the key). */
export type DecodeKv = <T>(kv: IKeyValue, codec: Codec<T>) => T | undefined;

export interface BatchResult {
  changed: Set<SyncedKind>;
  /** Every key the batch touched, once each, in the order first seen. */
  keys: string[];
}

/** The kind a key belongs to, for `changed` (raw keys included). */
export function kindOf(key: string): SyncedKind {
  if (parseEndpointKey(key)) return 'endpoints';
  if (key.startsWith(`${ROOT}/host/`)) return 'hosts';
  if (key.startsWith(`${ROOT}/policy/`)) return 'profiles';
  if (key.startsWith(`${ROOT}/ipam/`)) return 'pools';
  return 'config';
}

interface HostLeaves {
  bird_ip?: string;
  bird6_ip?: string;
  bgp_as?: string;
}

interface ProfileLeaves {
  tags?: ProfileTagsValue;
  rules?: ProfileRulesValue;
}

interface Values {
  pools: Pool;
  hosts: Host;
  endpoints: Endpoint;
  profiles: Profile;
  raw: string;
}
type Maps = { [N in keyof Values]: LayeredMap<string, Values[N]> };
type Drafts = { [N in keyof Values]?: LayeredMapDraft<string, Values[N]> };

const poolCodec = json(PoolValue);
const HOST_LEAVES: HostLeaf[] = ['bird_ip', 'bird6_ip', 'bgp_as'];

export class SyncState {
  private maps: Maps = {
    pools: LayeredMap.empty(),
    hosts: LayeredMap.empty(),
    endpoints: LayeredMap.empty(),
    profiles: LayeredMap.empty(),
    raw: LayeredMap.empty(),
  };
  // Internal (never handed out): the parts typed objects are assembled from.
  private readonly hostLeaves = new Map<string, HostLeaves>();
  private readonly profileLeaves = new Map<string, ProfileLeaves>();
  /** Pool key -> the CIDR it is published under (the value's canonical CIDR). */
  private readonly poolCidrs = new Map<string, string>();
  private published: DatastoreSnapshot | undefined;
  /** Drafts of the maps the current batch writes. */
  private drafts: Drafts = {};

  private constructor(
    private readonly decode: DecodeKv,
    private revision: string,
  ) {}

  /** The state of a full read (every kv under SERVED_PREFIX at `revision`). */
  static fromKvs(decode: DecodeKv, kvs: IKeyValue[], revision: string): SyncState {
    const b = SyncState.builder(decode);
    b.add(kvs);
    return b.done(revision);
  }

  /** The state of a full read handed over page by page (Datastore.rangePrefixPages): add() each, then done(). */
  static builder(decode: DecodeKv): { add(kvs: readonly IKeyValue[]): void; done(revision: string): SyncState } {
    const s = new SyncState(decode, '0');
    let finished = false;
    return {
      add(kvs) {
        if (finished) throw new Error('SyncState builder: add() after done()');
        for (const kv of kvs) {
          const key = kv.key.toString();
          if (key.startsWith(SERVED_PREFIX)) s.applyOne({ key, kv });
        }
      },
      done(revision) {
        finished = true;
        s.commit(revision);
        return s;
      },
    };
  }

  /** Applies one batch (in revision order) and moves to `revision`. */
  apply(changes: readonly KeyChange[], revision: string): BatchResult {
    this.drafts = {};
    const changed = new Set<SyncedKind>();
    const seen = new Set<string>();
    const keys: string[] = [];
    for (const c of changes) {
      if (!c.key.startsWith(SERVED_PREFIX)) continue;
      this.applyOne(c);
      changed.add(kindOf(c.key));
      if (!seen.has(c.key)) {
        seen.add(c.key);
        keys.push(c.key);
      }
    }
    this.commit(revision);
    return { changed, keys };
  }

  /** Publishes the drafts written since the last commit as the maps at `revision`. */
  private commit(revision: string): void {
    const next = { ...this.maps };
    for (const name of Object.keys(this.drafts) as (keyof Values)[]) (next as Record<string, unknown>)[name] = this.drafts[name]!.done();
    this.maps = next;
    this.drafts = {};
    this.revision = revision;
    this.published = undefined;
  }

  /** The current snapshot; the same object until the next apply. */
  snapshot(): DatastoreSnapshot {
    this.published ??= Object.freeze({
      revision: this.revision,
      ...this.maps,
    });
    return this.published;
  }

  private applyOne(c: KeyChange): void {
    const ep = parseEndpointKey(c.key);
    if (ep) {
      const v = c.kv && this.decode(c.kv, endpointCodec);
      const m = this.writable('endpoints');
      if (v) m.set(c.key, endpointFromValue(ep, v));
      else m.delete(c.key);
      return;
    }
    const hl = parseHostLeafKey(c.key);
    if (hl) return this.applyHostLeaf(hl.host, hl.leaf, c.kv);
    const pr = parseProfileKey(c.key);
    if (pr) return this.applyProfileLeaf(pr.name, pr.leaf, c.kv);
    const pk = parsePoolKey(c.key);
    if (pk) return this.applyPool(c.key, pk.family, c.kv);
    const m = this.writable('raw');
    if (c.kv) m.set(c.key, c.kv.value.toString());
    else m.delete(c.key);
  }

  private applyHostLeaf(host: string, leaf: HostLeaf, kv: IKeyValue | undefined): void {
    const leaves: HostLeaves = { ...this.hostLeaves.get(host) };
    const v = kv && this.decode(kv, hostLeafCodec(leaf));
    if (v !== undefined) leaves[leaf] = v;
    else delete leaves[leaf];
    if (HOST_LEAVES.some((l) => leaves[l] !== undefined)) this.hostLeaves.set(host, leaves);
    else this.hostLeaves.delete(host);
    const m = this.writable('hosts');
    // Like HostStore.list: a host is registered once it has a bird_ip.
    if (leaves.bird_ip === undefined) {
      m.delete(host);
      return;
    }
    let h: Host = { host };
    for (const l of HOST_LEAVES) if (leaves[l] !== undefined) h = withHostLeaf(h, l, leaves[l]!);
    m.set(host, h);
  }

  private applyProfileLeaf(name: string, leaf: 'tags' | 'rules', kv: IKeyValue | undefined): void {
    const leaves: ProfileLeaves = { ...this.profileLeaves.get(name) };
    if (leaf === 'tags') {
      const v = kv && this.decode(kv, profileTagsCodec);
      if (v) leaves.tags = v;
      else delete leaves.tags;
    } else {
      const v = kv && this.decode(kv, profileRulesCodec);
      if (v) leaves.rules = v;
      else delete leaves.rules;
    }
    const m = this.writable('profiles');
    if (!leaves.tags && !leaves.rules) {
      this.profileLeaves.delete(name);
      m.delete(name);
      return;
    }
    this.profileLeaves.set(name, leaves);
    // A profile half written (tags before rules, as calicoctl writes them)
    // gets the default for the missing half.
    const d = defaultProfile(name);
    m.set(name, { name, tags: leaves.tags ?? d.tags, rules: leaves.rules ?? d.rules });
  }

  private applyPool(key: string, family: 4 | 6, kv: IKeyValue | undefined): void {
    const v = kv && this.decode(kv, poolCodec);
    const m = this.writable('pools');
    const old = this.poolCidrs.get(key);
    if (old !== undefined) {
      m.delete(old);
      this.poolCidrs.delete(key);
    }
    if (!v) return;
    const pool = poolFromValue(family, v);
    m.set(pool.cidr, pool);
    this.poolCidrs.set(key, pool.cidr);
  }

  /** The draft of the map `name` for the current batch (made at its first write). */
  private writable<N extends keyof Values>(name: N): LayeredMapDraft<string, Values[N]> {
    const d = (this.drafts[name] ??= this.maps[name].edit() as Drafts[N]);
    return d!;
  }
}

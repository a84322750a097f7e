// The datastore's layout version (/calico/v1/config/LayoutVersion): which
// key layout the data in etcd follows. The first node to start writes the
// version it knows; a node that finds a newer one refuses to start rather
// than read or write keys it does not understand.
import type { Datastore } from './datastore';
import { keys } from './keys';

/** The layout this code reads and writes (docs/datamodel.md). Raise it with any incompatible key change. */
export const LAYOUT_VERSION = 1;

export type LayoutVerdict =
  | { action: 'write'; version: number }
  | { action: 'ok'; version: number }
  | { action: 'refuse'; message: string };

/** Pure: what a node that knows `known` does with the stored value (undefined: no key yet). */
export function layoutVerdict(stored: string | undefined, known: number = LAYOUT_VERSION): LayoutVerdict {
  if (stored === undefined) return { action: 'write', version: known };
  const v = /^\s*(\d+)\s*$/.exec(stored);
  if (!v) return { action: 'refuse', message: `${keys.layoutVersion()} holds "${stored}", not a layout version (a whole number); this calicoctl knows layout ${known}` };
  const version = Number(v[1]);
  if (version > known) {
    return {
      action: 'refuse',
      message: `the datastore has layout version ${version}, newer than this calicoctl knows (${known}): a newer calicoctl has written it. Upgrade calicoctl on this host to the version the other hosts run, then start the node`,
    };
  }
  return { action: 'ok', version };
}

export class LayoutStore {
  constructor(private readonly ds: Datastore) {}

  /** The stored value as text; undefined when no node has written it yet. */
  async read(): Promise<string | undefined> {
    return (await this.ds.getRaw([keys.layoutVersion()])).get(keys.layoutVersion())?.raw;
  }

  /**
   * Writes this code's layout version when the key is absent (compare-and-swap
   * on "absent": two first nodes write it once) and returns the verdict on
   * what is stored. Never lowers or raises an existing version.
   */
  async ensure(known: number = LAYOUT_VERSION): Promise<LayoutVerdict> {
    const key = keys.layoutVersion();
    for (;;) {
      const cur = (await this.ds.getRaw([key])).get(key)!;
      const verdict = layoutVerdict(cur.raw, known);
      if (verdict.action !== 'write') return verdict;
      const r = await this.ds.cas(`writing ${key}`, [{ key, modRevision: '0' }], [{ key, value: String(known), text: true }]);
      if (r.succeeded) return verdict;
    }
  }
}

// Which live node process holds a host name: /calico/v1/host/<h>/node,
// attached to that node's etcd lease, so it disappears when the node dies
// and a second node on the same name can be refused while the first lives.
import { Datastore, json } from './datastore';
import { DatastoreError } from './errors';
import { checkId, keys } from './keys';
import { HostNodeValue } from './schemas';

export type ClaimResult = { claimed: true } | { claimed: false; holder: HostNodeValue };

export class NodeIdentityStore {
  constructor(private readonly ds: Datastore) {}

  /**
   * Takes the host name for `me` under `leaseId` unless another live node
   * (another id) holds it. The same id taking it again (a node restarted
   * from the same state directory before its old lease ran out) succeeds.
   */
  async claim(host: string, me: HostNodeValue, leaseId: string): Promise<ClaimResult> {
    checkId('host name', host);
    const key = keys.hostNode(host);
    const value = Buffer.from(JSON.stringify(me));
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.ds.get(key, json(HostNodeValue));
      if (cur && cur.value.id !== me.id) return { claimed: false, holder: cur.value };
      const r = await this.ds.call(`claiming host name ${host}`, () =>
        this.ds.client.kv.txn({
          compare: [{ key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: cur?.modRevision ?? '0' }],
          success: [{ request_put: { key: Buffer.from(key), value, lease: leaseId } }],
          failure: [],
        }),
      );
      if (r.succeeded) return { claimed: true };
    }
    throw new DatastoreError('CONFLICT', `claiming host name ${host}: still conflicting after 5 attempts`, key);
  }

  async holder(host: string): Promise<HostNodeValue | undefined> {
    return (await this.ds.get(keys.hostNode(host), json(HostNodeValue)))?.value;
  }

  /** Gives the name up if `id` still holds it. Idempotent. */
  async release(host: string, id: string): Promise<void> {
    const key = keys.hostNode(host);
    const cur = await this.ds.get(key, json(HostNodeValue));
    if (!cur || cur.value.id !== id) return;
    await this.ds.cas(`releasing host name ${host}`, [{ key, modRevision: cur.modRevision }], [], [key]);
  }
}

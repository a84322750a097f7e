// Profiles (security groups): /calico/v1/policy/profile/<name>/tags and
// /rules, the 2015 schema felix reads.
import { Codec, Datastore, json } from './datastore';
import { checkId, keys, parseProfileKey } from './keys';
import { ProfileRulesValue, ProfileTagsValue } from './schemas';

export interface Profile {
  name: string;
  tags: string[];
  rules: ProfileRulesValue;
}

/**
 * The profile a container without CALICO_PROFILE joins, and the one `profile
 * P member remove` returns an endpoint to: its members reach each other,
 * nothing else reaches them, all outbound is allowed (defaultProfile). The
 * ":" cannot appear in a name a user gives (2015: letters, digits, "_", ".",
 * "-"), so it never clashes with one.
 */
export const DEFAULT_PROFILE = 'calico:default';

/** The default of `calicoctl profile add X` (v0.4.6+): members talk to each other, all outbound allowed. */
export function defaultProfile(name: string): Profile {
  return {
    name,
    tags: [name],
    rules: { id: name, inbound_rules: [{ action: 'allow', src_tag: name }], outbound_rules: [{ action: 'allow' }] },
  };
}

/** How each profile leaf is stored (JSON). */
export const profileTagsCodec: Codec<ProfileTagsValue> = json(ProfileTagsValue);
export const profileRulesCodec: Codec<ProfileRulesValue> = json(ProfileRulesValue);

export class ProfileStore {
  constructor(private readonly ds: Datastore) {}

  /** Creates or replaces tags and rules (validated before writing). */
  async put(p: Profile): Promise<void> {
    checkId('profile name', p.name);
    const tags = ProfileTagsValue.parse(p.tags);
    const rules = ProfileRulesValue.parse(p.rules);
    await this.ds.put(keys.profileTags(p.name), tags);
    await this.ds.put(keys.profileRules(p.name), rules);
  }

  /** Creates the default profile unless one exists; true when created. */
  async ensure(name: string): Promise<boolean> {
    checkId('profile name', name);
    const d = defaultProfile(name);
    let created = false;
    await this.ds.update(keys.profileTags(name), json(ProfileTagsValue), (cur) => (cur ? undefined : d.tags));
    await this.ds.update(keys.profileRules(name), json(ProfileRulesValue), (cur) => {
      if (cur) return undefined;
      created = true;
      return d.rules;
    });
    return created;
  }

  /** Read-modify-write of the tags; `fn` returns the new list or undefined to leave them. False when the profile has no tags key. */
  async updateTags(name: string, fn: (tags: string[]) => string[] | undefined): Promise<boolean> {
    checkId('profile name', name);
    let found = false;
    await this.ds.update(keys.profileTags(name), json(ProfileTagsValue), (cur) => {
      found = cur !== undefined;
      if (!cur) return undefined;
      const next = fn(cur);
      return next === undefined ? undefined : ProfileTagsValue.parse(next);
    });
    return found;
  }

  /** Read-modify-write of the rules (validated before writing). False when the profile has no rules key. */
  async updateRules(name: string, fn: (rules: ProfileRulesValue) => ProfileRulesValue | undefined): Promise<boolean> {
    checkId('profile name', name);
    let found = false;
    await this.ds.update(keys.profileRules(name), json(ProfileRulesValue), (cur) => {
      found = cur !== undefined;
      if (!cur) return undefined;
      const next = fn(cur);
      return next === undefined ? undefined : ProfileRulesValue.parse(next);
    });
    return found;
  }

  async get(name: string): Promise<Profile | undefined> {
    checkId('profile name', name);
    return (await this.listUnder(keys.profileDir(name))).find((p) => p.name === name);
  }

  /** Profiles with both tags and rules valid; a profile with an invalid part is reported and skipped. */
  async list(): Promise<Profile[]> {
    return this.listUnder(keys.profilesDir());
  }

  private async listUnder(prefix: string): Promise<Profile[]> {
    const r = await this.ds.rangePrefix(prefix, false);
    const tags = new Map<string, string[]>();
    const rules = new Map<string, ProfileRulesValue>();
    for (const kv of r.kvs) {
      const k = parseProfileKey(kv.key.toString());
      if (!k) continue;
      if (k.leaf === 'tags') {
        const [v] = this.ds.decodeAll([kv], json(ProfileTagsValue));
        if (v) tags.set(k.name, v.value);
      } else {
        const [v] = this.ds.decodeAll([kv], json(ProfileRulesValue));
        if (v) rules.set(k.name, v.value);
      }
    }
    return [...rules.keys()]
      .filter((n) => tags.has(n))
      .sort()
      .map((name) => ({ name, tags: tags.get(name)!, rules: rules.get(name)! }));
  }

  /** Idempotent: false when it did not exist. */
  async delete(name: string): Promise<boolean> {
    checkId('profile name', name);
    return (await this.ds.deletePrefix(keys.profileDir(name))) > 0;
  }
}

import type { Command } from 'commander';
import {
  DEFAULT_PROFILE,
  describeIssues,
  Endpoint,
  EndpointStore,
  Profile,
  ProfileRulesInput,
  ProfileRulesValue,
  ProfileStore,
  RuleValue,
} from '../../datastore';
import type { Datastore } from '../../datastore';
import { withDatastore } from '../datastore';
import { CliError, UsageError } from '../errors';
import { addDockerOption, addHostnameOption, addStateDirOption, HOSTNAME_HELP, hostNameOf } from '../host';
import { addOutputOption, outputFormat, renderJson, renderTable } from '../output';
import { dockerClient } from '../../node/docker-client';
import { parseRuleSpec, RULE_GRAMMAR, ruleText, sameRule } from './profile-spec';

// `calicoctl profile ...` as 2015 spelled it: the profile name comes before
// the sub-command (`profile WEB tag add X`), so the words are dispatched here
// rather than by commander. Arguments are checked before etcd is contacted.

const USAGE = [
  'profile show [--detailed]',
  'profile add <PROFILE>',
  'profile remove <PROFILE> [--force]',
  'profile <PROFILE> tag show|(add|remove <TAG>)',
  'profile <PROFILE> rule show|json|update   (update reads the whole rules JSON from stdin)',
  'profile <PROFILE> rule add|remove (inbound|outbound) [--at=<N>] <spec>',
  'profile <PROFILE> member add|remove <CONTAINER>',
];

/** `profile … <topic> --help`: each sub-command's own usage, examples and, for rule, the grammar. */
const TOPICS: Record<string, { usage: string[]; text: string; examples: string[] }> = {
  show: { usage: ['profile show [--detailed] [-o json]'], text: 'List the profiles; --detailed: one row per member endpoint (host, container, endpoint, state).', examples: ['calicoctl profile show', 'calicoctl profile show --detailed -o json'] },
  add: { usage: ['profile add <PROFILE>'], text: 'Create a profile with the default rules: members reach each other, all outbound allowed. Exit 0 if it exists.', examples: ['calicoctl profile add PROF_GROUP1'] },
  remove: { usage: ['profile remove <PROFILE> [--force]'], text: 'Remove a profile; refused while endpoints name it, unless --force (their traffic is then dropped). Exit 0 if absent.', examples: ['calicoctl profile remove PROF_GROUP1'] },
  tag: { usage: ['profile <PROFILE> tag show [-o json]', 'profile <PROFILE> tag add <TAG>', 'profile <PROFILE> tag remove <TAG>'], text: "A profile's tags: rules elsewhere name them (allow from tag T) to mean every endpoint of a profile with that tag.", examples: ['calicoctl profile PROF_GROUP1 tag add WEB', 'calicoctl profile PROF_GROUP1 tag show'] },
  rule: {
    usage: ['profile <PROFILE> rule show [-o json]', 'profile <PROFILE> rule json', 'profile <PROFILE> rule update        (reads the whole rules JSON from stdin)', 'profile <PROFILE> rule add (inbound|outbound) [--at=<N>] <spec>', 'profile <PROFILE> rule remove (inbound|outbound) (--at=<N> | <spec>)'],
    text: `A profile's inbound and outbound rules.\n\n${RULE_GRAMMAR}`,
    examples: ['calicoctl profile PROF_GROUP1 rule update < prof_group1.json', 'calicoctl profile PROF_GROUP1 rule add inbound allow from tag PROF_GROUP1', 'calicoctl profile WEB rule add inbound --at=1 allow tcp to ports 80,443', 'calicoctl profile WEB rule add outbound allow tcp to ports 8125 10.0.0.10/32', 'calicoctl profile WEB rule remove inbound --at=2', 'calicoctl profile WEB rule show'],
  },
  member: { usage: ['profile <PROFILE> member add <CONTAINER>', 'profile <PROFILE> member remove <CONTAINER>'], text: "Make a container on this host a member of the profile (as in 2015, it replaces the endpoint's profile), or take it out. Options: --docker, --hostname, --state-dir.", examples: ['calicoctl profile PROF_GROUP1 member add group1-node1', 'calicoctl profile PROF_GROUP1 member remove group1-node1'] },
};

/** The help of one profile sub-command (`calicoctl profile WEB rule --help`); undefined: the whole profile help. */
export function profileTopicHelp(words: string[]): string | undefined {
  const [first, second] = words;
  const topic = first === 'show' || first === 'add' || first === 'remove' ? first : second;
  const t = topic === undefined ? undefined : TOPICS[topic];
  if (!t) return undefined;
  return `Usage:\n${t.usage.map((u) => `  calicoctl ${u}`).join('\n')}\n\n${t.text}\n\nExamples:\n${t.examples.map((e) => `  ${e}`).join('\n')}\n`;
}

const NAME_RE = /^[a-zA-Z0-9_.-]{1,40}$/;
const TAG_RE = /^[a-zA-Z0-9_.-]+$/;

interface Flags {
  detailed?: boolean;
  force?: boolean;
  at?: string;
  output?: string;
  docker: string;
}

function checkProfileName(name: string): void {
  if (name !== DEFAULT_PROFILE && !NAME_RE.test(name)) {
    throw new UsageError('Profile names must be <40 character long and can only contain numbers, letters, dots, dashes and underscores.');
  }
}

function checkTag(tag: string): void {
  if (!TAG_RE.test(tag)) throw new UsageError('Tag names can only contain numbers, letters, dots, dashes and underscores.');
}

function usageError(what: string): CliError {
  return new UsageError(`${what}\nUsage:\n${USAGE.map((u) => `  calicoctl ${u}`).join('\n')}`);
}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Endpoints naming the profile, sorted by host, container, endpoint. */
function membersOf(endpoints: Endpoint[], profile: string): Endpoint[] {
  return endpoints
    .filter((e) => e.profile_ids.includes(profile))
    .sort((a, b) => `${a.host}/${a.containerId}/${a.endpointId}`.localeCompare(`${b.host}/${b.containerId}/${b.endpointId}`));
}

async function mustGet(store: ProfileStore, name: string): Promise<Profile> {
  const p = await store.get(name);
  if (!p) throw new CliError(`Profile ${name} not found.`);
  return p;
}

async function show(flags: Flags, cmd: Command): Promise<void> {
  const format = outputFormat(flags.output);
  const { profiles, endpoints } = await withDatastore(cmd, async (ds) => ({
    profiles: await new ProfileStore(ds).list(),
    endpoints: flags.detailed ? await new EndpointStore(ds).list() : [],
  }));
  if (!flags.detailed) {
    if (format === 'json') return out(renderJson(profiles.map((p) => ({ name: p.name, tags: p.tags }))));
    return out(renderTable([{ header: 'Name' }], profiles.map((p) => [p.name])));
  }
  const rows = profiles.map((p) => ({
    name: p.name,
    tags: p.tags,
    members: membersOf(endpoints, p.name).map((e) => ({
      host: e.host,
      workloadType: 'docker',
      containerId: e.containerId,
      endpointId: e.endpointId,
      state: e.state,
    })),
  }));
  if (format === 'json') return out(renderJson(rows));
  out(
    renderTable(
      ['Name', 'Host', 'Workload Type', 'Workload ID', 'Endpoint ID', 'State'].map((header) => ({ header })),
      rows.flatMap((p) =>
        p.members.length
          ? p.members.map((m) => [p.name, m.host, m.workloadType, m.containerId.slice(0, 12), m.endpointId, m.state])
          : [[p.name, 'None', 'None', 'None', 'None', 'None']],
      ),
    ),
  );
}

async function add(name: string, cmd: Command): Promise<void> {
  checkProfileName(name);
  const created = await withDatastore(cmd, (ds) => new ProfileStore(ds).ensure(name));
  out(created ? `Created profile ${name}` : `Profile ${name} already exists.`);
}

async function remove(name: string, flags: Flags, cmd: Command): Promise<void> {
  checkProfileName(name);
  const message = await withDatastore(cmd, async (ds) => {
    const store = new ProfileStore(ds);
    if (!(await store.get(name))) return `Couldn't find profile with name ${name}`;
    const members = membersOf(await new EndpointStore(ds).list(), name);
    if (members.length && !flags.force) {
      const list = members.map((e) => `${e.host}/${e.containerId.slice(0, 12)}/${e.endpointId}`).join(', ');
      throw new CliError(
        `Profile ${name} is in use by ${members.length} endpoint${members.length === 1 ? '' : 's'} (host/container/endpoint: ${list}). ` +
          'Their traffic would be dropped; use --force to remove it anyway.',
      );
    }
    await store.delete(name);
    return members.length ? `Deleted profile ${name} (forced: ${members.length} endpoint${members.length === 1 ? ' still names' : 's still name'} it)` : `Deleted profile ${name}`;
  });
  out(message);
}

async function tag(name: string, words: string[], flags: Flags, cmd: Command): Promise<void> {
  const [op, t, ...rest] = words;
  if (rest.length || (op === 'show' ? t !== undefined : (op !== 'add' && op !== 'remove') || t === undefined)) {
    throw usageError(`Invalid tag command "${words.join(' ')}".`);
  }
  if (t !== undefined) checkTag(t);
  const format = outputFormat(flags.output);
  await withDatastore(cmd, async (ds) => {
    const store = new ProfileStore(ds);
    const p = await mustGet(store, name);
    if (op === 'show') {
      const tags = [...p.tags].sort();
      return out(format === 'json' ? renderJson(tags) : tags.join('\n'));
    }
    if (op === 'add') {
      await store.updateTags(name, (cur) => (cur.includes(t!) ? undefined : [...cur, t!]));
      return out(`Tag ${t} added to profile ${name}`);
    }
    let had = false;
    await store.updateTags(name, (cur) => {
      had = cur.includes(t!);
      return had ? cur.filter((x) => x !== t) : undefined;
    });
    // Exit 0: already so.
    out(had ? `Tag ${t} removed from profile ${name}` : `Tag ${t} is not on profile ${name}: nothing to remove.`);
  });
}

function rulesJson(name: string, r: ProfileRulesValue): string {
  return JSON.stringify({ id: name, inbound_rules: r.inbound_rules, outbound_rules: r.outbound_rules }, null, 2);
}

function rulesShow(r: ProfileRulesValue): string {
  const list = (rules: RuleValue[]) => rules.map((x, i) => ` ${String(i + 1).padStart(3)} ${ruleText(x)}`);
  return ['Inbound rules:', ...list(r.inbound_rules), 'Outbound rules:', ...list(r.outbound_rules)].join('\n');
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses and validates `rule update`'s stdin before etcd is contacted: every problem is listed with its key. */
export function parseRulesUpdate(name: string, text: string): ProfileRulesValue {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`Invalid rules JSON on stdin: ${(e as Error).message}. Nothing was changed.`);
  }
  const r = ProfileRulesInput.safeParse(raw);
  if (!r.success) {
    throw new UsageError(`Invalid rules JSON for profile ${name}; nothing was changed:\n${describeIssues(r.error).map((l) => `  ${l}`).join('\n')}`);
  }
  if (r.data.id !== name) {
    throw new UsageError(`Rules JSON "id"=${r.data.id === undefined ? '(missing)' : r.data.id} doesn't match profile name ${name}.`);
  }
  return r.data;
}

function position(at: string | undefined): number | undefined {
  if (at === undefined) return undefined;
  if (!/^-?\d+$/.test(at)) throw new UsageError(`Invalid --at "${at}": expected a rule position (1 is the first rule).`);
  return Number(at);
}

/** One rule checked the way felix will read it, before anything is written. */
function validRule(rule: RuleValue, direction: string): RuleValue {
  const r = RuleValue.safeParse(rule);
  if (!r.success) throw new UsageError(`Invalid rule; nothing was changed:\n${describeIssues(r.error).map((l) => `  ${direction}_rules: ${l}`).join('\n')}`);
  return r.data;
}

async function rule(name: string, words: string[], flags: Flags, cmd: Command): Promise<void> {
  const [op, dir, ...spec] = words;
  if (op === 'show' || op === 'json') {
    if (dir !== undefined) throw usageError(`Invalid rule command "${words.join(' ')}".`);
    // `rule show -o json` is `rule json`: the document `rule update` reads.
    const json = op === 'json' || outputFormat(flags.output) === 'json';
    const p = await withDatastore(cmd, (ds) => mustGet(new ProfileStore(ds), name));
    return out(json ? rulesJson(name, p.rules) : rulesShow(p.rules));
  }
  if (op === 'update') {
    if (dir !== undefined) throw usageError(`Invalid rule command "${words.join(' ')}".`);
    const rules = parseRulesUpdate(name, await readStdin());
    await withDatastore(cmd, async (ds) => {
      const store = new ProfileStore(ds);
      if (!(await store.updateRules(name, () => rules))) throw new CliError(`Profile ${name} not found.`);
    });
    return out(`Successfully updated rules on profile ${name}`);
  }
  if ((op !== 'add' && op !== 'remove') || (dir !== 'inbound' && dir !== 'outbound')) {
    throw usageError(`Invalid rule command "${words.join(' ')}".`);
  }
  const at = position(flags.at);
  const key = dir === 'inbound' ? 'inbound_rules' : 'outbound_rules';
  if (op === 'add') {
    const r = validRule(parseRuleSpec(spec), dir);
    let message = '';
    await withDatastore(cmd, async (ds) => {
      const found = await new ProfileStore(ds).updateRules(name, (cur) => {
        const list = cur[key];
        if (list.some((x) => sameRule(x, r))) {
          message = 'Rule already present, skipping.';
          return undefined;
        }
        const index = at === undefined ? list.length : at - 1;
        if (index < 0 || index > list.length) throw new CliError(`Position ${at} is out-of-range.`);
        message = `Rule added to the ${dir} rules of profile ${name} at position ${index + 1}: ${ruleText(r)}`;
        return { ...cur, [key]: [...list.slice(0, index), r, ...list.slice(index)] };
      });
      if (!found) throw new CliError(`Profile ${name} not found.`);
    });
    return out(message);
  }
  if (at === undefined && spec.length === 0) throw usageError('rule remove needs --at=<N> or the rule spec.');
  const wanted = spec.length ? validRule(parseRuleSpec(spec), dir) : undefined;
  let removed: RuleValue | undefined;
  let absent = false;
  await withDatastore(cmd, async (ds) => {
    const found = await new ProfileStore(ds).updateRules(name, (cur) => {
      const list = cur[key];
      let index: number;
      if (at !== undefined) {
        index = at - 1;
        if (index < 0 || index >= list.length) throw new CliError('Rule position out-of-range.');
        if (wanted && !sameRule(list[index]!, wanted)) throw new CliError(`Rule ${at} is "${ruleText(list[index]!)}", not "${ruleText(wanted)}".`);
      } else {
        index = list.findIndex((x) => sameRule(x, wanted!));
        if (index < 0) {
          absent = true;
          return undefined;
        }
      }
      removed = list[index];
      return { ...cur, [key]: list.filter((_, i) => i !== index) };
    });
    if (!found) throw new CliError(`Profile ${name} not found.`);
  });
  // Exit 0 when the rule is not there: already so.
  if (absent) return out(`Rule not found in the ${dir} rules of profile ${name}: nothing to remove (${ruleText(wanted!)}).`);
  out(`Rule removed from the ${dir} rules of profile ${name}: ${ruleText(removed!)}`);
}

/** The container's endpoints on this host: resolved through Docker (name or id), then found in the datastore. */
async function containerEndpoints(ds: Datastore, container: string, host: string): Promise<Endpoint[]> {
  const eps = (await new EndpointStore(ds).list(host)).filter((e) => e.containerId === container);
  return eps;
}

async function resolveContainer(container: string, flags: Flags): Promise<string> {
  try {
    const c = await dockerClient(flags.docker).getContainer(container).inspect();
    return c.Id;
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) throw new CliError(`Container ${container} was not found.`);
    throw new CliError(`Unable to run docker commands (${(e as Error).message}). Is the docker daemon running?`);
  }
}

function unknownToCalico(container: string, host: string): string {
  return (
    `Container ${container} is unknown to Calico: it has no endpoint on this host (host name ${host}; --hostname names another). ` +
    'Start it with -e CALICO_IP=auto through the Calico proxy, or use `calicoctl container add` to add it to the Calico network.'
  );
}

/**
 * Sets the profile list of every record of the container on this host: a
 * compare-and-swap per record, retried on fresh data (the node's own writes,
 * Join after a restart or a sweep, keep what this writes).
 */
async function setProfiles(ds: Datastore, eps: Endpoint[], fn: (ids: string[]) => string[]): Promise<void> {
  const store = new EndpointStore(ds);
  for (const c of new Set(eps.map((e) => `${e.host}\n${e.containerId}`))) {
    const [host, containerId] = c.split('\n');
    await store.setProfiles(host!, containerId!, fn);
  }
}

async function member(name: string, words: string[], flags: Flags, cmd: Command): Promise<void> {
  const [op, container, ...rest] = words;
  if ((op !== 'add' && op !== 'remove') || !container || rest.length) throw usageError(`Invalid member command "${words.join(' ')}".`);
  const id = await resolveContainer(container, flags);
  const host = hostNameOf(cmd).name;
  const lines = await withDatastore(cmd, async (ds) => {
    const eps = await containerEndpoints(ds, id, host);
    const store = new ProfileStore(ds);
    if (op === 'add') {
      if (!eps.length) throw new CliError(`Failed to add container to profile.\n${unknownToCalico(container, host)}`);
      const said: string[] = [];
      if (await store.ensure(name)) said.push(`Profile ${name} did not exist: created it with the default rules (members reach each other, all outbound allowed).`);
      // As in 2015, membership replaces the endpoint's profile.
      await setProfiles(ds, eps, () => [name]);
      return [...said, `Added ${container} to ${name}`];
    }
    if (!eps.length) throw new CliError(`Failed to remove container from profile.\n${unknownToCalico(container, host)}`);
    // Exit 0: already so.
    if (!eps.some((e) => e.profile_ids.includes(name))) return [`Container ${container} is not a member of profile ${name}: nothing to remove.`];
    await store.ensure(DEFAULT_PROFILE);
    await setProfiles(ds, eps, (ids) => {
      const left = ids.filter((x) => x !== name);
      return left.length ? left : [DEFAULT_PROFILE];
    });
    return [`Removed ${container} from ${name}`];
  });
  out(lines.join('\n'));
}

async function dispatch(words: string[], flags: Flags, cmd: Command): Promise<void> {
  const [first, second, ...rest] = words;
  if (first === 'show') {
    if (second !== undefined) throw usageError(`Unexpected "${second}" after profile show.`);
    return show(flags, cmd);
  }
  if (first === 'add' || first === 'remove') {
    if (second === undefined || rest.length) throw usageError(`profile ${first} takes one profile name.`);
    return first === 'add' ? add(second, cmd) : remove(second, flags, cmd);
  }
  if (first === undefined) throw usageError('Missing profile command.');
  checkProfileName(first);
  if (second === 'tag') return tag(first, rest, flags, cmd);
  if (second === 'rule') return rule(first, rest, flags, cmd);
  if (second === 'member') return member(first, rest, flags, cmd);
  throw usageError(`Unknown profile command "${words.join(' ')}".`);
}

export function registerProfile(program: Command): void {
  const profile = program
    .command('profile')
    .description('Manage security profiles: their tags, rules and member containers')
    .usage(`<command>\n\n${USAGE.map((u) => `  ${u}`).join('\n')}`)
    .argument('[words...]', 'the profile command (see usage)')
    .option('--detailed', 'profile show: list each profile\'s member endpoints')
    .option('--force', 'profile remove: remove it although endpoints still use it')
    .option('--at <N>', 'rule add|remove: the rule\'s position, 1 being the first')
  addDockerOption(profile, { help: 'member add|remove: where dockerd listens (the real daemon, not the proxy)' });
  addHostnameOption(profile, { help: `member add|remove: ${HOSTNAME_HELP}` });
  addStateDirOption(profile);
  addOutputOption(profile).action((words: string[], flags: Flags, cmd: Command) => dispatch(words, flags, cmd));
  profile.addHelpText('after', `\n${RULE_GRAMMAR}\n\nEach sub-command has its own help: calicoctl profile show --help, calicoctl profile P rule --help, ...\n`);
}

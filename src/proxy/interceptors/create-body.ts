// A container create body read as dockerd reads it (Go's encoding/json into
// moby 20.10's runconfig.ContainerConfigWrapper: *container.Config embedded,
// `HostConfig` (*container.HostConfig), `NetworkingConfig`, and a deprecated
// *container.HostConfig embedded, whose fields sit at the top level), and
// rewritten member by member onto the calico network: the members Calico owns
// are replaced by one canonical copy each, every other member goes on as the
// client wrote it (duplicates, nulls, numbers and all), so dockerd reads the
// rest exactly as it would have. Pure.
import { HANDLE_LABEL, PROFILES_LABEL, calicoNetworkName } from '../../names';
import { RequestRefused } from '../../endpoints/calico-env';
import { GoJsonError, fieldMembers, lastString, mergedObject, parseGoJson, type GoJson, type Member } from './go-json';
import { MAX_CREATE_DEPTH } from './calico-request';

type GoObject = Extract<GoJson, { kind: 'object' }>;

export interface CreateView {
  text: string;
  root: GoObject;
  /** Env as dockerd reads it (undefined: nil). */
  env?: string[];
  /** HostConfig.NetworkMode as dockerd's getHostConfig settles it. */
  networkMode?: string;
}

const refused = (why: string) => new RequestRefused(400, `container create body: ${why}`);

/**
 * Reads a create body. undefined: its first JSON value is not an object (Go
 * refuses it, or reads an empty config, which dockerd refuses). A body Go
 * could read and this reader cannot is refused (400), never passed on unread.
 */
export function readCreateBody(raw: Buffer): CreateView | undefined {
  const text = raw.toString('utf8');
  let root: GoJson;
  try {
    root = parseGoJson(text, MAX_CREATE_DEPTH).value;
  } catch (e) {
    if (e instanceof GoJsonError && /nested deeper/.test(e.message)) {
      throw new RequestRefused(400, `container create request is nested more than ${MAX_CREATE_DEPTH} levels deep: too deep to rewrite for CALICO_IP`);
    }
    throw refused((e as Error).message);
  }
  if (root.kind !== 'object') return undefined;
  try {
    const view: CreateView = { text, root, env: goEnv(fieldMembers(root, 'Env')) };
    // getHostConfig (runconfig/config_unix.go): the inner HostConfig when there is one, else the top-level fields.
    const inner = mergedObject(fieldMembers(root, 'HostConfig'), 'HostConfig');
    view.networkMode = inner
      ? lastString(inner.filter((m) => isField(m, 'NetworkMode')), 'HostConfig.NetworkMode')
      : lastString(fieldMembers(root, 'NetworkMode'), 'NetworkMode');
    return view;
  } catch (e) {
    if (e instanceof GoJsonError) throw refused(e.message);
    throw e;
  }
}

function isField(m: Member, field: string): boolean {
  return fieldMembers({ kind: 'object', start: 0, end: 0, members: [m] }, field).length === 1;
}

/**
 * Env ([]string) after each of its occurrences is decoded into the same
 * slice. Go (decode.go array) decodes an array into the slice's existing
 * elements and truncates: with strings only, the last array wins; `null`
 * clears it. A `null` ELEMENT leaves whatever the slice's backing array held
 * at that index, an earlier occurrence's value, by rules that changed between
 * Go versions (growth by 1.5x before Go 1.21, reflect.Value.Grow after):
 * refused when any occurrence names a CALICO_ variable, otherwise none of ours.
 */
function goEnv(occ: readonly Member[]): string[] | undefined {
  let env: string[] | undefined;
  let nullElement = false;
  let calico = false;
  for (const o of occ) {
    const v = o.value;
    if (v.kind === 'null') env = undefined;
    else if (v.kind === 'array') {
      env = [];
      for (const it of v.items) {
        if (it.kind === 'string') {
          env.push(it.value);
          if (it.value.startsWith('CALICO_')) calico = true;
        } else if (it.kind === 'null') nullElement = true;
        else throw new GoJsonError(`Env must hold strings, not ${it.kind}`);
      }
    } else throw new GoJsonError(`Env must be an array of strings, not ${v.kind}`);
  }
  if (nullElement && calico) throw new GoJsonError('Env holds a null next to CALICO_ variables: Docker reads that differently by version; send strings only');
  return env;
}

export interface Rewrite {
  handle: string;
  ipv4?: string; // concrete address reserved
  ipv6?: string;
  profiles: string[];
}

const q = JSON.stringify;

function objectText(view: CreateView, members: readonly Member[], extra: string[]): string {
  return `{${[...members.map((m) => view.text.slice(m.start, m.end)), ...extra].join(',')}}`;
}

/** What the rewrite keeps and merges, settled before anything is reserved (every type error Go would meet is thrown here). */
export interface RewritePlan {
  view: CreateView;
  kept: Member[];
  hostConfig: Member[];
  networking: Member[];
  labels: Member[];
  /** EndpointsConfig entries other than the carried ones, last value per key. */
  others: Member[];
  /** Endpoint settings carried to the calico endpoint (IPAMConfig apart). */
  carried: Member[];
  /** The carried IPAMConfig without its addresses. */
  ipam: Member[];
}

/**
 * Plans the rewrite: `HostConfig`, `NetworkingConfig` and `Labels` (under
 * whatever spelling and however often the client sent them) merged as Go
 * merges them; the endpoint settings the client gave for the network it
 * asked for (compose's aliases on <project>_default) carried to the calico
 * endpoint. Throws RequestRefused (400) where Go would meet a type error.
 */
export function planRewrite(view: CreateView): RewritePlan {
  const owned = ['HostConfig', 'NetworkingConfig', 'Labels'];
  try {
    const networking = mergedObject(fieldMembers(view.root, 'NetworkingConfig'), 'NetworkingConfig') ?? [];
    // EndpointsConfig is a map: keys exact, an entry's last value wins whole.
    const endpoints = mergedObject(networking.filter((m) => isField(m, 'EndpointsConfig')), 'EndpointsConfig') ?? [];
    const last = new Map<string, Member>();
    for (const m of endpoints) last.set(m.key, m);
    const carriedKeys = [...new Set([view.networkMode ?? '', 'default', 'bridge', calicoNetworkName()].filter(Boolean))];
    let carried: Member[] = [];
    for (const k of carriedKeys) {
      const m = last.get(k);
      if (m?.value.kind === 'object') carried = [...carried, ...m.value.members];
      else if (m && m.value.kind !== 'null') throw new GoJsonError(`EndpointsConfig.${k} must be an object`);
    }
    const ipam = (mergedObject(carried.filter((m) => isField(m, 'IPAMConfig')), 'IPAMConfig') ?? []).filter(
      (m) => !isField(m, 'IPv4Address') && !isField(m, 'IPv6Address'),
    );
    return {
      view,
      kept: view.root.members.filter((m) => !owned.some((f) => isField(m, f))),
      hostConfig: (mergedObject(fieldMembers(view.root, 'HostConfig'), 'HostConfig') ?? []).filter((m) => !isField(m, 'NetworkMode')),
      networking: networking.filter((m) => !isField(m, 'EndpointsConfig')),
      labels: (mergedObject(fieldMembers(view.root, 'Labels'), 'Labels') ?? []).filter((m) => m.key !== HANDLE_LABEL && m.key !== PROFILES_LABEL),
      others: [...last.values()].filter((m) => !carriedKeys.includes(m.key)),
      carried: carried.filter((m) => !isField(m, 'IPAMConfig')),
      ipam,
    };
  } catch (e) {
    if (e instanceof GoJsonError) throw refused(e.message);
    throw e;
  }
}

/**
 * The create body onto the calico network with the reserved addresses: one
 * member each for HostConfig, NetworkingConfig and Labels (what the plan
 * merged plus Calico's settings), every other member as the client wrote it.
 */
export function renderRewrite(p: RewritePlan, r: Rewrite): Buffer {
  const net = calicoNetworkName();
  const ours: string[] = [];
  if (r.ipv4) ours.push(`"IPv4Address":${q(r.ipv4)}`);
  if (r.ipv6) ours.push(`"IPv6Address":${q(r.ipv6)}`);
  const endpoint = objectText(p.view, p.carried, [`"IPAMConfig":${objectText(p.view, p.ipam, ours)}`]);
  const ownLabels = [`${q(HANDLE_LABEL)}:${q(r.handle)}`, ...(r.profiles.length ? [`${q(PROFILES_LABEL)}:${q(r.profiles.join(','))}`] : [])];
  const members = [
    ...p.kept.map((m) => p.view.text.slice(m.start, m.end)),
    `"HostConfig":${objectText(p.view, p.hostConfig, [`"NetworkMode":${q(net)}`])}`,
    `"NetworkingConfig":${objectText(p.view, p.networking, [`"EndpointsConfig":${objectText(p.view, p.others, [`${q(net)}:${endpoint}`])}`])}`,
    `"Labels":${objectText(p.view, p.labels, ownLabels)}`,
  ];
  return Buffer.from(`{${members.join(',')}}`);
}

/** planRewrite then renderRewrite. */
export function rewriteCreate(view: CreateView, r: Rewrite): Buffer {
  return renderRewrite(planRewrite(view), r);
}

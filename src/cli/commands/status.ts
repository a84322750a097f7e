import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execFile } from 'node:child_process';
import type { Command } from 'commander';
import { BIRDC_BIN } from '../../bgp/bird';
import { birdPaths } from '../../bgp/paths';
import { BgpSession, bgpSessions, parseBirdProtocols } from '../../bgp/status';
import { EndpointStore, HostStore } from '../../datastore';
import { DEFAULT_PLUGIN_DIR, DEFAULT_PLUGIN_NAME } from '../../names';
import { datastoreFor } from '../datastore';
import { addHostnameOption, hostNameOf } from '../host';
import { addOutputOption, outputFormat, renderJson, renderTable } from '../output';
import { nodeFiles, runningNodePid } from './node-detach';
import { DEFAULT_STATE_DIR } from './node';
import { readStatusFile } from '../../node/status-file';
import type { NodeHealth } from '../../metrics/health';
import type { PolicyStatus } from '../../policy/component';
import type { ApplierStats } from '../../dataplane/applier/iptables-applier';
import { isAlive } from '../../process/pids';
import type { TunnelStatus } from '../../tunnel/tunnel';
import { renderTunnelStatus } from '../../tunnel/status';

export interface NodeStatus {
  host: string;
  node: { running: boolean; pid?: number; pidFile: string };
  plugin: { name: string; socket: string; listening: boolean };
  etcd: { endpoints: string[]; reachable: boolean; error?: string };
  /** Undefined when etcd could not be read. */
  registered?: boolean;
  workloads?: number;
  endpoints?: number;
  policy?: PolicyStatusView;
  /** Every component up, or which is not (the node's status file; /healthz says the same). */
  health?: NodeHealth;
  /** The node's BIRD, asked over its control socket (<state dir>/bird/bird.ctl). */
  bgp?: BgpStatus;
  /** IP-in-IP: tunl0 and the routes through it (the node's status file). */
  tunnel?: TunnelStatus;
}

export interface BgpStatus {
  socket: string;
  /** BIRD answered on its socket. */
  running: boolean;
  error?: string;
  /** The latest rendered config, refused by `bird -p` (not loaded; the previous one runs). */
  configError?: string;
  sessions: BgpSession[];
}

/** `birdc show protocols all` on the node's socket, as sessions; never throws. */
export function readBgpStatus(stateDir: string, birdc = BIRDC_BIN): Promise<BgpStatus> {
  const paths = birdPaths(stateDir);
  let configError: string | undefined;
  try {
    configError = fs.readFileSync(paths.configError, 'utf8').trim() || undefined;
  } catch {
    /* no refused config */
  }
  const base = { socket: paths.socket, ...(configError ? { configError } : {}) };
  if (!fs.existsSync(paths.socket)) return Promise.resolve({ ...base, running: false, error: `no BIRD control socket at ${paths.socket}`, sessions: [] });
  return new Promise((resolve) => {
    execFile(birdc, ['-s', paths.socket, 'show', 'protocols', 'all'], { timeout: 3000 }, (err, stdout, stderr) => {
      if (err) return resolve({ ...base, running: false, error: `birdc -s ${paths.socket}: ${(stderr || stdout || err.message).trim()}`, sessions: [] });
      resolve({ ...base, running: true, sessions: bgpSessions(parseBirdProtocols(stdout)) });
    });
  });
}

/** The sessions of one family as a table (2015's "IPv4 BGP status" heading, then one row per peer). */
function sessionTable(family: 4 | 6, sessions: BgpSession[]): string {
  const of = sessions.filter((x) => x.family === family);
  const title = `IPv${family} BGP status\n`;
  if (!of.length) return `${title}No IPv${family} BGP peers.\n`;
  return (
    title +
    renderTable(
      ['Peer address', 'Peer type', 'State', 'Since', 'Info'].map((header) => ({ header })),
      of.map((x) => [x.peer, x.type, x.state, x.since, x.info + (x.lastError && !x.info.includes(x.lastError) ? ` (${x.lastError})` : '')]),
    )
  );
}

/** The BGP part of `calicoctl status`. */
export function renderBgpStatus(b: BgpStatus): string {
  const parts: string[] = [];
  if (b.configError) parts.push(`BIRD config refused: ${b.configError}\n`);
  if (!b.running) {
    parts.push(`BIRD is not running (${b.error})\n`);
    return parts.join('');
  }
  parts.push(`BIRD is running (socket ${b.socket})\n`, sessionTable(4, b.sessions), sessionTable(6, b.sessions));
  return parts.join('');
}

function socketListening(p: string): Promise<boolean> {
  if (!fs.existsSync(p)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = net.connect(p);
    const t = setTimeout(() => (s.destroy(), resolve(false)), 1000);
    s.once('connect', () => (clearTimeout(t), s.destroy(), resolve(true)));
    s.once('error', () => (clearTimeout(t), resolve(false)));
  });
}

/** Plain lines, one fact each, the first saying whether the node runs (as 2015's status did). */
export function renderStatus(s: NodeStatus): string {
  const lines = [
    s.node.running ? `calico node is running${s.node.pid ? ` (pid ${s.node.pid})` : ''}` : `calico node is not running (no live process in ${s.node.pidFile})`,
    `Docker plugin "${s.plugin.name}": ${s.plugin.listening ? 'listening on' : 'not listening on'} ${s.plugin.socket}`,
    s.etcd.reachable ? `etcd: reachable at ${s.etcd.endpoints.join(', ')}` : `etcd: NOT reachable at ${s.etcd.endpoints.join(', ')} (${s.etcd.error})`,
  ];
  if (s.registered !== undefined) {
    lines.push(
      `Host ${s.host}: ${s.registered ? 'registered' : 'not registered (start `calicoctl node --ip=<IP>`)'}; ` +
        `${s.workloads} workload${s.workloads === 1 ? '' : 's'}, ${s.endpoints} endpoint${s.endpoints === 1 ? '' : 's'}`,
    );
  }
  if (s.health) {
    const down = Object.entries(s.health.components).filter(([, v]) => v !== 'ok');
    lines.push(down.length ? `Components not up: ${down.map(([k, v]) => `${k} (${v})`).join(', ')}` : `Components: all ${Object.keys(s.health.components).length} up`);
  }
  lines.push(...renderPolicyStatus(s.policy));
  lines.push(...renderTunnelStatus(s.tunnel));
  return lines.join('\n') + '\n' + (s.bgp ? renderBgpStatus(s.bgp) : '');
}

/** status's exit codes, in its --help (docs/calicoctl.md says the same). */
export const STATUS_EXIT_HELP =
  '\nExit code: 0 when the node, its Docker plugin and etcd all answer; 1 when any of them does not (the output says which); 2 on a usage error.\n';

/** `calicoctl status`: is this host's node running, is its plugin serving, is etcd there; its BGP sessions. */
export function registerStatus(program: Command): void {
  const cmd = program
    .command('status')
    .description('Show whether the Calico node, its Docker plugin and etcd are up on this host')
    .option('--state-dir <DIR>', 'the node\'s state directory', DEFAULT_STATE_DIR)
    .option('--plugin-name <NAME>', 'the node\'s Docker plugin name', DEFAULT_PLUGIN_NAME)
    .addHelpText('after', STATUS_EXIT_HELP);
  addHostnameOption(cmd);
  addOutputOption(cmd).action(
    async (flags: { stateDir: string; pluginName: string; output?: string }, c: Command) => {
      const format = outputFormat(flags.output);
      const hostname = hostNameOf(c).name;
      const pid = runningNodePid(flags.stateDir);
      const socket = path.join(DEFAULT_PLUGIN_DIR, `${flags.pluginName}.sock`);
      const { ds, resolved: { endpoints } } = datastoreFor(c);
      const listening = await socketListening(socket);
      const s: NodeStatus = {
        host: hostname,
        // A foreground node has no pid file; its plugin socket answers for it.
        node: { running: pid !== undefined || listening, pid, pidFile: nodeFiles(flags.stateDir).pidFile },
        plugin: { name: flags.pluginName, socket, listening },
        etcd: { endpoints, reachable: false },
      };
      try {
        const host = await new HostStore(ds).get(hostname);
        const eps = await new EndpointStore(ds).list(hostname);
        s.etcd.reachable = true;
        s.registered = host !== undefined;
        s.endpoints = eps.length;
        s.workloads = new Set(eps.map((e) => e.containerId)).size;
      } catch (e) {
        s.etcd.error = (e as Error).message;
      } finally {
        ds.close();
      }
      s.policy = readPolicyStatus(flags.stateDir);
      s.health = readHealth(flags.stateDir);
      s.tunnel = readStatusFile(flags.stateDir)?.components.tunnel as TunnelStatus | undefined;
      s.bgp = await readBgpStatus(flags.stateDir);
      process.stdout.write(format === 'json' ? renderJson(s) : renderStatus(s));
      // Scripts can test the exit code: 0 only when everything answers.
      if (!s.node.running || !s.plugin.listening || !s.etcd.reachable) process.exitCode = 1;
    },
  );
}

// ---------- policy (the node's status file, written by src/node/status-file.ts) ----------

export interface PolicyStatusView {
  /** The status file was written by a node that has stopped since (or was killed). */
  stale: boolean;
  writtenAt: string;
  endpoints?: number;
  profiles?: number;
  /** The applier's last pass (all owners' state, policy among them). */
  lastApplyAt?: string;
  lastApplyMs?: number;
  lastError?: string;
}

/** What /healthz would say, from the running node's status file (absent when the node is not running). */
function readHealth(stateDir: string): NodeHealth | undefined {
  const f = readStatusFile(stateDir);
  return f?.running && f.health && isAlive(f.pid) ? f.health : undefined;
}

function readPolicyStatus(stateDir: string): PolicyStatusView | undefined {
  const f = readStatusFile(stateDir);
  const p = f?.components.policy as (PolicyStatus & Record<string, unknown>) | undefined;
  if (!f || !p) return undefined;
  const a = f.components['kernel-applier'] as Partial<ApplierStats> | undefined;
  const iso = (t?: number) => (t === undefined ? undefined : new Date(t).toISOString());
  const errors = [p.lastError, a?.lastError && `kernel applier: ${a.lastError}`].filter(Boolean);
  return {
    stale: !f.running || !isAlive(f.pid),
    writtenAt: new Date(f.writtenAt).toISOString(),
    endpoints: p.endpoints,
    profiles: p.profiles,
    lastApplyAt: iso(a?.lastPassAt),
    lastApplyMs: a?.lastPassMs === undefined ? undefined : Math.round(a.lastPassMs * 10) / 10,
    lastError: errors.length ? errors.join('; ') : undefined,
  };
}


function renderPolicyStatus(p: PolicyStatusView | undefined): string[] {
  if (!p) return [];
  return [
    `Policy${p.stale ? ` (as of ${p.writtenAt}; the node has stopped since)` : ''}: ${p.endpoints} endpoint${p.endpoints === 1 ? '' : 's'} programmed, ` +
      `${p.profiles} profile${p.profiles === 1 ? '' : 's'}; last apply ${p.lastApplyAt ?? 'never'}${p.lastApplyMs !== undefined ? ` (${p.lastApplyMs} ms)` : ''}; ` +
      `last error: ${p.lastError ?? 'none'}`,
  ];
}

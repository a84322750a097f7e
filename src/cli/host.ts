// One spelling per concept on every command: `--hostname` is this host's name
// in the datastore, `--docker` is where dockerd (the real daemon, not the
// proxy) listens. Older spellings (`node --name`, `node --docker-upstream`)
// stay as hidden aliases that warn once.
//
// Without --hostname a command takes the name of the node that runs on this
// machine (its status file in the state directory names it), else the
// machine's hostname; it says which it used when that differs from the
// machine's hostname, since records under the wrong host name look like
// "no endpoint on this host".
import os from 'node:os';
import { Option, type Command } from 'commander';
import { readStatusFile } from '../node/status-file';
import { DEFAULT_STATE_DIR } from '../node/state-dir';
import { UsageError } from './errors';

export const DEFAULT_DOCKER = 'unix:///var/run/docker.sock';

export const HOSTNAME_HELP =
  "this host's name in the datastore (default: the name of the node running on this machine, read from its state directory; else this machine's hostname)";

export interface HostName {
  name: string;
  /** flag: --hostname; node: the node's status file; machine: os.hostname(). */
  source: 'flag' | 'node' | 'machine';
  stateDir: string;
}

/** Adds `--hostname` (and, for commands that had it, the hidden old spelling `--name`). */
export function addHostnameOption(cmd: Command, opts: { oldName?: boolean; help?: string } = {}): Command {
  cmd.option('--hostname <NAME>', opts.help ?? HOSTNAME_HELP);
  if (opts.oldName) cmd.addOption(new Option('--name <NAME>', 'old spelling of --hostname').hideHelp());
  return cmd;
}

/** Adds `--state-dir` where a command had none: where to find this machine's node (its name, its embedded etcd member). */
export function addStateDirOption(cmd: Command): Command {
  return cmd.option('--state-dir <DIR>', "the node's state directory (its host name and embedded etcd member are found there)", DEFAULT_STATE_DIR);
}

/** Adds `--docker` (and, for commands that had it, the hidden old spelling `--docker-upstream`). */
export function addDockerOption(cmd: Command, opts: { oldUpstream?: boolean; help?: string } = {}): Command {
  cmd.option('--docker <ADDR>', opts.help ?? 'where dockerd listens: unix:///PATH or tcp://HOST:PORT (the real daemon, not the proxy; never taken from DOCKER_HOST)', DEFAULT_DOCKER);
  if (opts.oldUpstream) cmd.addOption(new Option('--docker-upstream <ADDR>', 'old spelling of --docker').hideHelp());
  return cmd;
}

const warned = new Set<string>();

/** Says once per process that an old spelling was used. */
export function warnOldSpelling(old: string, now: string, err: NodeJS.WritableStream = process.stderr): void {
  if (warned.has(old)) return;
  warned.add(old);
  err.write(`warning: ${old} is an old spelling of ${now}; use ${now}\n`);
}

/**
 * The canonical value of an option that has an old spelling (this command's
 * or a parent's: `node --name X bgppeer show`): the old one warns; both with
 * different values is a usage error.
 */
export function aliased(cmd: Command, now: string, old: string, nowKey: string, oldKey: string): string | undefined {
  const o = cmd.optsWithGlobals();
  const oldValue = o[oldKey] as string | undefined;
  const nowValue = o[nowKey] as string | undefined;
  if (oldValue === undefined) return nowValue;
  warnOldSpelling(old, now);
  if (nowValue !== undefined && cmd.getOptionValueSourceWithGlobals(nowKey) !== 'default' && nowValue !== oldValue) {
    throw new UsageError(`${now} ${nowValue} and ${old} ${oldValue} disagree: give ${now} alone.`);
  }
  return oldValue;
}

/** The --docker value of a command, --docker-upstream accepted (with a warning). */
export function dockerOf(cmd: Command): string {
  return aliased(cmd, '--docker', '--docker-upstream', 'docker', 'dockerUpstream') ?? DEFAULT_DOCKER;
}

/**
 * The pure part: which name, from the flag, the node's status file, the
 * machine. The status file's name counts only when the file was written on
 * this machine (its \`machine\` is this hostname): a lab host in its own UTS
 * namespace sharing the default state directory, or a file from before that
 * field, does not lend its name.
 */
export function chooseHostName(flag: string | undefined, node: { host?: string; machine?: string } | undefined, machine: string, stateDir: string): HostName {
  if (flag !== undefined && flag !== '') return { name: flag, source: 'flag', stateDir };
  if (node?.host && node.machine === machine) return { name: node.host, source: 'node', stateDir };
  return { name: machine, source: 'machine', stateDir };
}

/** What to tell the operator, when the name used is not the machine's hostname and was not given. */
export function hostNameNote(h: HostName, machine = os.hostname()): string | undefined {
  if (h.source !== 'node' || h.name === machine) return undefined;
  return `Using host name ${h.name}: the name of the node on this machine (${h.stateDir}); this machine's hostname is ${machine}. Pass --hostname to choose another.`;
}

/**
 * This command's host name (--hostname, then the node's state directory,
 * then the machine's hostname); `--name` accepted where it was the spelling.
 * Prints the note of hostNameNote to stderr (stdout stays a command's answer).
 */
export function hostNameOf(cmd: Command, err: NodeJS.WritableStream = process.stderr): HostName {
  const flag = aliased(cmd, '--hostname', '--name', 'hostname', 'name');
  const stateDir = (cmd.optsWithGlobals().stateDir as string | undefined) ?? DEFAULT_STATE_DIR;
  const h = chooseHostName(flag, flag ? undefined : readStatusFile(stateDir), os.hostname(), stateDir);
  const note = hostNameNote(h);
  if (note) err.write(note + '\n');
  return h;
}

// Helpers the policy lab tests share: TCP probes inside a namespace, a
// profile's rules replaced from JSON (calicoctl profile P rule update < file),
// and an endpoint's interface by container name.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { CALICOCTL_MAIN, Netns, makeRunDir, onTeardown, removeTree } from '../harness';
import type { CalicoLab } from './calico-lab';

const PROBE_MAIN = path.join(__dirname, 'calico-policy-probe-main.js');

export interface Probe<T> {
  /** Resolves when the probe started probing (a stream: once connected). */
  ready: Promise<void>;
  result: Promise<T>;
}

/** Runs the TCP probe (calico-policy-probe-main) inside `ns`. */
export function probe<T>(ns: Netns, args: string[]): Probe<T> {
  const child = spawn('nsenter', [`--net=/var/run/netns/${ns.name}`, process.execPath, PROBE_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  onTeardown('policy probe', async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const result = new Promise<T>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('READY\n')) readyResolve();
    });
    child.once('exit', (code) => {
      const line = out.split('\n').filter((l) => l.startsWith('{')).pop();
      if (code === 0 && line) resolve(JSON.parse(line) as T);
      else reject(new Error(`probe ${args.join(' ')} exited ${code}: ${err}`));
      readyResolve();
    });
  });
  return { ready, result };
}

export interface StreamResult {
  echoes: number;
  maxGapMs: number;
  lastEchoAt: number;
  closed: boolean;
  error?: string;
}

/** `calicoctl profile <name> rule update < json`; returns when calicoctl has written it (exited). */
export async function ruleUpdate(lab: CalicoLab, profile: string, inbound: unknown[], outbound: unknown[] = [{ action: 'allow' }]): Promise<void> {
  const dir = await makeRunDir('policy-rules');
  onTeardown(`remove ${dir}`, () => removeTree(dir));
  const file = path.join(dir, `${profile}.json`);
  fs.writeFileSync(file, JSON.stringify({ id: profile, inbound_rules: inbound, outbound_rules: outbound }));
  const r = await lab.ns.exec('sh', ['-c', `${process.execPath} ${CALICOCTL_MAIN} --etcd-endpoints http://127.0.0.1:2379 profile ${profile} rule update < ${file}`]);
  if (r.code !== 0) throw new Error(`rule update of ${profile} exited ${r.code}: ${r.stderr}`);
}

/**
 * Replaces a profile's rules straight in etcd (etcdctl put, as the CLI's
 * write lands), for timing: returns the time just before the put started,
 * so a measured propagation is an upper bound. Profiles must exist.
 */
export async function putRules(lab: CalicoLab, profile: string, inbound: unknown[], outbound: unknown[] = [{ action: 'allow' }]): Promise<number> {
  const value = JSON.stringify({ id: profile, inbound_rules: inbound, outbound_rules: outbound });
  const at = Date.now();
  await lab.ns.ok('etcdctl', ['--endpoints', 'http://127.0.0.1:2379', 'put', `/calico/v1/policy/profile/${profile}/rules`, value]);
  return at;
}

/** Removes containers (through dockerd directly: the reconciler cleans up), whatever the test did before. */
export async function removeContainers(lab: CalicoLab, names: string[]): Promise<void> {
  await lab.direct(['rm', '-f', ...names]);
}

/** Packets counted by the rules of `chain` (IPv4 or IPv6 filter) whose line matches `what`. */
export async function counted(lab: CalicoLab, family: 4 | 6, chain: string, what: RegExp): Promise<number> {
  const r = await lab.ns.ok(family === 4 ? 'iptables' : 'ip6tables', ['-w', '-L', chain, '-v', '-x', '-n']);
  return r.stdout
    .split('\n')
    .filter((l) => what.test(l))
    .reduce((n, l) => n + Number(l.trim().split(/\s+/)[0]), 0);
}

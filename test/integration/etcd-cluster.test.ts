// The blog post's etcd section from one flag: three hosts (network
// namespaces on one LAN bridge) each run the real `calicoctl node
// --etcd-cluster h10=IP,h20=IP,h30=IP` with the lab's certificates; their
// embedded members form one cluster (TLS toward clients and peers), one
// member is killed, every host keeps allocating through the survivors, and
// the killed member's restart joins again with its data. No dockerd: the
// node starts without Docker (it waits for it in the background).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import {
  CALICOCTL_MAIN, Netns, TestCerts, calicoctlTlsFlags, etcdctlTlsEnv, makeRunDir, makeTestCerts, onTeardown, removeTree, run, teardownAll, vethLink, waitFor,
} from '../harness';

after(teardownAll);

const HOSTS = ['h10', 'h20', 'h30'] as const;
type Host = (typeof HOSTS)[number];
const ipOf = (h: Host) => `198.18.0.${h.slice(1)}`;
const LIST = HOSTS.map((h) => `${h}=${ipOf(h)}`).join(',');
const IPAM_MAIN = path.join(__dirname, 'etcd-cluster-ipam-main.js');

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['ETCD_ENDPOINTS', 'ETCD_AUTHORITY', 'ETCD_CA_CERT_FILE', 'ETCD_CERT_FILE', 'ETCD_KEY_FILE', 'CALICO_ETCD_CLUSTER']) delete env[k];
  return env;
}

interface LabHost {
  name: Host;
  ns: Netns;
  stateDir: string;
  node?: ChildProcess;
  out: string;
  exited?: Promise<number | null>;
}

/** The lab's certificate as each member's server, peer and client certificate (it has serverAuth and clientAuth, every host's IP). */
function memberTls(c: TestCerts): string[] {
  return calicoctlTlsFlags({ ...c, clientCert: c.serverCert, clientKey: c.serverKey });
}

let seq = 0;
function startNode(h: LabHost, certs: TestCerts): void {
  const dir = path.dirname(h.stateDir);
  const pluginName = `ecl${process.pid}n${seq++}`;
  onTeardown(`plugin socket ${pluginName}`, () => fs.rmSync(`/run/docker/plugins/${pluginName}.sock`, { force: true }));
  const args = [
    `--net=${h.ns.path}`, process.execPath, CALICOCTL_MAIN, 'node', '--hostname', h.name, '--ip', ipOf(h.name), '--state-dir', h.stateDir,
    '--etcd-cluster', LIST, ...memberTls(certs),
    '--docker', `unix://${path.join(dir, 'no-docker.sock')}`, '--plugin-name', pluginName, '--listen', `unix://${path.join(dir, 'proxy.sock')}`,
  ];
  const child = spawn('nsenter', args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  h.node = child;
  h.out = '';
  child.stdout!.on('data', (b: Buffer) => (h.out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (h.out += b.toString()));
  h.exited = new Promise((r) => child.once('exit', (code) => r(code)));
}

async function stopNode(h: LabHost): Promise<void> {
  const c = h.node;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 15000);
  await h.exited;
  clearTimeout(t);
}

function memberPid(h: LabHost): number {
  return Number(fs.readFileSync(path.join(h.stateDir, 'etcd.pid'), 'utf8'));
}

async function waitReported(h: LabHost): Promise<void> {
  await waitFor(`calicoctl node on ${h.name} to report its datastore`, async () => {
    if (h.node!.exitCode !== null) throw new Error(`node on ${h.name} exited ${h.node!.exitCode}: ${h.out}`);
    return /registered there/.test(h.out);
  }, 90000, 100);
}

/** etcdctl on a host over TLS with the lab's client certificate. */
function etcdctl(h: LabHost, certs: TestCerts, args: string[], env: NodeJS.ProcessEnv = etcdctlTlsEnv(certs)) {
  return run('nsenter', [`--net=${h.ns.path}`, 'etcdctl', '--dial-timeout', '2s', '--command-timeout', '3s', ...args], { env: { ...cleanEnv(), ETCDCTL_API: '3', ...env }, timeoutMs: 20000 });
}

/** The client URLs the node says it uses (its datastore report). */
function nodeEndpoints(h: LabHost): string {
  const m = /clients use (\S+(?:, \S+)*)\n/.exec(h.out);
  assert.ok(m, `no endpoints in ${h.name}'s report: ${h.out}`);
  return m[1]!.split(', ').join(',');
}

/** One address through EtcdIpam, from the host's namespace, on the endpoints its node uses. */
async function allocate(h: LabHost, certs: TestCerts, handle: string): Promise<string> {
  const endpoints = nodeEndpoints(h);
  const r = await run('nsenter', [`--net=${h.ns.path}`, process.execPath, IPAM_MAIN, endpoints, certs.ca, certs.clientCert, certs.clientKey, h.name, handle], { env: cleanEnv(), timeoutMs: 30000 });
  assert.equal(r.code, 0, `allocation from ${h.name} failed: ${r.stderr}`);
  return r.stdout.trim();
}

test('--etcd-cluster: three hosts form one TLS etcd cluster from the same flag; one member killed, every host keeps allocating; the killed member restarts on its data and joins again', async () => {
  const dir = await makeRunDir('etcdcl');
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  fs.mkdirSync(path.join(dir, 'certs'), { mode: 0o700 });
  const certs = makeTestCerts(path.join(dir, 'certs'), { ips: ['127.0.0.1', ...HOSTS.map(ipOf)] });
  const lan = await Netns.create('eclsw');
  await lan.ok('ip', ['link', 'add', 'br0', 'type', 'bridge']);
  await lan.ok('ip', ['link', 'set', 'br0', 'up']);
  const hosts = {} as Record<Host, LabHost>;
  for (const name of HOSTS) {
    const ns = await Netns.create(`ecl${name.slice(1)}`);
    await vethLink({ side: ns, ifName: 'eth0', addr: `${ipOf(name)}/24` }, { side: lan, ifName: `p-${name}` });
    await lan.ok('ip', ['link', 'set', `p-${name}`, 'master', 'br0']);
    fs.mkdirSync(path.join(dir, name));
    const h: LabHost = { name, ns, stateDir: path.join(dir, name, 'state'), out: '' };
    hosts[name] = h;
    onTeardown(`node and member of ${name}`, async () => {
      await stopNode(h);
      try {
        process.kill(memberPid(h), 'SIGKILL');
      } catch {
        /* gone */
      }
    });
  }

  // Started side by side, as hosts boot: each member waits for a quorum of the others.
  for (const name of HOSTS) startNode(hosts[name], certs);
  await Promise.all(HOSTS.map((n) => waitReported(hosts[n])));
  for (const name of HOSTS) {
    assert.match(hosts[name].out, new RegExp(`Datastore: embedded etcd member ${name} \\(${ipOf(name).replace(/\./g, '\\.')}\\) of cluster calico-[0-9a-f]{16}, 3 members`), hosts[name].out);
    assert.doesNotMatch(hosts[name].out, /WITHOUT TLS/);
  }
  assert.equal(nodeEndpoints(hosts.h20), `https://${ipOf('h20')}:2379,https://${ipOf('h10')}:2379,https://${ipOf('h30')}:2379`);
  const token = /of cluster (calico-[0-9a-f]{16})/.exec(hosts.h10.out)![1];
  for (const name of HOSTS) assert.ok(hosts[name].out.includes(`of cluster ${token}`), `${name} is in another cluster: ${hosts[name].out}`);

  // One cluster of three, over TLS: the member list from one host names all; a client without a certificate is refused.
  const members = await etcdctl(hosts.h20, certs, ['--endpoints', `https://${ipOf('h20')}:2379`, 'member', 'list', '-w', 'json']);
  assert.equal(members.code, 0, members.stderr);
  const names = (JSON.parse(members.stdout) as { members: { name: string; peerURLs: string[] }[] }).members.map((m) => `${m.name} ${m.peerURLs.join()}`).sort();
  assert.deepEqual(names, HOSTS.map((h) => `${h} https://${ipOf(h)}:2380`));
  const noCert = await etcdctl(hosts.h20, certs, ['--endpoints', `https://${ipOf('h10')}:2379`, '--dial-timeout', '1s', 'get', '/calico', '--prefix', '--keys-only'], { ETCDCTL_CACERT: certs.ca });
  assert.notEqual(noCert.code, 0, 'a client without a certificate read the cluster');
  // The host's own socket still answers (calicoctl on the host finds the member there).
  const sock = await etcdctl(hosts.h30, certs, ['--endpoints', `unix://${hosts.h30.stateDir}/etcd.sock:2379`, 'endpoint', 'health'], {});
  assert.equal(sock.code, 0, sock.stderr);

  const before = await Promise.all(HOSTS.map((n) => allocate(hosts[n], certs, `before-${n}`)));
  // h30's member dies (its node runs on, on the other members).
  const dead = memberPid(hosts.h30);
  process.kill(dead, 'SIGKILL');
  await waitFor('h30 member gone', async () => !fs.existsSync(`/proc/${dead}/cmdline`) || fs.readFileSync(`/proc/${dead}/stat`, 'utf8').includes(') Z'), 10000, 50);
  const during = await Promise.all(HOSTS.map((n) => allocate(hosts[n], certs, `during-${n}`)));
  const all = [...before, ...during];
  assert.equal(new Set(all).size, all.length, `an address was handed out twice: ${all.join(' ')}`);

  // h30's node restarts: its member comes back on its data (no new cluster), and the node sees every host.
  await stopNode(hosts.h30);
  startNode(hosts.h30, certs);
  await waitReported(hosts.h30);
  assert.match(hosts.h30.out, /3 hosts registered there \(h10, h20, h30\)/);
  assert.ok(hosts.h30.out.includes(`of cluster ${token}`), hosts.h30.out);
  const health = await etcdctl(hosts.h30, certs, ['--endpoints', HOSTS.map((h) => `https://${ipOf(h)}:2379`).join(','), 'endpoint', 'health']);
  assert.equal(health.code, 0, `${health.stdout}${health.stderr}`);
  // Its own member has the allocations made while it was down (serializable: this member's own copy).
  const local = await etcdctl(hosts.h30, certs, ['--endpoints', `https://${ipOf('h30')}:2379`, 'get', '--consistency=s', '/calico/ipam/v2/handle/', '--prefix', '--keys-only']);
  assert.equal(local.code, 0, local.stderr);
  for (const n of HOSTS) assert.ok(local.stdout.includes(`during-${n}`), `h30's member lacks during-${n}: ${local.stdout}`);
});

test('--etcd-cluster without the TLS files: says the cluster\'s ports are unauthenticated plain HTTP (and goes on); a list without this host is refused', async () => {
  const ok = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--etcd-cluster', LIST, '--ip', ipOf('h10'), '--hostname', 'x', '--init-system'], { env: cleanEnv(), timeoutMs: 20000 });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /etcd cluster calico-[0-9a-f]{16} runs WITHOUT TLS: its TCP ports 198\.18\.0\.10:2379 \(clients\) and 198\.18\.0\.10:2380 \(peers\) are unauthenticated plain HTTP/);
  const none = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--etcd-cluster', LIST, '--ip', '10.1.1.1', '--hostname', 'x', '--init-system'], { env: cleanEnv(), timeoutMs: 20000 });
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /no member is this host: none has this node's --ip 10\.1\.1\.1 or --hostname x/);
});

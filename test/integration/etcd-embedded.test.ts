import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { teardownAll, onTeardown, makeRunDir, removeTree, run, runOk } from '../harness';
import { silentLogger } from '../../src/log/logger';
import { EmbeddedEtcd, embeddedClientUrl } from '../../src/etcd/embedded';
import { probeEtcd } from '../../src/etcd/probe';
import { findOrStartEtcd } from '../../src/etcd/discovery';
import { resolveEndpoints } from '../../src/etcd/endpoints';
import { Datastore } from '../../src/datastore';
import { prepareStateDir } from '../../src/node/state-dir';

after(teardownAll);

/** A harness directory, removed at teardown (after whatever was started in it). */
async function runDir(kind: string): Promise<string> {
  const dir = await makeRunDir(kind);
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  return dir;
}

/** A state dir as the node makes it (0700), inside a run dir that `nobody` may enter. */
async function stateDir(kind: string): Promise<string> {
  const dir = await runDir(kind);
  fs.chmodSync(dir, 0o755);
  const s = path.join(dir, 'state');
  prepareStateDir(s);
  return s;
}

function etcdctl(endpoint: string, args: string[]) {
  return runOk('etcdctl', ['--endpoints', endpoint, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeoutMs: 20000 });
}

/** The TCP ports a process listens on (from /proc/net/tcp{,6}, matched by its sockets' inodes). */
function tcpListenPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  const ports: number[] = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(f, 'utf8').split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      // state 0A = LISTEN; column 9 is the inode.
      if (c[3] === '0A' && inodes.has(c[9]!)) ports.push(parseInt(c[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

test('embedded etcd: on unix sockets in the state dir only (no TCP port), keeps data across restarts, removes its sockets on stop', async () => {
  const dir = await stateDir('h3-embedded');
  const m = new EmbeddedEtcd({ stateDir: dir, log: silentLogger() });
  onTeardown('embedded etcd', () => m.stop());
  assert.equal(m.clientUrl, embeddedClientUrl(dir));
  assert.equal((await probeEtcd(m.clientUrl)).kind, 'none');
  await m.start();
  assert.equal((await probeEtcd(m.clientUrl)).kind, 'etcd');
  assert.deepEqual(tcpListenPorts(m.pid!), [], 'the member listens on no TCP port');
  assert.ok(fs.existsSync(path.join(dir, 'etcd', 'member')), 'data dir under the state dir');
  assert.equal(Number(fs.readFileSync(m.pidFile, 'utf8')), m.pid);
  // etcdctl and the node's own client (etcd3 over gRPC) both reach it on the socket.
  await etcdctl(m.clientUrl, ['put', '/calico/test', 'kept']);
  const ds = new Datastore({ endpoints: [m.clientUrl] });
  try {
    assert.deepEqual(await ds.listKeys('/calico/'), ['/calico/test']);
  } finally {
    ds.close();
  }
  await m.stop();
  await m.stop(); // idempotent
  assert.equal((await probeEtcd(m.clientUrl)).kind, 'none');
  assert.equal(fs.existsSync(m.pidFile), false);
  assert.equal(fs.existsSync(m.clientUrl.slice('unix://'.length)), false, 'socket removed');

  const again = new EmbeddedEtcd({ stateDir: dir, log: silentLogger() });
  onTeardown('embedded etcd (2)', () => again.stop());
  await again.start();
  const r = await etcdctl(again.clientUrl, ['get', '--print-value-only', '/calico/test']);
  assert.equal(r.stdout.trim(), 'kept');
  await again.stop();
});

test('embedded etcd: only root reaches it; a local user (nobody) is refused by etcdctl and by a plain socket client, whatever the umask', async () => {
  const dir = await stateDir('h3-embedded');
  const m = new EmbeddedEtcd({ stateDir: dir, log: silentLogger() });
  onTeardown('embedded etcd', () => m.stop());
  const old = process.umask(0);
  try {
    await m.start();
  } finally {
    process.umask(old);
  }
  const sock = m.clientUrl.slice('unix://'.length);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  // Root gets in.
  await etcdctl(m.clientUrl, ['put', '/calico/owner', 'root']);
  const asNobody = (cmd: string, args: string[]) =>
    run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', cmd, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeoutMs: 20000 });
  const put = await asNobody('etcdctl', ['--endpoints', m.clientUrl, '--dial-timeout', '2s', '--command-timeout', '3s', 'put', '/calico/owner', 'nobody']);
  assert.notEqual(put.code, 0, `nobody wrote to the embedded member: ${put.stdout}`);
  // A raw connect(2) to the socket, no client library in between.
  const connect = await asNobody(process.execPath, ['-e', `require('net').connect(${JSON.stringify(sock)}).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(3); })`]);
  assert.equal(connect.code, 3, connect.stdout + connect.stderr);
  assert.equal(connect.stdout.trim(), 'EACCES');
  // And nothing of it on TCP, so there is no port to try.
  assert.deepEqual(tcpListenPorts(m.pid!), []);
  const r = await etcdctl(m.clientUrl, ['get', '--print-value-only', '/calico/owner']);
  assert.equal(r.stdout.trim(), 'root');
  await m.stop();
});

test('embedded etcd: a member left running by a killed node is replaced, not duplicated', async () => {
  const dir = await stateDir('h3-embedded');
  const first = new EmbeddedEtcd({ stateDir: dir, log: silentLogger() });
  onTeardown('embedded etcd (first)', () => first.stop());
  await first.start();
  const leftover = first.pid!;
  // Simulate the node dying without stopping its member: a new EmbeddedEtcd finds the pid file.
  const second = new EmbeddedEtcd({ stateDir: dir, log: silentLogger() });
  onTeardown('embedded etcd (second)', () => second.stop());
  await second.start();
  assert.notEqual(second.pid, leftover);
  // Gone, or a zombie this process has not reaped yet.
  const stat = fs.existsSync(`/proc/${leftover}/stat`) ? fs.readFileSync(`/proc/${leftover}/stat`, 'utf8') : '';
  assert.ok(stat === '' || /\) Z/.test(stat), `leftover etcd ${leftover} stopped`);
  assert.equal((await probeEtcd(second.clientUrl)).kind, 'etcd');
  await second.stop();
});

test('etcd discovery: --embedded-etcd with an endpoint that is not the member\'s socket is refused, naming both', async () => {
  const server = http.createServer((_req, res) => res.writeHead(404).end('nope'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTeardown('http server', () => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  assert.equal((await probeEtcd(url)).kind, 'other');
  const dir = await stateDir('h3-embedded');
  await assert.rejects(
    findOrStartEtcd(resolveEndpoints(url, {}), 'on', dir, silentLogger()),
    new RegExp(`--embedded-etcd runs this host's own member on unix://${dir}/etcd.sock:2379; it cannot also use ${url}`),
  );
});

test('embedded etcd: a missing binary is reported with what to install', async () => {
  const dir = await stateDir('h3-embedded');
  const m = new EmbeddedEtcd({ stateDir: dir, log: silentLogger(), binary: path.join(dir, 'no-etcd') });
  await assert.rejects(m.start(), /not found \(install the Debian package etcd-server/);
});

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { teardownAll, onTeardown, makeRunDir, removeTree, runOk } from '../harness';
import { silentLogger } from '../../src/log/logger';
import { EmbeddedEtcd, freeLoopbackPort } from '../../src/etcd/embedded';
import { probeEtcd } from '../../src/etcd/probe';
import { findOrStartEtcd } from '../../src/etcd/discovery';
import { resolveEndpoints } from '../../src/etcd/endpoints';

after(teardownAll);

/** A harness directory, removed at teardown (after whatever was started in it). */
async function runDir(kind: string): Promise<string> {
  const dir = await makeRunDir(kind);
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  return dir;
}

function etcdctl(endpoint: string, args: string[]) {
  return runOk('etcdctl', ['--endpoints', endpoint, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeoutMs: 20000 });
}

test('embedded etcd: starts under the state dir, keeps data across restarts, frees its port on stop', async () => {
  const stateDir = await runDir('h3-embedded');
  const clientUrl = `http://127.0.0.1:${await freeLoopbackPort()}`;
  assert.equal((await probeEtcd(clientUrl)).kind, 'none');

  const m = new EmbeddedEtcd({ clientUrl, stateDir, log: silentLogger() });
  onTeardown('embedded etcd', () => m.stop());
  await m.start();
  assert.equal((await probeEtcd(clientUrl)).kind, 'etcd');
  assert.ok(fs.existsSync(path.join(stateDir, 'etcd', 'member')), 'data dir under the state dir');
  assert.equal(Number(fs.readFileSync(m.pidFile, 'utf8')), m.pid);
  await etcdctl(clientUrl, ['put', '/calico/test', 'kept']);
  await m.stop();
  await m.stop(); // idempotent
  assert.equal((await probeEtcd(clientUrl)).kind, 'none');
  assert.equal(fs.existsSync(m.pidFile), false);

  const again = new EmbeddedEtcd({ clientUrl, stateDir, log: silentLogger() });
  onTeardown('embedded etcd (2)', () => again.stop());
  await again.start();
  const r = await etcdctl(clientUrl, ['get', '--print-value-only', '/calico/test']);
  assert.equal(r.stdout.trim(), 'kept');
  await again.stop();
});

test('embedded etcd: a member left running by a killed node is replaced, not duplicated', async () => {
  const stateDir = await runDir('h3-embedded');
  const clientUrl = `http://127.0.0.1:${await freeLoopbackPort()}`;
  const first = new EmbeddedEtcd({ clientUrl, stateDir, log: silentLogger() });
  onTeardown('embedded etcd (first)', () => first.stop());
  await first.start();
  const leftover = first.pid!;
  // Simulate the node dying without stopping its member: a new EmbeddedEtcd finds the pid file.
  const second = new EmbeddedEtcd({ clientUrl, stateDir, log: silentLogger() });
  onTeardown('embedded etcd (second)', () => second.stop());
  await second.start();
  assert.notEqual(second.pid, leftover);
  // Gone, or a zombie this process has not reaped yet.
  const stat = fs.existsSync(`/proc/${leftover}/stat`) ? fs.readFileSync(`/proc/${leftover}/stat`, 'utf8') : '';
  assert.ok(stat === '' || /\) Z/.test(stat), `leftover etcd ${leftover} stopped`);
  assert.equal((await probeEtcd(clientUrl)).kind, 'etcd');
  await second.stop();
});

test('etcd discovery: a port held by something that is not etcd is refused, naming it', async () => {
  const server = http.createServer((_req, res) => res.writeHead(404).end('nope'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTeardown('http server', () => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  assert.equal((await probeEtcd(url)).kind, 'other');
  const stateDir = await runDir('h3-embedded');
  await assert.rejects(findOrStartEtcd(resolveEndpoints(url, {}), 'on', stateDir, silentLogger()), new RegExp(`cannot use or start etcd at ${url}: something else listens there`));
});

test('embedded etcd: a missing binary is reported with what to install', async () => {
  const stateDir = await runDir('h3-embedded');
  const m = new EmbeddedEtcd({ clientUrl: 'http://127.0.0.1:1', stateDir, log: silentLogger(), binary: path.join(stateDir, 'no-etcd') });
  await assert.rejects(m.start(), /not found \(install the Debian package etcd-server/);
});

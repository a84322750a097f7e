import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { teardownAll, Netns, PrivateDockerd, makeRunDir, onTeardown, removeTree, waitFor, CALICOCTL_MAIN } from '../harness';

// Issue 10, deliver 3: swarm mode's default management port is 2377, the
// proxy's default port too. A host (network namespace) whose dockerd and
// `calicoctl node --proxy-only` share the namespace, the proxy on its default
// 127.0.0.1:2377: `docker swarm init` through it gets an error that names the
// proxy and the fixes; with --listen-addr <ip>:2378 it succeeds.

after(teardownAll);
const HOST_IP = '198.18.7.1';
const PROXY = 'tcp://127.0.0.1:2377';
let ns: Netns;
let d: PrivateDockerd;

/** The docker CLI inside the namespace, through the proxy. */
function docker(args: string[]) {
  return ns.exec('docker', ['-H', PROXY, ...args], { timeoutMs: 60000, env: { ...process.env, DOCKER_CONTEXT: '' } });
}

before(async () => {
  ns = await Netns.create('cdts');
  // One non-loopback address for swarm to advertise (a veth pair inside the namespace: no dummy driver here).
  await ns.ok('ip', ['link', 'add', 'sw0', 'type', 'veth', 'peer', 'name', 'sw0p']);
  await ns.ok('ip', ['link', 'set', 'sw0p', 'up']);
  await ns.ok('ip', ['link', 'set', 'sw0', 'up']);
  await ns.ok('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'sw0']);
  d = await PrivateDockerd.start({ netns: ns.name });
  const dir = await makeRunDir('proxy-swarm');
  onTeardown(`remove ${dir}`, () => removeTree(dir));
  const logFile = path.join(dir, 'node.log');
  const log = fs.openSync(logFile, 'a');
  // The real `calicoctl node --proxy-only`, default --listen, in dockerd's namespace.
  const node = spawn('nsenter', [`--net=${ns.path}`, process.execPath, CALICOCTL_MAIN, 'node', '--proxy-only', '--state-dir', dir, '--docker', d.host], {
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  onTeardown('calicoctl node --proxy-only', async () => {
    if (node.exitCode !== null) return;
    const exited = new Promise((r) => node.once('exit', r));
    node.kill('SIGTERM');
    await exited;
  });
  await waitFor('the proxy on 127.0.0.1:2377 in the namespace', async () => {
    if (node.exitCode !== null) throw new Error(`calicoctl node exited ${node.exitCode}: ${fs.readFileSync(logFile, 'utf8')}`);
    return (await docker(['version', '--format', '{{.Server.Version}}'])).code === 0;
  }, 20000, 200);
  // Registered last, so it runs first at teardown, while dockerd still runs.
  onTeardown('docker swarm leave --force', async () => {
    await ns.exec('docker', ['-H', d.host, 'swarm', 'leave', '--force'], { timeoutMs: 60000 });
  });
});

test('docker swarm init on the proxy\'s port 2377: the error names the proxy and both fixes', async () => {
  const direct = await ns.exec('docker', ['-H', d.host, 'swarm', 'init'], { timeoutMs: 60000 });
  // dockerd's own answer (the CLI straight at its socket): the port clash, unexplained.
  assert.notEqual(direct.code, 0);
  assert.match(direct.stderr, /listen tcp 0\.0\.0\.0:2377: bind: address already in use/);
  assert.doesNotMatch(direct.stderr, /calico/);

  const r = await docker(['swarm', 'init']);
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, /^Error response from daemon: .*listen tcp 0\.0\.0\.0:2377: bind: address already in use/);
  assert.match(r.stderr, /calico-docker proxy \(Docker API on tcp:\/\/127\.0\.0\.1:2377\)/);
  assert.match(r.stderr, /docker swarm init --listen-addr <ip>:2378/);
  assert.match(r.stderr, /calicoctl node --listen tcp:\/\/127\.0\.0\.1:<port>/);

  // (`docker swarm join` binds 2377 only once it becomes a manager, which needs a second host: test/unit/proxy-pure covers its wording.)
});

test('docker swarm init --listen-addr <ip>:2378 through the proxy succeeds', async () => {
  const r = await docker(['swarm', 'init', '--listen-addr', `${HOST_IP}:2378`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Swarm initialized/);
  const info = await docker(['info', '--format', '{{.Swarm.LocalNodeState}}']);
  assert.equal(info.stdout.trim(), 'active');
  const leave = await docker(['swarm', 'leave', '--force']);
  assert.equal(leave.code, 0, leave.stderr);
});

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { teardownAll, onTeardown, makeRunDir, run, waitFor, freePort, EtcdCluster, CALICOCTL_MAIN } from '../harness';
import { probeEtcd } from '../../src/etcd/probe';

after(teardownAll);

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.ETCD_ENDPOINTS;
  delete env.ETCD_AUTHORITY;
  return env;
}

interface RunningNode {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

/** `calicoctl node` in the foreground on private ports: proxy on a free loopback port, no dockerd needed to start. */
async function startNode(stateDir: string, etcdArgs: string[]): Promise<RunningNode> {
  const listen = `tcp://127.0.0.1:${await freePort()}`;
  const child = spawn(
    process.execPath,
    [CALICOCTL_MAIN, 'node', '--state-dir', stateDir, '--listen', listen, '--docker-upstream', `unix://${path.join(stateDir, 'no-docker.sock')}`, '--ip', '127.0.0.1', ...etcdArgs],
    { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  onTeardown(`calicoctl node in ${stateDir}`, async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, log: () => out, exited };
}

async function pools(endpoint: string): Promise<string[] | undefined> {
  const r = await run(process.execPath, [CALICOCTL_MAIN, 'pool', 'show', '-o', 'json', '--etcd-endpoints', endpoint], { env: cleanEnv(), timeoutMs: 20000 });
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { cidr: string }[]).map((p) => p.cidr);
}

async function stopNode(n: RunningNode): Promise<number | null> {
  n.child.kill('SIGTERM');
  return n.exited;
}

test('calicoctl node: starts an embedded etcd member under its state dir, creates the default pools, stops it on exit', async () => {
  const stateDir = await makeRunDir('h3-node');
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  const node = await startNode(stateDir, ['--etcd-endpoints', endpoint, '--embedded-etcd']);
  const first = await waitFor('default pools', async () => {
    if (node.child.exitCode !== null) throw new Error(`node exited: ${node.log()}`);
    const ps = await pools(endpoint);
    return ps?.length === 2 ? ps : undefined;
  }, 60000, 250);
  assert.deepEqual(first, ['192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  await waitFor('host registration log', async () => node.log().includes('registered host'), 20000);
  const log = node.log();
  assert.match(log, new RegExp(`no etcd answers at ${endpoint}: starting an embedded etcd member`));
  assert.ok(log.includes(`started embedded etcd member on ${endpoint} (data in ${path.join(stateDir, 'etcd')})`), log);
  assert.match(log, /no IP pool existed: created the default pools 192\.168\.0\.0\/16 and fd80:24e2:f998:72d6::\/64/);
  assert.ok(fs.existsSync(path.join(stateDir, 'etcd', 'member')));
  const etcdPid = Number(fs.readFileSync(path.join(stateDir, 'etcd.pid'), 'utf8'));

  // Other commands reach the member the same way.
  const add = await run(process.execPath, [CALICOCTL_MAIN, 'pool', 'add', '10.9.0.0/16', '--etcd-endpoints', endpoint], { env: cleanEnv() });
  assert.equal(add.code, 0, add.stderr);

  assert.equal(await stopNode(node), 0, node.log());
  assert.ok(node.log().includes(`stopped embedded etcd member on ${endpoint}`), node.log());
  assert.equal((await probeEtcd(endpoint)).kind, 'none');
  assert.throws(() => process.kill(etcdPid, 0), /ESRCH/);
  assert.equal(fs.existsSync(path.join(stateDir, 'etcd.pid')), false);

  // A restart finds its data again; pools exist, so no defaults are (re)created.
  const again = await startNode(stateDir, ['--etcd-endpoints', endpoint, '--embedded-etcd']);
  const kept = await waitFor('pools after restart', async () => {
    if (again.child.exitCode !== null) throw new Error(`node exited: ${again.log()}`);
    return pools(endpoint);
  }, 60000, 250);
  assert.deepEqual(kept, ['10.9.0.0/16', '192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  await waitFor('host registration log', async () => again.log().includes('registered host'), 20000);
  assert.doesNotMatch(again.log(), /created the default pools/);

  // A node killed outright leaves its member running; the next node stops that orphan and starts its own.
  const orphan = Number(fs.readFileSync(path.join(stateDir, 'etcd.pid'), 'utf8'));
  again.child.kill('SIGKILL');
  await again.exited;
  assert.equal((await probeEtcd(endpoint)).kind, 'etcd', 'the orphan still answers');
  const third = await startNode(stateDir, ['--etcd-endpoints', endpoint, '--embedded-etcd']);
  await waitFor('node after kill', async () => {
    if (third.child.exitCode !== null) throw new Error(`node exited: ${third.log()}`);
    return third.log().includes('registered host');
  }, 60000, 250);
  assert.ok(third.log().includes(`stopping leftover embedded etcd (pid ${orphan})`), third.log());
  assert.throws(() => process.kill(orphan, 0), /ESRCH/);
  assert.deepEqual(await pools(endpoint), ['10.9.0.0/16', '192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  assert.equal(await stopNode(third), 0, third.log());
  assert.equal((await probeEtcd(endpoint)).kind, 'none');
});

test('calicoctl node: with an etcd cluster configured, uses it and starts no member of its own', async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  const stateDir = await makeRunDir('h3-node');
  const endpoints = etcd.endpoints.join(',');
  const node = await startNode(stateDir, ['--etcd-endpoints', endpoints]);
  await waitFor('default pools', async () => {
    if (node.child.exitCode !== null) throw new Error(`node exited: ${node.log()}`);
    return (await pools(endpoints))?.length === 2;
  }, 60000, 250);
  await waitFor('host registration log', async () => node.log().includes('registered host'), 20000);
  assert.match(node.log(), new RegExp(`using etcd at ${etcd.endpoints[0]} \\(from --etcd-endpoints\\)`));
  assert.doesNotMatch(node.log(), /embedded etcd member/);
  assert.equal(fs.existsSync(path.join(stateDir, 'etcd')), false);
  assert.equal(await stopNode(node), 0, node.log());
  assert.equal((await probeEtcd(etcd.endpoints[0]!)).kind, 'etcd', 'the cluster outlives the node');
});

// `calicoctl diags` through the compiled CLI: with etcd and a node's BIRD up
// the archive holds every part; with etcd down and no node it is still
// written and says what is missing; no secret from etcd, the environment or
// the logs ends up in it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { teardownAll, EtcdCluster, run, runOk, CALICOCTL_MAIN, envWithoutEtcd, makeRunDir, onTeardown, removeTree, Netns, freePort, isRoot } from '../harness';
import { BgpConfigStore, Datastore, HostStore, PoolStore } from '../../src/datastore';
import { BirdSupervisor } from '../../src/bgp/bird';
import { renderBirdConfig } from '../../src/bgp/render';

after(teardownAll);

const SECRETS = ['bgp-mesh-sekrit-5', 'bgp-rr-sekrit-6', 'bgp-peer-sekrit-7', 'hunter2secret', 'pw-sekrit-1', 'MIIsecretsecretkeymaterial', '/secret/path/etcd-client-key.pem', 'env-sekrit-2', 'log-sekrit-3', 'tok-sekrit-4'];

const PARTS = [
  'date.txt', 'hostname.txt', 'ip-addr.txt', 'ip-route.txt', 'ip6-route.txt', 'iptables-save.txt', 'ip6tables-save.txt', 'ipset-list.txt',
  'birdc-show-protocols-all.txt', 'birdc-show-route.txt', 'node/calico-node.log', 'node/bird.conf', 'node/bird.log', 'node/config.txt',
  'calicoctl-status.txt', 'calicoctl-shownodes-detailed.txt', 'etcd-dump.jsonl', 'MISSING.txt',
];

async function diags(cwd: string, args: string[], env: NodeJS.ProcessEnv) {
  const r = await run(process.execPath, [CALICOCTL_MAIN, 'diags', ...args], { env, cwd, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const m = /^Diags saved to (\/\S+\/(diags-\d{8}_\d{6}(?:-\d+)?)\.tar\.gz)\n$/.exec(r.stdout);
  assert.ok(m, `stdout: ${r.stdout}`);
  assert.equal(path.dirname(m[1]!), cwd, 'written in the current directory');
  const list = (await runOk('tar', ['-tzf', m[1]!])).stdout.split('\n').filter((l) => l && !l.endsWith('/'));
  const top = m[2]!;
  const read = async (f: string) => (await runOk('tar', ['-xzOf', m[1]!, `${top}/${f}`])).stdout;
  const everything = (await runOk('tar', ['-xzOf', m[1]!])).stdout;
  return { r, archive: m[1]!, files: list.map((f) => f.slice(top.length + 1)), read, everything };
}

function assertNoSecrets(text: string): void {
  for (const s of SECRETS) assert.ok(!text.includes(s), `secret ${s} found in the archive`);
}

test('diags with etcd and the node\'s BIRD up: every part, real contents, no secrets', { skip: !isRoot() }, async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  const ds = new Datastore({ endpoints: etcd.endpoints });
  after(() => ds.close());
  await new HostStore(ds).register('diaghost', { ip: '10.98.0.1' });
  await new PoolStore(ds).add('10.201.0.0/16');
  // Secrets a careless dump would leak: a TLS key path and PEM, a password field, credentials in a URL.
  await ds.put('/calico/v1/config/EtcdKeyFile', '/secret/path/etcd-client-key.pem', true);
  await ds.put('/calico/v1/config/tls_key', '-----BEGIN PRIVATE KEY-----\nMIIsecretsecretkeymaterial\n-----END PRIVATE KEY-----\n', true);
  await ds.put('/calico/v1/config/remote', { url: 'http://admin:hunter2secret@10.0.0.1:2379', password: 'pw-sekrit-1', note: 'token=tok-sekrit-4' });
  // BGP passwords, as calicoctl stores them.
  const bgpStore = new BgpConfigStore(ds);
  await bgpStore.setNodeMeshPassword('bgp-mesh-sekrit-5');
  await bgpStore.addRouteReflector('10.98.0.254', 'bgp-rr-sekrit-6');
  await bgpStore.addPeer({ host: 'diaghost' }, '10.98.0.253', '65001', 'bgp-peer-sekrit-7');

  // A node state dir: its log, and a BIRD on the node's socket (in a netns of its own).
  const stateDir = await makeRunDir('diags-state');
  onTeardown(`removing ${stateDir}`, () => removeTree(stateDir));
  fs.writeFileSync(path.join(stateDir, 'calico-node.log'), '{"level":30,"msg":"node started"}\n{"msg":"connecting with password=log-sekrit-3"}\n');
  const ns = await Netns.create('cdgd');
  await ns.ok('ip', ['addr', 'add', '10.98.0.1/32', 'dev', 'lo']);
  const bird = new BirdSupervisor({ stateDir, log: pino({ level: 'silent' }), wrap: ['nsenter', `--net=${ns.path}`] });
  onTeardown('diags test bird', () => bird.stop({ graceful: false }));
  await bird.start(
    renderBirdConfig({
      hostname: 'diaghost',
      hosts: [{ host: 'diaghost', ip: '10.98.0.1' }],
      pools: [{ cidr: '10.201.0.0/16', family: 4 }],
      config: { routeReflectors: ['10.98.0.254'], rrPasswords: { '10.98.0.254': 'bgp-rr-sekrit-6' }, globalPeers: [], nodeMesh: true, meshPassword: 'bgp-mesh-sekrit-5' },
      nodePeers: [{ ip: '10.98.0.253', as: '65001', password: 'bgp-peer-sekrit-7' }],
      affineBlocks: ['10.201.0.0/26'],
      hostRoutes: {},
    }),
  );
  const logDir = await makeRunDir('diags-logs');
  onTeardown(`removing ${logDir}`, () => removeTree(logDir));
  fs.mkdirSync(path.join(logDir, 'felix'));
  fs.writeFileSync(path.join(logDir, 'felix', 'current'), 'felix up; ETCD_PASSWORD=env-sekrit-2\n');

  const cwd = await makeRunDir('diags-out');
  onTeardown(`removing ${cwd}`, () => removeTree(cwd));
  const env = envWithoutEtcd({ ETCD_ENDPOINTS: etcd.endpoints.join(','), ETCD_PEER_KEY_FILE: '/secret/path/etcd-client-key.pem', ETCD_PASSWORD: 'env-sekrit-2' });
  const d = await diags(cwd, ['--state-dir', stateDir, '--log-dir', logDir], env);
  for (const p of PARTS) assert.ok(d.files.includes(p), `${p} in ${d.files.join(', ')}`);
  assert.ok(d.files.includes('logs/felix/current'));
  assert.equal(await d.read('MISSING.txt'), 'Nothing missing.\n');
  assert.doesNotMatch(d.r.stderr, /Missing:/);
  assert.match(await d.read('birdc-show-protocols-all.txt'), /Kernel_v4 +Kernel +master4 +up/);
  assert.match(await d.read('birdc-show-route.txt'), /10\.201\.0\.0\/26 +blackhole/);
  assert.match(await d.read('node/bird.conf'), /^router id 10\.98\.0\.1;$/m);
  assert.match(await d.read('node/bird.conf'), /^ {2}password \[redacted\];$/m);
  assert.equal(fs.statSync(bird.paths.config).mode & 0o777, 0o600, 'bird.conf holds passwords: root only');
  assert.match(await d.read('hostname.txt'), /\S/);
  assert.match(await d.read('calicoctl-shownodes-detailed.txt'), /\| diaghost /);
  assert.match(await d.read('calicoctl-status.txt'), /etcd: reachable at/);
  const dump = (await d.read('etcd-dump.jsonl')).trim().split('\n').map((l) => JSON.parse(l) as { key: string; value: unknown });
  assert.deepEqual(dump.find((kv) => kv.key === '/calico/v1/host/diaghost/bird_ip'), { key: '/calico/v1/host/diaghost/bird_ip', value: '10.98.0.1' });
  assert.deepEqual(dump.find((kv) => kv.key === '/calico/v1/config/EtcdKeyFile'), { key: '/calico/v1/config/EtcdKeyFile', value: '[redacted]' });
  assert.deepEqual(dump.find((kv) => kv.key === '/calico/v1/config/remote')?.value, {
    url: 'http://[redacted]@10.0.0.1:2379',
    password: '[redacted]',
    note: 'token=[redacted]',
  });
  assert.match(await d.read('node/calico-node.log'), /password=\[redacted\]/);
  assertNoSecrets(d.everything);
  assert.equal(fs.statSync(d.archive).mode & 0o777, 0o600);
});

test('diags with etcd down and no node: still an archive, naming what was missing', { skip: !isRoot() }, async () => {
  const cwd = await makeRunDir('diags-out');
  onTeardown(`removing ${cwd}`, () => removeTree(cwd));
  const deadEtcd = `http://127.0.0.1:${await freePort()}`;
  const env = envWithoutEtcd({ ETCD_PEER_KEY_FILE: '/secret/path/etcd-client-key.pem', ETCD_PASSWORD: 'env-sekrit-2' });
  const d = await diags(cwd, ['--state-dir', path.join(cwd, 'no-node'), '--etcd-endpoints', deadEtcd], env);
  const missing = await d.read('MISSING.txt');
  for (const [file, why] of [
    ['etcd-dump.jsonl', `etcd at ${deadEtcd}`],
    ['birdc-show-protocols-all.txt', 'no BIRD control socket'],
    ['birdc-show-route.txt', 'no BIRD control socket'],
    ['node/calico-node.log', 'no node log'],
    ['calicoctl-shownodes-detailed.txt', 'Error accessing etcd'],
  ]) {
    assert.match(missing, new RegExp(`^${file.replace(/\./g, '\\.')}: .*${why}`, 'm'));
    assert.ok(!d.files.includes(file), `${file} is not in the archive`);
  }
  assert.match(d.r.stderr, /^Missing: etcd dump of \/calico\/ \(etcd at /m);
  assert.match(d.r.stderr, /^Missing: birdc show route \(no BIRD control socket at .*no-node\/bird\/bird\.ctl/m);
  // What could be had is there: the host's own state, and status saying what is down.
  for (const p of ['date.txt', 'hostname.txt', 'ip-addr.txt', 'ip-route.txt', 'iptables-save.txt', 'calicoctl-status.txt']) assert.ok(d.files.includes(p), p);
  assert.match(await d.read('calicoctl-status.txt'), /etcd: NOT reachable at/);
  assertNoSecrets(d.everything);
});

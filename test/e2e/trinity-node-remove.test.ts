// An operator removes a dead host, on the blog post's lab (trinity-lab.ts)
// with two of its hosts running nodes: trinity10 and trinity20 (trinity30
// only holds its etcd member). Containers of one profile on both hosts;
// trinity20's node is killed -9 (its BIRD too) and its dockerd stopped, as
// a host that dies. `calicoctl node remove` on trinity10 is refused while
// trinity20's lease lives and changes nothing; once the lease expired it
// runs: trinity20's addresses are free again (trinity10 takes one of them),
// its blocks are gone, trinity10's tag ipset no longer holds its
// containers, trinity10 drops it from its BGP mesh and routes, and a second
// run says it is already gone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, teardownAll, waitFor } from '../harness';
import { tagIpset } from '../../src/names';
import { lanIp, startTrinityLab, TrinityHost, TrinityLab } from './trinity-lab';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd, BIRD)';

const POOL = '10.79.0.0/16';
const PROFILE = 'WEB';
let lab: TrinityLab;
let h10: TrinityHost;
let h20: TrinityHost;

async function containerIp(host: TrinityHost, name: string): Promise<string> {
  const out = await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name]);
  return out.trim();
}

/** etcd as trinity10 sees it: keys under a prefix with their values. */
async function etcdGet(prefix: string): Promise<Map<string, string>> {
  const r = await h10.exec('etcdctl', ['get', '--prefix', prefix], { timeoutMs: 10000 });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) if (lines[i]) out.set(lines[i]!, lines[i + 1]!);
  return out;
}

async function tagMembers(): Promise<string> {
  const r = await h10.exec('ipset', ['list', tagIpset(4, PROFILE)]);
  return r.code === 0 ? r.stdout : '';
}

before(async () => {
  if (skip) return;
  lab = await startTrinityLab();
  h10 = lab.hosts.trinity10;
  h20 = lab.hosts.trinity20;
  await h10.calicoctlOk(['pool', 'add', POOL]);
  await h10.startNode();
  await h20.startNode();
});

test('node remove of a dead host: refused while its lease lives; then its addresses are free, its blocks gone, and the other host\'s ipsets and routes forget its containers', { skip }, async (t) => {
  const dockerOf = (h: TrinityHost) => ['--docker', `unix://${h.dockerd.socket}`];
  await h10.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'a10', lab.image, 'sleep', '1d']);
  for (const n of ['b20', 'c20']) await h20.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', n, lab.image, 'sleep', '1d']);
  await h10.calicoctlOk(['profile', PROFILE, 'member', 'add', 'a10', ...dockerOf(h10)]);
  for (const n of ['b20', 'c20']) await h20.calicoctlOk(['profile', PROFILE, 'member', 'add', n, ...dockerOf(h20)]);
  const a10 = await containerIp(h10, 'a10');
  const dead = [await containerIp(h20, 'b20'), await containerIp(h20, 'c20')];
  // Before: trinity10's tag set holds trinity20's containers, and its routes lead there.
  await waitFor('trinity10\'s tag ipset holds trinity20\'s containers', async () => {
    const m = await tagMembers();
    return dead.every((ip) => new RegExp(`^${ip}$`, 'm').test(m));
  }, 15000, 200);
  const via20 = new RegExp(`via ${lanIp('trinity20').replace(/\./g, '\\.')}`);
  await waitFor('a route to trinity20\'s block on trinity10', async () => via20.test((await h10.exec('ip', ['route', 'show', 'proto', 'bird'])).stdout), 15000, 200);
  const blocksOf = async (host: string) => [...(await etcdGet('/calico/ipam/v2/assignment/ipv4/block/')).values()].filter((v) => JSON.parse(v).affinity === `host:${host}`);
  assert.ok((await blocksOf('trinity20')).length > 0, 'trinity20 holds a block');

  // trinity20 dies: its node (and BIRD) killed -9 ...
  await h20.killNode();
  h20.killBird();
  // ... whose lease lives on for up to 15 s: refused, naming it, nothing changed.
  // (Only what a removal would touch: trinity10's own node may write its own keys meanwhile.)
  const touched = async () => [...(await etcdGet('/calico/'))].filter(([k, v]) => k.includes('/trinity20/') || k.includes('/block/') || k.includes('/handle/') || v.includes('trinity20'));
  const before = await touched();
  const refused = await h10.calicoctl(['node', 'remove', '--hostname', 'trinity20', '--remove-endpoints']);
  assert.equal(refused.code, 1, refused.stdout);
  assert.match(refused.stderr, /^Host trinity20 is alive: its node holds the registration lease \/calico\/v1\/host\/trinity20\/node \(lease \d+, TTL 15 s/);
  assert.deepEqual(await touched(), before, 'a refused removal changes nothing');
  // ... and its dockerd gone.
  await h20.dockerd.stop();

  await waitFor('trinity20\'s lease to expire', async () => !(await etcdGet('/calico/v1/host/trinity20/node')).size, 30000, 500);
  const removed = await h10.calicoctl(['node', 'remove', '--hostname', 'trinity20', '--remove-endpoints']);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, /^Removing host trinity20 .*: 2 endpoint records, 2 addresses, 1 block, \d+ host keys\n/);
  assert.match(removed.stdout, /\nHost trinity20 removed\.\n$/);
  t.diagnostic(removed.stdout);

  // Its blocks are gone, its addresses free; nothing of it is left in etcd.
  assert.deepEqual(await blocksOf('trinity20'), []);
  assert.equal((await etcdGet('/calico/v1/host/trinity20/')).size, 0);
  assert.equal((await etcdGet('/calico/ipam/v2/host/trinity20/')).size, 0);
  const pools = JSON.parse(await h10.calicoctlOk(['pool', 'show', '--ipv4', '--output', 'json'])) as { cidr: string; allocated: number }[];
  assert.deepEqual(pools.map((p) => [p.cidr, p.allocated]), [[POOL, 1]], 'only a10\'s address is allocated');
  // trinity10's policy forgets trinity20's containers (it follows the syncer), and BIRD its routes.
  await waitFor('trinity10\'s tag ipset without trinity20\'s containers', async () => {
    const m = await tagMembers();
    return new RegExp(`^${a10}$`, 'm').test(m) && dead.every((ip) => !new RegExp(`^${ip}$`, 'm').test(m));
  }, 10000, 200);
  await waitFor('no route via trinity20 on trinity10', async () => !via20.test((await h10.exec('ip', ['route', 'show', 'proto', 'bird'])).stdout), 15000, 200);
  // The address is free again: trinity10 takes it.
  await h10.dockerOk(['run', '-d', '-e', `CALICO_IP=${dead[0]}`, '--name', 'reuse', lab.image, 'sleep', '1d']);
  assert.equal(await containerIp(h10, 'reuse'), dead[0]);

  const again = await h10.calicoctl(['node', 'remove', '--hostname', 'trinity20', '--remove-endpoints']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, 'Host trinity20 is already gone: nothing of it is left in etcd.\n');
});

// Every CALICO_IP request that cannot be honoured reaches the docker client as
// a Docker-shaped error with the right status and a message saying why, and
// leaves nothing behind: no address, endpoint, veth or container.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { teardownAll, isRoot, sleep } from '../harness';
import { CalicoLab } from './calico-lab';

after(teardownAll);

const POOL = '10.67.0.0/26';
let lab: CalicoLab;

before(async () => {
  if (!isRoot()) return;
  lab = await CalicoLab.start({ pools: [POOL], gcGraceMs: 3000, sweepIntervalMs: 1500 });
});

/** POST /containers/create through the proxy; the status and Docker's error message. */
function create(body: Record<string, unknown>): Promise<{ status: number; message: string; ms: number }> {
  const started = Date.now();
  const data = Buffer.from(JSON.stringify({ Image: lab.image, Cmd: ['true'], ...body }));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: lab.proxySocket, method: 'POST', path: '/v1.41/containers/create', headers: { 'Content-Type': 'application/json', 'Content-Length': data.length } },
      (res) => {
        let text = '';
        res.on('data', (b: Buffer) => (text += b.toString()));
        res.on('end', () => {
          let message = text;
          try {
            message = (JSON.parse(text) as { message?: string }).message ?? text;
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, message, ms: Date.now() - started });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

async function assertNothingLeft(exceptContainers: string[] = []): Promise<void> {
  const ps = (await lab.direct(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
  assert.deepEqual(ps.filter((id) => !exceptContainers.includes(id)), [], 'no half-created container');
  const s = await lab.state();
  const owners = new Set(exceptContainers);
  assert.deepEqual(s.allocations.filter((a) => !owners.has(a.attrs.container ?? '')).map((a) => a.address), [], 'no address left reserved');
  assert.deepEqual(s.endpoints.filter((e) => !owners.has(e.containerId)).map((e) => e.containerId), [], 'no endpoint left');
}

test('malformed CALICO_IP and impossible --net modes: 400 with why, through the docker CLI too', { skip: !isRoot() }, async () => {
  const cli = await lab.docker(['run', '--rm', '-e', 'CALICO_IP=10.67.0.300', lab.image, 'true']);
  assert.equal(cli.code, 125);
  assert.match(cli.stderr, /Error response from daemon: CALICO_IP=10\.67\.0\.300 is not a valid IP address/);
  for (const [env, re] of [
    ['CALICO_IP=', /CALICO_IP is empty/],
    ['CALICO_IP=banana', /not a valid IP address/],
    ['CALICO_IP=10.67.0.0/26', /without a prefix length/],
  ] as const) {
    const r = await create({ Env: [env] });
    assert.equal(r.status, 400, `${env}: ${r.message}`);
    assert.match(r.message, re);
  }
  const other = (await lab.direct(['run', '-d', lab.image, 'sleep', '1d'])).stdout.trim();
  for (const mode of ['host', 'none', `container:${other}`]) {
    const r = await create({ Env: ['CALICO_IP=auto'], HostConfig: { NetworkMode: mode } });
    assert.equal(r.status, 400, `--net=${mode}: ${r.message}`);
    assert.match(r.message, new RegExp(`cannot be combined with --net=${mode.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  }
  const hostCli = await lab.docker(['run', '--rm', '--net=host', '-e', 'CALICO_IP=auto', lab.image, 'true']);
  assert.equal(hostCli.code, 125);
  assert.match(hostCli.stderr, /CALICO_IP cannot be combined with --net=host/);
  await lab.direct(['rm', '-f', other]);
  await assertNothingLeft();
});

test('address outside every pool 400, in use 409 naming the owner, pool exhausted 503', { skip: !isRoot() }, async () => {
  const outside = await create({ Env: ['CALICO_IP=10.99.0.1'] });
  assert.equal(outside.status, 400);
  assert.match(outside.message, /10\.99\.0\.1 is not in any IPv4 pool \(pools: 10\.67\.0\.0\/26\)/);
  const noV6 = await create({ Env: ['CALICO_IP=auto', 'CALICO_IP6=auto'] });
  assert.equal(noV6.status, 400);
  assert.match(noV6.message, /no IPv6 pool/);

  const owner = (await lab.dockerOk(['run', '-d', '--name', 'owner', '-e', 'CALICO_IP=10.67.0.10', lab.image, 'sleep', '1d'])).trim();
  const taken = await create({ Env: ['CALICO_IP=10.67.0.10'] });
  assert.equal(taken.status, 409);
  assert.match(taken.message, new RegExp(`address 10\\.67\\.0\\.10 belongs to container owner \\(${owner.slice(0, 12)}\\); remove it first`));
  const takenCli = await lab.docker(['run', '--rm', '-e', 'CALICO_IP=10.67.0.10', lab.image, 'true']);
  assert.equal(takenCli.code, 125);
  assert.match(takenCli.stderr, /belongs to container owner/);

  // Fill the rest of the /26, then ask for more.
  await lab.query('fill', 63);
  const full = await create({ Env: ['CALICO_IP=auto'] });
  assert.equal(full.status, 503);
  assert.match(full.message, /no free IPv4 address: pool 10\.67\.0\.0\/26 is full/);
  await lab.query('release', 63);
  await assertNothingLeft([owner]);
  await lab.dockerOk(['rm', '-f', owner]);
  await lab.waitClean();
});

test('a stopped container\'s address is refused to `--ip`, through the proxy and on dockerd\'s socket, naming the owner; the owner starts again with it', { skip: !isRoot() }, async () => {
  const x = '10.67.0.20';
  const owner = (await lab.dockerOk(['run', '-d', '--name', 'group1-node1', '-e', `CALICO_IP=${x}`, lab.image, 'sleep', '1d'])).trim();
  await lab.dockerOk(['stop', '-t', '0', 'group1-node1']);
  const says = new RegExp(`address 10\\.67\\.0\\.20 belongs to container group1-node1 \\(${owner.slice(0, 12)}\\); remove it first`);
  const viaProxy = await lab.docker(['run', '--rm', '--net', 'calico', '--ip', x, lab.image, 'true']);
  assert.equal(viaProxy.code, 125, viaProxy.stdout);
  assert.match(viaProxy.stderr, says);
  const viaEnv = await lab.docker(['run', '--rm', '-e', `CALICO_IP=${x}`, lab.image, 'true']);
  assert.equal(viaEnv.code, 125);
  assert.match(viaEnv.stderr, says);
  // Straight to dockerd, as a CI job that never heard of the proxy would: the container is made, its start refused.
  const direct = await lab.direct(['run', '--name', 'thief', '--net', 'calico', '--ip', x, lab.image, 'true']);
  assert.notEqual(direct.code, 0);
  assert.match(direct.stderr, says);
  const thief = (await lab.direct(['inspect', '-f', '{{.Id}}', 'thief'])).stdout.trim();
  const s = await lab.state();
  assert.deepEqual(s.allocations.map((a) => `${a.address} ${a.attrs.container}`), [`${x} ${owner}`], 'the owner\'s reservation, nothing else');
  assert.deepEqual(s.endpoints.map((e) => `${e.containerId} ${e.state}`), [`${owner} inactive`], 'no endpoint for the refused container');
  assert.deepEqual(await lab.workloadLinks(), [], 'no veth left');
  // The refused container still asks for the address in its configuration:
  // the owner's start is told apart from its (dockerd holds the lock of the one it starts).
  await lab.dockerOk(['start', 'group1-node1']);
  assert.equal((await lab.direct(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', 'group1-node1'])).stdout.trim(), x);
  assert.equal((await lab.ns.exec('busybox', ['ping', '-c', '1', '-W', '2', x])).code, 0, 'the owner answers on its address');
  const again = await lab.direct(['start', 'thief']);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /belongs to container group1-node1/);
  assert.equal((await lab.state()).allocations.find((a) => a.address === x)?.attrs.container, owner);
  await lab.direct(['rm', '-f', thief, owner]);
  await lab.waitClean();
});

test('a container carrying another\'s handle label (set by hand, or copied by `docker commit`), removed, frees nothing', { skip: !isRoot() }, async () => {
  const owner = (await lab.dockerOk(['run', '-d', '--name', 'labelled', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '1d'])).trim();
  const handle = (await lab.direct(['inspect', '-f', '{{index .Config.Labels "org.projectcalico.handle"}}', owner])).stdout.trim();
  assert.match(handle, /^resv-/);
  const [mine] = (await lab.state()).allocations;
  assert.equal(mine?.attrs.container, owner);
  const forger = (await lab.direct(['run', '-d', '--label', `org.projectcalico.handle=${handle}`, lab.image, 'sleep', '1d'])).stdout.trim();
  await lab.direct(['commit', owner, 'calico-forged:1']);
  const copy = (await lab.direct(['run', '-d', 'calico-forged:1', 'sleep', '1d'])).stdout.trim();
  assert.equal((await lab.direct(['inspect', '-f', '{{index .Config.Labels "org.projectcalico.handle"}}', copy])).stdout.trim(), handle, 'docker commit copied the label');
  await sleep(3500); // sweeps see three containers with the label
  assert.equal((await lab.direct(['rm', '-f', forger, copy])).code, 0);
  await sleep(6000); // past two sweeps and the grace period
  const s = await lab.state();
  assert.deepEqual(s.allocations.map((a) => `${a.address} ${a.handle} ${a.attrs.container}`), [`${mine!.address} ${handle} ${owner}`], 'still the owner\'s');
  assert.equal((await lab.ns.exec('busybox', ['ping', '-c', '1', '-W', '2', mine!.address])).code, 0, 'the owner is still reachable');
  assert.match(lab.logTail(200), /carried the handle label of container/);
  await lab.direct(['rmi', 'calico-forged:1']);
  await lab.direct(['rm', '-f', owner]);
  await lab.waitClean();
});

test('create refused by dockerd (no such image): the CLI tries to pull, and nothing stays reserved', { skip: !isRoot() }, async () => {
  const r = await lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', '127.0.0.1:1/nosuch:1', 'true']);
  assert.equal(r.code, 125);
  assert.match(r.stderr, /Unable to find image '127\.0\.0\.1:1\/nosuch:1' locally/);
  await assertNothingLeft();
});

test('etcd not answering: the client hears so within seconds, naming the endpoints; nothing left', { skip: !isRoot() }, async () => {
  lab.pauseEtcd(true);
  let r;
  try {
    r = await create({ Env: ['CALICO_IP=auto'] });
  } finally {
    lab.pauseEtcd(false);
  }
  assert.equal(r.status, 503, r.message);
  assert.match(r.message, /etcd .*127\.0\.0\.1:2379/);
  assert.ok(r.ms < 8000, `answered in ${r.ms} ms`);
  // The allocation that was stuck in etcd lands once etcd answers again, and is released.
  await lab.waitClean(20000);
  await assertNothingLeft();
});

test('the node\'s plugin not serving: a clear 503 naming its socket; nothing left', { skip: !isRoot() }, async () => {
  const socket = `/run/docker/plugins/${lab.pluginName}.sock`;
  fs.renameSync(socket, `${socket}.away`);
  let r;
  try {
    await sleep(5500); // past the check's memory of a good answer
    r = await create({ Env: ['CALICO_IP=auto'] });
  } finally {
    fs.renameSync(`${socket}.away`, socket);
  }
  assert.equal(r.status, 503);
  assert.equal(r.message, `the Calico Docker plugin is not serving on ${socket}: is \`calicoctl node\` running on this host? Start it and retry`);
  await assertNothingLeft();
});

test('the calico network gone: a clear 503 instead of a pull attempt; the node recreates it at start', { skip: !isRoot() }, async () => {
  assert.equal((await lab.direct(['network', 'rm', 'calico'])).code, 0);
  await sleep(5500); // past the network check's memory of a good answer
  const r = await create({ Env: ['CALICO_IP=auto'] });
  assert.equal(r.status, 503);
  assert.match(r.message, /the calico Docker network does not exist on this host: restart `calicoctl node`/);
  await lab.stopNode();
  await lab.startNode();
  const ok = await lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', lab.image, 'true']);
  assert.equal(ok.code, 0, ok.stderr);
  await lab.waitClean();
});

// Container networking through the proxy, on a real dockerd, etcd and docker
// CLI in a lab host namespace: the address is there at the first
// instruction, shows in inspect, survives restarts; 20 parallel runs get 20
// addresses; containers reach each other, the host and a LAN host.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { teardownAll, isRoot, Netns, vethLink, addRoute, waitFor } from '../harness';
import { CalicoLab } from './calico-lab';

after(teardownAll);

const POOL4 = '10.65.0.0/16';
const POOL6 = 'fd65::/64';
let lab: CalicoLab;

before(async () => {
  if (!isRoot()) return;
  lab = await CalicoLab.start({ pools: [POOL4, POOL6] });
});

function inPool4(a: string): boolean {
  return /^10\.65\.\d+\.\d+$/.test(a);
}

test('first instruction sees the address: auto, explicit IPv4, IPv6, 50 times each', { skip: !isRoot() }, async () => {
  const cases: { env: (i: number) => string; show: string[]; expect: (i: number) => RegExp }[] = [
    { env: () => 'CALICO_IP=auto', show: ['ip', '-4', 'addr', 'show', 'eth0'], expect: () => /inet 10\.65\.\d+\.\d+\/32/ },
    { env: (i) => `CALICO_IP=10.65.200.${i + 1}`, show: ['ip', '-4', 'addr', 'show', 'eth0'], expect: (i) => new RegExp(`inet 10\\.65\\.200\\.${i + 1}/32`) },
    { env: (i) => `CALICO_IP=fd65::${(i + 1).toString(16)}`, show: ['ip', '-6', 'addr', 'show', 'eth0'], expect: (i) => new RegExp(`inet6 fd65::${(i + 1).toString(16)}/128`) },
  ];
  for (const c of cases) {
    const failures: string[] = [];
    // Five at a time: each run is still a fresh container whose first instruction looks.
    for (let i = 0; i < 50; i += 5) {
      await Promise.all(
        [0, 1, 2, 3, 4].map(async (j) => {
          const r = await lab.docker(['run', '--rm', '-e', c.env(i + j), lab.image, ...c.show]);
          if (r.code !== 0 || !c.expect(i + j).test(r.stdout)) {
            failures.push(`#${i + j} (${c.env(i + j)}): exit ${r.code} ${r.stdout.trim()} ${r.stderr.trim()}`);
          }
        }),
      );
    }
    assert.deepEqual(failures, [], `${c.env(0)}: ${failures.length}/50 runs did not see the address`);
  }
  await lab.waitClean();
});

test('inspect shows the address; -h works; stop/start, restart, restart policy and dockerd restart keep it', { skip: !isRoot() }, async () => {
  const id = (await lab.dockerOk(['run', '-d', '-h', 'web1', '-e', 'CALICO_IP=auto', '--name', 'keep', lab.image, 'sleep', '1d'])).trim();
  const addr = (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', id])).trim();
  assert.ok(inPool4(addr), `inspect shows a pool address, got "${addr}"`);
  // The top-level field 2015 users looked at (and found empty) shows it too.
  assert.equal((await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', id])).trim(), addr);
  const missingProxied = await lab.docker(['inspect', 'nosuch']);
  const missingDirect = await lab.direct(['inspect', 'nosuch']);
  assert.deepEqual([missingProxied.code, missingProxied.stderr, missingProxied.stdout], [missingDirect.code, missingDirect.stderr, missingDirect.stdout]);
  assert.equal((await lab.dockerOk(['exec', id, 'hostname'])).trim(), 'web1');
  const seen = async () => {
    const r = await lab.dockerOk(['exec', id, 'ip', '-4', 'addr', 'show', 'eth0']);
    return /inet (\S+)\/32/.exec(r)?.[1];
  };
  // The lab's network carries IPv6 too: the container's IPv6 address is
  // reserved with its IPv4 one and must survive restarts the same way.
  const addr6 = (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.GlobalIPv6Address}}', id])).trim();
  assert.ok(addr6.includes(':'), `inspect shows an IPv6 address, got "${addr6}"`);
  const seen6 = async () => {
    const r = await lab.dockerOk(['exec', id, 'ip', '-6', 'addr', 'show', 'eth0', 'scope', 'global']);
    return /inet6 (\S+)\/128/.exec(r)?.[1];
  };
  assert.equal(await seen(), addr);
  assert.equal(await seen6(), addr6);
  await lab.dockerOk(['stop', '-t', '0', id]);
  await lab.dockerOk(['start', id]);
  assert.equal(await seen(), addr, 'after stop/start');
  assert.equal(await seen6(), addr6, 'IPv6 after stop/start');
  await lab.dockerOk(['restart', '-t', '0', id]);
  assert.equal(await seen(), addr, 'after restart');
  assert.equal(await seen6(), addr6, 'IPv6 after restart');
  const s = await lab.state();
  const eps = s.endpoints.filter((e) => e.containerId === id);
  assert.equal(eps.length, 1, 'one endpoint recorded');
  assert.deepEqual(eps[0].ipv4_nets, [`${addr}/32`]);

  // --restart=always, its process killed from the host: Docker restarts it, same address.
  const rid = (await lab.dockerOk(['run', '-d', '--restart=always', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '1d'])).trim();
  const raddr = (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', rid])).trim();
  const pid = Number((await lab.dockerOk(['inspect', '-f', '{{.State.Pid}}', rid])).trim());
  process.kill(pid, 'SIGKILL');
  await waitFor('restart policy to restart it', async () => {
    const p = Number((await lab.direct(['inspect', '-f', '{{.State.Pid}}', rid])).stdout.trim());
    return p > 0 && p !== pid;
  }, 30000, 200);
  const r1 = await lab.dockerOk(['exec', rid, 'ip', '-4', 'addr', 'show', 'eth0']);
  assert.match(r1, new RegExp(`inet ${raddr.replace(/\./g, '\\.')}/32`));

  // dockerd restart: the restart=always container comes back with its address, recorded again.
  await lab.dockerd.restart();
  await waitFor('restart=always container running again', async () => (await lab.direct(['inspect', '-f', '{{.State.Running}}', rid])).stdout.trim() === 'true', 60000, 200);
  const r2 = await lab.dockerOk(['exec', rid, 'ip', '-4', 'addr', 'show', 'eth0']);
  assert.match(r2, new RegExp(`inet ${raddr.replace(/\./g, '\\.')}/32`));
  await waitFor('endpoint recorded after the dockerd restart', async () => {
    const st = await lab.state();
    const ep = await lab.direct(['inspect', '-f', '{{.NetworkSettings.Networks.calico.EndpointID}}', rid]);
    return st.endpoints.some((e) => e.containerId === rid && e.endpointId === ep.stdout.trim());
  }, 30000, 500);
  await lab.dockerOk(['start', id]);
  assert.equal(await seen(), addr, 'after the dockerd restart');

  await lab.dockerOk(['rm', '-f', id, rid]);
  await lab.waitClean();
});

test('20 parallel run -d get 20 distinct addresses; they reach each other, the host and a LAN host', { skip: !isRoot() }, async () => {
  const runs = await Promise.all(
    Array.from({ length: 20 }, () => lab.docker(['run', '-d', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '1d'], { timeoutMs: 120000 })),
  );
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  const ids = runs.map((r) => r.stdout.trim());
  const addrs = await Promise.all(ids.map(async (id) => (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', id])).trim()));
  assert.equal(new Set(addrs).size, 20, `distinct addresses: ${addrs.join(' ')}`);
  for (const a of addrs) assert.ok(inPool4(a), a);

  // Container to container.
  const ping = await lab.docker(['exec', ids[0], 'ping', '-c', '1', '-W', '2', addrs[1]]);
  if (ping.code !== 0) assert.fail(`container ${addrs[0]} -> ${addrs[1]}: ${ping.stdout}${ping.stderr}\n${await lab.kernelState()}`);
  // The host (the lab namespace) to a container.
  const hostPing = await lab.ns.exec('busybox', ['ping', '-c', '1', '-W', '2', addrs[2]]);
  assert.equal(hostPing.code, 0, `host -> ${addrs[2]}: ${hostPing.stdout}`);
  // A LAN host with a static route to the pool via the host (the seed's first routing step).
  const lan = await Netns.create('cdtlan');
  await lab.ns.forwarding();
  await vethLink({ side: lab.ns, ifName: 'lan0', addr: '192.0.2.1/24' }, { side: lan, ifName: 'eth0', addr: '192.0.2.2/24' });
  await addRoute(lan, POOL4, '192.0.2.1');
  // The default profile lets nothing in from outside its members: the LAN is
  // let in by a rule, as the blog post does with `profile ... rule update`.
  await lab.calicoctl(['profile', 'calico:default', 'rule', 'add', 'inbound', 'allow', 'from', '192.0.2.0/24'], true);
  const lanReaches = () => lan.exec('busybox', ['ping', '-c', '1', '-W', '1', addrs[3]]);
  await waitFor('the rule to reach the kernel', async () => (await lanReaches()).code === 0, 5000, 100).catch(() => undefined);
  const lanPing = await lanReaches();
  assert.equal(lanPing.code, 0, `LAN -> ${addrs[3]}: ${lanPing.stdout}`);
  const back = await lab.docker(['exec', ids[3], 'ping', '-c', '1', '-W', '2', '192.0.2.2']);
  assert.equal(back.code, 0, `container -> LAN: ${back.stdout}`);

  await lab.calicoctl(['profile', 'calico:default', 'rule', 'remove', 'inbound', 'allow', 'from', '192.0.2.0/24'], true);
  await lab.dockerOk(['rm', '-f', ...ids]);
  await lab.waitClean();
});

test('what a create decided for the user, the docker CLI prints as a warning: a mistyped CALICO_PROFILE created, a named network replaced', { skip: !isRoot() }, async () => {
  const create = async (name: string, ...args: string[]) => {
    const r = await lab.docker(['create', '--name', name, '-e', 'CALICO_IP=auto', ...args, lab.image, 'true']);
    assert.equal(r.code, 0, r.stderr);
    return r.stderr;
  };
  assert.match(await create('webb1', '-e', 'CALICO_PROFILE=WEBB'), /^WARNING: profile WEBB did not exist: created with the default rules \(members only\)$/m);
  assert.doesNotMatch(await create('webb2', '-e', 'CALICO_PROFILE=WEBB'), /WARNING/, 'the profile exists now: nothing to say');
  await lab.dockerOk(['network', 'create', 'usernet']);
  assert.match(await create('webb3', '--net', 'usernet'), /^WARNING: network usernet replaced by the calico network \(CALICO_IP\)/m);
  await lab.dockerOk(['rm', 'webb1', 'webb2', 'webb3']);
  await lab.dockerOk(['network', 'rm', 'usernet']);
  await lab.waitClean();
});

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { teardownAll, EtcdCluster, run, CALICOCTL_MAIN, RunResult, waitFor, envWithoutEtcd } from '../harness';
import { Datastore, PoolStore } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';

after(teardownAll);

type Ctl = (...args: string[]) => Promise<RunResult>;

function ctlWith(endpointArgs: string[], env: NodeJS.ProcessEnv): Ctl {
  return (...args) => run(process.execPath, [CALICOCTL_MAIN, ...args, ...endpointArgs], { env, timeoutMs: 30000 });
}

function assertFails(r: RunResult, message: RegExp, code = 2): void {
  // 2: a usage error (a bad or too small CIDR); 1: a failure (pass 1).
  assert.equal(r.code, code, `exit ${code} expected; stdout=${r.stdout} stderr=${r.stderr}`);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace for an expected error');
  assert.equal(r.stdout, '');
}

async function showJson(ctl: Ctl, ...flags: string[]): Promise<{ cidr: string; family: number; natOutgoing: boolean; ipip: boolean; allocated: number; capacity: string }[]> {
  const r = await ctl('pool', 'show', '--output', 'json', ...flags);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The whole pool life cycle of issue 3 item 5, through the compiled calicoctl. */
async function poolScenario(ctl: Ctl, endpoints: string[]): Promise<void> {
  assert.deepEqual(await showJson(ctl), []);

  let r = await ctl('pool', 'add', '10.1.1.1/8', '--nat-outgoing');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Added pool 10.0.0.0/8 with nat-outgoing (normalised from 10.1.1.1/8)\n');
  r = await ctl('pool', 'add', '10.0.0.0/8', '--nat-outgoing');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Pool 10.0.0.0/8 with nat-outgoing already exists\n');
  r = await ctl('pool', 'add', 'fd80:24e2:f998:72d6::1/64');
  assert.equal(r.stdout, 'Added pool fd80:24e2:f998:72d6::/64 (normalised from fd80:24e2:f998:72d6::1/64)\n');
  assert.deepEqual(
    (await showJson(ctl)).map((p) => [p.cidr, p.family, p.natOutgoing, p.ipip]),
    [['10.0.0.0/8', 4, true, false], ['fd80:24e2:f998:72d6::/64', 6, false, false]],
  );

  // A pool inside another, or around another, is accepted (2015 did) and says so in one line.
  r = await ctl('pool', 'add', '10.20.0.0/16');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Added pool 10.20.0.0/16\nPool 10.20.0.0/16 lies inside existing pool 10.0.0.0/8: automatic addresses come from the narrower pool first\n');
  r = await ctl('pool', 'add', 'fd80:24e2:f998::/48');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Added pool fd80:24e2:f998::/48\nPool fd80:24e2:f998::/48 contains existing pool fd80:24e2:f998:72d6::/64: automatic addresses come from the narrower pool first\n');
  r = await ctl('pool', 'add', '10.20.0.0/16');
  assert.equal(r.stdout, 'Pool 10.20.0.0/16 already exists\n', 'still idempotent');
  assert.deepEqual((await showJson(ctl)).map((p) => p.cidr), ['10.0.0.0/8', '10.20.0.0/16', 'fd80:24e2:f998::/48', 'fd80:24e2:f998:72d6::/64']);
  for (const p of ['10.20.0.0/16', 'fd80:24e2:f998::/48']) {
    r = await ctl('pool', 'remove', p);
    assert.equal(r.stdout, `Removed pool ${p}\n`, r.stderr);
  }
  assertFails(await ctl('pool', 'add', '172.16.0.0/27'), /^Pool 172\.16\.0\.0\/27 is too small: an IPv4 pool must hold at least one \/26 block/);
  assertFails(await ctl('pool', 'add', 'fd00:1::/123'), /too small: an IPv6 pool must hold at least one \/122 block/);
  assertFails(await ctl('pool', 'add', 'fd00:1::/64', '--ipip'), /^IP in IP not supported for IPv6 pools: fd00:1::\/64 is IPv6 \(--ipip is for IPv4 pools only\)\n$/);
  assertFails(await ctl('pool', 'add', '10.0.0/8'), /"10\.0\.0\/8" is not a CIDR/);
  assertFails(await ctl('pool', 'add', '10.0.0.0'), /"10\.0\.0\.0" is not a CIDR: expected <address>\/<prefix length>/);

  // Addresses allocated through IPAM show up as usage and block removal.
  const ds = new Datastore({ endpoints });
  try {
    const ipam = new EtcdIpam(ds);
    await ipam.allocate({ handle: 'resv-cli-test-1', host: 'hostA', ipv4: 'auto', ipv6: 'auto', attrs: { container: '0123456789abcdef0123' } });
    await ipam.allocate({ handle: 'resv-cli-test-2', host: 'hostB', ipv4: '10.3.0.7' });
  } finally {
    ds.close();
  }
  const usage = await showJson(ctl);
  assert.deepEqual(
    usage.map((p) => [p.cidr, p.allocated, p.capacity]),
    [['10.0.0.0/8', 2, '16777216'], ['fd80:24e2:f998:72d6::/64', 1, '18446744073709551616']],
  );
  assert.deepEqual((await showJson(ctl, '--ipv6')).map((p) => p.cidr), ['fd80:24e2:f998:72d6::/64']);
  r = await ctl('pool', 'show', '--ipv4');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    [
      '+------------+--------------+-----------+----------+',
      '| IPv4 CIDR  |   Options    | Allocated | Capacity |',
      '+------------+--------------+-----------+----------+',
      '| 10.0.0.0/8 | nat-outgoing |         2 | 16777216 |',
      '+------------+--------------+-----------+----------+',
      '',
    ].join('\n'),
  );
  r = await ctl('pool', 'show');
  assert.match(r.stdout, /\|\s+IPv4 CIDR\s+\|[\s\S]*\|\s+IPv6 CIDR\s+\|[\s\S]*\| fd80:24e2:f998:72d6::\/64 \|\s+\|\s+1 \| 18446744073709551616 \|/);

  r = await ctl('pool', 'remove', '10.0.0.0/8');
  assertFails(r, /^Pool 10\.0\.0\.0\/8 has 2 allocated addresses: /, 1);
  assert.match(r.stderr, /container 0123456789ab, handle resv-cli-test-1/);
  assert.match(r.stderr, /10\.3\.0\.7 \(handle resv-cli-test-2\)/);
  assert.match(r.stderr, /use --force/);
  r = await ctl('pool', 'remove', '10.0.0.0/8', '--force');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Removed pool 10.0.0.0/8 (forced: 2 allocated addresses released from it)\n');
  r = await ctl('pool', 'remove', '10.0.0.0/8');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '10.0.0.0/8 is not a configured pool.\n');
  // Its space is free again: a smaller pool inside it is no longer an overlap.
  r = await ctl('pool', 'add', '10.20.0.0/16', '--ipip');
  assert.equal(r.stdout, 'Added pool 10.20.0.0/16 with ipip\n');
  assert.deepEqual(
    (await showJson(ctl)).map((p) => [p.cidr, p.allocated, p.ipip]),
    [['10.20.0.0/16', 0, true], ['fd80:24e2:f998:72d6::/64', 1, false]],
  );
}

test('pool commands against a single etcd member (--etcd-endpoints)', async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  await poolScenario(ctlWith(['--etcd-endpoints', etcd.endpoints.join(',')], envWithoutEtcd()), etcd.endpoints);
  // ETCD_AUTHORITY (2015) finds the same data.
  const viaAuthority = ctlWith([], envWithoutEtcd({ ETCD_AUTHORITY: etcd.endpoints[0]!.replace('http://', '') }));
  assert.deepEqual((await showJson(viaAuthority)).map((p) => p.cidr), ['10.20.0.0/16', 'fd80:24e2:f998:72d6::/64']);
});

test('pool commands against a three-member cluster (ETCD_ENDPOINTS), and with one member down', async () => {
  const etcd = await EtcdCluster.start({ size: 3 });
  const ctl = ctlWith([], envWithoutEtcd({ ETCD_ENDPOINTS: etcd.endpoints.join(',') }));
  await poolScenario(ctl, etcd.endpoints);
  await etcd.kill(0);
  // "One member down" is the steady state after the cluster re-elected (if
  // member 0 led it): during the election itself (election timeout 1-2 s)
  // etcd answers no linearizable read, which the 3 s bound rightly reports.
  await waitFor('the two remaining members to agree on a leader', async () => (await etcd.leaderIndex()) !== 0, 20000, 100);
  assert.deepEqual((await showJson(ctl)).map((p) => p.cidr), ['10.20.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  const r = await ctl('pool', 'add', '10.30.0.0/16');
  assert.equal(r.code, 0, r.stderr);
  await etcd.restart(0);
});

test('the blog post\'s "IP Management": restrict the default pool to a subnet (pool show, add, remove, show)', async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  const ctl = ctlWith(['--etcd-endpoints', etcd.endpoints.join(',')], envWithoutEtcd());
  const ds = new Datastore({ endpoints: etcd.endpoints });
  try {
    // What the first `calicoctl node` does on an empty datastore.
    assert.deepEqual(await new PoolStore(ds).ensureDefaultPools(), ['192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
    const v6 = [
      '+--------------------------+---------+-----------+----------------------+',
      '|        IPv6 CIDR         | Options | Allocated |       Capacity       |',
      '+--------------------------+---------+-----------+----------------------+',
      '| fd80:24e2:f998:72d6::/64 |         |         0 | 18446744073709551616 |',
      '+--------------------------+---------+-----------+----------------------+',
    ];

    let r = await ctl('pool', 'show');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        '+----------------+---------+-----------+----------+',
        '|   IPv4 CIDR    | Options | Allocated | Capacity |',
        '+----------------+---------+-----------+----------+',
        '| 192.168.0.0/16 |         |         0 |    65536 |',
        '+----------------+---------+-----------+----------+',
        ...v6,
        '',
      ].join('\n'),
    );

    r = await ctl('pool', 'add', '192.168.89.0/24');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      'Added pool 192.168.89.0/24\nPool 192.168.89.0/24 lies inside existing pool 192.168.0.0/16: automatic addresses come from the narrower pool first\n',
    );

    r = await ctl('pool', 'remove', '192.168.0.0/16');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'Removed pool 192.168.0.0/16\n');

    r = await ctl('pool', 'show');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        '+-----------------+---------+-----------+----------+',
        '|    IPv4 CIDR    | Options | Allocated | Capacity |',
        '+-----------------+---------+-----------+----------+',
        '| 192.168.89.0/24 |         |         0 |      256 |',
        '+-----------------+---------+-----------+----------+',
        ...v6,
        '',
      ].join('\n'),
    );

    // Then `docker run -e CALICO_IP=auto` gets an address of the subnet.
    const ipam = new EtcdIpam(ds);
    const [a] = await ipam.allocate({ handle: 'resv-blog-1', host: 'trinity10', ipv4: 'auto' });
    assert.equal(a!.pool, '192.168.89.0/24');
    assert.match(a!.address, /^192\.168\.89\./);
    await ipam.idle();
  } finally {
    ds.close();
  }
});

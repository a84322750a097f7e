// `calicoctl bgppeer ...`, `node bgppeer ...` and `bgp ...` through the
// compiled CLI against a real etcd: 2015 messages, the datastore keys they
// write, and bad input refused with nothing written.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { teardownAll, EtcdCluster, run, CALICOCTL_MAIN, RunResult, envWithoutEtcd, makeRunDir, onTeardown, removeTree } from '../harness';
import { Datastore, HostStore } from '../../src/datastore';

after(teardownAll);

/** Messages of usage errors (exit 2); every other refusal here is a failure (exit 1). */
const USAGE = [/is not a valid IP address/, /^Invalid /, /^Expected "as"/, /^error: /, /^set needs the password/, /cannot be used with option/];

test('bgppeer rr / bgppeer / node bgppeer / bgp against etcd', async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  const env = envWithoutEtcd();
  const ctl = (...args: string[]): Promise<RunResult> =>
    run(process.execPath, [CALICOCTL_MAIN, ...args, '--etcd-endpoints', etcd.endpoints.join(',')], { env, timeoutMs: 30000 });
  const ok = async (...args: string[]): Promise<string> => {
    const r = await ctl(...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, '');
    return r.stdout;
  };
  const fails = async (message: RegExp, ...args: string[]): Promise<void> => {
    const r = await ctl(...args);
    // Exit codes (docs/calicoctl.md): 2 for usage (bad arguments, flags), 1 for a failure.
    const code = USAGE.some((u) => u.test(r.stderr)) ? 2 : 1;
    assert.equal(r.code, code, `${args.join(' ')}: exit ${code} expected; stdout=${r.stdout} stderr=${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(r.stdout, '');
  };
  const ds = new Datastore({ endpoints: etcd.endpoints });
  after(() => ds.close());
  const dump = async () => (await ds.rangePrefix('/calico/v1/', false)).kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}`).sort();
  await new HostStore(ds).register('trinity10', { ip: '172.16.0.10', ip6: 'fd00::10' });
  const registered = await dump();

  // --- bgppeer rr (v0.4.0-0.4.5), exactly as 2015 ---
  assert.equal(await ok('bgppeer', 'rr', 'show'), 'No IPv4 BGP Peers defined.\nNo IPv6 BGP Peers defined.\n');
  assert.equal(await ok('bgppeer', 'rr', 'add', '172.16.0.1'), '');
  assert.equal(await ok('bgppeer', 'rr', 'add', '172.16.0.1'), '', 'idempotent and silent');
  assert.equal(await ok('bgppeer', 'rr', 'add', 'FD00:0::1'), '');
  assert.equal(
    await ok('bgppeer', 'rr', 'show', '--ipv4'),
    ['+---------------+', '| IPv4 BGP Peer |', '+---------------+', '| 172.16.0.1    |', '+---------------+', ''].join('\n'),
  );
  assert.match(await ok('bgppeer', 'rr', 'show', '--ipv6'), /\| fd00::1\s+\|/);
  assert.equal(await ok('bgppeer', 'rr', 'remove', '172.16.0.9'), '172.16.0.9 is not a configured peer.\n');
  assert.equal(await ok('bgppeer', 'rr', 'remove', '172.16.0.1'), '');
  assert.equal(await ok('bgppeer', 'rr', 'show', '--ipv4'), 'No IPv4 BGP Peers defined.\n');

  // --- global peers (v0.4.6) ---
  assert.equal(await ok('bgppeer', 'show', '--ipv4'), 'No global IPv4 BGP Peers defined.\n');
  assert.equal(await ok('bgppeer', 'add', '172.16.0.254', 'as', '65001'), '');
  assert.equal(await ok('bgppeer', 'add', '172.16.0.3', 'as', '65002'), '');
  assert.equal(
    await ok('bgppeer', 'show', '--ipv4'),
    [
      '+----------------------+--------+',
      '| Global IPv4 BGP Peer | AS Num |',
      '+----------------------+--------+',
      '| 172.16.0.3           | 65002  |',
      '| 172.16.0.254         | 65001  |',
      '+----------------------+--------+',
      '',
    ].join('\n'),
  );
  const stored = (await ds.rangePrefix('/calico/v1/config/bgp_peer_v4/', false)).kvs.map((kv) => [kv.key.toString(), JSON.parse(kv.value.toString())]);
  assert.deepEqual(stored, [
    ['/calico/v1/config/bgp_peer_v4/172.16.0.254', { ip: '172.16.0.254', as_num: 65001 }],
    ['/calico/v1/config/bgp_peer_v4/172.16.0.3', { ip: '172.16.0.3', as_num: 65002 }],
  ]);
  assert.deepEqual(JSON.parse(await ok('bgppeer', 'show', '-o', 'json')), [
    { ip: '172.16.0.3', as: '65002', family: 4 },
    { ip: '172.16.0.254', as: '65001', family: 4 },
  ]);
  assert.equal(await ok('bgppeer', 'remove', '172.16.0.3'), 'BGP peer removed from global configuration\n');
  // Already so: exit 0.
  assert.equal(await ok('bgppeer', 'remove', '172.16.0.3'), '172.16.0.3 is not a globally configured peer: nothing to remove.\n');

  // --- this host's peers ---
  assert.equal(await ok('node', 'bgppeer', 'show', '--hostname', 'trinity10'), 'No IPv4 BGP Peers defined for this node.\nNo IPv6 BGP Peers defined for this node.\n');
  assert.equal(await ok('node', 'bgppeer', 'add', 'fd00::99', 'as', '65003', '--hostname', 'trinity10'), '');
  assert.match(await ok('node', 'bgppeer', 'show', '--ipv6', '--hostname', 'trinity10'), /Node specific IPv6 BGP Peer \| AS Num[\s\S]*\| fd00::99\s+\| 65003\s+\|/);
  const nodePeer = (await ds.rangePrefix('/calico/v1/host/trinity10/bgp_peer_v6/', false)).kvs.map((kv) => [kv.key.toString(), JSON.parse(kv.value.toString())]);
  assert.deepEqual(nodePeer, [['/calico/v1/host/trinity10/bgp_peer_v6/fd00::99', { ip: 'fd00::99', as_num: 65003 }]]);
  assert.equal(await ok('node', 'bgppeer', 'remove', 'fd00::99', '--hostname', 'trinity10'), 'BGP peer removed from node configuration\n');
  assert.equal(await ok('node', 'bgppeer', 'remove', 'fd00::99', '--hostname', 'trinity10'), 'fd00::99 is not a configured peer for this node: nothing to remove.\n');

  // --- bgp default-node-as / node-mesh (and the 2015 spellings) ---
  assert.equal(await ok('bgp', 'default-node-as'), '64511\n');
  assert.equal(await ok('bgp', 'default-node-as', '64600'), '');
  assert.equal(await ok('default-node-as'), '64600\n');
  // Never set: off while a global peer or a route reflector replaces the mesh, on without.
  assert.equal(await ok('bgp', 'node-mesh'), 'off\n');
  assert.equal(await ok('bgppeer', 'remove', '172.16.0.254'), 'BGP peer removed from global configuration\n');
  assert.equal(await ok('bgp', 'node-mesh'), 'off\n', 'the IPv6 route reflector is still there');
  assert.equal(await ok('bgppeer', 'rr', 'remove', 'fd00::1'), '');
  assert.equal(await ok('bgp', 'node-mesh'), 'on\n');
  assert.equal(await ok('bgp', 'node-mesh', 'off'), '');
  assert.equal(await ok('bgp-node-mesh'), 'off\n');
  assert.deepEqual(JSON.parse((await ds.rangePrefix('/calico/v1/config/bgp_node_mesh', false)).kvs[0]!.value.toString()), { enabled: false });
  assert.equal(await ok('bgp', 'node-mesh', 'on'), '');
  assert.equal(await ok('bgp', 'node-mesh'), 'on\n');

  // --- bad input: a clear message, exit 1, nothing written ---
  const before = await dump();
  await fails(/^1\.2\.3 is not a valid IP address\.\n$/, 'bgppeer', 'rr', 'add', '1.2.3');
  await fails(/^Invalid AS Number specified: "4294967296" \(expected a number from 1 to 4294967295\)\.\n$/, 'bgppeer', 'add', '10.0.0.1', 'as', '4294967296');
  await fails(/Invalid AS Number specified: "0"/, 'node', 'bgppeer', 'add', '10.0.0.1', 'as', '0', '--hostname', 'trinity10');
  await fails(/^Expected "as" between the peer address and its AS number, got "AS"/, 'bgppeer', 'add', '10.0.0.1', 'AS', '65000');
  await fails(/^Invalid AS Number specified: "x"/, 'bgp', 'default-node-as', 'x');
  await fails(/^Invalid node mesh setting "maybe": expected on or off\.\n$/, 'bgp', 'node-mesh', 'maybe');
  await fails(/^172\.16\.0\.10 is this host's own address \(calicoctl node --ip\/--ip6 of trinity10\): a host cannot peer with itself\.\n$/, 'node', 'bgppeer', 'add', '172.16.0.10', 'as', '64511', '--hostname', 'trinity10');
  await fails(/^fd00::10 is the BGP address of Calico host trinity10: it cannot be a route reflector/, 'bgppeer', 'rr', 'add', 'fd00:0::10');
  await fails(/^error: unknown option '--ipv5'/, 'bgppeer', 'show', '--ipv5');
  await fails(/^172\.16\.0\.10 is the BGP address of Calico host trinity10: it cannot be a global BGP peer/, 'bgppeer', 'add', '172.16.0.10', 'as', '65000');
  assert.deepEqual(await dump(), before);
  // Only the keys this test meant to leave: the AS and the mesh setting.
  assert.deepEqual(
    (await dump()).filter((k) => !registered.includes(k)),
    ['/calico/v1/config/bgp_as=64600', '/calico/v1/config/bgp_node_mesh={"enabled":true}'],
  );
});

test('BGP passwords through calicoctl: set from a flag, a file or stdin, stored, shown as "set" only, refused when BIRD cannot hold them', async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  const env = envWithoutEtcd();
  const outputs: string[] = [];
  const ctl = async (args: string[], input?: string): Promise<RunResult> => {
    const r = await run(process.execPath, [CALICOCTL_MAIN, ...args, '--etcd-endpoints', etcd.endpoints.join(',')], { env, timeoutMs: 30000, input });
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const ok = async (args: string[], input?: string): Promise<string> => {
    const r = await ctl(args, input);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, '');
    return r.stdout;
  };
  const fails = async (message: RegExp, args: string[]): Promise<void> => {
    const r = await ctl(args);
    const code = USAGE.some((u) => u.test(r.stderr)) ? 2 : 1;
    assert.equal(r.code, code, `${args.join(' ')}: exit ${code} expected; stdout=${r.stdout} stderr=${r.stderr}`);
    assert.match(r.stderr, message);
  };
  const ds = new Datastore({ endpoints: etcd.endpoints });
  after(() => ds.close());
  const value = async (key: string) => (await ds.rangePrefix(key, false)).kvs.find((kv) => kv.key.toString() === key)?.value.toString();
  const dir = await makeRunDir('cli-bgp-pw');
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  const pwFile = path.join(dir, 'pw');
  fs.writeFileSync(pwFile, 'file pw {x};\n', { mode: 0o600 });

  // Route reflector: --password; the show says "set", never the password.
  assert.equal(await ok(['bgppeer', 'rr', 'add', '172.16.0.1', '--password', 'rr-pw-1']), '');
  assert.equal(await ok(['bgppeer', 'rr', 'add', '172.16.0.2']), '');
  assert.equal(await value('/calico/v1/config/bgp_rr_password_v4/172.16.0.1'), 'rr-pw-1');
  assert.equal(await value('/calico/v1/config/bgp_peer_rr_v4/172.16.0.1'), '172.16.0.1');
  assert.equal(
    await ok(['bgppeer', 'rr', 'show', '--ipv4']),
    ['+---------------+----------+', '| IPv4 BGP Peer | Password |', '+---------------+----------+', '| 172.16.0.1    | set      |', '| 172.16.0.2    |          |', '+---------------+----------+', ''].join('\n'),
  );
  assert.deepEqual(JSON.parse(await ok(['bgppeer', 'rr', 'show', '-o', 'json'])), [{ ip: '172.16.0.1', password: true, family: 4 }, { ip: '172.16.0.2', family: 4 }]);
  // A second add states the whole peer: without a password, it has none.
  assert.equal(await ok(['bgppeer', 'rr', 'add', '172.16.0.1']), '');
  assert.equal(await value('/calico/v1/config/bgp_rr_password_v4/172.16.0.1'), undefined);
  assert.equal(await ok(['bgppeer', 'rr', 'add', '172.16.0.1', '--password-file', pwFile]), '');
  assert.equal(await value('/calico/v1/config/bgp_rr_password_v4/172.16.0.1'), 'file pw {x};', 'one trailing newline dropped');
  assert.equal(await ok(['bgppeer', 'rr', 'remove', '172.16.0.1']), '');
  assert.equal(await value('/calico/v1/config/bgp_rr_password_v4/172.16.0.1'), undefined, 'the password goes with the reflector');

  // Global and node peers: the password in the peer's value.
  assert.equal(await ok(['bgppeer', 'add', '172.16.0.254', 'as', '65001', '--password-file', '-'], 'stdin-pw\n'), '');
  assert.deepEqual(JSON.parse((await value('/calico/v1/config/bgp_peer_v4/172.16.0.254'))!), { ip: '172.16.0.254', as_num: 65001, password: 'stdin-pw' });
  assert.match(await ok(['bgppeer', 'show', '--ipv4']), /\| Global IPv4 BGP Peer \| AS Num \| Password \|[\s\S]*\| 172\.16\.0\.254 +\| 65001 +\| set +\|/);
  assert.equal(await ok(['node', 'bgppeer', 'add', '10.0.0.9', 'as', '65003', '--password', 'node-pw-2', '--hostname', 'h1']), '');
  assert.deepEqual(JSON.parse((await value('/calico/v1/host/h1/bgp_peer_v4/10.0.0.9'))!), { ip: '10.0.0.9', as_num: 65003, password: 'node-pw-2' });
  assert.deepEqual(JSON.parse(await ok(['node', 'bgppeer', 'show', '-o', 'json', '--hostname', 'h1'])), [{ ip: '10.0.0.9', as: '65003', password: true, family: 4 }]);

  // The node mesh.
  assert.equal(await ok(['bgp', 'node-mesh-password']), 'not set\n');
  assert.equal(await ok(['bgp', 'node-mesh-password', 'set', '--password-file', pwFile]), '');
  assert.equal(await value('/calico/v1/config/bgp_node_mesh_password'), 'file pw {x};');
  assert.equal(await ok(['bgp', 'node-mesh-password']), 'set\n');
  assert.equal(await ok(['bgp', 'node-mesh-password', 'unset']), '');
  assert.equal(await ok(['bgp', 'node-mesh-password']), 'not set\n');

  // What BIRD cannot hold is refused, naming why; nothing is written.
  const before = (await ds.rangePrefix('/calico/', false)).kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}`);
  await fails(/^Invalid BGP password: the password contains a double quote/, ['bgppeer', 'rr', 'add', '172.16.0.3', '--password', 'a"b']);
  await fails(/^Invalid BGP password: the password contains a backslash/, ['bgppeer', 'add', '172.16.0.3', 'as', '65000', '--password', 'a\\b']);
  fs.writeFileSync(pwFile, 'two\nlines\n');
  await fails(/^Invalid BGP password: the password contains a newline/, ['bgp', 'node-mesh-password', 'set', '--password-file', pwFile]);
  await fails(/^Invalid BGP password: the password is 81 characters long; TCP MD5 allows at most 80/, ['node', 'bgppeer', 'add', '10.0.0.9', 'as', '65003', '--password', 'x'.repeat(81), '--hostname', 'h1']);
  await fails(/^Cannot read the BGP password from \/nonexistent\/pw: ENOENT/, ['bgppeer', 'rr', 'add', '172.16.0.3', '--password-file', '/nonexistent/pw']);
  await fails(/^set needs the password/, ['bgp', 'node-mesh-password', 'set']);
  await fails(/^Invalid node mesh password action "maybe"/, ['bgp', 'node-mesh-password', 'maybe']);
  await fails(/option '--password <PASSWORD>' cannot be used with option '--password-file <FILE>'/, ['bgppeer', 'rr', 'add', '172.16.0.3', '--password', 'x', '--password-file', pwFile]);
  assert.deepEqual((await ds.rangePrefix('/calico/', false)).kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}`), before);
  // No output ever showed a password.
  for (const secret of ['rr-pw-1', 'file pw', 'stdin-pw', 'node-pw-2']) assert.ok(!outputs.some((o) => o.includes(secret)), secret);
});

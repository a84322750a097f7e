import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  teardownAll, EtcdCluster, run, CALICOCTL_MAIN, RunResult, envWithoutEtcd, PrivateDockerd, ensureTestImage, TEST_IMAGE,
} from '../harness';
import { Datastore, DEFAULT_PROFILE, EndpointStore, ProfileStore, keys } from '../../src/datastore';

after(teardownAll);

type Ctl = (args: string[], input?: string) => Promise<RunResult>;

function ok(r: RunResult, stdout: string | RegExp): void {
  assert.equal(r.code, 0, `exit 0 expected; stdout=${r.stdout} stderr=${r.stderr}`);
  if (typeof stdout === 'string') assert.equal(r.stdout, stdout);
  else assert.match(r.stdout, stdout);
}

function fails(r: RunResult, stderr: RegExp, code = 1): void {
  assert.equal(r.code, code, `exit ${code} expected; stdout=${r.stdout} stderr=${r.stderr}`);
  assert.match(r.stderr, stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace for an expected error');
  assert.equal(r.stdout, '');
}

// The blog post's prof_group1.json, verbatim (examples/blog/prof_group1.json).
const PROF_GROUP1_JSON = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'examples', 'blog', 'prof_group1.json'), 'utf8');

test('calicoctl profile: every command, its messages, exit codes and json output, against a real etcd', async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  const env = envWithoutEtcd();
  const ctl: Ctl = (args, input) =>
    run(process.execPath, [CALICOCTL_MAIN, 'profile', ...args, '--etcd-endpoints', etcd.endpoints.join(',')], { env, input, timeoutMs: 30000 });
  const ds = new Datastore({ endpoints: etcd.endpoints });
  after(() => ds.close());
  const store = new ProfileStore(ds);
  const rawRules = async (p: string) => (await ds.getRaw([keys.profileRules(p)])).get(keys.profileRules(p))!.raw;

  ok(await ctl(['show', '-o', 'json']), '[]\n');
  ok(await ctl(['add', 'WEB']), 'Created profile WEB\n');
  ok(await ctl(['add', 'WEB']), 'Profile WEB already exists.\n');
  ok(await ctl(['add', 'DB']), 'Created profile DB\n');
  assert.deepEqual(await store.get('WEB'), {
    name: 'WEB', tags: ['WEB'],
    rules: { id: 'WEB', inbound_rules: [{ action: 'allow', src_tag: 'WEB' }], outbound_rules: [{ action: 'allow' }] },
  });
  ok(await ctl(['show']), ['+------+', '| Name |', '+------+', '| DB   |', '| WEB  |', '+------+', ''].join('\n'));
  ok(await ctl(['show', '--output', 'json']), JSON.stringify([{ name: 'DB', tags: ['DB'] }, { name: 'WEB', tags: ['WEB'] }], null, 2) + '\n');
  fails(await ctl(['add', 'bad name!']), /^Profile names must be <40 character long/, 2);
  fails(await ctl(['add', 'x'.repeat(41)]), /^Profile names must be/, 2);

  // tags
  ok(await ctl(['WEB', 'tag', 'add', 'FRONT']), 'Tag FRONT added to profile WEB\n');
  ok(await ctl(['WEB', 'tag', 'show']), 'FRONT\nWEB\n');
  ok(await ctl(['WEB', 'tag', 'show', '-o', 'json']), '[\n  "FRONT",\n  "WEB"\n]\n');
  ok(await ctl(['WEB', 'tag', 'remove', 'FRONT']), 'Tag FRONT removed from profile WEB\n');
  ok(await ctl(['WEB', 'tag', 'remove', 'FRONT']), 'Tag FRONT is not on profile WEB: nothing to remove.\n');
  fails(await ctl(['NOPE', 'tag', 'show']), /^Profile NOPE not found\.\n$/);
  fails(await ctl(['WEB', 'tag', 'add', 'a b']), /^Tag names can only contain/, 2);

  // rule show / json / update (the blog post's file, verbatim, from stdin)
  ok(await ctl(['WEB', 'rule', 'show']), 'Inbound rules:\n   1 allow from tag WEB\nOutbound rules:\n   1 allow\n');
  fails(await ctl(['WEB', 'rule', 'update'], PROF_GROUP1_JSON), /^Rules JSON "id"=PROF_GROUP1 doesn't match profile name WEB\.\n$/, 2);
  ok(await ctl(['add', 'PROF_GROUP1']), 'Created profile PROF_GROUP1\n');
  ok(await ctl(['PROF_GROUP1', 'rule', 'update'], PROF_GROUP1_JSON), 'Successfully updated rules on profile PROF_GROUP1\n');
  assert.deepEqual((await store.get('PROF_GROUP1'))!.rules, JSON.parse(PROF_GROUP1_JSON));
  ok(await ctl(['PROF_GROUP1', 'rule', 'json']), JSON.stringify(JSON.parse(PROF_GROUP1_JSON), null, 2) + '\n');
  ok(await ctl(['PROF_GROUP1', 'rule', 'show']), 'Inbound rules:\n   1 allow from tag PROF_GROUP1\n   2 allow\nOutbound rules:\n   1 allow\n');

  // bad rule JSON: refused naming the key and the reason, nothing written
  const before = await rawRules('PROF_GROUP1');
  const bad = (rule: object, dir = 'inbound_rules') =>
    JSON.stringify({ id: 'PROF_GROUP1', inbound_rules: [], outbound_rules: [], [dir]: [{ action: 'allow' }, rule] });
  const refusals: [object, RegExp][] = [
    [{ colour: 'red' }, /inbound_rules\[1\]: unknown key "colour"/],
    [{ action: 'permit' }, /inbound_rules\[1\]\.action: action must be "allow" or "deny"/],
    [{ src_net: '10.0.0.300/8' }, /inbound_rules\[1\]\.src_net: expected a CIDR, got "10\.0\.0\.300\/8": "10\.0\.0\.300" is not a valid IPv4 or IPv6 address/],
    [{ protocol: 'tcp', dst_ports: [70000] }, /inbound_rules\[1\]\.dst_ports\[0\]: port 70000 out of range 1\.\.65535/],
    [{ protocol: 'icmp', icmp_code: 3 }, /inbound_rules\[1\]\.icmp_code: icmp_code needs icmp_type/],
  ];
  for (const [rule, message] of refusals) {
    const r = await ctl(['PROF_GROUP1', 'rule', 'update'], bad(rule));
    fails(r, message, 2);
    assert.match(r.stderr, /nothing was changed/);
  }
  fails(await ctl(['PROF_GROUP1', 'rule', 'update'], '{"id": "PROF_GROUP1",'), /^Invalid rules JSON on stdin: .*Nothing was changed\.\n$/, 2);
  fails(await ctl(['PROF_GROUP1', 'rule', 'update'], bad({ dst_ports: [80] }, 'outbound_rules')), /outbound_rules\[1\]\.dst_ports: ports need protocol tcp or udp/, 2);
  fails(await ctl(['NOPE', 'rule', 'update'], JSON.stringify({ id: 'NOPE', inbound_rules: [], outbound_rules: [] })), /^Profile NOPE not found\.\n$/);
  assert.equal(await rawRules('PROF_GROUP1'), before, 'refused updates wrote nothing');

  // rule add / remove with the v0.4.6 spec
  ok(await ctl(['WEB', 'rule', 'add', 'inbound', 'allow', 'tcp', 'from', 'ports', '1000-2000', 'tag', 'DB', '10.0.0.0/8', 'to', 'ports', '80,443']), /^Rule added to the inbound rules of profile WEB at position 2: allow tcp from ports 1000:2000 tag DB 10\.0\.0\.0\/8 to ports 80,443\n$/);
  ok(await ctl(['WEB', 'rule', 'add', 'inbound', '--at=1', 'deny', 'icmp', 'type', '8', 'code', '0']), /at position 1: deny icmp type 8 code 0\n$/);
  ok(await ctl(['WEB', 'rule', 'add', 'inbound', 'deny', 'icmp', 'type', '8', 'code', '0']), 'Rule already present, skipping.\n');
  ok(await ctl(['WEB', 'rule', 'add', 'outbound', 'deny', 'to', 'fd00::/8']), /outbound rules of profile WEB at position 2: deny to fd00::\/8\n$/);
  ok(
    await ctl(['WEB', 'rule', 'show']),
    [
      'Inbound rules:',
      '   1 deny icmp type 8 code 0',
      '   2 allow from tag WEB',
      '   3 allow tcp from ports 1000:2000 tag DB 10.0.0.0/8 to ports 80,443',
      'Outbound rules:',
      '   1 allow',
      '   2 deny to fd00::/8',
      '',
    ].join('\n'),
  );
  const webBefore = await rawRules('WEB');
  fails(await ctl(['WEB', 'rule', 'add', 'inbound', '--at=9', 'allow', 'udp']), /^Position 9 is out-of-range\.\n$/);
  fails(await ctl(['WEB', 'rule', 'add', 'inbound', 'allow', 'icmp', 'from', 'ports', '80']), /^Ports are not valid with protocol 'icmp'\n$/, 2);
  fails(await ctl(['WEB', 'rule', 'add', 'inbound', 'allow', 'tcp', 'to', 'ports', '70000']), /inbound_rules: dst_ports\[0\]: port 70000 out of range/, 2);
  fails(await ctl(['WEB', 'rule', 'add', 'inbound', 'permit', 'tcp']), /^Invalid rule "permit tcp": it must start with allow or deny/, 2);
  ok(await ctl(['WEB', 'rule', 'remove', 'inbound', 'allow', 'udp']), 'Rule not found in the inbound rules of profile WEB: nothing to remove (allow udp).\n');
  fails(await ctl(['WEB', 'rule', 'remove', 'outbound', '--at=3']), /^Rule position out-of-range\.\n$/);
  assert.equal(await rawRules('WEB'), webBefore, 'refused rule edits wrote nothing');
  ok(await ctl(['WEB', 'rule', 'remove', 'inbound', 'deny', 'icmp', 'type', '8', 'code', '0']), 'Rule removed from the inbound rules of profile WEB: deny icmp type 8 code 0\n');
  ok(await ctl(['WEB', 'rule', 'remove', 'outbound', '--at=2']), 'Rule removed from the outbound rules of profile WEB: deny to fd00::/8\n');
  assert.equal((await store.get('WEB'))!.rules.inbound_rules.length, 2);

  // remove: refused while endpoints use it, unless --force
  const eps = new EndpointStore(ds);
  const ep = {
    host: 'hostB', containerId: 'c0ffee00c0ffee00c0ffee00', endpointId: 'e1', state: 'active' as const, name: 'calic0ffee00c0f',
    mac: '02:00:00:00:00:01', 'container:if_name': 'eth0', profile_ids: ['DB'], ipv4_nets: ['10.9.0.1/32'], ipv6_nets: [],
  };
  await eps.put(ep);
  ok(await ctl(['show', '--detailed', '-o', 'json']), /"containerId": "c0ffee00c0ffee00c0ffee00"/);
  const detailed = await ctl(['show', '--detailed']);
  ok(detailed, /\| DB +\| hostB \| docker +\| c0ffee00c0ff \| e1 +\| active \|/);
  assert.match(detailed.stdout, /\| WEB +\| None +\| None +\| None +\| None +\| None +\|/);
  fails(await ctl(['remove', 'DB']), /^Profile DB is in use by 1 endpoint \(host\/container\/endpoint: hostB\/c0ffee00c0ff\/e1\)\. Their traffic would be dropped; use --force/);
  assert.ok(await store.get('DB'), 'refused remove kept the profile');
  ok(await ctl(['remove', 'DB', '--force']), 'Deleted profile DB (forced: 1 endpoint still names it)\n');
  ok(await ctl(['remove', 'DB']), "Couldn't find profile with name DB\n");
  ok(await ctl(['remove', 'WEB']), 'Deleted profile WEB\n');
  ok(await ctl(['show', '-o', 'json']), JSON.stringify([{ name: 'PROF_GROUP1', tags: ['PROF_GROUP1'] }], null, 2) + '\n');
  fails(await ctl(['WEB', 'frobnicate']), /^Unknown profile command "WEB frobnicate"\.\nUsage:/, 2);
});

test('calicoctl profile P member add|remove: a real container on a real dockerd, its endpoint on this host', async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  const dockerd = await PrivateDockerd.start();
  await ensureTestImage(dockerd);
  const r = await dockerd.docker(['run', '-d', '--name', 'group1-node1', '--network', 'none', TEST_IMAGE, 'sleep', '600']);
  assert.equal(r.code, 0, r.stderr);
  const cid = r.stdout.trim();
  const host = 'policy-core-test-host';
  const ctl: Ctl = (args) =>
    run(process.execPath, [CALICOCTL_MAIN, 'profile', ...args, '--docker', dockerd.host, '--hostname', host, '--etcd-endpoints', etcd.endpoints.join(',')], {
      env: envWithoutEtcd(), timeoutMs: 30000,
    });
  const ds = new Datastore({ endpoints: etcd.endpoints });
  after(() => ds.close());
  const eps = new EndpointStore(ds);
  const profiles = new ProfileStore(ds);

  // Not yet networked by Calico: no endpoint on this host.
  fails(await ctl(['PROF_GROUP1', 'member', 'add', 'group1-node1']), /^Failed to add container to profile\.\nContainer group1-node1 is unknown to Calico: it has no endpoint on this host \(host name policy-core-test-host; --hostname names another\)/);
  fails(await ctl(['PROF_GROUP1', 'member', 'add', 'no-such-container']), /^Container no-such-container was not found\.\n$/);
  assert.equal(await profiles.get('PROF_GROUP1'), undefined, 'a refused member add creates nothing');

  // The endpoint as the node writes it at Join (default profile), plus one on another host for the same id.
  const id = { host, containerId: cid, endpointId: 'ep1' };
  await eps.put({
    ...id, state: 'active', name: 'cali' + cid.slice(0, 11), mac: '02:11:22:33:44:55', 'container:if_name': 'eth0',
    profile_ids: [DEFAULT_PROFILE], ipv4_nets: ['192.168.0.2/32'], ipv6_nets: [],
  });
  ok(
    await ctl(['PROF_GROUP1', 'member', 'add', 'group1-node1']),
    'Profile PROF_GROUP1 did not exist: created it with the default rules (members reach each other, all outbound allowed).\nAdded group1-node1 to PROF_GROUP1\n',
  );
  assert.deepEqual((await eps.get(id))!.profile_ids, ['PROF_GROUP1']);
  assert.deepEqual((await profiles.get('PROF_GROUP1'))!.tags, ['PROF_GROUP1']);
  // Second time: the profile exists, membership replaces (by id this time).
  ok(await ctl(['PROF_GROUP1', 'member', 'add', cid.slice(0, 12)]), `Added ${cid.slice(0, 12)} to PROF_GROUP1\n`);
  ok(await ctl(['OTHER', 'member', 'add', 'group1-node1']), /Added group1-node1 to OTHER\n$/);
  assert.deepEqual((await eps.get(id))!.profile_ids, ['OTHER'], 'member add replaces the profile, as in 2015');
  ok(await ctl(['PROF_GROUP1', 'member', 'remove', 'group1-node1']), 'Container group1-node1 is not a member of profile PROF_GROUP1: nothing to remove.\n');
  ok(await ctl(['OTHER', 'member', 'remove', 'group1-node1']), 'Removed group1-node1 from OTHER\n');
  assert.deepEqual((await eps.get(id))!.profile_ids, [DEFAULT_PROFILE], 'member remove returns it to the default profile');
  assert.ok(await profiles.get(DEFAULT_PROFILE), 'the default profile exists');
  // The default profile's members show up in show --detailed.
  ok(await ctl(['show', '--detailed']), new RegExp(`\\| ${DEFAULT_PROFILE} \\| ${host} \\| docker +\\| ${cid.slice(0, 12)} \\| ep1 +\\| active \\|`));
});

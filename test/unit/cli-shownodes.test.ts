import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detail, renderShownodes, summarise } from '../../src/cli/commands/shownodes';
import { renderStatus } from '../../src/cli/commands/status';
import type { Endpoint } from '../../src/datastore';

const ep = (host: string, containerId: string, endpointId: string, nets: string[], v6: string[] = []): Endpoint => ({
  host,
  containerId,
  endpointId,
  state: 'active',
  name: 'cali' + endpointId.slice(0, 11),
  mac: '02:00:00:00:00:01',
  'container:if_name': 'eth0',
  profile_ids: [],
  ipv4_nets: nets,
  ipv6_nets: v6,
});

const C1 = 'a'.repeat(64);
const E1 = 'e'.repeat(64);

test('shownodes: one row per host, N/A and 0 for a host without workloads', () => {
  const eps = [ep('trinity10', C1, E1, ['192.168.0.1/32']), ep('trinity10', 'b'.repeat(64), 'f'.repeat(64), ['192.168.0.2/32'])];
  assert.deepEqual(summarise(['trinity10', 'trinity20'], eps), [
    { host: 'trinity10', workloadType: 'docker', workloads: 2 },
    { host: 'trinity20', workloadType: 'N/A', workloads: 0 },
  ]);
  assert.equal(
    renderShownodes(false, ['trinity20'], eps.slice(0, 1)),
    [
      '+-----------+---------------+---------------------+',
      '|   Host    | Workload Type | Number of workloads |',
      '+-----------+---------------+---------------------+',
      '| trinity10 | docker        | 1                   |',
      '| trinity20 | N/A           | 0                   |',
      '+-----------+---------------+---------------------+',
      '',
    ].join('\n'),
  );
});

test('shownodes --detailed: 2015 columns, ids cut to 12, addresses one per line, None for an empty host', () => {
  const eps = [ep('h1', C1, E1, ['192.168.0.1/32'], ['fd80::1/128'])];
  const rows = detail(['h1', 'h2'], eps);
  assert.deepEqual(rows[1], { host: 'h2', workloadType: null, workloadId: null, endpointId: null, addresses: [], mac: null, state: null });
  const out = renderShownodes(true, ['h1', 'h2'], eps);
  const lines = out.split('\n');
  assert.match(lines[1], /\| Host \| Workload Type \| Workload ID  \| Endpoint ID  \|   Addresses    \|        MAC        \| State  \|/);
  assert.match(lines[3], /^\| h1 {3}\| docker {8}\| aaaaaaaaaaaa \| eeeeeeeeeeee \| 192\.168\.0\.1\/32 \| 02:00:00:00:00:01 \| active \|$/);
  assert.match(lines[4], /^\| {6}\| {15}\| {14}\| {14}\| fd80::1\/128 +\| +\| +\|$/);
  assert.match(lines[5], /^\| h2 +\| None +\| None +\| None +\| None +\| None +\| None +\|$/);
});

test('status: says what is down', () => {
  const text = renderStatus({
    host: 'h1',
    node: { running: false, pidFile: '/var/lib/calico/calico-node.pid' },
    plugin: { name: 'calico', socket: '/run/docker/plugins/calico.sock', listening: false },
    etcd: { endpoints: ['http://127.0.0.1:1'], reachable: false, error: 'deadline exceeded' },
  });
  assert.equal(
    text,
    'calico node is not running (no live process in /var/lib/calico/calico-node.pid)\n' +
      'Docker plugin "calico": not listening on /run/docker/plugins/calico.sock\n' +
      'etcd: NOT reachable at http://127.0.0.1:1 (deadline exceeded)\n',
  );
});

// The node's BGP view in the CLI (status sessions, shownodes BGP table) and
// the --ip detection from `ip -j` output: pure, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { renderBgpStatus } from '../../src/cli/commands/status';
import { bgpRows, renderBgpTable } from '../../src/cli/commands/shownodes';
import { bgpSessions, parseBirdProtocols } from '../../src/bgp/status';
import { defaultRouteAddress } from '../../src/node/start-node';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'birdc');

test('status: BGP sessions per family with peer, type, state, since, info', () => {
  const sessions = bgpSessions(parseBirdProtocols(fs.readFileSync(path.join(FIXTURES, 'show_protocols.txt'), 'utf8')));
  const text = renderBgpStatus({ socket: '/s/bird/bird.ctl', running: true, sessions });
  const lines = text.split('\n');
  assert.equal(lines[0], 'BIRD is running (socket /s/bird/bird.ctl)');
  assert.equal(lines[1], 'IPv4 BGP status');
  assert.match(lines[3]!, /^\| Peer address \| Peer type \| State \| +Since +\| +Info +\|$/);
  assert.match(text, /^\| 10\.99\.0\.2 +\| mesh +\| up +\| 09:27:38\.191 \| Established \|$/m);
  assert.ok(text.indexOf('IPv6 BGP status') > text.indexOf('10.99.0.2'));
  assert.match(text, /^\| fd99::2 +\| mesh +\| up +\| 09:27:37\.851 \| Established \|$/m);
});

test('status: BIRD down, no peers of a family, and a refused config are said', () => {
  assert.equal(
    renderBgpStatus({ socket: '/s', running: false, error: 'no BIRD control socket at /s', configError: 'BIRD refused the new config: bird.conf:3:1 syntax error', sessions: [] }),
    'BIRD config refused: BIRD refused the new config: bird.conf:3:1 syntax error\nBIRD is not running (no BIRD control socket at /s)\n',
  );
  const v4only = renderBgpStatus({ socket: '/s', running: true, sessions: [] });
  assert.match(v4only, /IPv4 BGP status\nNo IPv4 BGP peers\.\nIPv6 BGP status\nNo IPv6 BGP peers\.\n$/);
});

test('shownodes: each host\'s BGP addresses and AS (own, else the global one)', () => {
  const rows = bgpRows([{ host: 'trinity20', ip: '198.18.0.20', ip6: '' }, { host: 'trinity10', ip: '198.18.0.10', ip6: 'fd00::10', as: '64512' }], '64511');
  assert.deepEqual(rows, [
    { host: 'trinity10', ipv4: '198.18.0.10', ipv6: 'fd00::10', as: '64512', ownAs: true },
    { host: 'trinity20', ipv4: '198.18.0.20', ipv6: null, as: '64511', ownAs: false },
  ]);
  const lines = renderBgpTable(rows).split('\n');
  assert.match(lines[1]!, /^\| +Host +\| +BGP IPv4 +\| BGP IPv6 \| +AS +\|$/);
  assert.match(lines[3]!, /^\| trinity10 \| 198\.18\.0\.10 \| fd00::10 +\| 64512 +\|$/);
  assert.match(lines[4]!, /^\| trinity20 \| 198\.18\.0\.20 \| None +\| 64511 \(global\) \|$/);
});

test('--ip detection: the default route\'s interface, not the first interface found', () => {
  const addrs = JSON.stringify([
    { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', scope: 'host' }] },
    { ifname: 'docker0', addr_info: [{ family: 'inet', local: '172.17.0.1', scope: 'global' }] },
    { ifname: 'eth1', addr_info: [{ family: 'inet', local: '198.18.0.20', scope: 'global' }] },
    { ifname: 'eth0', addr_info: [{ family: 'inet', local: '10.1.1.5', scope: 'global' }] },
  ]);
  const routes = JSON.stringify([
    { dst: 'default', gateway: '10.1.1.1', dev: 'eth0', metric: 200 },
    { dst: 'default', gateway: '198.18.0.1', dev: 'eth1', metric: 100 },
  ]);
  assert.deepEqual(defaultRouteAddress(routes, addrs), { address: '198.18.0.20', dev: 'eth1' });
  // A preferred source on the route wins over the interface's first address.
  assert.deepEqual(defaultRouteAddress(JSON.stringify([{ dst: 'default', dev: 'eth0', prefsrc: '10.1.1.9' }]), addrs), { address: '10.1.1.9', dev: 'eth0' });
  assert.equal(defaultRouteAddress('[]', addrs), undefined);
  assert.equal(defaultRouteAddress(JSON.stringify([{ dst: 'default', dev: 'eth9' }]), addrs), undefined);
});

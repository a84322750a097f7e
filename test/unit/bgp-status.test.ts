import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { bgpSessions, parseBirdProtocols } from '../../src/bgp/status';

// Captured from the two-namespace BIRD test (test/integration/bgp-bird.test.ts, CAPTURE_BIRDC=dir).
const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'birdc');
const fixture = (f: string) => fs.readFileSync(path.join(FIXTURES, f), 'utf8');

test('show protocols: every row; BGP sessions with peer, type, state, since, info', () => {
  const protocols = parseBirdProtocols(fixture('show_protocols.txt'));
  assert.deepEqual(protocols.map((p) => p.name), ['device1', 'direct1', 'Kernel_v4', 'Blocks_v4', 'Kernel_v6', 'Blocks_v6', 'Mesh_10_99_0_2', 'Mesh_fd99__2']);
  assert.deepEqual(protocols[2], { name: 'Kernel_v4', proto: 'Kernel', table: 'master4', state: 'up', since: '09:27:36.249', info: '' });
  assert.deepEqual(bgpSessions(protocols), [
    { name: 'Mesh_10_99_0_2', peer: '10.99.0.2', family: 4, type: 'mesh', state: 'up', since: '09:27:38.191', info: 'Established', established: true },
    { name: 'Mesh_fd99__2', peer: 'fd99::2', family: 6, type: 'mesh', state: 'up', since: '09:27:37.851', info: 'Established', established: true },
  ]);
});

test('show protocols all: neighbor address and AS from the details', () => {
  const protocols = parseBirdProtocols(fixture('show_protocols_all.txt'));
  assert.equal(protocols.length, 8);
  const mesh6 = protocols.find((p) => p.name === 'Mesh_fd99__2')!;
  assert.equal(mesh6.neighbor, 'fd99::2');
  assert.equal(mesh6.bgpState, 'Established');
  assert.equal(mesh6.neighborAs, '64511');
  assert.equal(mesh6.localAs, '64511');
  const sessions = bgpSessions(protocols);
  assert.deepEqual(sessions.map((s) => [s.peer, s.type, s.established, s.neighborAs]), [['10.99.0.2', 'mesh', true, '64511'], ['fd99::2', 'mesh', true, '64511']]);
});

// Seen in the same test right after the peer stopped (birdc show protocols all Mesh_10_99_0_1).
const DOWN = `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
Mesh_10_99_0_1 BGP        ---        start  09:28:42.027  Passive       Socket: Connection closed
  BGP state:          Passive
    Neighbor address: 10.99.0.1
    Neighbor AS:      64511
    Local AS:         64511
    Neighbor graceful restart active
    Restart timer:    119.985/-
    Last error:       Socket: Connection closed
  Channel ipv4
    State:          START
Rr_172_16_0_1 BGP        ---        start  2026-11-30 08:01:02  Active        Socket: Connection refused
Global_2001_db8__1 BGP        ---        down   2026-11-30 08:01:02
Node_10_0_0_9 BGP        ---        up     08:01:02.000  Established
bgp1       BGP        ---        up     08:01:02.000  Established
`;

test('sessions that are not up, older-than-a-day timestamps, every session type, foreign protocols ignored', () => {
  const sessions = bgpSessions(parseBirdProtocols(DOWN));
  assert.deepEqual(
    sessions.map((s) => [s.peer, s.type, s.state, s.since, s.info, s.established, s.lastError]),
    [
      ['10.0.0.9', 'node', 'up', '08:01:02.000', 'Established', true, undefined],
      ['10.99.0.1', 'mesh', 'start', '09:28:42.027', 'Passive       Socket: Connection closed', false, 'Socket: Connection closed'],
      ['172.16.0.1', 'rr', 'start', '2026-11-30 08:01:02', 'Active        Socket: Connection refused', false, undefined],
      ['2001:db8::1', 'global', 'down', '2026-11-30 08:01:02', '', false, undefined],
    ],
  );
  assert.deepEqual(parseBirdProtocols(''), []);
});

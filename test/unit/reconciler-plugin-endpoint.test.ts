import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EndpointRegistry } from '../../src/plugin/endpoints';
import { ReservationBook } from '../../src/proxy/interceptors/reservations';
import { knownFromPlugin } from '../../src/reconciler/plugin-endpoint';

test('start shortcut: the reserved address leads to the plugin endpoint holding it', () => {
  const book = new ReservationBook();
  const registry = new EndpointRegistry();
  const known = knownFromPlugin('h1', book, registry);
  assert.equal(known('c1'), undefined, 'nothing reserved');
  book.set('c1', { handle: 'resv-1', ipv4: '10.0.0.5', ipv6: 'fd00::5', profiles: ['web'] });
  assert.equal(known('c1'), undefined, 'no live endpoint yet (start not reached the driver)');
  registry.add({
    endpointId: 'e'.repeat(64),
    networkId: 'n',
    interfaceName: 'calieeeeeeeeeee',
    mac: '02:00:00:00:00:05',
    addresses: ['10.0.0.5/32', 'fd00::5/128'],
    ipv4: '10.0.0.5',
    ipv6: 'fd00::5',
  });
  assert.deepEqual(known('c1'), {
    host: 'h1',
    orchestrator: 'docker',
    workloadId: 'c1',
    endpointId: 'e'.repeat(64),
    ifName: 'calieeeeeeeeeee',
    mac: '02:00:00:00:00:05',
    ipv4Nets: ['10.0.0.5/32'],
    ipv6Nets: ['fd00::5/128'],
    profiles: ['web'],
    state: 'active',
  });
  book.delete('c1');
  assert.equal(known('c1'), undefined);
});

test('reservation book: bounded, oldest first', () => {
  const book = new ReservationBook();
  for (let i = 0; i <= 10000; i++) book.set(`c${i}`, { handle: `h${i}`, profiles: [] });
  assert.equal(book.get('c0'), undefined);
  assert.equal(book.get('c10000')?.handle, 'h10000');
  assert.equal(book.get('c1')?.handle, 'h1');
});

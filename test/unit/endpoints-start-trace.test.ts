import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { StartTrace, startPhases, TRACE_TTL_MS } from '../../src/endpoints/start-trace';

// A container start's phases come from marks made by the proxy (reservation),
// the IPAM and network drivers (each libnetwork call), Join's steps and
// dockerd's start event; the gaps between our calls are dockerd's time.

test('startPhases: each call, the gaps between them, and the total', () => {
  const p = startPhases({
    reserve: { start: 0, end: 10 },
    name: { start: 10, end: 15 },
    requestAddress: { start: 40, end: 45 },
    createEndpoint: { start: 50, end: 52 },
    join: { start: 60, end: 100 },
    joinSteps: { veth: 1, record: 9, policy: 30 },
    started: 400,
  });
  assert.deepEqual(p, {
    reserve: 10,
    name: 5,
    'dockerd:create-to-request-address': 25,
    'request-address': 5,
    'dockerd:request-address-to-create-endpoint': 5,
    'create-endpoint': 2,
    'dockerd:create-endpoint-to-join': 8,
    'join:veth': 1,
    'join:record': 9,
    'join:policy': 30,
    join: 40,
    'dockerd:join-to-start': 300,
    total: 400,
  });
});

test('startPhases: a start without the proxy has no reservation phases; its total starts at RequestAddress', () => {
  const p = startPhases({ requestAddress: { start: 40, end: 45 }, createEndpoint: { start: 50, end: 52 }, join: { start: 60, end: 100 }, joinSteps: {}, started: 140 });
  assert.equal(p.reserve, undefined);
  assert.equal(p['dockerd:create-to-request-address'], undefined);
  assert.equal(p.total, 100);
});

function traced() {
  let clock = 0;
  const lines: unknown[] = [];
  const observed: [string, number][] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const trace = new StartTrace({ log, now: () => clock, observe: (p, s) => observed.push([p, s]) });
  return { trace, lines, observed, at: (t: number) => (clock = t) };
}

test('StartTrace joins handle, address, endpoint and container into one start, logged and observed once at the start event', () => {
  const { trace, lines, observed, at } = traced();
  at(10);
  trace.reserved('resv-1', ['10.0.0.1'], 0);
  at(15);
  trace.named('resv-1', 'c1', 10);
  at(45);
  trace.requestAddress('10.0.0.1', 40);
  at(52);
  trace.createEndpoint('e1', '10.0.0.1', 50);
  trace.joinStep('e1', 'veth', 1);
  trace.joinStep('e1', 'record', 9);
  trace.joinStep('e1', 'policy', 30);
  at(100);
  trace.joined('e1', 60);
  at(400);
  trace.started('c1');
  assert.equal(trace.size, 0);
  const line = lines.find((l) => (l as { msg: string }).msg === 'container start trace') as { container: string; ms: Record<string, number> };
  assert.equal(line.container, 'c1');
  assert.equal(line.ms['join:policy'], 30);
  assert.equal(line.ms['dockerd:join-to-start'], 300);
  assert.equal(line.ms.total, 400);
  assert.deepEqual(observed.find(([p]) => p === 'total'), ['total', 0.4]);
  trace.started('c1'); // a second start event (docker restart) finds nothing open
  assert.equal(lines.filter((l) => (l as { msg: string }).msg === 'container start trace').length, 1);
});

test('StartTrace: a start whose container was named at Join (no proxy) ends at its start event; one never finished is dropped after the TTL', () => {
  const { trace, lines, at } = traced();
  trace.requestAddress('10.0.0.2', 0);
  trace.createEndpoint('e2', '10.0.0.2', 0);
  trace.endpointOf('e2', 'c2');
  trace.joined('e2', 0);
  trace.started('c2');
  assert.equal(lines.length, 1);
  trace.requestAddress('10.0.0.3', 0);
  at(TRACE_TTL_MS + 1);
  trace.requestAddress('10.0.0.4', TRACE_TTL_MS);
  assert.equal(trace.size, 1);
});

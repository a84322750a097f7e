import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pathClass } from '../../src/metrics/path-class';
import { aggregateHealth } from '../../src/metrics/health';
import { metricsAddress, MetricsListenError } from '../../src/metrics/listen';
import { NodeMetrics } from '../../src/metrics/node-metrics';
import { nodeHealth } from '../../src/node/health';

test('path class: from the first segment after the API version; never ids or query', () => {
  const cases: [string, string][] = [
    ['/containers/json', 'containers'],
    ['/v1.41/containers/json?all=1', 'containers'],
    ['/v1.24/containers/0123abcd/attach?stream=1&stdin=1', 'containers'],
    ['/containers/create?name=x', 'containers'],
    ['/v1.41/images/json', 'images'],
    ['/images/busybox:latest/json', 'images'],
    ['/commit?container=x', 'images'],
    ['/v1.41/exec/abc/start', 'exec'],
    ['/_ping', 'system'],
    ['/v1.41/_ping', 'system'],
    ['/version', 'system'],
    ['/info', 'system'],
    ['/events?filters=x', 'system'],
    ['/system/df', 'system'],
    ['/networks/calico', 'networks'],
    ['/volumes', 'volumes'],
    ['/build?t=x', 'build'],
    ['/swarm/init', 'swarm'],
    ['/services/x/update', 'swarm'],
    ['/session', 'session'],
    ['/grpc', 'session'],
    ['/', 'other'],
    ['', 'other'],
    ['*', 'other'],
    ['/v1.41', 'other'],
    ['/vfoo/containers', 'other'],
    ['/containersx/json', 'other'],
    ['/__proto__', 'other'],
    ['/constructor', 'other'],
    ['/toString', 'other'],
  ];
  for (const [url, want] of cases) assert.equal(pathClass(url), want, url);
});

test('health: ok only when every component says so; the others named with their reason', () => {
  assert.deepEqual(aggregateHealth([]), { status: 'ok', components: {} });
  assert.deepEqual(aggregateHealth([{ name: 'datastore', health: () => undefined }, { name: 'syncer' }]), {
    status: 'ok',
    components: { datastore: 'ok', syncer: 'ok' },
  });
  assert.deepEqual(
    aggregateHealth([
      { name: 'datastore', health: () => undefined },
      { name: 'plugin', health: () => 'socket /run/docker/plugins/calico.sock is gone' },
      { name: 'proxy', health: () => { throw new Error('boom'); } },
    ]),
    { status: 'unhealthy', components: { datastore: 'ok', plugin: 'socket /run/docker/plugins/calico.sock is gone', proxy: 'health check failed: boom' } },
  );
  // nodeHealth asks Components (start/stop unused).
  const c = { name: 'proxy', start: async () => undefined, stop: async () => undefined, health: () => 'not listening' };
  assert.deepEqual(nodeHealth([c]), { status: 'unhealthy', components: { proxy: 'not listening' } });
});

test('--metrics: loopback and unix as they are; anything else only with verified client certificates', () => {
  assert.deepEqual(metricsAddress('tcp://127.0.0.1:9099'), { kind: 'tcp', host: '127.0.0.1', port: 9099 });
  assert.deepEqual(metricsAddress('127.0.0.1'), { kind: 'tcp', host: '127.0.0.1', port: 9099 });
  assert.deepEqual(metricsAddress(':9100'), { kind: 'tcp', host: '127.0.0.1', port: 9100 }, 'no host: loopback, as --listen reads it');
  assert.deepEqual(metricsAddress('tcp://[::1]:9100'), { kind: 'tcp', host: '::1', port: 9100 });
  assert.deepEqual(metricsAddress('unix:///run/calico/metrics.sock'), { kind: 'unix', path: '/run/calico/metrics.sock' });
  const tls = { cert: 'c.pem', key: 'k.pem', ca: 'ca.pem' };
  for (const bad of ['tcp://0.0.0.0:9099', 'tcp://192.0.2.1:9099', 'tcp://[::]:9099']) {
    assert.throws(() => metricsAddress(bad), (e: Error) => e instanceof MetricsListenError && /--metrics tcp:\/\/127\.0\.0\.1:9099/.test(e.message) && /--tlsverify --tlscacert/.test(e.message), bad);
    assert.throws(() => metricsAddress(bad, { ...tls, verify: false }), MetricsListenError, `${bad} with --tls alone`);
    assert.deepEqual(metricsAddress(bad, { ...tls, verify: true }).kind, 'tcp');
  }
  assert.throws(() => metricsAddress('http://x:1'), MetricsListenError);
});

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[2] ?? '').split(',').filter(Boolean)) {
      const [k, v] = kv.split('=');
      got[k] = JSON.parse(v);
    }
    if (Object.entries(labels).every(([k, v]) => got[k] === v) && Object.keys(got).length === Object.keys(labels).length) return Number(m[3]);
  }
  return undefined;
}

test('node metrics: recorders move exactly their counters; the registry stays open for later gauges', async () => {
  const m = new NodeMetrics({ defaultMetrics: false });
  m.proxy.request('/v1.41/containers/json', 200);
  m.proxy.request('/containers/json?all=1', 200);
  m.proxy.request('/containers/abc/json', 404);
  m.proxy.request('/_ping', 200);
  m.proxy.intercepted('create-container', 0.004);
  m.proxy.intercepted('create-container', 0.02);
  m.proxy.hijacked(1);
  m.proxy.hijacked(1);
  m.proxy.hijacked(-1);
  m.ipam.done('allocate', 0.003, 2);
  m.ipam.done('release', 0.001, 1);
  m.ipam.done('release', 0.001, 0);
  m.ipam.done('allocate', 0.5, 0, 'EXHAUSTED');
  m.plugin.call('NetworkDriver.Join', 'ok');
  m.plugin.call('NetworkDriver.Join', 'error');
  m.reconciler.sweep('ok');
  m.reconciler.released('sweep', 0);
  m.reconciler.released('event', 1);
  m.etcd(0.002);
  m.etcd(2.5, 'UNAVAILABLE');
  let bgp = 3;
  m.gauge('calico_bgp_sessions_established', 'BGP sessions up', () => bgp);
  bgp = 4;
  const t = await m.text();
  assert.equal(sample(t, 'calico_proxy_requests_total', { class: 'containers', status: '200' }), 2);
  assert.equal(sample(t, 'calico_proxy_requests_total', { class: 'containers', status: '404' }), 1);
  assert.equal(sample(t, 'calico_proxy_requests_total', { class: 'system', status: '200' }), 1);
  assert.equal(sample(t, 'calico_proxy_intercepted_seconds_count', { interceptor: 'create-container' }), 2);
  assert.equal(sample(t, 'calico_proxy_intercepted_seconds_bucket', { interceptor: 'create-container', le: '0.005' }), 1);
  assert.equal(sample(t, 'calico_proxy_hijacked_streams_open'), 1);
  assert.equal(sample(t, 'calico_proxy_spliced_bytes_total', { direction: 'to_docker' }), 0);
  assert.equal(sample(t, 'calico_ipam_allocations_total'), 2);
  assert.equal(sample(t, 'calico_ipam_releases_total'), 1);
  assert.equal(sample(t, 'calico_ipam_errors_total', { op: 'allocate', code: 'EXHAUSTED' }), 1);
  assert.equal(sample(t, 'calico_ipam_operation_seconds_count', { op: 'release' }), 2);
  assert.equal(sample(t, 'calico_plugin_calls_total', { method: 'NetworkDriver.Join', result: 'ok' }), 1);
  assert.equal(sample(t, 'calico_plugin_calls_total', { method: 'NetworkDriver.Join', result: 'error' }), 1);
  assert.equal(sample(t, 'calico_reconciler_sweeps_total', { result: 'ok' }), 1);
  assert.equal(sample(t, 'calico_reconciler_released_addresses_total', { trigger: 'event' }), 1);
  assert.equal(sample(t, 'calico_reconciler_released_addresses_total', { trigger: 'sweep' }), undefined);
  assert.equal(sample(t, 'calico_etcd_call_seconds_count'), 2);
  assert.equal(sample(t, 'calico_etcd_errors_total', { kind: 'unavailable' }), 1);
  assert.equal(sample(t, 'calico_bgp_sessions_established'), 4);
  // A second scrape does not count twice.
  assert.equal(sample(await m.text(), 'calico_proxy_requests_total', { class: 'containers', status: '200' }), 2);
});

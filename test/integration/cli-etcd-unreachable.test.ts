import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { teardownAll, onTeardown, run, CALICOCTL_MAIN, freePort, envWithoutEtcd } from '../harness';

after(teardownAll);

function ctl(args: string[], env = envWithoutEtcd()) {
  return run(process.execPath, [CALICOCTL_MAIN, ...args], { env, timeoutMs: 20000 });
}

/** A loopback listener that accepts connections and never says a word (a hung etcd). */
async function silentListener(): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTeardown('silent listener', () => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

function assertEtcdError(r: Awaited<ReturnType<typeof ctl>>, endpoints: string[]): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, new RegExp(`^Error accessing etcd at ${endpoints.join(', ').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(`));
  assert.match(r.stderr, /\)\. Is etcd running\?\n$/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

/**
 * The command must give up on etcd within 3 s. Wall time on a 2-core machine
 * shared with other suites includes a Node.js start-up that alone can take
 * seconds, so the start-up of the same program (same modules, no etcd) is
 * measured beside it and only what etcd adds is held to the bound.
 */
async function assertFailsInTime(args: string[], env: NodeJS.ProcessEnv): Promise<Awaited<ReturnType<typeof ctl>>> {
  const baseline = await ctl(['pool', 'show', '--help'], env);
  assert.equal(baseline.code, 0);
  const r = await ctl(args, env);
  const spent = r.ms - baseline.ms;
  assert.ok(r.ms < 3000 || spent < 2500, `failed after ${r.ms} ms (start-up alone: ${baseline.ms} ms); must give up on etcd within 3 s`);
  return r;
}

test('unreachable etcd: nothing listening -> fails in < 3 s naming the endpoint', async () => {
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  assertEtcdError(await assertFailsInTime(['pool', 'show', '--etcd-endpoints', endpoint], envWithoutEtcd()), [endpoint]);
});

test('unreachable etcd: a listener that never answers -> fails in < 3 s naming every endpoint tried', async () => {
  const hung = await silentListener();
  const refused = `http://127.0.0.1:${await freePort()}`;
  const r = await assertFailsInTime(['pool', 'add', '10.0.0.0/16'], envWithoutEtcd({ ETCD_ENDPOINTS: `${hung},${refused}` }));
  assertEtcdError(r, [hung, refused]);
});

test('unreachable etcd: ETCD_AUTHORITY host:port is named as the URL tried', async () => {
  const port = await freePort();
  const env = envWithoutEtcd({ ETCD_AUTHORITY: `127.0.0.1:${port}` });
  assertEtcdError(await assertFailsInTime(['pool', 'remove', '10.0.0.0/16'], env), [`http://127.0.0.1:${port}`]);
});

test('bad endpoint configuration and bad arguments are reported before etcd is contacted', async () => {
  let r = await ctl(['pool', 'show', '--etcd-endpoints', 'ftp://10.0.0.1:2379']);
  assert.equal(r.code, 2, 'a usage error');
  assert.equal(r.stderr, '--etcd-endpoints: "ftp://10.0.0.1:2379" uses ftp; etcd endpoints are http://, https:// or unix://\n');
  // The endpoint is dead, yet the malformed CIDR is what gets reported (validate first).
  r = await ctl(['pool', 'add', '10.0.0.300/8', '--etcd-endpoints', `127.0.0.1:${await freePort()}`]);
  assert.equal(r.code, 2, 'a usage error');
  assert.match(r.stderr, /^"10\.0\.0\.300\/8" is not a CIDR/);
});

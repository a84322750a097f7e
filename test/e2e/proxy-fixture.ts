import assert from 'node:assert/strict';
import { PrivateDockerd, ensureTestImage, run, RunOptions, RunResult, TEST_IMAGE } from '../harness';
import { onTeardown, freePort } from '../harness';
import { DockerProxy, ProxyOptions } from '../../src/proxy';
import { formatAddress } from '../../src/listen/address';
import { silentLogger, createLogger } from '../../src/log/logger';

/**
 * One private dockerd and one proxy in front of it, per test file. Every flow
 * runs the real docker CLI twice, directly and through the proxy, and the two
 * results are compared (the Powerstrip differential style).
 */
export interface ProxyFixture {
  d: PrivateDockerd;
  proxy: DockerProxy;
  /** DOCKER_HOST for the proxy. */
  proxyHost: string;
  image: string;
  /** docker CLI directly against dockerd. */
  direct(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** docker CLI through the proxy. */
  proxied(args: string[], opts?: RunOptions): Promise<RunResult>;
}

export async function startProxyFixture(extra: Partial<ProxyOptions> = {}): Promise<ProxyFixture> {
  const d = await PrivateDockerd.start();
  const image = await ensureTestImage(d);
  const log = process.env.PROXY_TEST_LOG ? createLogger({ level: process.env.PROXY_TEST_LOG, pretty: false }) : silentLogger();
  const proxy = new DockerProxy({ listen: 'tcp://127.0.0.1:0', upstream: d.host, ...extra }, log);
  await proxy.start();
  onTeardown('proxy', () => proxy.stop());
  const proxyHost = formatAddress(proxy.address);
  return {
    d,
    proxy,
    proxyHost,
    image,
    direct: (args, opts) => d.docker(args, { timeoutMs: 60000, ...opts }),
    proxied: (args, opts) => d.docker(args, { timeoutMs: 60000, ...opts, host: proxyHost }),
  };
}

/** Same stdout, stderr and exit code both ways; `normalize` masks what legitimately differs (ids, names). */
export function assertSame(what: string, direct: RunResult, proxied: RunResult, normalize: (s: string) => string = (s) => s): void {
  const n = (r: RunResult) => ({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });
  assert.deepEqual(n(proxied), n(direct), `${what}: through the proxy differs from direct`);
}

/** Runs `args` directly, then through the proxy, and asserts the same result; returns both. */
export async function compare(
  f: ProxyFixture,
  what: string,
  args: string[] | ((via: 'direct' | 'proxy') => string[]),
  opts: RunOptions = {},
  normalize?: (s: string) => string,
): Promise<{ direct: RunResult; proxied: RunResult }> {
  const a = (via: 'direct' | 'proxy') => (typeof args === 'function' ? args(via) : args);
  const direct = await f.direct(a('direct'), opts);
  const proxied = await f.proxied(a('proxy'), opts);
  assertSame(what, direct, proxied, normalize);
  return { direct, proxied };
}

/** Masks 64- and 12-hex container/image ids. */
export function maskIds(s: string): string {
  return s.replace(/\b[0-9a-f]{64}\b/g, '<id>').replace(/\b[0-9a-f]{12}\b/g, '<id>');
}

export { TEST_IMAGE, run, freePort };


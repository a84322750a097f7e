import path from 'node:path';

/**
 * Addresses as the docker CLI and dockerd spell them: `tcp://host:port`,
 * `unix:///path`. Pure parsing and checks; nothing here opens a socket.
 */
export type Address = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export class AddressError extends Error {}

export function parseAddress(s: string, what: string, defaultPort = 2375): Address {
  const v = s.trim();
  if (v.startsWith('unix://')) {
    const p = v.slice('unix://'.length);
    if (!p.startsWith('/')) throw new AddressError(`${what} ${s}: a unix socket path must be absolute (unix:///var/run/x.sock)`);
    return { kind: 'unix', path: path.normalize(p) };
  }
  if (v.startsWith('/')) return { kind: 'unix', path: path.normalize(v) };
  const hostPort = v.startsWith('tcp://') ? v.slice('tcp://'.length) : v;
  if (/^[a-z]+:\/\//i.test(hostPort)) {
    throw new AddressError(`${what} ${s}: unsupported scheme (use tcp://HOST:PORT or unix:///PATH)`);
  }
  const clean = hostPort.replace(/\/+$/, '');
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(clean);
  if (!m) throw new AddressError(`${what} ${s}: expected tcp://HOST:PORT or unix:///PATH`);
  const host = m[1] ?? (m[2] || '127.0.0.1');
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AddressError(`${what} ${s}: port ${m[3]} is out of range`);
  return { kind: 'tcp', host, port };
}

export function formatAddress(a: Address): string {
  if (a.kind === 'unix') return `unix://${a.path}`;
  return `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** Only these hosts keep the API on this machine; anything else needs TLS. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::ffff:127.0.0.1';
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/**
 * Whether the upstream would lead back to our own listener (a proxy that
 * forwards to itself answers nothing and eats file descriptors). Catches the
 * static cases; the proxy also probes at startup for the ones only the
 * network knows (another name for this host).
 */
export function pointsAt(upstream: Address, listen: Address): boolean {
  if (upstream.kind === 'unix' || listen.kind === 'unix') {
    return upstream.kind === 'unix' && listen.kind === 'unix' && upstream.path === listen.path;
  }
  if (upstream.port !== listen.port) return false;
  const u = upstream.host.toLowerCase();
  const l = listen.host.toLowerCase();
  if (u === l) return true;
  if (isWildcard(l)) return true;
  return isLoopbackHost(u) && isLoopbackHost(l);
}

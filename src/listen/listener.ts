import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { Address } from './address';
import { formatAddress, isLoopbackHost } from './address';

/** TLS as dockerd spells it: --tls, --tlsverify, --tlscacert, --tlscert, --tlskey. */
export interface TlsOptions {
  cert: string; // file paths
  key: string;
  ca?: string;
  /** --tlsverify: refuse clients without a certificate signed by `ca`. */
  verify: boolean;
}

export class ListenError extends Error {}

/**
 * Refuses what would expose the Docker API (root on this host) to the
 * network without verified client certificates: off loopback, TLS alone
 * (--tls) only encrypts, anyone who reaches the port still gets root, so only
 * --tlsverify is accepted there. Loopback and unix sockets may go without:
 * like Docker's own socket, they give every local user who can reach them
 * root. Pure: checks the flags, opens nothing.
 */
export function checkListenPolicy(a: Address, tls?: TlsOptions): void {
  if (tls?.verify && !tls.ca) {
    throw new ListenError('--tlsverify needs --tlscacert: the CA that signs the client certificates to accept');
  }
  if (a.kind !== 'tcp' || isLoopbackHost(a.host) || tls?.verify) return;
  const fix =
    'Listen on 127.0.0.1 or a unix socket, or require client certificates: ' +
    '--tlsverify --tlscacert=ca.pem --tlscert=server-cert.pem --tlskey=server-key.pem';
  if (!tls) {
    throw new ListenError(
      `refusing to listen on ${formatAddress(a)} without TLS: anyone who can reach it gets root on this host ` +
        `through the Docker API. ${fix}`,
    );
  }
  throw new ListenError(
    `refusing to listen on ${formatAddress(a)} with --tls alone: it encrypts but accepts any client, and anyone ` +
      `who can reach it gets root on this host through the Docker API. Use --tlsverify instead of --tls ` +
      `(with --tlscacert=ca.pem, the CA that signs your clients' certificates), or listen on 127.0.0.1 or a unix socket`,
  );
}

/** Server-side TLS as dockerd offers it (the proxy's listener, the metrics endpoint). */
export function tlsServerOptions(t: TlsOptions): tls.TlsOptions {
  return {
    cert: fs.readFileSync(t.cert),
    key: fs.readFileSync(t.key),
    ca: t.ca ? fs.readFileSync(t.ca) : undefined,
    requestCert: t.verify,
    rejectUnauthorized: t.verify,
    // Keep ALPN off h2: hijacked calls need HTTP/1.1.
    ALPNProtocols: ['http/1.1'],
    minVersion: 'TLSv1.2',
  };
}

/**
 * A listener of raw connections (the proxy splices them itself), TLS as
 * dockerd offers it. Returns the server and the event that hands over a
 * client connection ready for HTTP bytes. `highWaterMark`: how much a paused
 * client socket may buffer.
 */
export function createListener(t: TlsOptions | undefined, highWaterMark: number): { server: net.Server; event: 'connection' | 'secureConnection' } {
  if (!t) return { server: net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark }), event: 'connection' };
  return { server: tls.createServer({ allowHalfOpen: true, highWaterMark, ...tlsServerOptions(t) }), event: 'secureConnection' };
}

/** Whether something accepts connections on a unix socket path. */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Listens on a TCP address or unix socket. A stale socket file (nobody
 * listening) is replaced; a live one is an error. A unix socket gets the mode
 * and group of `permsFrom` (the Docker socket) so the `docker` group keeps
 * working through us.
 */
export async function listen(server: net.Server, a: Address, permsFrom: string | undefined, log: Logger): Promise<Address> {
  if (a.kind === 'unix') {
    if (fs.existsSync(a.path)) {
      if (!fs.lstatSync(a.path).isSocket()) throw new ListenError(`cannot listen on ${a.path}: it exists and is not a socket`);
      if (await socketInUse(a.path)) throw new ListenError(`cannot listen on ${a.path}: another process is listening there`);
      fs.unlinkSync(a.path);
    }
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(new ListenError(`cannot listen on ${formatAddress(a)}: ${e.message}`));
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (a.kind === 'unix') server.listen(a.path, done);
    else server.listen(a.port, a.host, done);
  });
  if (a.kind === 'unix') {
    copyPermissions(a.path, permsFrom, log);
    return a;
  }
  const bound = server.address() as net.AddressInfo;
  return { kind: 'tcp', host: a.host, port: bound.port };
}

function copyPermissions(path: string, from: string | undefined, log: Logger): void {
  let mode = 0o660;
  let gid: number | undefined;
  if (from) {
    try {
      const st = fs.statSync(from);
      mode = st.mode & 0o777;
      gid = st.gid;
    } catch (e) {
      log.warn({ from }, `cannot read permissions of ${from} (${(e as Error).message}); ${path} gets mode 0660`);
    }
  }
  fs.chmodSync(path, mode);
  if (gid !== undefined) {
    try {
      fs.chownSync(path, -1, gid);
    } catch (e) {
      log.warn({ path, gid }, `cannot give ${path} group ${gid}: ${(e as Error).message}`);
    }
  }
}

import net from 'node:net';
import { Pool } from 'undici';
import type { Address } from './address';
import { formatAddress } from './address';

/** net.connect's `onread`: reads land in `buffer`, valid only until the callback returns. */
export type SpliceRead = net.OnReadOpts;

/**
 * A spliced read: dockerd's side reads into one buffer of this size per
 * connection, and a client socket buffers at most this much while paused.
 * (A bigger client buffer, 1 MiB once, kept up to 16 upload chunks alive
 * while dockerd drained: V8 promoted them to its old space and ran a full
 * mark-compact every ~25 MiB of a `docker cp` in.)
 */
export const SPLICE_CHUNK = 64 * 1024;

/**
 * The way to dockerd. Ordinary calls go through an undici pool; hijacked calls
 * get a fresh raw socket each (they own their connection until it closes).
 */
export class Upstream {
  readonly pool: Pool;
  readonly label: string;
  /** The pool's settings, kept so tests can assert that no timeout is configured. */
  readonly poolOptions: Pool.Options;

  constructor(readonly address: Address) {
    this.label = formatAddress(address);
    const origin = address.kind === 'unix' ? 'http://localhost' : `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
    this.poolOptions = {
      socketPath: address.kind === 'unix' ? address.path : undefined,
      // Every foreground `docker run` holds a /wait, often a logs -f or events,
      // for as long as the container lives: a bounded pool would queue the
      // next call behind them (head-of-line blocking). Unbounded, as dockerd is.
      connections: null,
      pipelining: 1,
      // logs -f / events / wait may be silent for hours: no timeouts at all.
      bodyTimeout: 0,
      headersTimeout: 0,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      // Large single chunks (`docker images -a`) and big headers must pass.
      maxHeaderSize: 1024 * 1024,
      // A bigger socket buffer than undici's 64 KiB: uploads (`docker cp` in,
      // build contexts, `docker load`) pause the client far less often.
      // (undici passes these on to net.connect; its types do not list highWaterMark.)
      connect: { timeout: 10_000, highWaterMark: 1024 * 1024 } as Pool.Options['connect'],
    };
    this.pool = new Pool(origin, this.poolOptions);
  }

  /**
   * A raw, half-open-capable socket to dockerd (the splice's upstream).
   * `onread`: read into that one buffer instead of a new one per read (see
   * splice.ts: the allocations were what the proxy's garbage collector spent
   * its time on during transfers).
   */
  connectRaw(onread?: SpliceRead): net.Socket {
    const a = this.address;
    const opts: net.NetConnectOpts =
      a.kind === 'unix' ? { path: a.path, allowHalfOpen: true, onread } : { host: a.host, port: a.port, allowHalfOpen: true, onread };
    const s = net.connect(opts);
    s.setNoDelay?.(true);
    return s;
  }

  async close(): Promise<void> {
    await this.pool.destroy().catch(() => undefined);
  }
}

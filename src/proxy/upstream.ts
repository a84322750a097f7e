import net from 'node:net';
import type { Address } from '../listen/address';
import { formatAddress } from '../listen/address';

/** net.connect's `onread`: reads land in `buffer`, valid only until the callback returns. */
export type SpliceRead = net.OnReadOpts;

/**
 * A spliced read: each buffer a splice's sockets read into has this size
 * (backpressure.ts). 256 KiB, not 64: an upload through the proxy took ~11-15 %
 * less CPU per GiB (fewer reads, writes and JS calls per MiB; bench/proxy, README).
 */
export const SPLICE_CHUNK = 256 * 1024;

/** The way to dockerd: raw sockets, one per client connection (connection.ts). */
export class Upstream {
  readonly label: string;

  constructor(readonly address: Address) {
    this.label = formatAddress(address);
  }

  /**
   * A raw, half-open-capable socket to dockerd. `onread`: read into that one
   * buffer instead of a new one per read (see backpressure.ts).
   */
  connect(onread?: SpliceRead): net.Socket {
    const a = this.address;
    const opts: net.NetConnectOpts =
      a.kind === 'unix' ? { path: a.path, allowHalfOpen: true, onread } : { host: a.host, port: a.port, allowHalfOpen: true, onread };
    const s = net.connect(opts);
    s.setNoDelay?.(true);
    return s;
  }

  /**
   * One GET /_ping carrying `header: value`, answered or not within
   * `timeoutMs` (the proxy's loop probe: only the network knows whether the
   * upstream leads back here). Rejects when dockerd cannot be reached.
   */
  ping(header: string, value: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = this.connect();
      const timer = setTimeout(() => s.destroy(), timeoutMs);
      s.once('connect', () => s.write(`GET /_ping HTTP/1.1\r\nHost: docker\r\n${header}: ${value}\r\nConnection: close\r\n\r\n`));
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      const done = () => {
        clearTimeout(timer);
        s.destroy();
        resolve();
      };
      // Any answer settles it (the probe, if it came back, was seen on the way).
      s.once('data', done);
      s.once('close', done);
    });
  }
}

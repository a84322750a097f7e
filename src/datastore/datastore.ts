// etcd access: one client per process, every call under a deadline, every
// value read through a schema, every read-modify-write a compare-and-swap on
// mod revision. Knows nothing about Calico objects (see the *-store files).
import { Etcd3, isRecoverableError, GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3';
import type { IKeyValue, IRequestOp, ICompare, IRangeResponse } from 'etcd3/lib/rpc';
import type { ZodType, ZodTypeDef } from 'zod';
import type { Logger } from 'pino';
import { DatastoreError } from './errors';

/** How a value is stored: JSON (objects, lists) or the raw string (2015 plain values such as bird_ip). */
export interface Codec<T> {
  schema: ZodType<T, ZodTypeDef, unknown>;
  text?: boolean;
  /**
   * Optional fast path for values read in bulk: the decoded value when the
   * input is certainly valid (exactly what `schema` would give), undefined to
   * let `schema` decide (and say what is wrong).
   */
  fast?: (data: unknown) => T | undefined;
}
export const json = <T>(schema: ZodType<T, ZodTypeDef, unknown>): Codec<T> => ({ schema });
export const text = <T>(schema: ZodType<T, ZodTypeDef, unknown>): Codec<T> => ({ schema, text: true });

export interface Versioned<T> {
  key: string;
  value: T;
  /** etcd mod revision (decimal string): the CAS guard for the next write. */
  modRevision: string;
  createRevision: string;
}

/** Raw key-value as read: value undefined when the key does not exist (modRevision "0"). */
export interface RawKv {
  key: string;
  raw?: string;
  modRevision: string;
}

export interface Put {
  key: string;
  value: unknown;
  text?: boolean;
}

export interface TxnResult {
  succeeded: boolean;
  /** Header revision: on success, the mod revision of every key written. */
  revision: string;
  /** On failure: the current state of every compared key (one read saved per conflict). */
  current: Map<string, RawKv>;
}

/** TLS material for https:// endpoints, already read (src/etcd/tls.ts reads and checks the files). */
export interface DatastoreTls {
  /** CA certificates the server's certificate must chain to; absent: the system's. */
  ca?: Buffer;
  /** Client certificate and its key, for an etcd that requires client certificates. */
  cert?: Buffer;
  key?: Buffer;
  /** Where the CA came from ("--etcd-ca-file /etc/calico/ca.pem"), for messages. */
  caFrom: string;
  /** Where the client certificate came from, for messages. */
  certFrom?: string;
}

export interface DatastoreOptions {
  /** etcd client URLs ("http://127.0.0.1:2379", "https://...", "unix:///path"; a bare "host:port" gets http://). */
  endpoints: string[];
  /** For https:// endpoints: CA and client certificate. */
  tls?: DatastoreTls;
  /** Deadline of one operation; an unreachable etcd fails within it. Default 2500 ms. */
  timeoutMs?: number;
  log?: Logger;
  /** Told about every stored value that fails its schema (listings skip it). Default: log a warning. */
  onInvalid?: (key: string, problem: string) => void;
}

/** Bound and backoff of compare-and-swap retries. */
export const CAS_RETRIES = 100;

export function normaliseEndpoint(e: string): string {
  const t = e.trim().replace(/\/+$/, '');
  return /^[a-z]+:\/\//.test(t) ? t : `http://${t}`;
}

export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i] < 0xff) {
      const end = b.subarray(0, i + 1);
      end[i]++;
      return end;
    }
  }
  return Buffer.from([0]);
}

/** Told about every etcd call: its time, and its error code when it failed (the node's metrics). */
export type CallObserver = (seconds: number, errorCode?: string) => void;

/** How old the last etcd answer may be before health() pings (in the background) to refresh it. */
export const HEALTH_FRESH_MS = 10000;

export class Datastore {
  readonly endpoints: string[];
  readonly client: Etcd3;
  /** Set by the node (metrics): sees every call's time and outcome. */
  observer?: CallObserver;
  private readonly timeoutMs: number;
  private readonly onInvalid: (key: string, problem: string) => void;
  /** The last call's outcome: when it ended and, if it failed, why. */
  private last?: { at: number; error?: string };
  private healthPing?: Promise<void>;
  private readonly tls?: DatastoreTls;

  constructor(opts: DatastoreOptions) {
    if (!opts.endpoints.length) throw new DatastoreError('INVALID_ARGUMENT', 'no etcd endpoints given');
    this.endpoints = opts.endpoints.map(normaliseEndpoint);
    this.timeoutMs = opts.timeoutMs ?? 2500;
    this.tls = opts.tls;
    const log = opts.log;
    this.onInvalid =
      opts.onInvalid ?? ((key, problem) => log?.warn({ key }, `ignoring invalid value at ${key}: ${problem}`));
    this.client = new Etcd3({
      hosts: this.endpoints,
      // Without credentials, https:// endpoints are verified against the system's CAs.
      credentials: opts.tls?.ca || opts.tls?.cert ? { rootCertificate: opts.tls.ca!, privateKey: opts.tls.key, certChain: opts.tls.cert } : undefined,
      dialTimeout: Math.min(1000, this.timeoutMs),
      // The default fault handling retries on another member (good when one
      // member is down) behind a circuit breaker; our own deadline in call()
      // bounds the whole thing, so an unreachable cluster fails in time.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.timeoutMs }),
      // gRPC's default 4 MiB answer limit failed whole reads (~10,000
      // endpoints); prefix reads are paged too (rangePrefix).
      grpcOptions: { 'grpc.max_receive_message_length': MAX_ANSWER_BYTES },
    });
  }

  close(): void {
    this.client.close();
  }

  /** Runs one etcd call under the deadline, mapping transport failures to UNAVAILABLE. */
  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new DatastoreError(
              'UNAVAILABLE',
              `${what}: etcd did not answer within ${this.timeoutMs} ms (endpoints tried: ${this.endpoints.join(', ')})`,
            ),
          ),
        this.timeoutMs,
      );
    });
    const started = performance.now();
    try {
      const r = await Promise.race([fn(), deadline]);
      this.settled(started);
      return r;
    } catch (e) {
      const err = this.classify(what, e);
      this.settled(started, err);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private settled(started: number, err?: DatastoreError): void {
    const now = performance.now();
    // Any answer, an error included, says etcd is up; only UNAVAILABLE (or a failed handshake) says it is not.
    this.last = { at: now, error: err?.code === 'UNAVAILABLE' || err?.code === 'TLS' ? err.message : undefined };
    this.observer?.((now - started) / 1000, err?.code);
  }

  /**
   * Whether etcd answers, from the last call (undefined: it did, recently
   * enough). Never waits: when the last answer is older than freshMs, a
   * ping goes out in the background and the next question gets its result.
   */
  health(freshMs = HEALTH_FRESH_MS): string | undefined {
    const last = this.last;
    const age = last ? performance.now() - last.at : Infinity;
    if (age > freshMs && !this.healthPing) {
      this.healthPing = this.ping()
        .catch(() => undefined)
        .finally(() => (this.healthPing = undefined));
    }
    if (!last) return 'no etcd call has finished yet';
    if (last.error) return last.error;
    if (age > freshMs + this.timeoutMs * 2) return `etcd has not answered for ${Math.round(age / 1000)} s`;
    return undefined;
  }

  /** Transport failures (and our deadline) are UNAVAILABLE; anything else etcd said is FAILED. */
  private classify(what: string, e: unknown): DatastoreError {
    {
      if (e instanceof DatastoreError) return e;
      const err = e as Error;
      const tlsProblem = describeTlsFailure(err.message, this.tls);
      if (tlsProblem) return new DatastoreError('TLS', `${what}: ${tlsProblem} (endpoints tried: ${this.endpoints.join(', ')})`);
      if (
        isRecoverableError(err) ||
        err instanceof GRPCUnavailableError ||
        err instanceof GRPCDeadlineExceededError ||
        (err as { isBrokenCircuitError?: boolean }).isBrokenCircuitError === true
      ) {
        // etcd3 stops calling a member for a few seconds after repeated failures.
        const cause = (err as { isBrokenCircuitError?: boolean }).isBrokenCircuitError
          ? 'every member failed repeatedly just before'
          : err.message;
        return new DatastoreError(
          'UNAVAILABLE',
          `${what}: etcd unreachable (endpoints tried: ${this.endpoints.join(', ')}): ${cause}`,
        );
      }
      return new DatastoreError('FAILED', `${what}: ${err.message}`);
    }
  }

  /** Fails with UNAVAILABLE unless a member answers. */
  async ping(): Promise<void> {
    await this.call('checking etcd', () => this.client.kv.range({ key: Buffer.from('/calico'), count_only: true }));
  }

  decode<T>(key: string, raw: string, codec: Codec<T>): T {
    let data: unknown = raw;
    if (!codec.text) {
      try {
        data = JSON.parse(raw);
      } catch {
        throw new DatastoreError('INVALID_VALUE', `invalid value at ${key}: not JSON: ${truncate(raw)}`, key);
      }
    }
    const fast = codec.fast?.(data);
    if (fast !== undefined) return fast;
    const r = codec.schema.safeParse(data);
    if (!r.success) {
      const problem = r.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ');
      throw new DatastoreError('INVALID_VALUE', `invalid value at ${key}: ${problem}`, key);
    }
    return r.data;
  }

  private versioned<T>(kv: IKeyValue, codec: Codec<T>): Versioned<T> {
    const key = kv.key.toString();
    return {
      key,
      value: this.decode(key, kv.value.toString(), codec),
      modRevision: kv.mod_revision,
      createRevision: kv.create_revision,
    };
  }

  /** One key; undefined when absent; INVALID_VALUE (naming the key) when it fails its schema. */
  async get<T>(key: string, codec: Codec<T>): Promise<Versioned<T> | undefined> {
    const r = await this.call(`reading ${key}`, () => this.client.kv.range({ key: Buffer.from(key) }));
    return r.kvs.length ? this.versioned(r.kvs[0], codec) : undefined;
  }

  /** Every valid value under a prefix; invalid ones are reported through onInvalid and skipped. */
  async list<T>(prefix: string, codec: Codec<T>, filter?: (key: string) => boolean): Promise<Versioned<T>[]> {
    const r = await this.rangePrefix(prefix, false);
    return this.decodeAll(r.kvs, codec, filter);
  }

  decodeAll<T>(kvs: IKeyValue[], codec: Codec<T>, filter?: (key: string) => boolean): Versioned<T>[] {
    const out: Versioned<T>[] = [];
    for (const kv of kvs) {
      const key = kv.key.toString();
      if (filter && !filter(key)) continue;
      try {
        out.push(this.versioned(kv, codec));
      } catch (e) {
        this.onInvalid(key, (e as Error).message);
      }
    }
    return out;
  }

  async listKeys(prefix: string): Promise<string[]> {
    const r = await this.rangePrefix(prefix, true);
    return r.kvs.map((kv) => kv.key.toString());
  }

  /**
   * Every key under `prefix` at one revision, read in pages of `pageKeys`:
   * one answer is one gRPC message, and a whole read of ~10,000 endpoints
   * once exceeded gRPC's default 4 MiB limit. The result is one response:
   * the first page's header (its revision is every page's), all kvs, `more`
   * false. A compacted revision between pages fails the read (the syncer
   * then reads again).
   */
  async rangePrefix(prefix: string, keysOnly: boolean, pageKeys = RANGE_PAGE_KEYS): Promise<IRangeResponse> {
    const kvs: IKeyValue[] = [];
    const { header } = await this.rangePrefixPages(
      prefix,
      keysOnly,
      (page) => {
        for (const kv of page) kvs.push(kv);
      },
      pageKeys,
    );
    return { header, kvs, more: false, count: String(kvs.length) };
  }

  /**
   * rangePrefix page by page: each page goes to `onPage` as it arrives, the
   * next one already asked for (etcd answers while the caller decodes this
   * one), all at the first page's revision. Resolves with that page's header
   * once every page has been handed over; an `onPage` that throws ends the
   * read with its error.
   */
  async rangePrefixPages(
    prefix: string,
    keysOnly: boolean,
    onPage: (kvs: IKeyValue[]) => void,
    pageKeys = RANGE_PAGE_KEYS,
  ): Promise<{ header: IRangeResponse['header'] }> {
    const end = prefixEnd(prefix);
    const ask = (from: Buffer, revision?: string): Promise<IRangeResponse> =>
      this.call(`listing ${prefix}`, () => this.client.kv.range({ key: from, range_end: end, keys_only: keysOnly, limit: pageKeys, revision }));
    let page = await ask(Buffer.from(prefix));
    const header = page.header;
    for (;;) {
      const last = page.kvs[page.kvs.length - 1];
      // The next page starts just after this page's last key.
      const next = page.more && last ? ask(Buffer.concat([last.key, Buffer.from([0])]), header.revision) : undefined;
      // Awaited below; if onPage throws first, its failure is not an unhandled rejection.
      next?.catch(() => undefined);
      onPage(page.kvs);
      if (!next) return { header };
      page = await next;
    }
  }

  /** Reads several keys in one round trip (a txn of ranges). */
  async getRaw(keys: string[]): Promise<Map<string, RawKv>> {
    const r = await this.call(`reading ${keys.length} keys`, () =>
      this.client.kv.txn({ compare: [], success: keys.map((k) => ({ request_range: { key: Buffer.from(k) } })) }),
    );
    return rangesToMap(keys, r.responses.map((x) => x.response_range));
  }

  async put(key: string, value: unknown, asText = false): Promise<string> {
    const r = await this.call(`writing ${key}`, () =>
      this.client.kv.put({ key: Buffer.from(key), value: encode(value, asText) }),
    );
    return r.header.revision;
  }

  /** Idempotent: true when something was deleted. */
  async delete(key: string): Promise<boolean> {
    const r = await this.call(`deleting ${key}`, () => this.client.kv.deleteRange({ key: Buffer.from(key) }));
    return Number(r.deleted) > 0;
  }

  async deletePrefix(prefix: string): Promise<number> {
    const r = await this.call(`deleting ${prefix}`, () =>
      this.client.kv.deleteRange({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) }),
    );
    return Number(r.deleted);
  }

  /**
   * One transaction: if every key still has the given mod revision ("0" =
   * must not exist), apply the puts and deletes; otherwise return the current
   * state of the compared keys so the caller can re-plan without another read.
   */
  async cas(
    what: string,
    compares: { key: string; modRevision: string }[],
    puts: Put[],
    deletes: string[] = [],
  ): Promise<TxnResult> {
    const compare: ICompare[] = compares.map((c) => ({
      key: Buffer.from(c.key),
      target: 'Mod',
      result: 'Equal',
      mod_revision: c.modRevision,
    }));
    const success: IRequestOp[] = [
      ...puts.map((p) => ({ request_put: { key: Buffer.from(p.key), value: encode(p.value, p.text) } })),
      ...deletes.map((k) => ({ request_delete_range: { key: Buffer.from(k) } })),
    ];
    const failure: IRequestOp[] = compares.map((c) => ({ request_range: { key: Buffer.from(c.key) } }));
    const r = await this.call(what, () => this.client.kv.txn({ compare, success, failure }));
    if (r.succeeded) return { succeeded: true, revision: r.header.revision, current: new Map() };
    return {
      succeeded: false,
      revision: r.header.revision,
      current: rangesToMap(
        compares.map((c) => c.key),
        r.responses.map((x) => x.response_range),
      ),
    };
  }

  /**
   * Read-modify-write of one key: `fn` gets the current value (undefined when
   * absent) and returns the new value, `null` to delete, or undefined to
   * leave it alone. Retried on conflict with backoff, at most CAS_RETRIES times.
   */
  async update<T>(
    key: string,
    codec: Codec<T>,
    fn: (current: T | undefined) => T | null | undefined,
  ): Promise<T | undefined> {
    let cur = await this.getRaw([key]).then((m) => m.get(key)!);
    for (let attempt = 0; attempt < CAS_RETRIES; attempt++) {
      const value = cur.raw === undefined ? undefined : this.decode(key, cur.raw, codec);
      const next = fn(value);
      if (next === undefined) return value;
      if (next === null && cur.raw === undefined) return undefined;
      const r = await this.cas(
        `updating ${key}`,
        [{ key, modRevision: cur.modRevision }],
        next === null ? [] : [{ key, value: next, text: codec.text }],
        next === null ? [key] : [],
      );
      if (r.succeeded) return next === null ? undefined : next;
      cur = r.current.get(key)!;
      await backoff(attempt);
    }
    throw new DatastoreError('CONFLICT', `updating ${key}: still conflicting after ${CAS_RETRIES} attempts`, key);
  }
}

/**
 * A failed TLS handshake, said for a person: gRPC reports it as a plain
 * UNAVAILABLE ("No connection established. Last error: ..."), which would
 * otherwise read as "etcd is down". Undefined when the failure is not TLS.
 */
export function describeTlsFailure(message: string, tls: DatastoreTls | undefined): string | undefined {
  const last = /Last error: (?:Error: )?(.*?)(?:\s*\(\d{4}-\d\d-\d\dT[^)]*\))?\.?\s*(?:Resolution note:.*)?$/s.exec(message)?.[1]?.trim() ?? message;
  const alert = /alert ([a-z ]+?)(?::|$)/i.exec(last)?.[1]?.trim();
  if (alert && /certificate|unknown ca|handshake failure|access denied/i.test(alert)) {
    const ours = tls?.certFrom ? `the client certificate ${tls.certFrom}` : 'no client certificate (--etcd-cert-file / --etcd-key-file)';
    return `the etcd server refused the TLS handshake (alert "${alert}"): it wants a client certificate signed by a CA it trusts; this client sent ${ours}`;
  }
  if (/certificate|altnames|self[- ]signed|issuer/i.test(last) && !/SSL routines/.test(last)) {
    return `the etcd server's certificate did not verify against ${tls?.caFrom ?? "the system's CA certificates"}: ${last}`;
  }
  if (/wrong version number|packet length too long|unknown protocol|http request/i.test(last)) {
    return `TLS handshake failed (${last}): is this endpoint really https:// (or really plain http://)?`;
  }
  return undefined;
}

function encode(value: unknown, asText?: boolean): Buffer {
  return Buffer.from(asText ? String(value) : JSON.stringify(value));
}

/** Keys per page of a prefix read (see rangePrefix): an endpoint record is ~0.5 KiB, so a page is ~0.5 MiB. */
export const RANGE_PAGE_KEYS = 1000;

/** The largest etcd answer the client takes: a page of 1,000 keys of up to 64 KiB each. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

function rangesToMap(keys: string[], ranges: IRangeResponse[]): Map<string, RawKv> {
  const m = new Map<string, RawKv>();
  keys.forEach((key, i) => {
    const kv = ranges[i]?.kvs[0];
    m.set(key, kv ? { key, raw: kv.value.toString(), modRevision: kv.mod_revision } : { key, modRevision: '0' });
  });
  return m;
}

/** Jittered exponential backoff for CAS conflicts: 1 ms doubling, capped at 50 ms. */
export function backoff(attempt: number): Promise<void> {
  const cap = Math.min(50, 2 ** Math.min(attempt, 6));
  return new Promise((r) => setTimeout(r, Math.random() * cap));
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}...` : s;
}

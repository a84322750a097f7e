// An immutable map whose next version costs what changed, not its size: a
// shared base (never written after it is built) plus a small layer of the
// changes since. Editing a version copies only that layer; once the layer
// outgrows a fraction of the base, the next version is flattened into a new
// base (one O(n) copy per n/COMPACT_DIVISOR changes: amortised O(1) a change).
// Old versions stay valid and unchanged, so the syncer's snapshots can be
// kept and compared as before, while a watch batch among 10,000 endpoints no
// longer copies 10,000 entries.
//
//   let m = LayeredMap.empty<string, number>();
//   const e = m.edit(); e.set('a', 1); e.delete('b'); m = e.done();
//
// Iteration order: the base's order (a changed key keeps its place), then
// keys new since the base, in the order first set.

const GONE: unique symbol = Symbol('deleted');
type Slot<V> = V | typeof GONE;

/** The layer is flattened once it holds more than base.size / COMPACT_DIVISOR (and at least COMPACT_MIN) keys. */
const COMPACT_DIVISOR = 8;
const COMPACT_MIN = 64;

export class LayeredMap<K, V> implements ReadonlyMap<K, V> {
  private constructor(
    private readonly base: ReadonlyMap<K, V>,
    private readonly layer: ReadonlyMap<K, Slot<V>>,
    readonly size: number,
  ) {}

  static empty<K, V>(): LayeredMap<K, V> {
    return new LayeredMap(new Map(), new Map(), 0);
  }

  get(key: K): V | undefined {
    const s = this.layer.get(key);
    if (s === GONE) return undefined;
    if (s !== undefined || this.layer.has(key)) return s;
    return this.base.get(key);
  }

  has(key: K): boolean {
    const s = this.layer.get(key);
    if (s === GONE) return false;
    return s !== undefined || this.layer.has(key) || this.base.has(key);
  }

  *entries(): MapIterator<[K, V]> {
    const { base, layer } = this;
    if (layer.size === 0) {
      yield* base.entries();
      return;
    }
    for (const [k, v] of base) {
      const s = layer.get(k);
      if (s === undefined && !layer.has(k)) yield [k, v];
      else if (s !== GONE) yield [k, s as V];
    }
    for (const [k, s] of layer) if (s !== GONE && !base.has(k)) yield [k, s];
  }

  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    const { base, layer } = this;
    if (layer.size === 0) {
      yield* base.values();
      return;
    }
    for (const [k, v] of base) {
      const s = layer.get(k);
      if (s === undefined && !layer.has(k)) yield v;
      else if (s !== GONE) yield s as V;
    }
    for (const [k, s] of layer) if (s !== GONE && !base.has(k)) yield s;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }

  /** A writable draft of the next version; this version is not changed by it. */
  edit(): LayeredMapDraft<K, V> {
    return new LayeredMapDraft(this.base, new Map(this.layer), this.size, (base, layer, size) => new LayeredMap(base, layer, size));
  }

  /** For tests and logs: how many keys the change layer holds. */
  layerSize(): number {
    return this.layer.size;
  }
}

type Make<K, V> = (base: ReadonlyMap<K, V>, layer: Map<K, Slot<V>>, size: number) => LayeredMap<K, V>;

export class LayeredMapDraft<K, V> {
  private finished = false;

  constructor(
    private readonly base: ReadonlyMap<K, V>,
    private readonly layer: Map<K, Slot<V>>,
    private size: number,
    private readonly make: Make<K, V>,
  ) {}

  has(key: K): boolean {
    const s = this.layer.get(key);
    if (s === GONE) return false;
    return s !== undefined || this.layer.has(key) || this.base.has(key);
  }

  set(key: K, value: V): this {
    this.check();
    if (!this.has(key)) this.size++;
    this.layer.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    this.check();
    if (!this.has(key)) return false;
    this.size--;
    if (this.base.has(key)) this.layer.set(key, GONE);
    else this.layer.delete(key);
    return true;
  }

  /** The new version (flattened when its layer has grown too large). The draft is spent. */
  done(): LayeredMap<K, V> {
    this.check();
    this.finished = true;
    const v = this.make(this.base, this.layer, this.size);
    if (this.layer.size <= Math.max(COMPACT_MIN, this.base.size / COMPACT_DIVISOR)) return v;
    return this.make(new Map(v.entries()), new Map(), this.size);
  }

  private check(): void {
    if (this.finished) throw new Error('LayeredMap: a draft is used after done()');
  }
}

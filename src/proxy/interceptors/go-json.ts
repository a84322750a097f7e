/**
 * JSON read as Go's encoding/json reads it, keeping where each value lies in
 * the text so a body can be rewritten member by member (what is not rewritten
 * goes on byte for byte, and dockerd reads it as the client wrote it). Pure.
 *
 * Where Go's reading differs from JSON.parse and it matters here:
 * - object keys are decoded (`"\u0045nv"` is `Env`) and matched to struct
 *   fields exactly first, then case-insensitively with Unicode simple folding
 *   (`env`, `ENV`, `hoſtconfig` with U+017F, U+212A for K): encoding/json
 *   decode.go (*decodeState).object, fold.go foldFunc/equalFoldRight;
 * - a key may repeat; each occurrence is decoded in turn into the same
 *   field: a later string replaces, a `null` leaves a string alone but clears
 *   a slice, map or pointer; an object decoded into an existing struct or
 *   map merges into it (decode.go object, literalStore);
 * - Decoder.Decode reads the first value and leaves what follows (dockerd
 *   20.10's runconfig decodeContainerConfig ignores it; later ones refuse it).
 */

export type GoJson =
  | { kind: 'object'; start: number; end: number; members: Member[] }
  | { kind: 'array'; start: number; end: number; items: GoJson[] }
  | { kind: 'string'; start: number; end: number; value: string }
  | { kind: 'number' | 'true' | 'false' | 'null'; start: number; end: number };

export interface Member {
  /** The decoded key. */
  key: string;
  value: GoJson;
  /** The member's text `"key": value` is text.slice(start, end). */
  start: number;
  end: number;
}

export class GoJsonError extends Error {}

const NUMBER = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

/** Go's decoder stops at this nesting (encoding/json scanner.go maxNestingDepth). */
const GO_MAX_DEPTH = 10000;

/** Parses the first JSON value of `text`; `end` is where it ends (anything after is not read). */
export function parseGoJson(text: string, maxDepth = GO_MAX_DEPTH): { value: GoJson; end: number } {
  let i = 0;
  let depth = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const fail = (what: string): never => {
    throw new GoJsonError(`invalid JSON at offset ${i}: ${what}`);
  };
  const str = (): string => {
    i++; // the opening quote
    let out = '';
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c !== 0x5c) {
        // Runs of plain characters at once.
        let j = i + 1;
        while (j < text.length) {
          const d = text.charCodeAt(j);
          if (d === 0x22 || d === 0x5c || d < 0x20) break;
          j++;
        }
        out += text.slice(i, j);
        i = j;
        continue;
      }
      const e = text[i + 1];
      i += 2;
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e in simple) out += simple[e];
      else if (e === 'u') {
        const hex = (k: number) => {
          const h = text.slice(k, k + 4);
          return /^[0-9a-fA-F]{4}$/.test(h) ? parseInt(h, 16) : -1;
        };
        const u = hex(i);
        if (u < 0) fail('bad \\u escape');
        i += 4;
        if (u >= 0xd800 && u < 0xdc00) {
          // A high surrogate pairs with a following \u low surrogate; alone it is U+FFFD (decode.go unquoteBytes).
          const lo = text[i] === '\\' && text[i + 1] === 'u' ? hex(i + 2) : -1;
          if (lo >= 0xdc00 && lo < 0xe000) {
            out += String.fromCharCode(u, lo);
            i += 6;
          } else out += '\ufffd';
        } else if (u >= 0xdc00 && u < 0xe000) out += '\ufffd';
        else out += String.fromCharCode(u);
      } else fail('bad escape');
    }
  };
  const value = (): GoJson => {
    ws();
    const start = i;
    const c = text[i];
    if (c === '{' || c === '[') {
      if (++depth > maxDepth) fail(`nested deeper than ${maxDepth}`);
      i++;
      ws();
      const close = c === '{' ? '}' : ']';
      const members: Member[] = [];
      const items: GoJson[] = [];
      if (text[i] === close) i++;
      else {
        for (;;) {
          ws();
          if (c === '{') {
            const mstart = i;
            if (text[i] !== '"') fail('expected a key');
            const key = str();
            ws();
            if (text[i++] !== ':') fail('expected ":"');
            const v = value();
            members.push({ key, value: v, start: mstart, end: v.end });
          } else items.push(value());
          ws();
          if (text[i] === ',') i++;
          else if (text[i] === close) {
            i++;
            break;
          } else fail(`expected "," or "${close}"`);
        }
      }
      depth--;
      return c === '{' ? { kind: 'object', start, end: i, members } : { kind: 'array', start, end: i, items };
    }
    if (c === '"') {
      const v = str();
      return { kind: 'string', start, end: i, value: v };
    }
    for (const lit of ['true', 'false', 'null'] as const) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return { kind: lit, start, end: i };
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail('unexpected character');
    i += m![0].length;
    return { kind: 'number', start, end: i };
  };
  const v = value();
  return { value: v, end: i };
}

/**
 * A key as Go's case-insensitive field match sees it, for ASCII field names:
 * ASCII letters upper-cased, U+017F (ſ) as S and U+212A (Kelvin sign) as K
 * (the two non-ASCII runes that fold to ASCII letters).
 */
export function goFold(key: string): string {
  return key.replace(/[a-z\u017f\u212a]/g, (ch) => (ch === '\u017f' ? 'S' : ch === '\u212a' ? 'K' : ch.toUpperCase()));
}

/**
 * The members of `obj` that Go decodes into the struct field named `field`.
 * Go prefers an exact match of the key to any field over a folded one; the
 * Docker types read here have no two fields whose names fold alike, so a key
 * belongs to `field` when it folds to it.
 */
export function fieldMembers(obj: Extract<GoJson, { kind: 'object' }>, field: string): Member[] {
  const f = goFold(field);
  return obj.members.filter((m) => m.key === field || goFold(m.key) === f);
}

/**
 * Occurrences of a pointer-to-struct or map field merged as Go decodes them
 * one after another into the same value: a `null` clears what came before,
 * each object adds its members (in order; a later one wins where they
 * overlap, exactly as if they had been one object). undefined: the field is
 * nil (absent or last cleared). Throws GoJsonError on a value that is
 * neither (Go's UnmarshalTypeError; dockerd refuses the body).
 */
export function mergedObject(occurrences: readonly Member[], what: string): Member[] | undefined {
  let merged: Member[] | undefined;
  for (const o of occurrences) {
    if (o.value.kind === 'null') merged = undefined;
    else if (o.value.kind === 'object') merged = [...(merged ?? []), ...o.value.members];
    else throw new GoJsonError(`${what} must be an object, not ${o.value.kind}`);
  }
  return merged;
}

/** A string field after its occurrences: the last string (a `null` changes nothing). Throws on another type. */
export function lastString(occurrences: readonly Member[], what: string): string | undefined {
  let v: string | undefined;
  for (const o of occurrences) {
    if (o.value.kind === 'string') v = o.value.value;
    else if (o.value.kind !== 'null') throw new GoJsonError(`${what} must be a string, not ${o.value.kind}`);
  }
  return v;
}

/**
 * Headers as a flat [name, value, ...] list: repeats stay separate lines and
 * names keep their case (BuildKit repeats X-Docker-Expose-Session-Grpc-Method).
 */

/** Per-hop headers (RFC 9110 7.6.1), and Expect. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect']);

/** Names listed in a Connection header are per-hop too. */
function connectionTokens(raw: readonly string[]): Set<string> {
  const s = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() === 'connection') {
      for (const t of raw[i + 1].split(',')) {
        const v = t.trim().toLowerCase();
        if (v) s.add(v);
      }
    }
  }
  return s;
}

/** End-to-end headers only, in order, repeats kept. `drop` names (lowercase) are removed too. */
export function endToEndHeaders(raw: readonly string[], drop: readonly string[] = []): string[] {
  const extra = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i].toLowerCase();
    if (HOP_BY_HOP.has(n) || extra.has(n) || drop.includes(n)) continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** Lower-cased header object (repeats as arrays), the shape interceptors receive. */
export function headerObject(raw: readonly string[]): Record<string, string | string[]> {
  const o: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i].toLowerCase();
    const prev = o[n];
    if (prev === undefined) o[n] = raw[i + 1];
    else if (Array.isArray(prev)) prev.push(raw[i + 1]);
    else o[n] = [prev, raw[i + 1]];
  }
  return o;
}

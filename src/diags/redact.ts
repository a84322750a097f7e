// What must never leave the host in a diags archive: TLS keys and
// certificates, passwords, tokens, credentials in URLs. Pure functions over
// text and etcd key/values; the collector runs every part through them.

export const REDACTED = '[redacted]';

/** A key segment, JSON field or flag name that names a secret (TLS material, passwords, tokens). */
const SECRET_NAME_RE = /(password|passwd|secret|token|credential|private|api_?key|auth|tls|cert|key([_-]?(file|path))?$)/i;
// A CA file: "ca", "ca_file", "etcd-ca", "EtcdCaFile"; never the "ca" at the end of a hex id.
const CA_NAME_RE = /(^|[_-])ca([_-]?(file|cert|path))?$/i;
const CA_CAMEL_RE = /[a-z]Ca(File|Cert|Path)?$/;

export function isSecretName(name: string): boolean {
  return SECRET_NAME_RE.test(name) || CA_NAME_RE.test(name) || CA_CAMEL_RE.test(name);
}

const PEM_RE = /-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(-----END [A-Z0-9 ]+-----|$)/g;
const URL_USERINFO_RE = /\b([a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+(:[^/\s@]*)?@/gi;
// name=value / name: value / --name value / --name=value / NAME="value" where the name says secret.
const ASSIGNMENT_RE = /((?:--)?[A-Za-z0-9_.-]*(?:password|passwd|secret|token|credential|api[_-]?key|private[_-]?key|key[_-]?file|cert[_-]?file|ca[_-]?file|tls[_-]?key|[-_](?:key|cert|ca)(?![A-Za-z]))[A-Za-z0-9_.-]*)(\s*[=:]\s*|\s+)("[^"]*"|'[^']*'|[^\s,;&"']+)/gi;

/** Redacts secrets inside free text (logs, command output, command lines). */
export function redactText(text: string): string {
  return text
    .replace(PEM_RE, `${REDACTED} (PEM block)`)
    .replace(URL_USERINFO_RE, `$1${REDACTED}@`)
    .replace(ASSIGNMENT_RE, (_m, name: string, sep: string) => `${name}${sep}${REDACTED}`);
}

/** A JSON value with every secret-named field (at any depth) and every PEM/credential string redacted. */
export function redactJson(value: unknown): unknown {
  if (typeof value === 'string') return redactText(value);
  if (Array.isArray(value)) return value.map(redactJson);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, isSecretName(k) ? REDACTED : redactJson(v)]),
    );
  }
  return value;
}

/**
 * One etcd key/value for the dump: a key whose last segment names a secret,
 * or any of whose segments says "password" (BGP passwords:
 * /calico/v1/config/bgp_node_mesh_password, bgp_rr_password_v4/<ip>), keeps
 * its name but loses its value; JSON values are redacted field by field
 * (a BGP peer's "password"); plain strings as text.
 */
export function redactKv(key: string, value: string): { key: string; value: unknown } {
  const segments = key.replace(/\/+$/, '').split('/');
  const last = segments[segments.length - 1] ?? '';
  if (isSecretName(last) || segments.some((s) => /passw(or)?d/i.test(s))) return { key, value: REDACTED };
  try {
    const parsed: unknown = JSON.parse(value);
    if (parsed !== null && typeof parsed === 'object') return { key, value: redactJson(parsed) };
  } catch {
    /* a plain 2015 text value */
  }
  return { key, value: redactText(value) };
}

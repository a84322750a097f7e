// etcd over TLS with client certificates: which files (flag, then the
// environment variable Calico used), whether they fit the endpoints (pure),
// and reading them (the one effect here), every error naming the file and
// where it was given.
import fs from 'node:fs';
import tls from 'node:tls';
import type { DatastoreTls } from '../datastore';

/** One TLS file and where it was named: `--etcd-ca-file` or `ETCD_CA_CERT_FILE`. */
export interface TlsFile {
  path: string;
  from: string;
}

export interface EtcdTlsFiles {
  ca?: TlsFile;
  cert?: TlsFile;
  key?: TlsFile;
}

export interface EtcdTlsFlags {
  etcdCaFile?: string;
  etcdCertFile?: string;
  etcdKeyFile?: string;
}

export class EtcdTlsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EtcdTlsError';
  }
}

/** The three files: flag, names and environment variables, as Calico spelled them. */
export const TLS_SETTINGS = [
  { field: 'ca', flag: '--etcd-ca-file', option: 'etcdCaFile', env: 'ETCD_CA_CERT_FILE' },
  { field: 'cert', flag: '--etcd-cert-file', option: 'etcdCertFile', env: 'ETCD_CERT_FILE' },
  { field: 'key', flag: '--etcd-key-file', option: 'etcdKeyFile', env: 'ETCD_KEY_FILE' },
] as const;

/**
 * Pure: each file from its flag, else its environment variable (empty counts
 * as unset). A certificate needs its key and the other way round.
 */
export function resolveEtcdTls(flags: EtcdTlsFlags, env: NodeJS.ProcessEnv): EtcdTlsFiles {
  const out: EtcdTlsFiles = {};
  for (const s of TLS_SETTINGS) {
    const flag = flags[s.option]?.trim();
    const fromEnv = env[s.env]?.trim();
    if (flag) out[s.field] = { path: flag, from: s.flag };
    else if (fromEnv) out[s.field] = { path: fromEnv, from: s.env };
  }
  if (out.cert && !out.key) throw new EtcdTlsError(`${out.cert.from} ${out.cert.path} is given without its key: add --etcd-key-file (or ETCD_KEY_FILE)`);
  if (out.key && !out.cert) throw new EtcdTlsError(`${out.key.from} ${out.key.path} is given without its certificate: add --etcd-cert-file (or ETCD_CERT_FILE)`);
  return out;
}

export function hasTls(files: EtcdTlsFiles | undefined): boolean {
  return !!(files && (files.ca || files.cert || files.key));
}

/**
 * Pure: TLS files go with https:// endpoints only, and a list is all https or
 * none (one client speaks one way to every member). Files with http://
 * endpoints would otherwise send everything in clear while the operator
 * believes it is encrypted.
 */
export function checkTlsEndpoints(endpoints: string[], files: EtcdTlsFiles | undefined, endpointsFrom: string): void {
  const secure = endpoints.filter((e) => e.startsWith('https://'));
  if (secure.length && secure.length < endpoints.length) {
    throw new EtcdTlsError(`${endpointsFrom}: mixes https:// and other endpoints (${endpoints.join(', ')}); use https:// for every member`);
  }
  if (hasTls(files) && secure.length === 0) {
    const given = [files!.ca, files!.cert, files!.key].filter((f): f is TlsFile => !!f).map((f) => f.from).join(', ');
    throw new EtcdTlsError(
      `${given} given, but etcd is reached at ${endpoints.join(', ')} (${endpointsFrom}): ` +
        'the TLS files are for https:// endpoints; set --etcd-endpoints / ETCD_ENDPOINTS to https://host:port',
    );
  }
}

function readOne(f: TlsFile, what: string): Buffer {
  try {
    return fs.readFileSync(f.path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EACCES' ? 'permission denied' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new EtcdTlsError(`cannot read the etcd ${what} ${f.path} (${f.from}): ${why}`);
  }
}

/**
 * Reads the files and checks them the way the TLS stack will use them (PEM
 * that parses, a key that belongs to its certificate), so a bad file is named
 * now rather than surfacing as a failed handshake.
 */
export function loadEtcdTls(files: EtcdTlsFiles): DatastoreTls {
  const out: DatastoreTls = { caFrom: files.ca ? `${files.ca.from} ${files.ca.path}` : "the system's CA certificates" };
  if (files.ca) {
    out.ca = readOne(files.ca, 'CA certificate file');
    try {
      tls.createSecureContext({ ca: out.ca });
    } catch (e) {
      throw new EtcdTlsError(`the etcd CA certificate file ${files.ca.path} (${files.ca.from}) holds no usable PEM certificate: ${(e as Error).message}`);
    }
    if (!out.ca.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) {
      throw new EtcdTlsError(`the etcd CA certificate file ${files.ca.path} (${files.ca.from}) holds no PEM certificate`);
    }
  }
  if (files.cert && files.key) {
    out.cert = readOne(files.cert, 'client certificate file');
    out.key = readOne(files.key, 'client key file');
    try {
      tls.createSecureContext({ cert: out.cert });
    } catch (e) {
      throw new EtcdTlsError(`the etcd client certificate file ${files.cert.path} (${files.cert.from}) holds no usable PEM certificate: ${(e as Error).message}`);
    }
    try {
      tls.createSecureContext({ key: out.key });
    } catch (e) {
      throw new EtcdTlsError(`the etcd client key file ${files.key.path} (${files.key.from}) holds no usable PEM private key: ${(e as Error).message}`);
    }
    try {
      tls.createSecureContext({ cert: out.cert, key: out.key });
    } catch (e) {
      throw new EtcdTlsError(`the etcd client key ${files.key.path} does not belong to the certificate ${files.cert.path}: ${(e as Error).message}`);
    }
    out.certFrom = `${files.cert.from} ${files.cert.path}`;
  }
  return out;
}

/** The flags (for a child calicoctl, e.g. diags): what was given, in flag form. */
export function tlsFlagArgs(files: EtcdTlsFiles | undefined): string[] {
  if (!files) return [];
  const out: string[] = [];
  for (const s of TLS_SETTINGS) {
    const f = files[s.field];
    if (f) out.push(s.flag, f.path);
  }
  return out;
}

import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

export interface TestCerts {
  ca: string;
  /** Server certificate (serverAuth and clientAuth: etcd members use it toward their peers too). */
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed none of the above: "the wrong CA". */
  otherCa: string;
}

export interface TestCertOptions {
  /** IP addresses the server certificate is valid for (default 127.0.0.1). */
  ips?: string[];
}

/**
 * A throw-away CA with a server certificate (localhost and the given IPs,
 * 127.0.0.1 by default) and a client certificate, and a second, unrelated CA,
 * made with openssl in `dir`: for TLS / --tlsverify / etcd client-cert tests.
 */
export function makeTestCerts(dir: string, opts: TestCertOptions = {}): TestCerts {
  const f = (n: string) => path.join(dir, n);
  const ossl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca-key.pem'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=test-ca']);
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('other-ca-key.pem'), '-out', f('other-ca.pem'), '-days', '1', '-subj', '/CN=other-ca']);
  const ips = opts.ips ?? ['127.0.0.1'];
  for (const who of ['server', 'client']) {
    ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${who}-key.pem`), '-out', f(`${who}.csr`), '-subj', `/CN=${who === 'server' ? 'localhost' : 'client'}`]);
    fs.writeFileSync(
      f(`${who}.ext`),
      who === 'server'
        ? `subjectAltName=DNS:localhost,${ips.map((ip) => `IP:${ip}`).join(',')}\nextendedKeyUsage=serverAuth,clientAuth\n`
        : 'extendedKeyUsage=clientAuth\n',
    );
    ossl(['x509', '-req', '-in', f(`${who}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'), '-CAcreateserial', '-out', f(`${who}-cert.pem`), '-days', '1', '-extfile', f(`${who}.ext`)]);
  }
  for (const key of ['ca-key.pem', 'other-ca-key.pem', 'server-key.pem', 'client-key.pem']) fs.chmodSync(f(key), 0o600);
  return {
    ca: f('ca.pem'),
    serverCert: f('server-cert.pem'),
    serverKey: f('server-key.pem'),
    clientCert: f('client-cert.pem'),
    clientKey: f('client-key.pem'),
    otherCa: f('other-ca.pem'),
  };
}

/** etcd's flags for TLS with client certificates, on the client and the peer side. */
export function etcdTlsFlags(c: TestCerts): string[] {
  return [
    '--cert-file', c.serverCert, '--key-file', c.serverKey, '--trusted-ca-file', c.ca, '--client-cert-auth',
    '--peer-cert-file', c.serverCert, '--peer-key-file', c.serverKey, '--peer-trusted-ca-file', c.ca, '--peer-client-cert-auth',
  ];
}

/** calicoctl's flags to reach such an etcd. */
export function calicoctlTlsFlags(c: TestCerts): string[] {
  return ['--etcd-ca-file', c.ca, '--etcd-cert-file', c.clientCert, '--etcd-key-file', c.clientKey];
}

/** etcdctl's environment to reach such an etcd. */
export function etcdctlTlsEnv(c: TestCerts): NodeJS.ProcessEnv {
  return { ETCDCTL_API: '3', ETCDCTL_CACERT: c.ca, ETCDCTL_CERT: c.clientCert, ETCDCTL_KEY: c.clientKey };
}

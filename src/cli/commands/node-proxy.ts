import type { Command } from 'commander';
import type { ProxyOptions } from '../../proxy';
import type { Address } from '../../listen/address';
import { parseAddress, formatAddress, AddressError } from '../../listen/address';
import { checkListenPolicy, ListenError } from '../../listen/listener';
import { checkAllowOrigin } from '../../proxy/web-guard';
import { UsageError } from '../errors';
import { addDockerOption, DEFAULT_DOCKER } from '../host';

/** The proxy's flags on `calicoctl node`, spelled as dockerd spells its own. */
export interface ProxyFlags {
  listen: string;
  /** --docker, or its old spelling --docker-upstream (node.ts resolves which). */
  dockerUpstream: string;
  tls?: boolean;
  tlsverify?: boolean;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  /** --allow-origin, repeatable: web pages (by origin) whose requests the proxy takes. */
  allowOrigin?: string[];
}

export const DEFAULT_LISTEN = 'tcp://127.0.0.1:2377';
export const DEFAULT_DOCKER_UPSTREAM = DEFAULT_DOCKER;

export function addProxyFlags(cmd: Command): Command {
  cmd.option('--listen <ADDR>', 'where the Docker API proxy listens: tcp://HOST:PORT or unix:///PATH', DEFAULT_LISTEN);
  // --docker (old spelling --docker-upstream, hidden): where dockerd listens.
  return addDockerOption(cmd, { oldUpstream: true, help: 'where dockerd listens: unix:///PATH or tcp://HOST:PORT (never taken from DOCKER_HOST, which points at the proxy)' })
    .option('--tls', 'serve the proxy over TLS (--tlscert, --tlskey)')
    .option('--tlsverify', 'serve over TLS and accept only clients with a certificate signed by --tlscacert')
    .option('--tlscacert <FILE>', 'CA that signs accepted client certificates')
    .option('--tlscert <FILE>', 'server certificate')
    .option('--tlskey <FILE>', 'server private key')
    .option(
      '--allow-origin <ORIGIN>',
      'a web page origin (scheme://host[:port]) whose requests the proxy takes; requests from any other web page are refused (repeatable)',
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    );
}

/** Turns flags into ProxyOptions; every refusal is a CliError saying what to do instead. */
export function proxyOptionsFrom(f: ProxyFlags): ProxyOptions {
  let listen: Address;
  try {
    listen = parseAddress(f.listen, '--listen', 2377);
    parseAddress(f.dockerUpstream, '--docker', 2375);
  } catch (e) {
    if (e instanceof AddressError) throw new UsageError(e.message);
    throw e;
  }
  const wantTls = f.tls || f.tlsverify;
  if (!wantTls && (f.tlscert || f.tlskey)) {
    throw new UsageError('--tlscert/--tlskey given without --tls or --tlsverify: add --tlsverify (with --tlscacert) to require client certificates');
  }
  if (wantTls && (!f.tlscert || !f.tlskey)) {
    throw new UsageError(`${f.tlsverify ? '--tlsverify' : '--tls'} needs --tlscert and --tlskey`);
  }
  const tls = wantTls ? { cert: f.tlscert!, key: f.tlskey!, ca: f.tlscacert, verify: !!f.tlsverify } : undefined;
  try {
    checkListenPolicy(listen, tls);
  } catch (e) {
    if (e instanceof ListenError) throw new UsageError(e.message);
    throw e;
  }
  let allowOrigins: string[] | undefined;
  try {
    allowOrigins = f.allowOrigin?.map(checkAllowOrigin);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return { listen: formatAddress(listen), upstream: f.dockerUpstream, tls, ...(allowOrigins?.length ? { allowOrigins } : {}) };
}

/** What people read after the node started (the 2015 wording, for the address actually used). */
export function dockerHostHint(o: ProxyOptions): string {
  const a = parseAddress(o.listen, '--listen', 2377);
  if (a.kind === 'unix') {
    return `Docker Remote API is on unix://${a.path}. Run\n\nexport DOCKER_HOST=unix://${a.path}\n\nbefore using \`docker run\` for Calico networking.\n`;
  }
  const host = a.host === '127.0.0.1' || a.host === '0.0.0.0' || a.host === '::' ? 'localhost' : a.host.includes(':') ? `[${a.host}]` : a.host;
  const tls = o.tls ? `\nexport DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=<directory with your ca.pem, cert.pem, key.pem>` : '';
  return `Docker Remote API is on port ${a.port}. Run\n\nexport DOCKER_HOST=${host}:${a.port}${tls}\n\nbefore using \`docker run\` for Calico networking.\n`;
}

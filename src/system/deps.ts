// What a host needs installed before `calicoctl node` starts, and which Debian
// package provides each. Pure: the caller says what the node will do and how
// to look a program up; nothing here touches the file system.
import { BIRD_BIN, BIRDC_BIN } from '../bgp/bird';
import { ETCD_BINARY } from '../etcd/embedded';

/** One thing the node runs: any of `programs` found satisfies it. */
export interface Requirement {
  /** What an operator calls it (the program's name). */
  name: string;
  /** Programs the node runs: a bare name is looked up on PATH, an absolute path is used as is. */
  programs: string[];
  /** The Debian package that provides them. */
  debianPackage: string;
  /** Why the node needs it, in a few words. */
  why: string;
  /** Another way to satisfy it (the dockerd socket already listening). */
  orPath?: string;
}

export interface NodePlan {
  /** --proxy-only: only the Docker API proxy runs. */
  proxyOnly: boolean;
  /** The node may start the embedded etcd member (--embedded-etcd, or no etcd configured). */
  mayEmbedEtcd: boolean;
  /** --docker-upstream when it is a unix socket (dockerd on this host); undefined for tcp. */
  dockerSocket?: string;
}

/** The programs the node runs for this plan, each with its package. */
export function requirementsFor(plan: NodePlan): Requirement[] {
  const docker: Requirement[] = plan.dockerSocket
    ? [{ name: 'dockerd', programs: ['dockerd'], debianPackage: 'docker.io', why: 'the Docker daemon the node proxies and plugs into', orPath: plan.dockerSocket }]
    : [];
  if (plan.proxyOnly) return docker;
  return [
    ...docker,
    { name: 'iptables', programs: ['iptables-restore', 'iptables-save', 'ip6tables-restore', 'ip6tables-save'], debianPackage: 'iptables', why: 'policy and NAT rules' },
    { name: 'ipset', programs: ['ipset'], debianPackage: 'ipset', why: 'profile tags and pools as address sets' },
    { name: 'bird', programs: [BIRD_BIN, BIRDC_BIN], debianPackage: 'bird2', why: 'BGP: routes to other hosts\' containers' },
    { name: 'conntrack', programs: ['conntrack'], debianPackage: 'conntrack', why: 'ends connections that a policy change refuses' },
    { name: 'ip', programs: ['ip'], debianPackage: 'iproute2', why: 'container interfaces and routes' },
    ...(plan.mayEmbedEtcd
      ? [{ name: 'etcd', programs: [ETCD_BINARY], debianPackage: 'etcd-server', why: 'the embedded etcd member (no etcd configured)' }]
      : []),
  ];
}

export interface Missing {
  requirement: Requirement;
  /** The programs not found. */
  programs: string[];
}

/**
 * The requirements not met: a requirement is met when every one of its
 * programs is found (or its `orPath` exists).
 */
export function findMissing(reqs: Requirement[], found: (program: string) => boolean, exists: (path: string) => boolean = () => false): Missing[] {
  const out: Missing[] = [];
  for (const r of reqs) {
    if (r.orPath && exists(r.orPath)) continue;
    const absent = r.programs.filter((p) => !found(p));
    if (absent.length) out.push({ requirement: r, programs: absent });
  }
  return out;
}

/** What the operator reads: each missing program with its package, then one install line. */
export function describeMissing(missing: Missing[], plan: NodePlan): string {
  const lines = missing.map(({ requirement: r, programs }) => {
    const or = r.orPath ? ` (and there is no ${r.orPath})` : '';
    return `  ${programs.join(', ')}${or}: ${r.why}; Debian package ${r.debianPackage}`;
  });
  const packages = [...new Set(missing.map((m) => m.requirement.debianPackage))];
  const etcdHint = missing.some((m) => m.requirement.name === 'etcd')
    ? '\nOr point the node at an etcd cluster (--etcd-endpoints, $ETCD_ENDPOINTS) and it starts no member of its own.'
    : '';
  const dockerHint = plan.dockerSocket && missing.some((m) => m.requirement.name === 'dockerd') ? '\nThen start dockerd (systemctl start docker).' : '';
  return `calicoctl node cannot start: this host lacks what the node runs:\n${lines.join('\n')}\nInstall with: apt-get install ${packages.join(' ')}${dockerHint}${etcdHint}\n`;
}

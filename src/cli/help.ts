// Help that teaches: every command's --help ends with examples (from the blog
// post the project started from, and docs/operator-guide.md); the top level
// and `node` list the environment variables calicoctl reads; the exit codes
// are in the top-level help. Kept in one table, applied after every command
// is registered, so a new command adds its examples here.
import type { Command } from 'commander';

/** Examples per command path ("" is calicoctl itself). Every command has at least one (test/unit/cli-help.test.ts). */
export const EXAMPLES: Record<string, string[]> = {
  '': ['calicoctl node --ip=172.16.0.10 --detach', 'calicoctl pool add 192.168.0.0/24', 'calicoctl profile PROF_GROUP1 member add group1-node1'],
  node: [
    'calicoctl node --ip=172.16.0.10                 # the blog post: trinity10',
    'calicoctl node --ip=10.0.0.10 --detach          # in the background; log under --state-dir',
    'calicoctl --etcd-endpoints http://10.0.0.10:2379 node --ip=10.0.0.20 --hostname trinity20',
    'calicoctl node --ip=10.0.0.10 --init-system > /etc/systemd/system/calico-node.service',
  ],
  'node bgppeer': ['calicoctl node bgppeer add 172.16.0.1 as 64511', 'calicoctl node bgppeer show'],
  'node bgppeer add': ['calicoctl node bgppeer add 172.16.0.1 as 64511      # this host\'s top-of-rack router'],
  'node bgppeer remove': ['calicoctl node bgppeer remove 172.16.0.1'],
  'node bgppeer show': ['calicoctl node bgppeer show --ipv4', 'calicoctl node bgppeer show -o json'],
  'node stop': ['calicoctl node stop', 'calicoctl node stop --force            # containers keep their addresses and records'],
  'node remove': ['calicoctl node remove --hostname trinity20 --remove-endpoints   # a host that is gone for good'],
  pool: ['calicoctl pool show', 'calicoctl pool add 192.168.0.0/24 --nat-outgoing', 'calicoctl pool remove 192.168.0.0/16'],
  'pool add': ['calicoctl pool add 192.168.0.0/24', 'calicoctl pool add 10.1.0.0/16 --nat-outgoing', 'calicoctl pool add fd80:24e2:f998:72d6::/64'],
  'pool remove': ['calicoctl pool remove 192.168.0.0/16     # the default pool, as the blog post did'],
  'pool show': ['calicoctl pool show', 'calicoctl pool show --ipv4', 'calicoctl pool show --output json'],
  shownodes: ['calicoctl shownodes', 'calicoctl shownodes --detailed        # every container: host, endpoint, addresses, MAC', 'calicoctl shownodes --detailed -o json'],
  status: ['calicoctl status', 'calicoctl status -o json', 'calicoctl status || journalctl -u calico-node    # exit 1: something is down'],
  container: ['calicoctl container add group1-node1 192.168.0.11', 'calicoctl container remove group1-node1'],
  'container add': ['calicoctl container add group1-node1 192.168.0.11', 'calicoctl container add group1-node1 auto'],
  'container remove': ['calicoctl container remove group1-node1'],
  profile: [
    'calicoctl profile add PROF_GROUP1',
    'calicoctl profile PROF_GROUP1 member add group1-node1',
    'calicoctl profile PROF_GROUP1 rule update < prof_group1.json',
    'calicoctl profile PROF_GROUP1 rule add inbound allow tcp to ports 80',
    'calicoctl profile show --detailed',
  ],
  bgppeer: ['calicoctl bgppeer rr add 172.16.0.1', 'calicoctl bgppeer add 172.16.0.1 as 64511'],
  'bgppeer rr': ['calicoctl bgppeer rr add 172.16.0.1      # the blog post: trinity-router as route reflector'],
  'bgppeer rr add': ['calicoctl bgppeer rr add 172.16.0.1'],
  'bgppeer rr remove': ['calicoctl bgppeer rr remove 172.16.0.1'],
  'bgppeer rr show': ['calicoctl bgppeer rr show', 'calicoctl bgppeer rr show -o json'],
  'bgppeer add': ['calicoctl bgppeer add 172.16.0.1 as 64511', 'calicoctl bgppeer add 172.16.0.1 as 64511 --password-file /etc/calico/bgp-pw'],
  'bgppeer remove': ['calicoctl bgppeer remove 172.16.0.1'],
  'bgppeer show': ['calicoctl bgppeer show', 'calicoctl bgppeer show --ipv6 -o json'],
  bgp: ['calicoctl bgp default-node-as 64511', 'calicoctl bgp node-mesh off'],
  'bgp default-node-as': ['calicoctl bgp default-node-as             # shows it', 'calicoctl bgp default-node-as 64511'],
  'bgp node-mesh': ['calicoctl bgp node-mesh                   # on or off', 'calicoctl bgp node-mesh off               # with a route reflector'],
  'bgp node-mesh-password': ['calicoctl bgp node-mesh-password set --password-file /etc/calico/mesh-pw', 'calicoctl bgp node-mesh-password unset'],
  'default-node-as': ['calicoctl default-node-as 64511'],
  'bgp-node-mesh': ['calicoctl bgp-node-mesh off'],
  endpoint: ['calicoctl endpoint show group1-node1 --detailed'],
  'endpoint show': ['calicoctl endpoint show                          # every endpoint', 'calicoctl endpoint show group1-node1 --detailed   # and, on its host, its chains and counters', 'calicoctl endpoint show group1-node1 -o json'],
  policy: ['calicoctl policy trace group1-node1 group1-node2'],
  'policy trace': ['calicoctl policy trace group1-node1 group1-node2', 'calicoctl policy trace group1-node1 group1-node2 --port 80/tcp', 'calicoctl policy trace group1-node1 group1-node2 --probe    # on either side\'s host: the counters too'],
  diags: ['calicoctl diags', 'calicoctl diags --log-dir /var/log/calico'],
  version: ['calicoctl version', 'calicoctl version -o json'],
  completion: ['calicoctl completion bash > /etc/bash_completion.d/calicoctl', 'source <(calicoctl completion bash)'],
};

/** The environment variables calicoctl reads, for `calicoctl --help` and `calicoctl node --help`. */
export const ENVIRONMENT_HELP = `
Environment:
  ETCD_ENDPOINTS      etcd client URLs, comma separated (as --etcd-endpoints)
  ETCD_AUTHORITY      host:port of one etcd member (2015's spelling; ETCD_ENDPOINTS wins)
  ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE   TLS files for https:// etcd (as --etcd-ca-file ...)
  CALICO_LOG_LEVEL    calicoctl node's log level (as --log-level)
  CALICO_ENDPOINT_TO_HOST_ACTION   calicoctl node: drop or accept (as --endpoint-to-host-action)
  DOCKER_HOST         what docker clients use: point it at the node's proxy (export DOCKER_HOST=localhost:2377).
                      calicoctl never takes dockerd's address from it (--docker says where dockerd is)

  In a container's environment (docker run -e ..., through the proxy):
  CALICO_IP           auto, or an IPv4 address in a pool: the container gets a Calico address
  CALICO_IP6          auto, or an IPv6 address in a pool
  CALICO_PROFILE      the profile(s) of its endpoint, comma separated (created with the default rules if absent)
`;

export const EXIT_CODES_HELP = `
Exit codes (every command):
  0  done, or already so (removing what is absent, adding what is there)
  1  failed (etcd unreachable, refused by the datastore; status: something is down)
  2  usage or permission (bad arguments or flags, an unknown command, root required)
`;

/** The path of a command below calicoctl: "node bgppeer add". */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

export function examplesText(lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
}

/** Adds the examples (and, for calicoctl and node, the environment) to every command's --help. */
export function addHelp(program: Command): void {
  const walk = (c: Command) => {
    const path = commandPath(c);
    const lines = EXAMPLES[path];
    if (path === '') program.addHelpText('after', ENVIRONMENT_HELP + EXIT_CODES_HELP);
    if (path === 'node') c.addHelpText('after', ENVIRONMENT_HELP);
    if (lines) c.addHelpText('after', examplesText(lines));
    for (const s of c.commands) walk(s);
  };
  walk(program);
}

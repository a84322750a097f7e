import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { run } from '../harness/exec';
import { CALICOCTL_MAIN } from '../harness';
import { registerCommands } from '../../src/cli/commands';
import { CliError, describeError, etcdUnavailableMessage } from '../../src/cli/errors';
import { datastoreErrorToCli, DEFAULT_ENDPOINT_HINT } from '../../src/cli/datastore';
import { DatastoreError } from '../../src/datastore/errors';
import { IpamError } from '../../src/ipam/types';
import { EndpointError } from '../../src/etcd/endpoints';
import { optionsText, poolTable } from '../../src/cli/commands/pool';
import { ctl } from './cli-run';

// Nothing listens on port 1: a test that reached etcd by mistake fails fast instead of hanging.
const env: NodeJS.ProcessEnv = { ...process.env, ETCD_ENDPOINTS: 'http://127.0.0.1:1' };
delete env.ETCD_AUTHORITY;


function allCommands(): Command[] {
  const program = new Command('calicoctl');
  registerCommands(program);
  const out: Command[] = [];
  const walk = (c: Command) => {
    for (const s of c.commands) {
      out.push(s);
      walk(s);
    }
  };
  walk(program);
  return out;
}

test('framework: every command and subcommand has a description and its own help', () => {
  const cmds = allCommands();
  assert.ok(cmds.some((c) => c.name() === 'pool') && cmds.some((c) => c.name() === 'node'));
  for (const c of cmds) {
    assert.ok(c.description().length > 0, `${c.name()} has a description`);
    assert.match(c.helpInformation(), /^Usage: /);
  }
});

test('framework: every listing command offers --output json', () => {
  const listings = allCommands().filter((c) => /^show/.test(c.name()));
  assert.ok(listings.length >= 1);
  for (const c of listings) {
    assert.ok(c.options.some((o) => o.long === '--output'), `${c.parent?.name()} ${c.name()} has --output`);
  }
});

test('framework: the compiled calicoctl runs as a program', async () => {
  const r = await run(process.execPath, [CALICOCTL_MAIN, 'pool', 'add', '--help'], { env, timeoutMs: 20000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage: calicoctl pool add \[options\] <CIDR>/);
});

test('framework: --help works on every level, exit 0, on stdout', async () => {
  for (const args of [[], ['pool'], ['pool', 'add'], ['pool', 'remove'], ['pool', 'show'], ['node']]) {
    const r = await ctl(...args, '--help');
    assert.equal(r.code, 0, `${args.join(' ')} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: calicoctl${args.map((a) => ` ${a}`).join('')} `));
  }
  const top = await ctl('--help');
  assert.match(top.stdout, /--etcd-endpoints <urls>/);
  assert.match(top.stdout, /\n  pool /);
});

test('framework: usage errors go to stderr with exit 2 and no stack', async () => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /error: unknown command 'frobnicate'/],
    [['pool', 'add'], /error: missing required argument 'CIDR'/],
    [['pool', 'show', '--ipv4', '--ipv6'], /error: option '--ipv4' cannot be used with option '--ipv6'/],
    [['pool', 'show', '--output', 'yaml'], /^Invalid --output "yaml": expected table or json\.\n$/],
    [['pool', 'add', '10.0.0.0/27'], /^Pool 10\.0\.0\.0\/27 is too small/],
    [['pool', 'add', 'fd00::/64', '--ipip'], /^IP in IP not supported for IPv6 pools: fd00::\/64 is IPv6 \(--ipip is for IPv4 pools only\)\n$/],
    [['pool', 'remove', 'nonsense'], /^"nonsense" is not a CIDR/],
  ];
  for (const [args, message] of cases) {
    const r = await ctl(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.equal(r.stdout, '');
  }
});

test('framework: a command that needs root exits 2 when run without it', async () => {
  // As root, drop to nobody for the child; otherwise we already are unprivileged.
  const asNobody = process.getuid?.() === 0;
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const { spawn } = require('node:child_process') as typeof import('node:child_process');
    const c = spawn(process.execPath, [CALICOCTL_MAIN, 'container', 'add', 'c1', '10.0.0.1'], { env, ...(asNobody ? { uid: 65534, gid: 65534 } : {}) });
    let stderr = '';
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    c.on('close', (code) => resolve({ code, stderr }));
  });
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'This command must be run as root.\n');
});

test('framework: datastore errors become messages for a person', () => {
  const down = datastoreErrorToCli(
    new DatastoreError('UNAVAILABLE', 'listing /calico/v1/ipam/v4/pool/: etcd unreachable (endpoints tried: http://a:1, http://b:2): 14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED. Resolution note: '),
    ['http://a:1', 'http://b:2'],
  ) as CliError;
  assert.ok(down instanceof CliError);
  assert.equal(down.exitCode, 1);
  assert.equal(
    down.message,
    'Error accessing etcd at http://a:1, http://b:2 (listing /calico/v1/ipam/v4/pool/: etcd unreachable: 14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED). Is etcd running?',
  );
  const refused = datastoreErrorToCli(new DatastoreError('REFUSED', 'pool 10.2.0.0/16 overlaps existing pool 10.0.0.0/8'), []) as CliError;
  assert.equal(refused.message, 'Pool 10.2.0.0/16 overlaps existing pool 10.0.0.0/8');
  const bug = new TypeError('x is undefined');
  assert.equal(datastoreErrorToCli(bug, []), bug, 'anything else stays a bug with its stack');
  assert.equal(etcdUnavailableMessage([], 'timeout.'), 'Error accessing etcd (timeout). Is etcd running?');
  assert.equal(describeError(new EndpointError('ETCD_AUTHORITY: bad'))?.message, 'ETCD_AUTHORITY: bad');
  assert.equal(describeError(new RangeError('bug')), undefined);
});

test('pool table: one table per family, options spelled as in 2015, usage right-aligned', () => {
  assert.equal(optionsText({ ipip: true, natOutgoing: true }), 'ipip,nat-outgoing');
  assert.equal(optionsText({ ipip: false, natOutgoing: false }), '');
  const t = poolTable(6, [{ cidr: 'fd80:24e2:f998:72d6::/64', family: 6, ipip: false, natOutgoing: true, allocated: 3, capacity: '18446744073709551616' }]);
  assert.equal(
    t,
    [
      '+--------------------------+--------------+-----------+----------------------+',
      '|        IPv6 CIDR         |   Options    | Allocated |       Capacity       |',
      '+--------------------------+--------------+-----------+----------------------+',
      '| fd80:24e2:f998:72d6::/64 | nat-outgoing |         3 | 18446744073709551616 |',
      '+--------------------------+--------------+-----------+----------------------+',
      '',
    ].join('\n'),
  );
});

test('framework: IPAM errors read the same way, unreachable etcd included', () => {
  const inUse = datastoreErrorToCli(new IpamError('IN_USE', '10.0.0.5 is already owned by container abc', 'abc'), ['http://a:1']) as CliError;
  assert.equal(inUse.message, '10.0.0.5 is already owned by container abc');
  const down = datastoreErrorToCli(new IpamError('UNAVAILABLE', 'allocating: etcd did not answer within 1500 ms (endpoints tried: http://a:1)'), ['http://a:1']) as CliError;
  assert.equal(down.message, 'Error accessing etcd at http://a:1 (allocating: etcd did not answer within 1500 ms). Is etcd running?');
  assert.equal(describeError(new IpamError('EXHAUSTED', 'pools full: 10.0.0.0/26'))?.message, 'Pools full: 10.0.0.0/26');
});

test('framework: with no endpoint configured, an unreachable etcd comes with a hint for new users', () => {
  const e = datastoreErrorToCli(new DatastoreError('UNAVAILABLE', 'reading x: etcd did not answer within 1500 ms'), ['http://127.0.0.1:2379'], DEFAULT_ENDPOINT_HINT) as CliError;
  assert.equal(e.message.split('\n')[0], 'Error accessing etcd at http://127.0.0.1:2379 (reading x: etcd did not answer within 1500 ms). Is etcd running?');
  assert.match(e.message.split('\n')[1]!, /^No etcd endpoint is configured: start `calicoctl node` on this host/);
});

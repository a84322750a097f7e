// A host installed from the package: `calicoctl node` names every missing
// program with its Debian package before anything starts (a PATH without
// conntrack), and `calicoctl node --init-system` prints a unit that
// `systemd-analyze verify` (Debian's systemd) accepts and that runs exactly
// the flags given.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { teardownAll, onTeardown, run, makeRunDir, removeTree, CALICOCTL_MAIN, envWithoutEtcd } from '../harness';
import { splitExecStart } from '../systemd-exec';

after(teardownAll);

/** The checkout's bin/calicoctl, as npm links it onto the PATH. */
const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'calicoctl');

/** A PATH directory holding the programs the node runs, each a link to the real one, minus `without`. */
function pathWithout(dir: string, without: string[]): string {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  for (const p of ['dockerd', 'iptables-restore', 'iptables-save', 'ip6tables-restore', 'ip6tables-save', 'ipset', 'conntrack', 'ip']) {
    if (without.includes(p)) continue;
    const real = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].map((d) => path.join(d, p)).find((f) => fs.existsSync(f));
    assert.ok(real, `${p} is installed on this machine (scripts/install-deps)`);
    fs.symlinkSync(real, path.join(bin, p));
  }
  return bin;
}

test('calicoctl node on a host without conntrack: names it and its Debian package, starts nothing', async () => {
  const dir = await makeRunDir('ops-deps');
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  const stateDir = path.join(dir, 'state');
  const args = [CALICOCTL_MAIN, 'node', '--state-dir', stateDir, '--listen', `unix://${path.join(dir, 'proxy.sock')}`, '--plugin-name', 'opsdeps'];
  const r = await run(process.execPath, args, { env: envWithoutEtcd({ PATH: pathWithout(dir, ['conntrack']) }), timeoutMs: 30000 });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /^calicoctl node cannot start: this host lacks what the node runs:\n  conntrack: .*; Debian package conntrack\nInstall with: apt-get install conntrack\n/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.ok(!fs.existsSync(stateDir), 'nothing started: no state directory, pid file or etcd data');
  assert.ok(!fs.existsSync(path.join(dir, 'proxy.sock')));

  // The same PATH with conntrack: nothing is reported missing (checked without starting: --init-system only warns).
  fs.symlinkSync('/usr/sbin/conntrack', path.join(dir, 'bin', 'conntrack'));
  const ok = await run(process.execPath, [...args, '--init-system'], { env: envWithoutEtcd({ PATH: path.join(dir, 'bin') }), timeoutMs: 30000 });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stderr, '');
});

test('calicoctl node --init-system: systemd-analyze verify accepts the unit, and its ExecStart is exactly the flags given', async () => {
  const dir = await makeRunDir('ops-unit');
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  const flags = ['--etcd-endpoints', 'http://10.0.0.1:2379,http://10.0.0.2:2379', 'node', '--ip=10.0.0.10', '--hostname', 'trinity10',
    '--listen', 'unix:///run/calico proxy.sock', '--log-level', 'warn', '--metrics', 'tcp://127.0.0.1:9099', '--detach', '--init-system'];
  const given = flags.filter((f) => f !== '--detach' && f !== '--init-system');
  // As an installed package runs it (bin/calicoctl, found through its #! line), and as a checkout's main.js.
  for (const [argv0, program] of [[BIN, [BIN]], [CALICOCTL_MAIN, [process.execPath, CALICOCTL_MAIN]]] as const) {
    const r = await run(argv0 === BIN ? BIN : process.execPath, argv0 === BIN ? flags : [CALICOCTL_MAIN, ...flags], { env: envWithoutEtcd(), timeoutMs: 30000 });
    assert.equal(r.code, 0, r.stderr);
    const unitFile = path.join(dir, 'calico-node.service');
    fs.writeFileSync(unitFile, r.stdout);
    const v = await run('systemd-analyze', ['verify', unitFile], { timeoutMs: 60000 });
    assert.equal(v.code, 0, `systemd-analyze verify: ${v.stdout}${v.stderr}\n${r.stdout}`);
    assert.equal(v.stderr.trim(), '', 'no warning either (unknown escapes, bad settings)');
    const exec = r.stdout.split('\n').filter((l) => l.startsWith('ExecStart='));
    assert.equal(exec.length, 1);
    assert.deepEqual(splitExecStart(exec[0]!.slice('ExecStart='.length)), [...program, ...given]);
    assert.match(r.stdout, /^Restart=on-failure$/m);
    assert.match(r.stdout, /^After=network-online.target docker.service$/m, 'a remote etcd cluster: no etcd.service ordering');
  }
  // A broken unit fails the same check (the check can fail).
  fs.writeFileSync(path.join(dir, 'calico-node.service'), '[Service]\nExecStart=calicoctl node\n');
  assert.notEqual((await run('systemd-analyze', ['verify', path.join(dir, 'calico-node.service')], { timeoutMs: 60000 })).code, 0);
});

// Help that teaches: every command's --help has a purpose, its arguments and
// an example; profile's sub-commands have their own help with the rule
// grammar; the environment is in calicoctl --help and node --help; bash
// completion is generated from the same command tree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ctl, commandPaths, program } from './cli-run';
import { bashCompletion, completionTable } from '../../src/cli/commands/completion';

test('help: every command and sub-command has a purpose, its arguments and at least one example', async () => {
  const all = commandPaths();
  assert.ok(all.length > 30);
  for (const { path, cmd } of all) {
    const r = await ctl(...path.split(' '), '--help');
    assert.equal(r.code, 0, `calicoctl ${path} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: calicoctl ${path} `), path);
    assert.ok(cmd.description().length > 10, `${path}: a one-line purpose`);
    for (const a of cmd.registeredArguments) assert.ok(a.description, `${path}: argument ${a.name()} is described`);
    const examples = r.stdout.split('\nExamples:\n')[1];
    assert.ok(examples, `calicoctl ${path} --help has an Examples section`);
    assert.match(examples!, new RegExp(`^  calicoctl .*${path.split(' ').pop()}`, 'm'), `${path}: an example runs the command itself`);
  }
  const top = await ctl('--help');
  assert.match(top.stdout, /\nExamples:\n  calicoctl node/);
});

test('help: the environment variables are in calicoctl --help and node --help; the exit codes in calicoctl --help', async () => {
  for (const args of [['--help'], ['node', '--help']]) {
    const r = await ctl(...args);
    for (const v of ['CALICO_IP', 'CALICO_IP6', 'CALICO_PROFILE', 'DOCKER_HOST', 'ETCD_ENDPOINTS', 'CALICO_LOG_LEVEL']) {
      assert.match(r.stdout, new RegExp(`\\n  ${v}\\b`), `${args.join(' ')} names ${v}`);
    }
  }
  const top = await ctl('--help');
  assert.match(top.stdout, /Exit codes \(every command\):\n  0  done, or already so[^\n]*\n  1  failed[^\n]*\n  2  usage or permission/);
  const status = await ctl('status', '--help');
  assert.match(status.stdout, /Exit code: 0 when the node, its Docker plugin and etcd all answer; 1 when any of them does not/);
});

test('help: profile sub-commands each have their own usage; rule --help has the rule grammar', async () => {
  const rule = await ctl('profile', 'WEB', 'rule', '--help');
  assert.equal(rule.code, 0);
  assert.match(rule.stdout, /^Usage:\n  calicoctl profile <PROFILE> rule show/);
  assert.match(rule.stdout, /\(allow\|deny\) \[\(tcp\|udp\) \[from \[ports P\] \[tag T\] \[CIDR\]\]/);
  assert.match(rule.stdout, /Examples:\n  calicoctl profile PROF_GROUP1 rule update < prof_group1\.json/);
  for (const [args, usage] of [
    [['profile', 'show', '--help'], /calicoctl profile show \[--detailed\]/],
    [['profile', 'add', '--help'], /calicoctl profile add <PROFILE>/],
    [['profile', 'remove', '--help'], /calicoctl profile remove <PROFILE> \[--force\]/],
    [['profile', 'WEB', 'tag', '--help'], /calicoctl profile <PROFILE> tag add <TAG>/],
    [['profile', 'WEB', 'member', 'add', '--help'], /calicoctl profile <PROFILE> member add <CONTAINER>/],
  ] as const) {
    const r = await ctl(...args);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.stdout, usage);
    assert.match(r.stdout, /\nExamples:\n  calicoctl profile /);
    assert.doesNotMatch(r.stdout, /profile <PROFILE> rule add/, `${args.join(' ')}: its own usage, not every sub-command's`);
  }
  const whole = await ctl('profile', '--help');
  assert.match(whole.stdout, /Rule spec/);
});

test('completion: bash completion offers each command\'s sub-commands and flags, and bash accepts the script', async () => {
  const t = completionTable(program());
  assert.ok(t.get('')!.includes('profile') && t.get('')!.includes('node'));
  assert.ok(t.get('node')!.includes('bgppeer') && t.get('node')!.includes('--hostname') && !t.get('node')!.includes('--name'), 'hidden aliases are not offered');
  assert.ok(t.get('pool add')!.includes('--nat-outgoing'));
  assert.ok(t.get('profile * rule')!.includes('update'));
  const r = await ctl('completion', 'bash');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, bashCompletion(program()));
  // bash parses it and completes: `calicoctl pool a<TAB>` -> add; `calicoctl profile WEB r<TAB>` -> rule.
  const complete = (line: string) => {
    const words = line.split(' ');
    const script = `${r.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _calicoctl; echo "\${COMPREPLY[*]}"`;
    const b = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    assert.equal(b.status, 0, b.stderr);
    return b.stdout.trim();
  };
  assert.equal(complete('calicoctl pool a'), 'add');
  assert.equal(complete('calicoctl profile WEB r'), 'rule');
  assert.equal(complete('calicoctl profile WEB rule add i'), 'inbound');
  assert.equal(complete('calicoctl node bgppeer s'), 'show');
  assert.match(complete('calicoctl node --hostn'), /^--hostname$/);
});

test('output: every show form takes -o json (the listings, status, shownodes, the bgp settings, profile)', () => {
  const showForms = commandPaths().filter(({ path }) => /(^| )show$/.test(path) || ['status', 'shownodes', 'profile', 'bgp default-node-as', 'bgp node-mesh', 'bgp node-mesh-password', 'default-node-as', 'bgp-node-mesh'].includes(path));
  assert.ok(showForms.length >= 12);
  for (const { path, cmd } of showForms) assert.ok(cmd.options.some((o) => o.long === '--output' && o.short === '-o'), `${path} takes -o, --output`);
});

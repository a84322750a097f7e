import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeIssues, ProfileRulesInput, RuleValue } from '../../src/datastore/schemas';
import { parseRuleSpec, ruleText, sameRule } from '../../src/cli/commands/profile-spec';
import { parseRulesUpdate } from '../../src/cli/commands/profile';

function problems(v: unknown): string[] {
  const r = ProfileRulesInput.safeParse(v);
  return r.success ? [] : describeIssues(r.error);
}

test('rule validation names the key and the reason for each problem', () => {
  const rules = (r: object) => ({ id: 'P', inbound_rules: [{}, r], outbound_rules: [] });
  assert.deepEqual(problems(rules({ protocol: 'tcp', dst_ports: [70000] })), ['inbound_rules[1].dst_ports[0]: port 70000 out of range 1..65535']);
  assert.deepEqual(problems(rules({ colour: 'red' })), [
    'inbound_rules[1]: unknown key "colour" (allowed: action, protocol, src_tag, dst_tag, src_net, dst_net, src_ports, dst_ports, icmp_type, icmp_code, ip_version)',
  ]);
  assert.deepEqual(problems(rules({ action: 'permit' })), ['inbound_rules[1].action: action must be "allow" or "deny"']);
  assert.match(problems(rules({ dst_net: '10.0.0.0/33' }))[0]!, /^inbound_rules\[1\]\.dst_net: expected a CIDR, got "10\.0\.0\.0\/33": prefix length/);
  assert.deepEqual(problems(rules({ protocol: 'icmp', icmp_code: 1 })), ['inbound_rules[1].icmp_code: icmp_code needs icmp_type']);
  assert.deepEqual(problems(rules({ protocol: 'udp', src_ports: ['90:80'] })), ['inbound_rules[1].src_ports[0]: port range "90:80" needs 1 <= lo < hi <= 65535']);
  assert.deepEqual(problems(rules({ dst_ports: [80] })), ['inbound_rules[1].dst_ports: ports need protocol tcp or udp, not none']);
  assert.deepEqual(problems(rules({ protocol: 'icmp', icmp_type: 255 })), ['inbound_rules[1].icmp_type: icmp type 255 out of range 0..254 (255 would match every type)']);
  assert.deepEqual(problems(rules({ ip_version: 6, src_net: '10.0.0.0/8' })), ['inbound_rules[1].src_net: 10.0.0.0/8 is IPv4 but ip_version is 6']);
  assert.deepEqual(problems({ id: 'P', inbound: [], outbound_rules: [] }), ['inbound_rules: missing', 'unknown key "inbound" (allowed: id, inbound_rules, outbound_rules)']);
  // Null-valued keys are dropped before validating, as felix did; the stored schema still reads these.
  assert.deepEqual(problems({ id: 'P', inbound_rules: [{ action: 'allow', src_tag: 'P', protocol: null }], outbound_rules: [] }), []);
});

test('rule update input: JSON errors, id mismatch and schema problems are refused before etcd', () => {
  assert.throws(() => parseRulesUpdate('P', '{'), /^CliError: Invalid rules JSON on stdin: .*Nothing was changed\.$/);
  assert.throws(() => parseRulesUpdate('P', '{"id": "Q", "inbound_rules": [], "outbound_rules": []}'), /Rules JSON "id"=Q doesn't match profile name P\./);
  assert.throws(() => parseRulesUpdate('P', '{"inbound_rules": [], "outbound_rules": []}'), /"id"=\(missing\)/);
  assert.throws(() => parseRulesUpdate('P', '{"id": "P", "inbound_rules": [{"action": "x"}], "outbound_rules": []}'), /nothing was changed:\n  inbound_rules\[0\]\.action/);
  assert.deepEqual(parseRulesUpdate('P', '{"id": "P", "inbound_rules": [], "outbound_rules": [{"action": "allow"}]}').outbound_rules, [{ action: 'allow' }]);
});

test('the v0.4.6 rule spec parses into rule JSON and prints back the same way', () => {
  const cases: [string, RuleValue, string][] = [
    ['allow', { action: 'allow' }, 'allow'],
    ['deny tcp from ports 1-5,80 tag WEB 10.0.0.0/8 to ports 443', { action: 'deny', protocol: 'tcp', src_ports: ['1:5', 80], src_tag: 'WEB', src_net: '10.0.0.0/8', dst_ports: [443] }, 'deny tcp from ports 1:5,80 tag WEB 10.0.0.0/8 to ports 443'],
    ['allow icmp type 8 code 0 from tag X', { action: 'allow', protocol: 'icmp', icmp_type: 8, icmp_code: 0, src_tag: 'X' }, 'allow icmp type 8 code 0 from tag X'],
    ['allow icmpv6 to fd00::/8', { action: 'allow', protocol: 'icmpv6', dst_net: 'fd00::/8' }, 'allow icmpv6 to fd00::/8'],
    ['allow from 192.168.0.0/16 to tag DB', { action: 'allow', src_net: '192.168.0.0/16', dst_tag: 'DB' }, 'allow from 192.168.0.0/16 to tag DB'],
  ];
  for (const [spec, rule, text] of cases) {
    assert.deepEqual(parseRuleSpec(spec.split(' ')), rule, spec);
    assert.equal(ruleText(rule), text);
  }
  assert.throws(() => parseRuleSpec(['allow', 'icmp', 'from', 'ports', '80']), /^CliError: Ports are not valid with protocol 'icmp'$/);
  assert.throws(() => parseRuleSpec(['allow', 'from', 'ports', '80']), /Ports are not valid with protocol None/);
  assert.throws(() => parseRuleSpec(['permit']), /must start with allow or deny/);
  assert.throws(() => parseRuleSpec(['allow', 'tcp', 'sideways']), /unexpected "sideways"/);
  assert.throws(() => parseRuleSpec(['allow', 'tcp', 'type', '8']), /"type" needs icmp or icmpv6/);
  assert.throws(() => parseRuleSpec(['allow', 'tcp', 'from']), /"from" needs ports, a tag or a CIDR/);
  assert.ok(sameRule({ src_tag: 'A' }, { action: 'allow', src_tag: 'A' }), 'a missing action is allow');
  assert.ok(!sameRule({ action: 'deny' }, { action: 'allow' }));
});

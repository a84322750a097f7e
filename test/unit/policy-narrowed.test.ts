import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicy } from '../../src/policy';
import { narrowedEndpoints } from '../../src/policy/narrowed';
import { defaultProfile, DEFAULT_PROFILE, Endpoint, Profile } from '../../src/datastore';

function ep(over: Partial<Endpoint> & { name: string }): Endpoint {
  return {
    host: 'h1', containerId: `c-${over.name}`, endpointId: `e-${over.name}`, state: 'active', mac: '02:00:00:00:00:01',
    'container:if_name': 'eth0', profile_ids: [DEFAULT_PROFILE], ipv4_nets: [], ipv6_nets: [], ...over,
  };
}

const A = ep({ name: 'cali0000000001', ipv4_nets: ['10.0.0.1/32'], ipv6_nets: ['fd00::1/128'] });
const B = ep({ name: 'cali0000000002', ipv4_nets: ['10.0.0.2/32'] });
const web = (ports: number[]): Profile => ({ name: 'WEB', tags: ['WEB'], rules: { inbound_rules: [{ protocol: 'tcp', dst_ports: ports }], outbound_rules: [{}] } });
const compile = (endpoints: Endpoint[], profiles: Profile[]) => compilePolicy({ host: 'h1', endpoints, profiles });

test('a new member of a tag (a container starting) narrows nobody: no flush on the start path', () => {
  const before = compile([A], [defaultProfile(DEFAULT_PROFILE)]);
  const after = compile([A, B], [defaultProfile(DEFAULT_PROFILE)]);
  assert.deepEqual(narrowedEndpoints(before, after, [A]), []);
});

test('a member leaving a tag narrows the flows of that member only, not of the tag\'s other users', () => {
  const before = compile([A, B], [defaultProfile(DEFAULT_PROFILE)]);
  const after = compile([A], [defaultProfile(DEFAULT_PROFILE)]);
  assert.deepEqual(narrowedEndpoints(before, after, [A, B]), [{ family: 4, address: '10.0.0.2' }], 'B lost its chains and left the tag; A is untouched');
  const remote = ep({ name: 'cali0000000003', host: 'h2', ipv4_nets: ['10.9.0.3/32'] });
  assert.deepEqual(narrowedEndpoints(compile([A, remote], [defaultProfile(DEFAULT_PROFILE)]), compile([A], [defaultProfile(DEFAULT_PROFILE)]), [A]), [
    { family: 4, address: '10.9.0.3' },
  ], 'a member on another host leaving the tag: its flows with ours are checked again');
});

test('a rule change of a profile narrows exactly its members; nothing changed narrows nobody', () => {
  const a = { ...A, profile_ids: ['WEB'] };
  const before = compile([a, B], [defaultProfile(DEFAULT_PROFILE), web([8080, 9090])]);
  assert.deepEqual(narrowedEndpoints(before, compile([a, B], [defaultProfile(DEFAULT_PROFILE), web([8080, 9090])]), [a, B]), []);
  const after = compile([a, B], [defaultProfile(DEFAULT_PROFILE), web([8080])]);
  assert.deepEqual(narrowedEndpoints(before, after, [a, B]), [{ family: 4, address: '10.0.0.1' }, { family: 6, address: 'fd00::1' }]);
});

test('an endpoint whose profile is replaced (member add) is narrowed; a new endpoint is not', () => {
  const before = compile([A], [defaultProfile(DEFAULT_PROFILE), web([80])]);
  const moved = { ...A, profile_ids: ['WEB'] };
  assert.deepEqual(narrowedEndpoints(before, compile([moved, B], [defaultProfile(DEFAULT_PROFILE), web([80])]), [A]), [
    { family: 4, address: '10.0.0.1' },
    { family: 6, address: 'fd00::1' },
  ]);
});

import { HANDLE_LABEL, PROFILES_LABEL, calicoNetworkName } from '../../src/names';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RequestRefused, checkNetworkMode, envValue, parseCalicoEnv, withNetworkFamilies } from '../../src/proxy/interceptors/calico-request';
import { readCreateBody, rewriteCreate, type Rewrite } from '../../src/proxy/interceptors/create-body';

/** The old object-in, object-out shape over the member-wise rewrite. */
function rewriteCreateBody(body: object, r: Rewrite): Record<string, unknown> {
  return JSON.parse(rewriteCreate(readCreateBody(Buffer.from(JSON.stringify(body)))!, r).toString()) as Record<string, unknown>;
}
import { refusalForIpamError } from '../../src/proxy/interceptors/ipam-refusal';
import { IpamError } from '../../src/ipam/types';

function refused(fn: () => unknown, status: number, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof RequestRefused && e.status === status && re.test(e.message));
}

test('envValue: last definition wins, non-strings ignored', () => {
  assert.equal(envValue(['A=1', 'CALICO_IP=auto', 'CALICO_IP=10.0.0.1'], 'CALICO_IP'), '10.0.0.1');
  assert.equal(envValue(['CALICO_IPX=1', 7, null], 'CALICO_IP'), undefined);
  assert.equal(envValue(undefined, 'CALICO_IP'), undefined);
  assert.equal(envValue(['CALICO_IP='], 'CALICO_IP'), '');
});

test('parseCalicoEnv: auto, explicit v4, explicit v6, dual stack, profiles', () => {
  assert.equal(parseCalicoEnv(['PATH=/bin']), undefined);
  assert.deepEqual(parseCalicoEnv(['CALICO_IP=auto']), { ipv4: 'auto', profiles: [] });
  assert.deepEqual(parseCalicoEnv(['CALICO_IP=AUTO']), { ipv4: 'auto', profiles: [] });
  assert.deepEqual(parseCalicoEnv(['CALICO_IP=192.168.1.7']), { ipv4: '192.168.1.7', profiles: [] });
  assert.deepEqual(parseCalicoEnv(['CALICO_IP=fd80:24e2:f998:72d6:0::7']), { ipv6: 'fd80:24e2:f998:72d6::7', profiles: [] });
  assert.deepEqual(parseCalicoEnv(['CALICO_IP=auto', 'CALICO_IP6=auto']), { ipv4: 'auto', ipv6: 'auto', profiles: [] });
  assert.deepEqual(parseCalicoEnv(['CALICO_IP=10.1.2.3', 'CALICO_IP6=fd00::9', 'CALICO_PROFILE=web, db,web']), {
    ipv4: '10.1.2.3',
    ipv6: 'fd00::9',
    profiles: ['web', 'db'],
  });
});

test('parseCalicoEnv: malformed values are refused with 400 and say why', () => {
  refused(() => parseCalicoEnv(['CALICO_IP=']), 400, /CALICO_IP is empty/);
  refused(() => parseCalicoEnv(['CALICO_IP=10.0.0.300']), 400, /not a valid IP address/);
  refused(() => parseCalicoEnv(['CALICO_IP=banana']), 400, /not a valid IP address/);
  refused(() => parseCalicoEnv(['CALICO_IP=10.0.0.0/24']), 400, /without a prefix length/);
  refused(() => parseCalicoEnv(['CALICO_IP=10.1']), 400, /dotted-quad/);
  refused(() => parseCalicoEnv(['CALICO_IP=auto', 'CALICO_IP6=10.0.0.1']), 400, /IPv4 address; CALICO_IP6 takes auto or an IPv6/);
  refused(() => parseCalicoEnv(['CALICO_IP=fd00::1', 'CALICO_IP6=fd00::2']), 400, /both ask for an IPv6/);
  refused(() => parseCalicoEnv(['CALICO_IP=auto', 'CALICO_PROFILE=ok,not ok']), 400, /invalid profile name "not ok"/);
});

test('checkNetworkMode: host, none and container:x are refused; default, bridge and named networks are not', () => {
  refused(() => checkNetworkMode('host'), 400, /--net=host.*drop --net or drop CALICO_IP/);
  refused(() => checkNetworkMode('none'), 400, /--net=none/);
  refused(() => checkNetworkMode('container:abc'), 400, /--net=container:abc.*another container/);
  for (const ok of [undefined, '', 'default', 'bridge', 'proj_default', 'calico']) checkNetworkMode(ok);
});

test('rewriteCreateBody: joins the calico network with the reserved addresses, keeps every other field', () => {
  const body = {
    Hostname: 'h1',
    Env: ['CALICO_IP=auto', 'X=1'],
    Cmd: ['true'],
    Image: 'img',
    Labels: { keep: 'me' },
    HostConfig: { NetworkMode: 'default', AutoRemove: true, Memory: 1073741824, ConsoleSize: [0, 0] },
    NetworkingConfig: { EndpointsConfig: { other: { Aliases: ['o'] } } },
    Unknown: { nested: [1, 2] },
  };
  const out = rewriteCreateBody(body, { handle: 'resv-1', ipv4: '10.0.0.5', profiles: ['web'] });
  assert.equal((out.HostConfig as Record<string, unknown>).NetworkMode, calicoNetworkName());
  assert.equal((out.HostConfig as Record<string, unknown>).AutoRemove, true);
  assert.equal((out.HostConfig as Record<string, unknown>).Memory, 1073741824);
  assert.deepEqual(out.NetworkingConfig, {
    EndpointsConfig: { other: { Aliases: ['o'] }, calico: { IPAMConfig: { IPv4Address: '10.0.0.5' } } },
  });
  assert.deepEqual(out.Labels, { keep: 'me', [HANDLE_LABEL]: 'resv-1', [PROFILES_LABEL]: 'web' });
  for (const k of ['Hostname', 'Env', 'Cmd', 'Image', 'Unknown'] as const) assert.deepEqual(out[k], body[k]);
});

test('rewriteCreateBody: compose aliases on the project network move to the calico endpoint; client IPAMConfig is ours', () => {
  const body = {
    HostConfig: { NetworkMode: 'proj_default' },
    NetworkingConfig: {
      EndpointsConfig: { proj_default: { Aliases: ['web', 'abc123'], IPAMConfig: { IPv4Address: '1.2.3.4', LinkLocalIPs: ['169.254.9.9'] } } },
    },
  };
  const out = rewriteCreateBody(body, { handle: 'resv-2', ipv4: '10.0.0.6', ipv6: 'fd00::6', profiles: [] });
  assert.deepEqual(out.NetworkingConfig, {
    EndpointsConfig: {
      calico: { Aliases: ['web', 'abc123'], IPAMConfig: { LinkLocalIPs: ['169.254.9.9'], IPv4Address: '10.0.0.6', IPv6Address: 'fd00::6' } },
    },
  });
  assert.deepEqual(out.Labels, { [HANDLE_LABEL]: 'resv-2' });
});

test('rewriteCreateBody: a body without HostConfig or NetworkingConfig gets both', () => {
  const out = rewriteCreateBody({ Image: 'i' }, { handle: 'resv-3', ipv6: 'fd00::1', profiles: [] });
  assert.deepEqual(out.HostConfig, { NetworkMode: 'calico' });
  assert.deepEqual(out.NetworkingConfig, { EndpointsConfig: { calico: { IPAMConfig: { IPv6Address: 'fd00::1' } } } });
});

test('readCreateBody: not JSON is refused (never passed unread); not an object is not ours; big integers go on as written', () => {
  refused(() => readCreateBody(Buffer.from('{not json')), 400, /container create body: invalid JSON/);
  assert.equal(readCreateBody(Buffer.from('[1]')), undefined);
  const big = '{"Env":["CALICO_IP=auto"],"HostConfig":{"Memory":90071992547409930}}';
  const out = rewriteCreate(readCreateBody(Buffer.from(big))!, { handle: 'h', ipv4: '10.0.0.1', profiles: [] }).toString();
  assert.match(out, /"Memory":90071992547409930[,}]/);
});

test('refusalForIpamError: status per failure, message names what was attempted', () => {
  const w = 'reserving 10.0.0.5 for container web';
  assert.deepEqual(refusalForIpamError(new IpamError('IN_USE', '10.0.0.5 is in use by container abc', 'abc'), w), {
    status: 409,
    message: `${w}: 10.0.0.5 is in use by container abc`,
  });
  assert.equal(refusalForIpamError(new IpamError('NOT_IN_POOL', 'x'), w).status, 400);
  assert.equal(refusalForIpamError(new IpamError('INVALID', 'x'), w).status, 400);
  assert.equal(refusalForIpamError(new IpamError('NO_POOL', 'no IPv6 pool exists'), w).status, 400);
  assert.equal(refusalForIpamError(new IpamError('EXHAUSTED', 'x'), w).status, 503);
  assert.equal(refusalForIpamError(new IpamError('UNAVAILABLE', 'etcd at http://127.0.0.1:1 unreachable'), w).status, 503);
  assert.equal(refusalForIpamError(new IpamError('CONFLICT', 'x'), w).status, 503);
  assert.deepEqual(refusalForIpamError(new Error('boom'), w), { status: 500, message: `${w}: boom` });
});

test('inspect: the calico address fills the empty top-level NetworkSettings fields; other bodies untouched', async () => {
  const { fillTopLevelAddress } = await import('../../src/proxy/interceptors/inspect-container');
  const body = {
    Id: 'abc',
    NetworkSettings: {
      IPAddress: '',
      MacAddress: '',
      GlobalIPv6Address: '',
      Networks: { calico: { IPAddress: '10.65.0.7', MacAddress: '02:00:00:00:00:07', Gateway: '169.254.1.1', GlobalIPv6Address: '', EndpointID: 'e' } },
    },
  };
  const out = JSON.parse(fillTopLevelAddress(JSON.stringify(body))!);
  assert.equal(out.NetworkSettings.IPAddress, '10.65.0.7');
  assert.equal(out.NetworkSettings.IPPrefixLen, 32);
  assert.equal(out.NetworkSettings.MacAddress, '02:00:00:00:00:07');
  assert.equal(out.NetworkSettings.Gateway, '169.254.1.1');
  assert.equal(out.NetworkSettings.GlobalIPv6Address, '');
  assert.deepEqual(out.NetworkSettings.Networks, body.NetworkSettings.Networks);
  assert.equal(out.Id, 'abc');
  // Not on calico, already filled, not JSON, or numbers JSON cannot carry: untouched.
  assert.equal(fillTopLevelAddress(JSON.stringify({ NetworkSettings: { Networks: { bridge: { IPAddress: '172.17.0.2' } } } })), undefined);
  assert.equal(fillTopLevelAddress(JSON.stringify({ NetworkSettings: { IPAddress: '1.2.3.4', MacAddress: 'm', Gateway: 'g', Networks: { calico: { IPAddress: '10.0.0.1', MacAddress: 'x', Gateway: 'y' } } } })), undefined);
  assert.equal(fillTopLevelAddress('{"message":"No such container: x"}'), undefined);
  assert.equal(fillTopLevelAddress('not json'), undefined);
  assert.equal(fillTopLevelAddress(JSON.stringify({ SizeRw: 12345678901234567, NetworkSettings: body.NetworkSettings })), undefined);
  // Hex ids often hold 16 digits in a row: that alone must not stop the fill (seen flaking in CI).
  const digitsId = JSON.parse(fillTopLevelAddress(JSON.stringify({ ...body, Id: '1d28747e7903612345678901234567890fe44395ace28ecfcd64a200b1234567' }))!);
  assert.equal(digitsId.NetworkSettings.IPAddress, '10.65.0.7');
  // A 16-digit integer that is still exact is carried through unchanged.
  const exact = JSON.parse(fillTopLevelAddress(JSON.stringify({ ...body, SizeRw: 1234567890123456 }))!);
  assert.equal(exact.SizeRw, 1234567890123456);
});

test('every family the calico network carries is reserved: the one the client left out becomes auto', () => {
  // IPv4 asked, network with IPv6: an IPv6 address is reserved too (Docker asks for one).
  assert.deepEqual(withNetworkFamilies({ ipv4: 'auto', profiles: [] }, true), { ipv4: 'auto', ipv6: 'auto', profiles: [] });
  // IPv4 asked, IPv4-only network: nothing added.
  assert.deepEqual(withNetworkFamilies({ ipv4: '10.0.0.5', profiles: ['A'] }, false), { ipv4: '10.0.0.5', ipv6: undefined, profiles: ['A'] });
  // IPv6 asked: the network always carries IPv4, so an IPv4 address is reserved too.
  assert.deepEqual(withNetworkFamilies({ ipv6: 'fd00::5', profiles: [] }, true), { ipv4: 'auto', ipv6: 'fd00::5', profiles: [] });
  // Both asked: kept as asked.
  assert.deepEqual(withNetworkFamilies({ ipv4: '10.0.0.5', ipv6: 'auto', profiles: [] }, true), { ipv4: '10.0.0.5', ipv6: 'auto', profiles: [] });
});

// examples/jenkins: jenkins.yaml parses as YAML (python3's yaml, the parser
// docker-compose itself uses) and names only keys of the Docker plugin's
// configuration-as-code schema, as its own test resource spells them
// (jenkinsci/docker-plugin src/test/resources/io/jenkins/docker/client/
// configuration-as-code_current.yml and expected_output_current.yml); the
// docker host is a proxy on 2377 and the agents' environment asks Calico for
// an address and the ci profile; ci-profile.json passes calicoctl's own
// `rule update` parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../harness';
import { parseRulesUpdate } from '../../src/cli/commands/profile';

const EXAMPLE = path.join(__dirname, '..', '..', '..', 'examples', 'jenkins');

/** Allowed keys per level: the Docker plugin's configuration-as-code schema, as far as this example uses it. */
const SCHEMA = {
  cloud: ['name', 'dockerApi', 'templates'],
  dockerApi: ['dockerHost'],
  dockerHost: ['uri', 'credentialsId'],
  template: ['labelString', 'dockerTemplateBase', 'remoteFs', 'connector', 'instanceCapStr', 'retentionStrategy'],
  dockerTemplateBase: ['image', 'environmentsString', 'mounts'],
  connector: ['attach'],
  attach: ['user'],
  retentionStrategy: ['idleMinutes'],
};

type Obj = Record<string, unknown>;
function keysWithin(what: string, o: unknown, allowed: string[]): Obj {
  assert.ok(o && typeof o === 'object' && !Array.isArray(o), `${what} is a mapping`);
  for (const k of Object.keys(o as Obj)) assert.ok(allowed.includes(k), `${what}: "${k}" is not a key of the Docker plugin's schema (${allowed.join(', ')})`);
  return o as Obj;
}

/** YAML -> JSON through python3's yaml (safe_load). */
async function yamlToJson(file: string): Promise<unknown> {
  const r = await run('python3', ['-c', 'import sys, json, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)', file], { timeoutMs: 30000 });
  assert.equal(r.code, 0, `python3 yaml (Debian python3-yaml): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('examples/jenkins/jenkins.yaml: a Docker cloud on the proxy (:2377), agents with CALICO_IP=auto and CALICO_PROFILE=ci, attach connector', async () => {
  const doc = (await yamlToJson(path.join(EXAMPLE, 'jenkins.yaml'))) as Obj;
  const clouds = (doc.jenkins as Obj).clouds as Obj[];
  assert.equal(clouds.length, 1);
  const cloud = keysWithin('docker cloud', clouds[0]!.docker, SCHEMA.cloud);
  const host = keysWithin('dockerHost', keysWithin('dockerApi', cloud.dockerApi, SCHEMA.dockerApi).dockerHost, SCHEMA.dockerHost);
  assert.match(String(host.uri), /^tcp:\/\/[^/]+:2377$/, 'the calico-docker proxy');
  const templates = cloud.templates as Obj[];
  assert.equal(templates.length, 1);
  const t = keysWithin('template', templates[0], SCHEMA.template);
  assert.equal(typeof t.instanceCapStr, 'string', 'instanceCapStr is a string in the schema');
  const base = keysWithin('dockerTemplateBase', t.dockerTemplateBase, SCHEMA.dockerTemplateBase);
  // environmentsString: one NAME=value per line, as the plugin splits it.
  const env = String(base.environmentsString).split('\n').map((l) => l.trim()).filter(Boolean);
  assert.ok(env.includes('CALICO_IP=auto'), env.join(' '));
  assert.ok(env.includes('CALICO_PROFILE=ci'), env.join(' '));
  keysWithin('attach', keysWithin('connector', t.connector, SCHEMA.connector).attach, SCHEMA.attach);
  keysWithin('retentionStrategy', t.retentionStrategy, SCHEMA.retentionStrategy);

  // The check can fail: a misspelt key is named.
  assert.throws(() => keysWithin('template', { ...t, instanceCap: '10' }, SCHEMA.template), /"instanceCap" is not a key/);
});

test('examples/jenkins/ci-profile.json: the ci profile loads through calicoctl\'s rules parser', () => {
  const rules = parseRulesUpdate('ci', fs.readFileSync(path.join(EXAMPLE, 'ci-profile.json'), 'utf8'));
  assert.equal(rules.id, 'ci');
  assert.deepEqual(rules.inbound_rules, [{ action: 'allow', src_tag: 'ci' }]);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fm from '../../ferrule-mapper.js';
import { KeyValueMapper } from './app.js';

test('values become a merge of the feature properties', () => {
  const h = new fm.Harness(KeyValueMapper, { namespace: 'org.acme', module: 'kv' });
  const out = h.inbound(fm.message({ text: 't=21.5;h=40', headers: { device_id: 'sensor-1', 'correlation-id': 'c-1' } }));
  assert.equal(out.length, 1);
  assert.equal(out[0].topic, 'org.acme/sensor-1/things/twin/commands/merge');
  assert.equal(out[0].path, '/features/measurements/properties');
  assert.deepEqual(JSON.parse(out[0].value), { t: 21.5, h: 40 });
  assert.deepEqual(out[0].headers, [['content-type', 'application/merge-patch+json'], ['correlation-id', 'c-1']]);
  assert.ok(h.logged('2 values for org.acme:sensor-1'));
});

test('the device comes from the MQTT topic without a header', () => {
  const h = new fm.Harness(KeyValueMapper, { namespace: 'org.acme', feature: 'env' });
  const out = h.inbound(fm.message({ text: 't=1', headers: { 'mqtt.topic': 'devices/org.other:meter' } }));
  assert.equal(out[0].topic, 'org.other/meter/things/twin/commands/merge');
});

test('bad payloads and options are mapping errors', () => {
  const h = new fm.Harness(KeyValueMapper, { namespace: 'org.acme' });
  assert.throws(() => h.inbound(fm.message({ text: 't=warm', headers: { device_id: 's' } })), /is not a number/);
  assert.throws(() => h.inbound(fm.message({ text: '%%%', headers: { device_id: 's' } })), /is not key=value/);
  assert.throws(() => new fm.Harness(KeyValueMapper, {}), /<namespace> is missing/);
  assert.throws(() => new fm.Harness(KeyValueMapper, { namespace: 'n', site: 1 }), /Unknown options: site/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fm from '../../ferrule-mapper.js';
import { Reshape } from './app.js';

test('a device JSON becomes a modify of four features', () => {
  const h = new fm.Harness(Reshape);
  const device = { device: 'sensor-1', temp: '21.50 °C', hum: 40, pres: { value: 1013, unit: 'hPa' }, battery: 87 };
  const out = h.inbound(fm.message({ text: JSON.stringify(device) }));
  assert.equal(out[0].topic, 'org.acme/sensor-1/things/twin/commands/modify');
  assert.equal(out[0].path, '/features');
  assert.deepEqual(JSON.parse(out[0].value).temperature, { properties: { value: 21.5 } });
});

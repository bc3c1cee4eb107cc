import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fm from '../ferrule-mapper.js';

test('the defaults are Ditto Protocol JSON both ways', () => {
  const h = new fm.Harness(fm.Mapper);
  const command = {
    topic: 'org.acme/s1/things/twin/commands/modify',
    headers: { 'correlation-id': 'c', 'response-required': false },
    path: '/attributes/a', value: { x: [1, 2] }, revision: 4,
  };
  const out = h.inbound(fm.message({ text: JSON.stringify(command) }));
  assert.equal(out[0].topic, command.topic);
  assert.deepEqual(JSON.parse(out[0].value), { x: [1, 2] });
  assert.equal(out[0].revision, 4n);
  assert.deepEqual(out[0].headers[1], ['response-required', 'false']);
  const published = h.outbound(out[0]);
  assert.equal(published[0].contentType, fm.DITTO_CONTENT_TYPE);
  const body = JSON.parse(published[0].textPayload);
  assert.equal(body.topic, command.topic);
  assert.equal(body.revision, 4);
  assert.throws(() => h.inbound(fm.message({ text: '{}' })), /no Ditto Protocol message/);
  assert.throws(() => h.inbound(fm.message({ text: 'nope' })), /not JSON/);
});

test('any exception fails the message with its name', () => {
  class Buggy extends fm.Mapper {
    mapInbound() { return null.x; }
  }
  assert.throws(() => new fm.Harness(Buggy).inbound(fm.message({ text: 'x' })), /^MappingError: TypeError: /);
});

test('the byte reader reads every width and order', () => {
  const bytes = new Uint8Array([200, 0xfe, 0x02, 0x01, 0xfd, 0xfe, 0x3f, 0xc0, 0, 0]);
  const r = new fm.ByteReader(bytes);
  assert.deepEqual([r.read('u8'), r.read('i8'), r.read('u16le'), r.read('i16be'), r.read('f32be')],
    [200, -2, 258, -514, 1.5]);
  assert.equal(r.remaining, 0);
  assert.equal(new fm.ByteReader(new Uint8Array([0, 7])).readAt('u16be', 0), 7);
  assert.throws(() => new fm.ByteReader(new Uint8Array([0, 7])).readAt('u32be', 1),
    /u32be needs 4 bytes at 1, the payload has 2/);
  assert.equal(fm.ByteReader.of(fm.message({ bytes: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]) })).read('u64le'), 1n);
});

test('things, commands and external messages', () => {
  const thing = fm.ThingId.parseOrIn('s1', 'org.acme');
  assert.equal(String(thing), 'org.acme:s1');
  assert.throws(() => fm.ThingId.parse('no-colon'), /is not a thing id/);
  const m = thing.modifyFeatureProperty('env', 'temp', 21.5).correlationId('c').revision(3).build();
  assert.equal(m.topic, 'org.acme/s1/things/twin/commands/modify');
  assert.equal(m.path, '/features/env/properties/temp');
  assert.equal(m.value, '21.5');
  assert.equal(m.revision, 3n);
  assert.equal(thing.delete('/attributes/x').build().value, undefined);
  assert.equal(thing.event('modified', '/attributes/x', 1).build().topic, 'org.acme/s1/things/twin/events/modified');
  const out = fm.external({ bytes: new Uint8Array([1]), contentType: 'application/octet-stream', headers: { n: 1 } });
  assert.deepEqual(out.headers, [['n', '1'], ['content-type', 'application/octet-stream']]);
});

test('log lines are captured with their level', () => {
  class Logs extends fm.Mapper {
    constructor(o) { super(o); fm.debug('configured'); }
    mapInbound() { fm.warn('odd'); return []; }
  }
  const h = new fm.Harness(Logs);
  assert.deepEqual(h.inbound(fm.message({ text: 'x' })), []);
  assert.deepEqual(h.logs, [['debug', 'configured'], ['warn', 'odd']]);
});

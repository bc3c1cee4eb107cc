// `t=21.5;h=40` text payloads → a merge of one feature's properties of the device's thing.
// The device's id is the header `device_id`, else the last segment of the MQTT topic. Options:
// `namespace` (required) and `feature` (default `measurements`).
// Build: `node ../../build.mjs app.js kv.wasm`.

import * as fm from '../../ferrule-mapper.js';

class KeyValueMapper extends fm.Mapper {
  constructor(options) {
    super(options);
    const unknown = Object.keys(options).filter((k) => !['namespace', 'feature'].includes(k));
    if (unknown.length > 0) {
      throw new fm.MappingError(`Unknown options: ${unknown.join(', ')}.`, 'The options are namespace and feature.');
    }
    if (typeof options.namespace !== 'string') {
      throw new fm.MappingError('The option <namespace> is missing.', 'Give the namespace of device ids without one.');
    }
    this.namespace = options.namespace;
    this.feature = options.feature ?? 'measurements';
  }

  mapInbound(message) {
    const headers = fm.headers(message);
    const device = headers.get('device_id') ?? (headers.get('mqtt.topic') ?? '').split('/').pop();
    if (!device) {
      throw new fm.MappingError('The message names no device.', 'Send the header device_id or publish to .../<device>.');
    }
    const thing = fm.ThingId.parseOrIn(device, this.namespace);
    const properties = {};
    for (const pair of fm.text(message).split(';')) {
      const at = pair.indexOf('=');
      if (at < 0) throw new fm.MappingError(`<${pair}> is not key=value.`);
      const value = Number(pair.slice(at + 1));
      if (Number.isNaN(value)) throw new fm.MappingError(`<${pair.slice(at + 1)}> is not a number.`);
      properties[pair.slice(0, at).trim()] = value;
    }
    fm.info(`${Object.keys(properties).length} values for ${thing}`);
    return [thing.mergeFeatureProperties(this.feature, properties).correlationIdFrom(headers).build()];
  }
}

export { KeyValueMapper };
export const mapping = fm.exportMapping(KeyValueMapper);

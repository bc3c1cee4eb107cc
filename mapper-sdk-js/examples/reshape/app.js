// A device's JSON → a modify of four features (the mappers bench's reshape, as its QuickJS,
// Rhai and Python rows do it).

import * as fm from '../../ferrule-mapper.js';

export class Reshape extends fm.Mapper {
  mapInbound(message) {
    const d = fm.jsonObject(message);
    const value = {
      temperature: { properties: { value: parseFloat(d.temp.split(' ')[0]) } },
      humidity: { properties: { value: d.hum } },
      pressure: { properties: { value: d.pres.value } },
      battery: { properties: { value: d.battery } },
    };
    return [new fm.ThingId('org.acme', d.device).modify('/features', value).correlationIdFrom(message).build()];
  }
}

export const mapping = fm.exportMapping(Reshape);

"""A device's JSON → a modify of four features (the mappers bench's reshape, as its
JavaScript and Rhai rows do it):

`{"device": "sensor-1", "temp": "21.50 °C", "hum": 40, "pres": {"value": 1013}, "battery": 87}`
→ `org.acme/sensor-1/things/twin/commands/modify` of `/features`.
"""

import ferrule_mapper as fm


class Reshape(fm.Mapper):
    def map_inbound(self, message):
        d = fm.json_object(message)
        value = {
            "temperature": {"properties": {"value": float(d["temp"].split(" ")[0])}},
            "humidity": {"properties": {"value": d["hum"]}},
            "pressure": {"properties": {"value": d["pres"]["value"]}},
            "battery": {"properties": {"value": d["battery"]}},
        }
        return [fm.ThingId("org.acme", d["device"]).modify("/features", value)
                  .correlation_id_from(message.headers).build()]


Mapping = fm.export(Reshape)

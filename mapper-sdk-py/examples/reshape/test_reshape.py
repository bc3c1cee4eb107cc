import json

import ferrule_mapper as fm
from reshape_app import Reshape


def test_a_device_json_becomes_a_modify_of_four_features():
    h = fm.Harness(Reshape)
    device = {"device": "sensor-1", "temp": "21.50 °C", "hum": 40,
              "pres": {"value": 1013, "unit": "hPa"}, "battery": 87}
    out = h.inbound(fm.message(json.dumps(device)))
    assert out[0].topic == "org.acme/sensor-1/things/twin/commands/modify"
    assert out[0].path == "/features"
    assert json.loads(out[0].value)["temperature"] == {"properties": {"value": 21.5}}

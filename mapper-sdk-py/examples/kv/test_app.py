"""The example mapper, natively through the harness (`python3 -m pytest mapper-sdk-py`)."""

import json

import pytest

import ferrule_mapper as fm
from app import KeyValueMapper


def test_values_become_a_merge_of_the_features_properties():
    h = fm.Harness(KeyValueMapper, {"namespace": "org.acme", "module": "kv"})
    out = h.inbound(fm.message("t=21.5;h=40", headers={"device_id": "sensor-1",
                                                        "correlation-id": "c-1"}))
    assert len(out) == 1
    assert out[0].topic == "org.acme/sensor-1/things/twin/commands/merge"
    assert out[0].path == "/features/measurements/properties"
    assert json.loads(out[0].value) == {"t": 21.5, "h": 40.0}
    assert ("correlation-id", "c-1") in out[0].headers
    assert ("content-type", "application/merge-patch+json") in out[0].headers
    assert h.logged("2 values for org.acme:sensor-1")


def test_the_device_comes_from_the_mqtt_topic_without_a_header():
    h = fm.Harness(KeyValueMapper, {"namespace": "org.acme", "feature": "env"})
    out = h.inbound(fm.message("t=1", headers={"mqtt.topic": "devices/org.other:meter"}))
    assert out[0].topic == "org.other/meter/things/twin/commands/merge"
    assert out[0].path == "/features/env/properties"


def test_bad_payloads_and_options_are_mapping_errors():
    h = fm.Harness(KeyValueMapper, {"namespace": "org.acme"})
    with pytest.raises(fm.MappingError, match="is not a number"):
        h.inbound(fm.message("t=warm", headers={"device_id": "s"}))
    with pytest.raises(fm.MappingError, match="is not key=value"):
        h.inbound(fm.message("%%%", headers={"device_id": "s"}))
    with pytest.raises(fm.MappingError, match="<namespace> is missing"):
        fm.Harness(KeyValueMapper, {})
    with pytest.raises(fm.MappingError, match="Unknown options"):
        fm.Harness(KeyValueMapper, {"namespace": "n", "site": 1})

"""The helper package, natively through the harness."""

import json
import struct

import pytest

import ferrule_mapper as fm


class Default(fm.Mapper):
    pass


class Raises(fm.Mapper):
    def map_inbound(self, message):
        return [][1]


def test_the_defaults_are_ditto_protocol_json_both_ways():
    h = fm.Harness(Default)
    command = {"topic": "org.acme/s1/things/twin/commands/modify",
               "headers": {"correlation-id": "c", "response-required": False},
               "path": "/attributes/a", "value": {"x": [1, 2]}}
    out = h.inbound(fm.message(json.dumps(command)))
    assert out[0].topic == command["topic"]
    assert json.loads(out[0].value) == {"x": [1, 2]}
    assert ("response-required", "false") in out[0].headers
    published = h.outbound(out[0])
    assert published[0].content_type == fm.DITTO_CONTENT_TYPE
    body = json.loads(published[0].text_payload)
    assert body["topic"] == command["topic"] and body["value"] == {"x": [1, 2]}
    with pytest.raises(fm.MappingError, match="no Ditto Protocol message"):
        h.inbound(fm.message("{}"))
    with pytest.raises(fm.MappingError, match="not JSON"):
        h.inbound(fm.message("nope"))


def test_any_exception_fails_the_message_with_its_type():
    h = fm.Harness(Raises)
    with pytest.raises(fm.MappingError, match="IndexError: list index out of range"):
        h.inbound(fm.message("x"))


def test_the_byte_reader_reads_every_width_and_order():
    data = struct.pack(">BbHhIiqf", 200, -2, 513, -513, 70000, -70000, -5, 1.5)
    r = fm.ByteReader(data)
    assert [r.u8(), r.i8(), r.u16_be(), r.i16_be(), r.u32_be(), r.i32_be(), r.i64_be(),
            r.f32_be()] == [200, -2, 513, -513, 70000, -70000, -5, 1.5]
    assert r.remaining == 0
    assert fm.ByteReader(b"\x07\x00").u16_le() == 7
    assert fm.ByteReader(b"\x00\x07").u16_be_at(0) == 7
    with pytest.raises(fm.MappingError, match="u32_be needs 4 bytes at 1, the payload has 2"):
        fm.ByteReader(b"\x00\x07").u32_be_at(1)
    assert fm.ByteReader.of(fm.message(data=b"\xff")).i8() == -1


def test_things_commands_and_external_messages():
    thing = fm.ThingId.parse_or_in("s1", "org.acme")
    assert str(thing) == "org.acme:s1"
    assert str(fm.ThingId.parse_or_in("a:b", "org.acme")) == "a:b"
    with pytest.raises(fm.MappingError):
        fm.ThingId.parse("no-colon")
    m = thing.modify_feature_property("env", "temp", 21.5).correlation_id("c").revision(3).build()
    assert m.topic == "org.acme/s1/things/twin/commands/modify"
    assert m.path == "/features/env/properties/temp"
    assert m.value == "21.5" and m.revision == 3 and ("correlation-id", "c") in m.headers
    assert thing.delete("/attributes/x").build().value is None
    e = thing.event("modified", "/attributes/x", 1).build()
    assert e.topic == "org.acme/s1/things/twin/events/modified"
    out = fm.external(data=b"\x01", content_type="application/octet-stream",
                      headers={"n": 1})
    assert out.bytes_payload == b"\x01" and ("n", "1") in out.headers
    assert ("content-type", "application/octet-stream") in out.headers


def test_log_lines_are_captured_with_their_level():
    class Logs(fm.Mapper):
        def __init__(self, options):
            fm.debug("configured")

        def map_inbound(self, message):
            fm.warn("odd")
            return []

    h = fm.Harness(Logs)
    assert h.inbound(fm.message("x")) == []
    assert h.logs == [("debug", "configured"), ("warn", "odd")]

"""`t=21.5;h=40` text payloads → a merge of one feature's properties of the device's thing.

The device's id is the header `device_id`, else the last segment of the MQTT topic. Options:
`namespace` (required: the namespace of ids without one) and `feature` (default
`measurements`). Build: `componentize-py -d <ferrule>/wit -w mapper componentize -p
<ferrule>/mapper-sdk-py app -o kv.wasm` (see mapper-sdk-py/README.md).
"""

import ferrule_mapper as fm


class KeyValueMapper(fm.Mapper):
    def __init__(self, options):
        unknown = set(options) - {"namespace", "feature"}
        if unknown:
            raise fm.MappingError(f"Unknown options: {sorted(unknown)}.",
                                  "The options are namespace and feature.")
        if not isinstance(options.get("namespace"), str):
            raise fm.MappingError("The option <namespace> is missing.",
                                  "Give the namespace of device ids without one.")
        self.namespace = options["namespace"]
        self.feature = options.get("feature", "measurements")

    def map_inbound(self, message):
        headers = fm.headers(message)
        device = headers.get("device_id") or headers.get("mqtt.topic", "").rsplit("/", 1)[-1]
        if not device:
            raise fm.MappingError("The message names no device.",
                                  "Send the header device_id or publish to .../<device>.")
        thing = fm.ThingId.parse_or_in(device, self.namespace)
        properties = {}
        for pair in fm.text(message).split(";"):
            key, sep, value = pair.partition("=")
            if not sep:
                raise fm.MappingError(f"<{pair}> is not key=value.")
            try:
                properties[key.strip()] = float(value)
            except ValueError:
                raise fm.MappingError(f"<{value}> is not a number.") from None
        fm.info(f"{len(properties)} values for {thing}")
        return [thing.merge_feature_properties(self.feature, properties)
                     .correlation_id_from(headers)
                     .build()]

    # map_outbound: the default (Ditto Protocol JSON).


Mapping = fm.export(KeyValueMapper)

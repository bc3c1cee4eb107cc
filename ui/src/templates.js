// Starting points for new connections, in Ditto's connection JSON (see examples/connections/).

const source = (addresses, extra = {}) => ({
  addresses,
  authorizationContext: ['ditto:inbound'],
  ...extra,
});
const target = (address, extra = {}) => ({
  address,
  topics: ['_/_/things/twin/events'],
  authorizationContext: ['ditto:outbound'],
  ...extra,
});

export const TEMPLATES = [
  {
    key: 'mqtt',
    label: 'MQTT 3.1.1',
    connection: {
      name: 'mqtt-devices',
      connectionType: 'mqtt',
      connectionStatus: 'open',
      uri: 'tcp://127.0.0.1:1883',
      clientCount: 1,
      sources: [source(['devices/#'], { qos: 1 })],
      targets: [target('events/{{ thing:id }}', { qos: 0 })],
    },
  },
  {
    key: 'mqtt-5',
    label: 'MQTT 5',
    connection: {
      name: 'mqtt5-devices',
      connectionType: 'mqtt-5',
      connectionStatus: 'open',
      uri: 'tcp://127.0.0.1:1883',
      clientCount: 1,
      sources: [source(['devices/#'], { qos: 1 })],
      targets: [target('events/{{ thing:id }}', { qos: 0 })],
    },
  },
  {
    key: 'amqp-091',
    label: 'AMQP 0.9.1',
    connection: {
      name: 'rabbitmq',
      connectionType: 'amqp-091',
      connectionStatus: 'open',
      uri: 'amqp://guest:guest@127.0.0.1:5672/%2f',
      clientCount: 1,
      sources: [source(['ferrule.telemetry'], { consumerCount: 1 })],
      targets: [target('amq.topic/events.{{ thing:namespace }}.{{ thing:name }}')],
    },
  },
  {
    key: 'amqp-10',
    label: 'AMQP 1.0',
    connection: {
      name: 'amqp-10',
      connectionType: 'amqp-10',
      connectionStatus: 'open',
      uri: 'amqp://guest:guest@127.0.0.1:5672',
      clientCount: 1,
      sources: [source(['/queue/ferrule.commands'])],
      targets: [target('/exchange/amq.topic/events')],
    },
  },
];

export const EXAMPLE_INCOMING = `function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
  var reading = JSON.parse(textPayload);
  return Ditto.buildDittoProtocolMsg(
    'org.acme',                 // namespace
    reading.device,             // thing name
    'things', 'twin', 'commands', 'modify',
    '/features/environment/properties/temperature',
    headers,
    reading.temperature
  );
}
`;

export const EXAMPLE_OUTGOING = `function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action,
                                 path, dittoHeaders, value, status, extra) {
  var payload = JSON.stringify({ thing: namespace + ':' + name, path: path, value: value });
  return Ditto.buildExternalMsg({ 'content-type': 'application/json' }, payload, null, 'application/json');
}
`;

export const EXAMPLE_RHAI_INCOMING = `fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    // The device from the header device_id, the payload text as the value.
    ditto_message("org.acme", headers["device_id"], "things", "twin", "commands", "modify",
        "/features/environment/properties/raw", headers, textPayload)
}
`;

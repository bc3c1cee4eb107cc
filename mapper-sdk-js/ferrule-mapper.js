// ferrule-mapper: write Ferrule WebAssembly mappers in JavaScript.
//
// A mapper is a class: `constructor(options)` is the `configure` call, `mapInbound(message)`
// returns Ditto Protocol messages, `mapOutbound(message)` external messages; both default to
// Ditto Protocol JSON. `exportMapping(MyMapper)` is the `mapping` export that componentize-js
// builds into a component of the world in Ferrule's `wit/mapper.wit` (see `build.mjs`). Throw
// `MappingError` to fail one message; any other exception fails it too, with its name and text.
// One file, no dependencies: copy it next to your mapper, or import it by a relative path.

import { log as hostLog } from 'ferrule:mapper/host@0.1.0';

/** The content type of Ditto Protocol JSON. */
export const DITTO_CONTENT_TYPE = 'application/vnd.eclipse.ditto+json';

/** Why a message could not be mapped: `message` says what went wrong, `description` what to do. */
export class MappingError extends Error {
  constructor(message, description) {
    super(message);
    this.name = 'MappingError';
    this.description = description;
  }
}

// ---- log -------------------------------------------------------------------------------------

let sink = (level, line) => hostLog(level, line);

/** Lines in the connection logs: debug and info are success entries, warn and error failures. */
export const debug = (line) => sink('debug', String(line));
export const info = (line) => sink('info', String(line));
export const warn = (line) => sink('warn', String(line));
export const error = (line) => sink('error', String(line));

// ---- headers and payloads --------------------------------------------------------------------

/** A message's headers: names are case-insensitive, values strings. */
export class Headers {
  constructor(pairs = []) {
    this.pairs = pairs;
  }
  get(name) {
    const lower = name.toLowerCase();
    const found = this.pairs.find(([k]) => k.toLowerCase() === lower);
    return found ? found[1] : undefined;
  }
  require(name) {
    const value = this.get(name);
    if (value === undefined) {
      throw new MappingError(`The message has no header '${name}'.`,
        "Check the device or the source's header mapping.");
    }
    return value;
  }
}

export const headers = (message) => new Headers(message.headers);

/** The payload as bytes: the bytes payload, else the text's UTF-8 bytes. */
export function payloadBytes(message) {
  if (message.bytesPayload !== undefined) return message.bytesPayload;
  if (message.textPayload !== undefined) return new TextEncoder().encode(message.textPayload);
  return new Uint8Array(0);
}

/** The payload as text: the text payload, else the bytes when they are UTF-8. */
export function text(message) {
  if (message.textPayload !== undefined) return message.textPayload;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(payloadBytes(message));
  } catch {
    throw new MappingError('The payload is not UTF-8 text.', 'Send text, or read the bytes with ByteReader.');
  }
}

/** The payload parsed as JSON. */
export function jsonPayload(message) {
  const body = text(message);
  try {
    return JSON.parse(body);
  } catch (e) {
    throw new MappingError(`The payload is not JSON: ${e.message}.`, `The payload starts with <${body.slice(0, 40)}>.`);
  }
}

/** The payload parsed as a JSON object. */
export function jsonObject(message) {
  const value = jsonPayload(message);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new MappingError('The payload is JSON but not an object.', `It starts with <${JSON.stringify(value).slice(0, 40)}>.`);
  }
  return value;
}

const SIZES = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8, f32: 4, f64: 8 };
const GETTERS = {
  u8: 'getUint8', i8: 'getInt8', u16: 'getUint16', i16: 'getInt16', u32: 'getUint32',
  i32: 'getInt32', u64: 'getBigUint64', i64: 'getBigInt64', f32: 'getFloat32', f64: 'getFloat64',
};

/**
 * Reads numbers from bytes: `read('u16be')` at the position (which moves on), `readAt('i32le',
 * offset)` at an offset; u8, i8, u16..i64 and f32, f64 in `be` or `le` (64-bit integers as
 * BigInt). Past the end is a MappingError saying how many bytes were needed where.
 */
export class ByteReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.position = 0;
  }
  static of(message) {
    return new ByteReader(payloadBytes(message));
  }
  get remaining() {
    return this.bytes.length - this.position;
  }
  readAt(kind, offset) {
    const match = /^(u8|i8|u16|i16|u32|i32|u64|i64|f32|f64)(be|le)?$/.exec(kind);
    if (!match || (SIZES[match[1]] > 1 && !match[2])) {
      throw new MappingError(`<${kind}> is no number type: u8, i8, u16be, ..., f64le.`);
    }
    const size = SIZES[match[1]];
    if (offset < 0 || offset + size > this.bytes.length) {
      throw new MappingError(`${kind} needs ${size} bytes at ${offset}, the payload has ${this.bytes.length}.`,
        "Check the payload's layout.");
    }
    return this.view[GETTERS[match[1]]](offset, match[2] === 'le');
  }
  read(kind) {
    const value = this.readAt(kind, this.position);
    this.position += SIZES[kind.replace(/(be|le)$/, '')];
    return value;
  }
}

// ---- Ditto Protocol --------------------------------------------------------------------------

const headerText = (v) => (typeof v === 'string' ? v : JSON.stringify(v));

/** A Ditto Protocol message being built; `.build()` gives the record the component returns. */
export class Message {
  constructor(topic, path, value) {
    this.topic = topic;
    this.path = path;
    this.data = value;
    this.headerMap = new Map();
    this.rev = undefined;
    this.ts = undefined;
    this.code = undefined;
    this.more = undefined;
  }
  value(v) { this.data = v; return this; }
  header(name, v) { this.headerMap.set(name, v); return this; }
  correlationId(id) { return this.header('correlation-id', id); }
  correlationIdFrom(source) {
    const h = source instanceof Headers ? source : new Headers(source.headers ?? source);
    const id = h.get('correlation-id');
    return id === undefined ? this : this.correlationId(id);
  }
  revision(n) { this.rev = BigInt(n); return this; }
  timestamp(t) { this.ts = t; return this; }
  status(s) { this.code = s; return this; }
  extra(v) { this.more = v; return this; }
  build() {
    return {
      topic: this.topic,
      headers: [...this.headerMap].map(([k, v]) => [k, headerText(v)]),
      path: this.path,
      value: this.data === undefined ? undefined : JSON.stringify(this.data),
      status: this.code,
      extra: this.more === undefined ? undefined : JSON.stringify(this.more),
      revision: this.rev,
      timestamp: this.ts,
      fields: undefined,
    };
  }
}

const pointer = (path) => (path.startsWith('/') ? path : `/${path}`);

/** A thing's id, `namespace:name`, and the commands and events of that thing. */
export class ThingId {
  constructor(namespace, name) {
    if (!namespace || !name || name.includes('/')) {
      throw new MappingError(`<${namespace}:${name}> is not a thing id.`, 'A thing id is namespace:name.');
    }
    this.namespace = namespace;
    this.name = name;
  }
  static parse(id) {
    const at = id.indexOf(':');
    if (at < 0) throw new MappingError(`<${id}> is not a thing id.`, 'A thing id is namespace:name.');
    return new ThingId(id.slice(0, at), id.slice(at + 1));
  }
  /** `namespace:name`, or `name` in `namespace`. */
  static parseOrIn(id, namespace) {
    return id.includes(':') ? ThingId.parse(id) : new ThingId(namespace, id);
  }
  toString() { return `${this.namespace}:${this.name}`; }
  topic(criterion, action) { return `${this.namespace}/${this.name}/things/twin/${criterion}/${action}`; }
  command(action, path, value) { return new Message(this.topic('commands', action), pointer(path), value); }
  modify(path, value) { return this.command('modify', path, value); }
  merge(path, value) {
    return this.command('merge', path, value).header('content-type', 'application/merge-patch+json');
  }
  createThing(thing) { return this.command('create', '/', thing); }
  delete(path) { return this.command('delete', path); }
  retrieve(path) { return this.command('retrieve', path); }
  modifyAttribute(ptr, value) { return this.modify(`/attributes${pointer(ptr)}`, value); }
  modifyFeatureProperties(feature, value) { return this.modify(`/features/${feature}/properties`, value); }
  mergeFeatureProperties(feature, value) { return this.merge(`/features/${feature}/properties`, value); }
  modifyFeatureProperty(feature, ptr, value) {
    return this.modify(`/features/${feature}/properties${pointer(ptr)}`, value);
  }
  event(action, path, value) { return new Message(this.topic('events', action), pointer(path), value); }
}

/** An external message to publish: text or bytes (bytes win), a content type, headers. */
export function external({ text: body, bytes, contentType, headers: extra = {} } = {}) {
  const pairs = Object.entries(extra).map(([k, v]) => [k, headerText(v)]);
  if (contentType !== undefined && !pairs.some(([k]) => k.toLowerCase() === 'content-type')) {
    pairs.push(['content-type', contentType]);
  }
  return { headers: pairs, textPayload: body, bytesPayload: bytes, contentType };
}

/** A Ditto Protocol message's value as data (undefined when it has none). */
export const valueOf = (message) => (message.value === undefined ? undefined : JSON.parse(message.value));

function dittoFromJson(v) {
  if (v === null || typeof v !== 'object' || typeof v.topic !== 'string' || typeof v.path !== 'string') {
    throw new MappingError('The payload is no Ditto Protocol message.',
      'A Ditto Protocol message is a JSON object with topic and path.');
  }
  return {
    topic: v.topic,
    headers: Object.entries(v.headers ?? {}).map(([k, x]) => [k, headerText(x)]),
    path: v.path,
    value: 'value' in v ? JSON.stringify(v.value) : undefined,
    status: v.status ?? undefined,
    extra: v.extra === undefined ? undefined : JSON.stringify(v.extra),
    revision: v.revision === undefined ? undefined : BigInt(v.revision),
    timestamp: v.timestamp ?? undefined,
    fields: v.fields ?? undefined,
  };
}

function dittoToJson(m) {
  const out = { topic: m.topic, headers: Object.fromEntries(m.headers), path: m.path };
  if (m.value !== undefined) out.value = JSON.parse(m.value);
  if (m.status !== undefined) out.status = m.status;
  if (m.revision !== undefined) out.revision = Number(m.revision);
  if (m.timestamp !== undefined) out.timestamp = m.timestamp;
  if (m.extra !== undefined) out.extra = JSON.parse(m.extra);
  return out;
}

/** The base of a mapper: both directions default to Ditto Protocol JSON. */
export class Mapper {
  constructor(options) {
    this.options = options;
  }
  mapInbound(message) {
    return [dittoFromJson(jsonPayload(message))];
  }
  mapOutbound(message) {
    return [external({ text: JSON.stringify(dittoToJson(message)), contentType: DITTO_CONTENT_TYPE })];
  }
}

function failure(e) {
  if (e instanceof MappingError) {
    return { payload: { message: e.message, description: e.description } };
  }
  return {
    payload: {
      message: `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}`,
      description: 'The JavaScript mapper threw an exception.',
    },
  };
}

/** The `mapping` export componentize-js builds: `export const mapping = exportMapping(MyMapper);` */
export function exportMapping(MapperClass) {
  let mapper;
  const call = (method, message) => {
    if (!mapper) throw failure(new MappingError('The mapper is not configured.'));
    try {
      return [...(mapper[method](message) ?? [])];
    } catch (e) {
      throw failure(e);
    }
  };
  return {
    configure(options) {
      try {
        mapper = new MapperClass(JSON.parse(options));
      } catch (e) {
        throw failure(e);
      }
    },
    mapInbound: (message) => call('mapInbound', message),
    mapOutbound: (message) => call('mapOutbound', message),
  };
}

// ---- testing ---------------------------------------------------------------------------------

/** An external message as a broker would deliver it, for tests. */
export function message({ text: body, bytes, headers: pairs = {}, contentType } = {}) {
  return { headers: Object.entries(pairs), textPayload: body, bytesPayload: bytes, contentType };
}

/**
 * Runs a mapper natively the way the host does (node's test runner): configure with the options
 * (without `module`, `timeoutMs`, `memoryLimitMiB`), then one message at a time through the
 * exported mapping, with the log lines captured in `logs`. A failure throws MappingError.
 */
export class Harness {
  constructor(MapperClass, options = {}) {
    this.logs = [];
    const kept = Object.fromEntries(Object.entries(options)
      .filter(([k]) => !['module', 'timeoutMs', 'memoryLimitMiB'].includes(k)));
    this.mapping = exportMapping(MapperClass);
    this.run(() => this.mapping.configure(JSON.stringify(kept)));
  }
  run(call) {
    const original = sink;
    sink = (level, line) => this.logs.push([level, line]);
    try {
      return call();
    } catch (e) {
      throw new MappingError(e.payload.message, e.payload.description);
    } finally {
      sink = original;
    }
  }
  inbound(m) { return this.run(() => this.mapping.mapInbound(m)); }
  outbound(m) { return this.run(() => this.mapping.mapOutbound(m)); }
  logged(fragment) { return this.logs.some(([, line]) => line.includes(fragment)); }
}

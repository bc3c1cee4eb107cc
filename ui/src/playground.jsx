import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { EXAMPLE_INCOMING, EXAMPLE_OUTGOING, EXAMPLE_RHAI_INCOMING } from './templates.js';
import { ErrorBox, JsonArea, parseJson, pretty } from './ui.jsx';

const ENGINES = [
  'JavaScript',
  'Rhai',
  'WebAssembly',
  'Ditto',
  'Normalized',
  'RawMessage',
  'CloudEvents',
  'ConnectionStatus',
  'ImplicitThingCreation',
  'UpdateTwinWithLiveResponse',
];
const SCRIPTED = ['JavaScript', 'Rhai'];

const DEFAULT_OUTBOUND = {
  topic: 'org.acme/sensor-1/things/twin/events/modified',
  headers: { 'correlation-id': 'playground-1' },
  path: '/features/environment/properties/temperature',
  value: 21.5,
  revision: 7,
};

/** The location in a script error ("... - in line/column #3/14, source: ..."). */
export function errorLocation(error) {
  const text = [error && error.message, error && error.description].filter(Boolean).join(' ');
  const m = /line\/column #(\d+)\/(\d+)/.exec(text) || /line (\d+),? column (\d+)/i.exec(text);
  return m ? { line: Number(m[1]), column: Number(m[2]) } : null;
}

function Script({ id, label, value, onChange, errorLine }) {
  const lines = value.split('\n').length;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <p class="hint" id={`${id}-keys`}>
        Tab indents; press Escape, then Tab, to move on.
      </p>
      <div class="script">
        <pre class="gutter" aria-hidden="true">
          {Array.from({ length: lines }, (_, i) => (
            <span key={i} class={errorLine === i + 1 ? 'bad' : undefined}>
              {i + 1}
              {'\n'}
            </span>
          ))}
        </pre>
        <textarea
          id={id}
          class="code-input"
          rows={Math.min(24, Math.max(8, lines + 1))}
          wrap="off"
          aria-describedby={`${id}-keys`}
          spellcheck={false}
          autocomplete="off"
          autocapitalize="off"
          value={value}
          onInput={(e) => onChange(e.currentTarget.value)}
          onKeyDown={(e) => {
            // Tab indents; Escape then Tab leaves the editor (keyboard users keep a way out).
            if (e.key === 'Tab' && !e.shiftKey && !e.currentTarget.dataset.escaped) {
              e.preventDefault();
              const t = e.currentTarget;
              const s = t.selectionStart;
              t.setRangeText('  ', s, t.selectionEnd, 'end');
              onChange(t.value);
            } else if (e.key === 'Escape') {
              e.currentTarget.dataset.escaped = '1';
            } else {
              delete e.currentTarget.dataset.escaped;
            }
          }}
          onBlur={(e) => delete e.currentTarget.dataset.escaped}
        />
      </div>
    </div>
  );
}

export function PlaygroundPage() {
  const [engine, setEngine] = useState('JavaScript');
  const [options, setOptions] = useState('{}');
  const [incoming, setIncoming] = useState(EXAMPLE_INCOMING);
  const [outgoing, setOutgoing] = useState(EXAMPLE_OUTGOING);
  const [direction, setDirection] = useState('inbound');
  const [headers, setHeaders] = useState(pretty({ 'content-type': 'application/json', device_id: 'sensor-1' }));
  const [contentType, setContentType] = useState('application/json');
  const [payloadKind, setPayloadKind] = useState('text');
  const [payload, setPayload] = useState('{"device": "sensor-1", "temperature": 21.5}');
  const [outbound, setOutbound] = useState(pretty(DEFAULT_OUTBOUND));
  const [answer, setAnswer] = useState(null);
  const [requestError, setRequestError] = useState(null);
  const [busy, setBusy] = useState(false);
  const seq = useRef(0);

  const scripted = SCRIPTED.includes(engine);

  const changeEngine = (e) => {
    const next = e.currentTarget.value;
    if (next === 'Rhai' && incoming === EXAMPLE_INCOMING) {
      setIncoming(EXAMPLE_RHAI_INCOMING);
      setOutgoing('');
    }
    if (next === 'JavaScript' && incoming === EXAMPLE_RHAI_INCOMING) {
      setIncoming(EXAMPLE_INCOMING);
      setOutgoing(EXAMPLE_OUTGOING);
    }
    if (next === 'WebAssembly' && options.trim() === '{}') setOptions(pretty({ module: '' }));
    if (next !== 'WebAssembly' && /^\{\s*"module": ""\s*\}$/.test(options.trim())) setOptions('{}');
    setEngine(next);
  };

  /** The request, or a string saying which field is not valid JSON. */
  const request = () => {
    const o = options.trim() ? parseJson(options) : { value: {} };
    if (o.error) return 'Options: invalid JSON.';
    const opts = { ...(o.value || {}) };
    if (scripted) {
      opts.incomingScript = incoming;
      opts.outgoingScript = outgoing;
    }
    const body = { mappingDefinition: { mappingEngine: engine, options: opts } };
    if (direction === 'inbound') {
      const h = headers.trim() ? parseJson(headers) : { value: {} };
      if (h.error) return 'Headers: invalid JSON.';
      const inbound = { headers: h.value || {} };
      if (contentType) inbound.contentType = contentType;
      if (payloadKind === 'text') inbound.textPayload = payload;
      else inbound.bytePayload = payload.replace(/\s+/g, '');
      body.inbound = inbound;
    } else {
      const m = parseJson(outbound);
      if (m.error) return 'Message: invalid JSON.';
      body.outbound = m.value;
    }
    return body;
  };

  const run = async () => {
    const body = request();
    const mine = ++seq.current;
    if (typeof body === 'string') {
      setRequestError({ message: body });
      return;
    }
    setBusy(true);
    try {
      const r = await api('/api/2/mappings/test', { method: 'POST', json: body });
      if (mine !== seq.current) return;
      setAnswer(r.body);
      setRequestError(null);
    } catch (e) {
      if (mine !== seq.current) return;
      setRequestError(e);
      setAnswer(null);
    } finally {
      if (mine === seq.current) setBusy(false);
    }
  };

  // Tried again 400 ms after the last edit.
  useEffect(() => {
    const t = setTimeout(run, 400);
    return () => clearTimeout(t);
  }, [engine, options, incoming, outgoing, direction, headers, contentType, payloadKind, payload, outbound]);

  const err = answer && answer.error;
  const where = errorLocation(err);
  const scriptOfError = err && /outgoingScript/.test(`${err.message} ${err.description || ''}`) ? 'out' : 'in';

  return (
    <>
      <h1>Playground</h1>
      <p class="hint">
        Map one message through a mapping definition of any engine, as a connection would. Nothing is stored or
        published. The result updates as you edit.
      </p>
      <div class="playground">
        <form
          class="pg-input"
          onSubmit={(e) => {
            e.preventDefault();
            run();
          }}
        >
          <h2>Mapping definition</h2>
          <div class="field">
            <label for="pg-engine">Mapping engine</label>
            <select id="pg-engine" value={engine} onChange={changeEngine}>
              {ENGINES.map((x) => (
                <option key={x} value={x}>
                  {x}
                </option>
              ))}
            </select>
          </div>
          <JsonArea
            id="pg-options"
            label="Options (JSON)"
            value={options}
            onChange={setOptions}
            rows={engine === 'WebAssembly' ? 8 : 3}
            hint={engine === 'WebAssembly' ? 'options.module names an uploaded module; the other options reach its configure.' : undefined}
          />
          {scripted && (
            <>
              <Script
                id="pg-incoming"
                label="Incoming script (incomingScript)"
                value={incoming}
                onChange={setIncoming}
                errorLine={where && scriptOfError === 'in' ? where.line : null}
              />
              <Script
                id="pg-outgoing"
                label="Outgoing script (outgoingScript)"
                value={outgoing}
                onChange={setOutgoing}
                errorLine={where && scriptOfError === 'out' ? where.line : null}
              />
            </>
          )}
          <h2>Message</h2>
          <fieldset class="radios">
            <legend>Direction</legend>
            <label>
              <input type="radio" name="pg-direction" value="inbound" checked={direction === 'inbound'} onChange={() => setDirection('inbound')} />
              Inbound (external message → Ditto Protocol)
            </label>
            <label>
              <input type="radio" name="pg-direction" value="outbound" checked={direction === 'outbound'} onChange={() => setDirection('outbound')} />
              Outbound (Ditto Protocol → external message)
            </label>
          </fieldset>
          {direction === 'inbound' ? (
            <>
              <JsonArea id="pg-headers" label="Headers (JSON)" value={headers} onChange={setHeaders} rows={4} />
              <div class="field">
                <label for="pg-content-type">Content type</label>
                <input id="pg-content-type" value={contentType} onInput={(e) => setContentType(e.currentTarget.value)} />
              </div>
              <fieldset class="radios">
                <legend>Payload</legend>
                <label>
                  <input type="radio" name="pg-kind" checked={payloadKind === 'text'} onChange={() => setPayloadKind('text')} />
                  Text
                </label>
                <label>
                  <input type="radio" name="pg-kind" checked={payloadKind === 'bytes'} onChange={() => setPayloadKind('bytes')} />
                  Bytes (base64)
                </label>
              </fieldset>
              <div class="field">
                <label for="pg-payload">{payloadKind === 'text' ? 'Payload (text)' : 'Payload (base64 bytes)'}</label>
                <textarea
                  id="pg-payload"
                  class="code-input"
                  rows={4}
                  spellcheck={false}
                  value={payload}
                  onInput={(e) => setPayload(e.currentTarget.value)}
                />
              </div>
            </>
          ) : (
            <JsonArea id="pg-outbound" label="Ditto Protocol message (JSON)" value={outbound} onChange={setOutbound} rows={10} />
          )}
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>
              Map now
            </button>
          </div>
        </form>
        <section class="pg-output" aria-labelledby="pg-result-h" aria-busy={busy ? 'true' : 'false'}>
          <h2 id="pg-result-h">Result</h2>
          <ErrorBox error={requestError} title="Request refused:" />
          {err && (
            <div class="error" role="alert">
              <strong>Mapping failed</strong>
              {where && (
                <p class="where">
                  {scriptOfError === 'out' ? 'Outgoing script' : engine === 'JavaScript' || engine === 'Rhai' ? 'Incoming script' : 'Script'}: line {where.line}, column {where.column}
                </p>
              )}
              {err.error && <span class="code">{err.error}</span>}
              <p class="message">{err.message}</p>
              {err.description && <p class="description">{err.description}</p>}
            </div>
          )}
          {answer && answer.outputs && (
            <>
              <p role="status">
                {answer.outputs.length === 0
                  ? 'No output: the message is dropped.'
                  : `${answer.outputs.length} output${answer.outputs.length === 1 ? '' : 's'}`}
                {typeof answer.durationMicros === 'number' ? ` in ${answer.durationMicros} µs.` : '.'}
              </p>
              {answer.outputs.map((o, i) => (
                <pre key={i} class="json-out" tabIndex={0} aria-label={`Output ${i + 1}`}>
                  {pretty(o)}
                </pre>
              ))}
            </>
          )}
          {answer && answer.logs && answer.logs.length > 0 && (
            <>
              <h3>Logs</h3>
              <ul class="logs-list" aria-label="Mapper logs">
                {answer.logs.map((l, i) => (
                  <li key={i}>
                    <span class="code">{l.level}</span> {l.message}
                  </li>
                ))}
              </ul>
            </>
          )}
        </section>
      </div>
    </>
  );
}

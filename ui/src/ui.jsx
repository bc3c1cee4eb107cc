import { useEffect, useRef } from 'preact/hooks';

/** Calls `fn(signal)` now and every `ms` while the page is visible, never two at once. */
export function usePoll(fn, ms, deps = []) {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    let stopped = false;
    let timer = null;
    const controller = new AbortController();
    const tick = async () => {
      timer = null;
      if (stopped) return;
      if (document.visibilityState !== 'hidden') {
        try {
          await latest.current(controller.signal);
        } catch (e) {
          if (e && e.name !== 'AbortError' && !stopped) console.warn(e);
        }
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    const onVisible = () => {
      if (document.visibilityState === 'visible' && timer !== null) {
        clearTimeout(timer);
        tick();
      }
    };
    document.addEventListener('visibilitychange', onVisible);
    tick();
    return () => {
      stopped = true;
      controller.abort();
      if (timer !== null) clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, deps);
}

/** Ditto's error JSON (or any Error) as an alert: message and description. */
export function ErrorBox({ error, title }) {
  if (!error) return null;
  const body = error.body || {};
  const message = body.message || error.message || String(error);
  return (
    <div class="error" role="alert">
      {title && <strong>{title} </strong>}
      {body.status && <span class="code">{body.status}</span>}
      {body.error && <span class="code">{body.error}</span>}
      <p class="message">{message}</p>
      {body.description && <p class="description">{body.description}</p>}
    </div>
  );
}

export function formatTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString();
}

export function pretty(v) {
  return JSON.stringify(v, null, 2);
}

/**
 * Where `text` stops being JSON: {at, message}. Browsers' JSON.parse messages differ and some
 * carry no position, so a small scanner finds it.
 */
export function jsonErrorAt(text) {
  let i = 0;
  const fail = (message) => {
    throw { at: i, message };
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const lit = (word) => {
    if (text.startsWith(word, i)) i += word.length;
    else fail(`unexpected ${text[i] ? `'${text[i]}'` : 'end of input'}`);
  };
  const str = () => {
    i++;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        i++;
        return;
      }
      if (c === '\\') {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('invalid \\u escape');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else fail('invalid escape in a string');
      } else if (c < ' ') fail('control character in a string (use \\n)');
      else i++;
    }
    fail('unterminated string');
  };
  const num = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) fail('invalid number');
    i += m[0].length;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') fail(`expected a "quoted" member name, found ${text[i] ? `'${text[i]}'` : 'the end'}`);
        str();
        ws();
        if (text[i] !== ':') fail("expected ':' after the member name");
        i++;
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail(`expected ',' or '}'${text[i] ? `, found '${text[i]}'` : ', found the end'}`);
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return void i++;
        else fail(`expected ',' or ']'${text[i] ? `, found '${text[i]}'` : ', found the end'}`);
      }
    }
    if (c === '"') return str();
    if (c === '-' || (c >= '0' && c <= '9')) return num();
    if (c === 't') return lit('true');
    if (c === 'f') return lit('false');
    if (c === 'n') return lit('null');
    fail(c === undefined ? 'unexpected end of input' : `unexpected '${c}'`);
  };
  try {
    value();
    ws();
    if (i < text.length) fail(`unexpected '${text[i]}' after the value`);
    return null;
  } catch (e) {
    if (e && typeof e.at === 'number') return e;
    throw e;
  }
}

/** JSON.parse with a position: {value} or {error: "Line L, column C: message", line, column}. */
export function parseJson(text) {
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    const found = jsonErrorAt(text);
    if (!found) return { error: String(e.message || e) };
    const lines = text.slice(0, found.at).split('\n');
    const line = lines.length;
    const column = lines[lines.length - 1].length + 1;
    return { error: `Line ${line}, column ${column}: ${found.message}`, line, column };
  }
}

let ids = 0;
export function useId(prefix) {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix || 'f'}-${++ids}`;
  return ref.current;
}

/**
 * A monospace JSON editor: a labelled textarea, its parse error shown below it (role=alert).
 * `onChange(text)`.
 */
export function JsonArea({ label, value, onChange, rows = 12, id, describedBy, hint, invalid }) {
  const own = useId('json');
  const fieldId = id || own;
  const parsed = value.trim() === '' ? {} : parseJson(value);
  const errId = `${fieldId}-error`;
  return (
    <div class="field">
      <label for={fieldId}>{label}</label>
      {hint && <p class="hint">{hint}</p>}
      <textarea
        id={fieldId}
        class="code-input"
        rows={rows}
        spellcheck={false}
        autocomplete="off"
        autocapitalize="off"
        value={value}
        aria-invalid={parsed.error || invalid ? 'true' : 'false'}
        aria-describedby={[parsed.error ? errId : null, describedBy].filter(Boolean).join(' ') || undefined}
        onInput={(e) => onChange(e.currentTarget.value)}
      />
      {parsed.error && (
        <p class="parse-error" id={errId} role="alert">
          Invalid JSON — {parsed.error}
        </p>
      )}
    </div>
  );
}

/** A confirmation in a modal <dialog>: `onConfirm` runs on the confirm button. */
export function ConfirmDialog({ open, title, children, confirmLabel, onConfirm, onCancel, danger }) {
  const ref = useRef(null);
  const titleId = useId('dlg');
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onCancel={(e) => {
        e.preventDefault();
        onCancel();
      }}
    >
      {open && (
        <form
          method="dialog"
          onSubmit={(e) => {
            e.preventDefault();
            onConfirm();
          }}
        >
          <h2 id={titleId}>{title}</h2>
          <div>{children}</div>
          <div class="actions">
            <button type="button" onClick={onCancel}>
              Cancel
            </button>
            <button type="submit" class={danger ? 'danger' : 'primary'}>
              {confirmLabel}
            </button>
          </div>
        </form>
      )}
    </dialog>
  );
}

export function StatusBadge({ status }) {
  const s = status || 'unknown';
  return <span class={`badge badge-${s.replace(/[^a-z]/gi, '')}`}>{s}</span>;
}

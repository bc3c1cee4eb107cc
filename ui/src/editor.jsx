import { useEffect, useState } from 'preact/hooks';
import { api, enc, revisionOf } from './api.js';
import { TEMPLATES } from './templates.js';
import { ErrorBox, JsonArea, parseJson, pretty } from './ui.jsx';

const READ_ONLY = ['_revision', '_created', '_modified'];

/** The JSON editor of a new connection (`id` null) or of an existing one. */
export function EditorPage({ id }) {
  const isNew = id === null;
  const [text, setText] = useState(isNew ? pretty(TEMPLATES[0].connection) : '');
  const [template, setTemplate] = useState(TEMPLATES[0].key);
  const [newId, setNewId] = useState('');
  const [etag, setEtag] = useState(null);
  const [loadError, setLoadError] = useState(null);
  const [error, setError] = useState(null);
  const [conflict, setConflict] = useState(false);
  const [result, setResult] = useState('');
  const [busy, setBusy] = useState(false);
  const [loaded, setLoaded] = useState(isNew);

  const load = async () => {
    setLoadError(null);
    try {
      const r = await api(`/api/2/connections/${enc(id)}`);
      const c = { ...r.body };
      for (const k of READ_ONLY) delete c[k];
      setText(pretty(c));
      setEtag(r.etag);
      setConflict(false);
      setError(null);
      setResult('');
      setLoaded(true);
    } catch (e) {
      setLoadError(e);
    }
  };
  useEffect(() => {
    if (!isNew) load();
  }, [id]);

  const parsed = parseJson(text);
  const body = () => {
    if (parsed.error) return null;
    if (!parsed.value || typeof parsed.value !== 'object' || Array.isArray(parsed.value)) {
      setError({ message: 'The connection must be a JSON object.' });
      return null;
    }
    return parsed.value;
  };

  const dryRun = async () => {
    const c = body();
    if (!c) return;
    const { id: _ignored, ...rest } = c;
    setBusy(true);
    setError(null);
    setConflict(false);
    setResult('');
    try {
      const r = await api('/api/2/connections?dry-run=true', { method: 'POST', json: rest });
      setResult(`Dry run succeeded: the broker was reached and the sources and targets were checked.${r.body && r.body.message ? ` ${r.body.message}` : ''}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const save = async () => {
    const c = body();
    if (!c) return;
    setBusy(true);
    setError(null);
    setConflict(false);
    setResult('');
    try {
      if (isNew) {
        const wanted = newId.trim() || c.id;
        let created;
        if (wanted) {
          const r = await api(`/api/2/connections/${enc(wanted)}`, {
            method: 'PUT',
            json: { ...c, id: wanted },
            headers: { 'If-None-Match': '*' },
          });
          created = (r.body && r.body.id) || wanted;
        } else {
          const r = await api('/api/2/connections', { method: 'POST', json: c });
          created = r.body.id;
        }
        location.hash = `#/connections/${enc(created)}`;
      } else {
        const headers = etag ? { 'If-Match': etag } : {};
        await api(`/api/2/connections/${enc(id)}`, { method: 'PUT', json: { ...c, id }, headers });
        location.hash = `#/connections/${enc(id)}`;
      }
    } catch (e) {
      if (e.status === 412) {
        setConflict(true);
        if (isNew) setError(e);
      } else setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <div class="page-head">
        <h1>{isNew ? 'New connection' : `Edit ${id}`}</h1>
        <a class="button" href={isNew ? '#/connections' : `#/connections/${enc(id)}`}>
          Cancel
        </a>
      </div>
      <ErrorBox error={loadError} title="Cannot load the connection." />
      {isNew && (
        <div class="grid2">
          <div class="field">
            <label for="template">Template</label>
            <select
              id="template"
              value={template}
              onChange={(e) => {
                const t = TEMPLATES.find((x) => x.key === e.currentTarget.value);
                setTemplate(e.currentTarget.value);
                if (t) setText(pretty(t.connection));
              }}
            >
              {TEMPLATES.map((t) => (
                <option key={t.key} value={t.key}>
                  {t.label}
                </option>
              ))}
            </select>
            <p class="hint">Choosing a template replaces the JSON below; you may also paste a Ditto connection.</p>
          </div>
          <div class="field">
            <label for="new-id">Connection id (optional)</label>
            <input id="new-id" value={newId} autocomplete="off" spellcheck={false} onInput={(e) => setNewId(e.currentTarget.value)} />
            <p class="hint">Empty: the server generates one.</p>
          </div>
        </div>
      )}
      {loaded && (
        <form
          class="editor"
          onSubmit={(e) => {
            e.preventDefault();
            save();
          }}
        >
          <JsonArea label="Connection JSON" value={text} onChange={setText} rows={24} invalid={!!error} />
          {!isNew && etag && <p class="hint">Editing revision {revisionOf(etag)}.</p>}
          <div class="actions">
            <button type="button" onClick={dryRun} disabled={busy || !!parsed.error}>
              Dry run
            </button>
            <button type="submit" class="primary" disabled={busy || !!parsed.error}>
              Save
            </button>
          </div>
          {conflict && !isNew && (
            <div class="error" role="alert">
              <p class="message">
                Not saved: this connection was changed by someone else since you opened it — reload to see the current
                version.
              </p>
              <button type="button" onClick={load}>
                Reload
              </button>
            </div>
          )}
          {conflict && isNew && <p class="error" role="alert">A connection with this id exists already.</p>}
          {!conflict && <ErrorBox error={error} title="Not accepted:" />}
          {result && (
            <p class="ok" role="status">
              {result}
            </p>
          )}
        </form>
      )}
    </>
  );
}

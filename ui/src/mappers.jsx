import { useRef, useState } from 'preact/hooks';
import { api, enc } from './api.js';
import { ErrorBox, formatTime, usePoll } from './ui.jsx';

function size(n) {
  if (typeof n !== 'number') return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function failures(stats) {
  const f = stats && stats.failures;
  if (typeof f === 'number') return f;
  if (f && typeof f === 'object') return Object.values(f).reduce((a, b) => a + (Number(b) || 0), 0);
  return 0;
}

/** `My_Mapper.v2.wasm` → `my_mapper.v2` */
export function idFromFile(name) {
  return name.replace(/\.wasm$/i, '').toLowerCase();
}

function Versions({ id }) {
  const [versions, setVersions] = useState(null);
  const [error, setError] = useState(null);
  usePoll(
    async (signal) => {
      try {
        setVersions((await api(`/api/2/mappers/${enc(id)}/versions`, { signal })).body);
      } catch (e) {
        if (e.name !== 'AbortError') setError(e);
      }
    },
    10000,
    [id],
  );
  if (error) return <ErrorBox error={error} />;
  if (!versions) return <p aria-busy="true">Loading…</p>;
  return (
    <div class="table-wrap">
      <table aria-label={`Versions of ${id}`}>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Size</th>
            <th scope="col">Uploaded</th>
            <th scope="col">SHA-256</th>
            <th scope="col">Used by</th>
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.version}>
              <td class="num">
                {v.version}
                {v.current ? ' (current)' : ''}
              </td>
              <td class="num">{size(v.size)}</td>
              <td>{formatTime(v.created)}</td>
              <td class="mono hash">{(v.sha256 || '').slice(0, 16)}</td>
              <td class="mono">{(v.usedBy || []).join(', ') || '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Upload({ onUploaded }) {
  const [file, setFile] = useState(null);
  const [id, setId] = useState('');
  const [force, setForce] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [done, setDone] = useState('');
  const [over, setOver] = useState(false);
  const input = useRef(null);
  const choose = (f) => {
    if (!f) return;
    setFile(f);
    setId(idFromFile(f.name));
    setError(null);
    setDone('');
  };
  const submit = async (e) => {
    e.preventDefault();
    if (!file || !id.trim()) return;
    setBusy(true);
    setError(null);
    setDone('');
    try {
      const bytes = await file.arrayBuffer();
      const r = await api(`/api/2/mappers/${enc(id.trim())}${force ? '?force=true' : ''}`, {
        method: 'PUT',
        contentType: 'application/wasm',
        body: bytes,
      });
      const version = r.body && r.body.version;
      setDone(
        r.status === 201
          ? `Uploaded ${id.trim()} as version ${version ?? 1}.`
          : `Uploaded ${id.trim()}: its current version is replaced.`,
      );
      onUploaded && onUploaded();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="upload-h">
      <h2 id="upload-h">Upload a module</h2>
      <div
        class={`dropzone${over ? ' over' : ''}`}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          choose(e.dataTransfer && e.dataTransfer.files[0]);
        }}
      >
        <label for="module-file">WebAssembly component (.wasm)</label>
        <input
          ref={input}
          id="module-file"
          type="file"
          accept=".wasm,application/wasm"
          onChange={(e) => choose(e.currentTarget.files[0])}
        />
        <p class="hint">…or drop a .wasm file here.{file ? ` Chosen: ${file.name} (${size(file.size)}).` : ''}</p>
      </div>
      <div class="grid2">
        <div class="field">
          <label for="module-id">Mapper id</label>
          <input
            id="module-id"
            value={id}
            required
            autocomplete="off"
            spellcheck={false}
            onInput={(e) => setId(e.currentTarget.value)}
          />
        </div>
        <div class="field check">
          <input id="module-force" type="checkbox" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} />
          <label for="module-force">Replace even if connections refuse the new version (force)</label>
        </div>
      </div>
      <div class="actions">
        <button type="submit" class="primary" disabled={busy || !file || !id.trim()}>
          Upload
        </button>
      </div>
      <ErrorBox error={error} title="Upload refused:" />
      {done && (
        <p class="ok" role="status">
          {done}
        </p>
      )}
    </form>
  );
}

export function MappersPage() {
  const [mappers, setMappers] = useState(null);
  const [error, setError] = useState(null);
  const [open, setOpen] = useState(null);
  const load = async (signal) => {
    try {
      const r = await api('/api/2/mappers', { signal });
      setMappers(Array.isArray(r.body) ? r.body : []);
      setError(null);
    } catch (e) {
      if (e.name !== 'AbortError') setError(e);
    }
  };
  usePoll(load, 5000);
  return (
    <>
      <h1>Mappers</h1>
      <p class="hint">
        WebAssembly mapper modules. A connection uses one with a mapping definition
        {' {"mappingEngine": "WebAssembly", "options": {"module": "<id>"}}'}; try one in the <a href="#/playground">playground</a>.
      </p>
      <ErrorBox error={error} />
      {mappers && mappers.length === 0 && <p>No modules uploaded yet.</p>}
      {mappers && mappers.length > 0 && (
        <div class="table-wrap">
          <table aria-label="Mapper modules">
            <thead>
              <tr>
                <th scope="col">Mapper</th>
                <th scope="col">Version</th>
                <th scope="col">Latest version</th>
                <th scope="col">Size</th>
                <th scope="col">Used by</th>
                <th scope="col">Calls</th>
                <th scope="col">Failures</th>
                <th scope="col">Modified</th>
                <th scope="col">Versions</th>
              </tr>
            </thead>
            <tbody>
              {mappers.map((m) => [
                <tr key={m.id}>
                  <th scope="row" class="mono">
                    {m.id}
                  </th>
                  <td class="num">{m.version}</td>
                  <td class="num">{m.latestVersion}</td>
                  <td class="num">{size(m.size)}</td>
                  <td class="mono">{(m.usedBy || []).join(', ') || '—'}</td>
                  <td class="num">{(m.statistics && m.statistics.calls) || 0}</td>
                  <td class="num">{failures(m.statistics)}</td>
                  <td>{formatTime(m.modified)}</td>
                  <td>
                    <button
                      type="button"
                      aria-expanded={open === m.id ? 'true' : 'false'}
                      aria-label={`Versions of ${m.id}`}
                      onClick={() => setOpen(open === m.id ? null : m.id)}
                    >
                      {open === m.id ? 'Hide' : 'Show'}
                    </button>
                  </td>
                </tr>,
                open === m.id && (
                  <tr key={`${m.id}-versions`} class="detail">
                    <td colSpan={9}>
                      <Versions id={m.id} />
                    </td>
                  </tr>
                ),
              ])}
            </tbody>
          </table>
        </div>
      )}
      <Upload onUploaded={() => load()} />
    </>
  );
}

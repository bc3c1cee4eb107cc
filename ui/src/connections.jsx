import { useState } from 'preact/hooks';
import { api, enc } from './api.js';
import { ConfirmDialog, ErrorBox, formatTime, StatusBadge, usePoll } from './ui.jsx';

/** The latest `lastMessageAt` anywhere in a metrics answer. */
export function lastMessageAt(metrics) {
  let best = null;
  const walk = (v) => {
    if (!v || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (k === 'lastMessageAt' && typeof x === 'string') {
        if (!best || x > best) best = x;
      } else walk(x);
    }
  };
  walk(metrics && metrics.connectionMetrics);
  return best;
}

export async function command(id, name) {
  return api(`/api/2/connections/${enc(id)}/command`, {
    method: 'POST',
    contentType: 'text/plain',
    body: `connectivity.commands:${name}`,
  });
}

/** Open / Close / Delete buttons of a connection, the delete behind a confirmation. */
export function ConnectionActions({ id, onDone, onDeleted, compact }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(null);
  const [error, setError] = useState(null);
  const run = async (what, fn) => {
    setBusy(what);
    setError(null);
    try {
      await fn();
      onDone && onDone(what);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };
  return (
    <div class={compact ? 'row-actions' : 'actions'}>
      <button type="button" disabled={!!busy} onClick={() => run('open', () => command(id, 'openConnection'))}>
        Open
      </button>
      <button type="button" disabled={!!busy} onClick={() => run('close', () => command(id, 'closeConnection'))}>
        Close
      </button>
      <button type="button" class="danger" disabled={!!busy} onClick={() => setConfirming(true)}>
        Delete
      </button>
      <ConfirmDialog
        open={confirming}
        title={`Delete connection ${id}?`}
        confirmLabel="Delete"
        danger
        onCancel={() => setConfirming(false)}
        onConfirm={() => {
          setConfirming(false);
          run('delete', async () => {
            await api(`/api/2/connections/${enc(id)}`, { method: 'DELETE' });
            onDeleted && onDeleted();
          });
        }}
      >
        <p>The connection stops and its configuration, metrics and logs are removed. This cannot be undone.</p>
      </ConfirmDialog>
      <ErrorBox error={error} />
    </div>
  );
}

export function ConnectionsPage() {
  const [connections, setConnections] = useState(null);
  const [live, setLive] = useState({});
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState('');

  const loadList = async (signal) => {
    try {
      const r = await api('/api/2/connections?fields=id,name,connectionType,connectionStatus,clientCount', { signal });
      setConnections(Array.isArray(r.body) ? r.body : []);
      setError(null);
      return r.body;
    } catch (e) {
      if (e.name !== 'AbortError') setError(e);
      return null;
    }
  };
  usePoll(loadList, 10000);
  // Status and last message of every connection: at most 8 connections asked at once, and
  // every 2 s, or less often for long lists (each status may be gathered from a cluster).
  const count = connections ? connections.length : 0;
  usePoll(
    async (signal) => {
      if (!connections) return;
      const entries = [];
      for (let i = 0; i < connections.length; i += 8) {
        const batch = await Promise.all(
          connections.slice(i, i + 8).map(async (c) => {
            const [status, metrics] = await Promise.all([
              api(`/api/2/connections/${enc(c.id)}/status`, { signal }).then((r) => r.body, () => null),
              api(`/api/2/connections/${enc(c.id)}/metrics`, { signal }).then((r) => r.body, () => null),
            ]);
            return [c.id, { status, last: lastMessageAt(metrics) }];
          }),
        );
        entries.push(...batch);
      }
      setLive(Object.fromEntries(entries));
    },
    Math.max(2000, 25 * count),
    [connections && connections.map((c) => c.id).join('\n')],
  );

  return (
    <>
      <div class="page-head">
        <h1>Connections</h1>
        <a class="button primary" href="#/connection-editor">
          New connection
        </a>
      </div>
      <ErrorBox error={error} />
      <p class="sr-only" role="status" aria-live="polite">
        {notice}
      </p>
      {connections && connections.length === 0 && <p>No connections yet. Create one from a template or from Ditto JSON.</p>}
      {connections && connections.length > 0 && (
        <div class="table-wrap">
          <table aria-label="Connections">
            <thead>
              <tr>
                <th scope="col">Connection</th>
                <th scope="col">Type</th>
                <th scope="col">Status</th>
                <th scope="col">Clients</th>
                <th scope="col">Last message</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {connections.map((c) => {
                const l = live[c.id] || {};
                const status = l.status ? l.status.liveStatus : null;
                return (
                  <tr key={c.id}>
                    <td>
                      <a href={`#/connections/${enc(c.id)}`}>{c.id}</a>
                      {c.name && c.name !== c.id && <div class="sub">{c.name}</div>}
                    </td>
                    <td>{c.connectionType}</td>
                    <td class="status-cell" aria-live="polite">
                      <StatusBadge status={status || (l.status === undefined ? 'loading' : 'unknown')} />
                    </td>
                    <td class="num">{c.clientCount ?? 1}</td>
                    <td>{formatTime(l.last)}</td>
                    <td>
                      <ConnectionActions
                        id={c.id}
                        compact
                        onDone={(what) => {
                          setNotice(`${c.id}: ${what} requested.`);
                          loadList();
                        }}
                        onDeleted={() => setNotice(`${c.id} deleted.`)}
                      />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {!connections && !error && <p aria-busy="true">Loading…</p>}
    </>
  );
}

import { useMemo, useState } from 'preact/hooks';
import { api, enc } from './api.js';
import { Chart } from './chart.jsx';
import { command, ConnectionActions, lastMessageAt } from './connections.jsx';
import { ErrorBox, formatTime, StatusBadge, usePoll } from './ui.jsx';

const WINDOWS = [
  ['PT1M', 'Last minute', 60],
  ['PT1H', 'Last hour', 3600],
  ['PT24H', 'Last day', 86400],
];

/** The rows of the totals table and the series of the chart. */
const METRICS = [
  ['inbound', 'consumed'],
  ['inbound', 'mapped'],
  ['inbound', 'dropped'],
  ['inbound', 'enforced'],
  ['outbound', 'dispatched'],
  ['outbound', 'mapped'],
  ['outbound', 'dropped'],
  ['outbound', 'published'],
];
const PLOTTED = ['consumed', 'mapped', 'dropped', 'published'];
const SERIES = PLOTTED.flatMap((m) => [`${m} success`, `${m} failure`]);

// Samples survive leaving the page (for this tab), per connection.
const HISTORIES = new Map();
const MAX_SAMPLES = 50000;

function count(metrics, direction, type, outcome, window) {
  const v = metrics && metrics.connectionMetrics && metrics.connectionMetrics[direction];
  const n = v && v[type] && v[type][outcome] && v[type][outcome][window];
  return typeof n === 'number' ? n : 0;
}

/** A plotted figure: inbound and outbound together (mapped and dropped happen in both). */
function plotted(metrics, type, outcome, window) {
  return count(metrics, 'inbound', type, outcome, window) + count(metrics, 'outbound', type, outcome, window);
}

function StatusTable({ title, rows, withAddress }) {
  if (!rows || rows.length === 0) return null;
  return (
    <div class="table-wrap">
      <table>
        <caption>{title}</caption>
        <thead>
          <tr>
            {withAddress && <th scope="col">Address</th>}
            <th scope="col">Client</th>
            <th scope="col">Status</th>
            <th scope="col">Details</th>
            <th scope="col">Since</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              {withAddress && <td class="mono">{r.address}</td>}
              <td class="mono">{r.client}</td>
              <td>
                <StatusBadge status={r.status} />
              </td>
              <td class="wrap">{r.statusDetails}</td>
              <td>{formatTime(r.inStateSince)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Select({ id, label, value, onChange, options }) {
  return (
    <div class="field inline">
      <label for={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">All</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </div>
  );
}

export function ConnectionPage({ id }) {
  const [connection, setConnection] = useState(null);
  const [status, setStatus] = useState(null);
  const [metrics, setMetrics] = useState(null);
  const [logs, setLogs] = useState(null);
  const [error, setError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [notice, setNotice] = useState('');
  const [windowKey, setWindowKey] = useState('PT1M');
  const [level, setLevel] = useState('');
  const [category, setCategory] = useState('');
  const [address, setAddress] = useState('');
  const [deleted, setDeleted] = useState(false);
  const [tick, setTick] = useState(0);
  if (!HISTORIES.has(id)) HISTORIES.set(id, []);
  const history = HISTORIES.get(id);
  const base = `/api/2/connections/${enc(id)}`;

  usePoll(
    async (signal) => {
      if (deleted) return;
      try {
        const [c, s] = await Promise.all([api(base, { signal }), api(`${base}/status`, { signal })]);
        setConnection(c.body);
        setStatus(s.body);
        setError(null);
      } catch (e) {
        if (e.name !== 'AbortError') setError(e);
      }
    },
    2000,
    [id, deleted],
  );
  usePoll(
    async (signal) => {
      if (deleted) return;
      const m = await api(`${base}/metrics`, { signal });
      setMetrics(m.body);
      history.push({ t: Date.now() / 1000, m: m.body });
      if (history.length > MAX_SAMPLES) history.splice(0, history.length - MAX_SAMPLES);
      setTick((x) => x + 1);
    },
    2000,
    [id, deleted],
  );
  usePoll(
    async (signal) => {
      if (deleted) return;
      const l = await api(`${base}/logs`, { signal });
      setLogs(l.body);
    },
    2500,
    [id, deleted],
  );

  const act = async (label, name, after) => {
    setActionError(null);
    try {
      await command(id, name);
      setNotice(`${label}: done.`);
      if (after) after();
      const l = await api(`${base}/logs`);
      setLogs(l.body);
      const m = await api(`${base}/metrics`);
      setMetrics(m.body);
    } catch (e) {
      setActionError(e);
    }
  };

  const win = WINDOWS.find((w) => w[0] === windowKey);
  const chartData = useMemo(() => {
    const now = Date.now() / 1000;
    const from = now - win[2];
    const samples = history.filter((s) => s.t >= from);
    const data = [samples.map((s) => s.t)];
    for (const m of PLOTTED) {
      for (const o of ['success', 'failure']) data.push(samples.map((s) => plotted(s.m, m, o, windowKey)));
    }
    return { data, range: [from, now] };
  }, [tick, windowKey, history.length]);

  const entries = (logs && logs.connectionLogs) || [];
  const categories = [...new Set(entries.map((e) => e.category))].sort();
  const addresses = [...new Set(entries.map((e) => e.address).filter(Boolean))].sort();
  const shown = entries
    .filter((e) => (!level || e.level === level) && (!category || e.category === category) && (!address || e.address === address))
    .slice()
    .reverse()
    .slice(0, 500);

  if (deleted) {
    return (
      <>
        <h1>{id}</h1>
        <p role="status">The connection was deleted.</p>
        <p>
          <a href="#/connections">Back to the connections</a>
        </p>
      </>
    );
  }

  return (
    <>
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="#/connections">Connections</a> / <span>{id}</span>
      </nav>
      <div class="page-head">
        <h1>
          {id}
          {connection && connection.name && connection.name !== id && <span class="sub"> {connection.name}</span>}
        </h1>
        <a class="button" href={`#/connection-editor/${enc(id)}`}>
          Edit
        </a>
      </div>
      <ErrorBox error={error} />
      <p class="sr-only" role="status" aria-live="polite">
        {notice}
      </p>
      <ConnectionActions
        id={id}
        onDone={(what) => setNotice(`${what} requested.`)}
        onDeleted={() => {
          HISTORIES.delete(id);
          setDeleted(true);
        }}
      />

      <section aria-labelledby="status-h">
        <h2 id="status-h">Status</h2>
        {status ? (
          <>
            <dl class="facts">
              <div>
                <dt>Live status</dt>
                <dd aria-live="polite" data-testid="live-status">
                  <StatusBadge status={status.liveStatus} />
                </dd>
              </div>
              <div>
                <dt>Desired status</dt>
                <dd>{status.connectionStatus || (connection && connection.connectionStatus) || '—'}</dd>
              </div>
              <div>
                <dt>Recovery</dt>
                <dd>{status.recoveryStatus || '—'}</dd>
              </div>
              <div>
                <dt>Connected since</dt>
                <dd>{formatTime(status.connectedSince)}</dd>
              </div>
              <div>
                <dt>Type</dt>
                <dd>{connection ? connection.connectionType : '—'}</dd>
              </div>
              <div>
                <dt>Last message</dt>
                <dd>{formatTime(lastMessageAt(metrics))}</dd>
              </div>
            </dl>
            <StatusTable title="Clients" rows={status.clientStatus} />
            <StatusTable title="Sources" rows={status.sourceStatus} withAddress />
            <StatusTable title="Targets" rows={status.targetStatus} withAddress />
          </>
        ) : (
          !error && <p aria-busy="true">Loading…</p>
        )}
      </section>

      <section aria-labelledby="metrics-h">
        <div class="page-head">
          <h2 id="metrics-h">Metrics</h2>
          <div class="actions">
            <div class="field inline">
              <label for="metrics-window">Window</label>
              <select id="metrics-window" value={windowKey} onChange={(e) => setWindowKey(e.currentTarget.value)}>
                {WINDOWS.map(([k, l]) => (
                  <option key={k} value={k}>
                    {l}
                  </option>
                ))}
              </select>
            </div>
            <button
              type="button"
              onClick={() =>
                act('Reset metrics', 'resetConnectionMetrics', () => {
                  history.length = 0;
                })
              }
            >
              Reset metrics
            </button>
          </div>
        </div>
        <figure class="chart-figure">
          <Chart
            data={chartData.data}
            range={chartData.range}
            xRange={chartData.range}
            series={SERIES}
            label={`Message counts of the ${win[1].toLowerCase()} over time (consumed, mapped, dropped, published; success and failure)`}
          />
          <figcaption class="hint">
            Each point is the count of the {win[1].toLowerCase()} when it was polled (every 2 s while this page is open).
          </figcaption>
        </figure>
        <div class="table-wrap">
          <table aria-label="Metric totals">
            <caption>Totals, {win[1].toLowerCase()}</caption>
            <thead>
              <tr>
                <th scope="col">Metric</th>
                <th scope="col">Success</th>
                <th scope="col">Failure</th>
                <th scope="col">Last message</th>
              </tr>
            </thead>
            <tbody>
              {METRICS.map(([d, m]) => {
                const node = metrics && metrics.connectionMetrics && metrics.connectionMetrics[d] && metrics.connectionMetrics[d][m];
                const last = node && [node.success && node.success.lastMessageAt, node.failure && node.failure.lastMessageAt].filter(Boolean).sort().pop();
                return (
                  <tr key={`${d}-${m}`}>
                    <th scope="row">{`${d} ${m}`}</th>
                    <td class="num">{count(metrics, d, m, 'success', windowKey)}</td>
                    <td class="num">{count(metrics, d, m, 'failure', windowKey)}</td>
                    <td>{formatTime(last)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </section>

      <section aria-labelledby="logs-h">
        <div class="page-head">
          <h2 id="logs-h">Logs</h2>
          <div class="actions">
            <button type="button" onClick={() => act('Enable logs', 'enableConnectionLogs')}>
              Enable logs
            </button>
            <button type="button" onClick={() => act('Reset logs', 'resetConnectionLogs')}>
              Reset logs
            </button>
            <button
              type="button"
              onClick={async () => {
                try {
                  setLogs((await api(`${base}/logs`)).body);
                } catch (e) {
                  setActionError(e);
                }
              }}
            >
              Refresh logs
            </button>
          </div>
        </div>
        <ErrorBox error={actionError} />
        <p class="hint">
          {logs && logs.enabledUntil
            ? `Logging is enabled until ${formatTime(logs.enabledUntil)}.`
            : 'Logging is disabled.'}{' '}
          Refreshed every 2.5 s.
        </p>
        <div class="filters">
          <Select id="log-level" label="Level" value={level} onChange={setLevel} options={['success', 'failure']} />
          <Select id="log-category" label="Category" value={category} onChange={setCategory} options={categories} />
          <Select id="log-address" label="Address" value={address} onChange={setAddress} options={addresses} />
        </div>
        <div class="table-wrap logs">
          <table aria-label="Connection logs">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Level</th>
                <th scope="col">Category</th>
                <th scope="col">Type</th>
                <th scope="col">Address</th>
                <th scope="col">Thing</th>
                <th scope="col">Message</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((e, i) => (
                <tr key={`${e.timestamp}-${i}`} class={e.level === 'failure' ? 'failure' : undefined}>
                  <td class="nowrap">{formatTime(e.timestamp)}</td>
                  <td>{e.level}</td>
                  <td>{e.category}</td>
                  <td>{e.type}</td>
                  <td class="mono">{e.address || ''}</td>
                  <td class="mono">{e.entityId || ''}</td>
                  <td class="wrap message">{e.message}</td>
                </tr>
              ))}
              {shown.length === 0 && (
                <tr>
                  <td colSpan={7}>No log entries{level || category || address ? ' match the filters' : ''}.</td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
        <p class="hint" aria-live="polite">
          {shown.length} of {entries.length} entries shown.
        </p>
      </section>
    </>
  );
}

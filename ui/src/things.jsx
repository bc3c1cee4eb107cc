import { useEffect, useRef, useState } from 'preact/hooks';
import { api, enc, readEvents } from './api.js';
import { ErrorBox, formatTime, pretty } from './ui.jsx';

const FIELDS = 'thingId,policyId,definition,attributes,features,_revision,_modified';
const MAX_EVENTS = 100;

export function ThingsPage({ initialId }) {
  const [input, setInput] = useState(initialId);
  const [thingId, setThingId] = useState(initialId || null);
  const [thing, setThing] = useState(null);
  const [error, setError] = useState(null);
  const [watching, setWatching] = useState(false);
  const [watchState, setWatchState] = useState('');
  const [watchError, setWatchError] = useState(null);
  const [events, setEvents] = useState([]);
  const controller = useRef(null);
  const current = useRef(null);

  const fetchThing = async (id) => {
    try {
      const r = await api(`/api/2/things/${enc(id)}?fields=${FIELDS}`);
      if (current.current !== id) return;
      setThing(r.body);
      setError(null);
    } catch (e) {
      if (current.current !== id) return;
      setThing(null);
      setError(e);
    }
  };

  const stop = () => {
    if (controller.current) controller.current.abort();
    controller.current = null;
    setWatching(false);
  };

  const watch = async (id) => {
    stop();
    const c = new AbortController();
    controller.current = c;
    setWatching(true);
    setWatchError(null);
    // The server ends a stream that falls too far behind; then the thing is read again and the
    // stream reopened, until the user stops or leaves.
    for (let attempt = 0; controller.current === c; attempt++) {
      setWatchState(attempt ? 'Reconnecting…' : 'Connecting…');
      try {
        const response = await api(`/api/2/things?ids=${enc(id)}&fields=${FIELDS}`, {
          headers: { Accept: 'text/event-stream' },
          signal: c.signal,
          stream: true,
        });
        setWatchState(`Watching ${id} for changes.`);
        if (attempt) fetchThing(id);
        await readEvents(response, (ev) => {
          let data;
          try {
            data = JSON.parse(ev.data);
          } catch {
            data = ev.data;
          }
          setEvents((list) => [{ at: new Date().toISOString(), data }, ...list].slice(0, MAX_EVENTS));
          fetchThing(id);
        });
      } catch (e) {
        if (e.name === 'AbortError') return;
        if (controller.current === c) {
          setWatchError(e);
          setWatchState('');
          setWatching(false);
          controller.current = null;
        }
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  };

  // Leaving the page stops the stream.
  useEffect(() => () => controller.current && controller.current.abort(), []);

  useEffect(() => {
    if (initialId) {
      current.current = initialId;
      fetchThing(initialId);
    }
  }, []);

  // The things the twin holds (the first 200 by id): suggestions for the id field, and a list
  // to pick from while no thing is shown.
  const [known, setKnown] = useState([]);
  useEffect(() => {
    api('/api/2/things?fields=thingId&option=size(200)')
      .then((r) => setKnown((r.body || []).map((t) => t.thingId).filter(Boolean)))
      .catch(() => setKnown([]));
  }, []);

  const lookUp = (e) => {
    e.preventDefault();
    show(input.trim());
  };

  const show = (id) => {
    if (!id) return;
    setInput(id);
    stop();
    setEvents([]);
    setWatchState('');
    setThing(null);
    setError(null);
    current.current = id;
    setThingId(id);
    history.replaceState(null, '', `#/things?id=${enc(id)}`);
    fetchThing(id);
  };

  return (
    <>
      <h1>Things</h1>
      <form class="lookup" onSubmit={lookUp}>
        <div class="field">
          <label for="thing-id">Thing id</label>
          <input
            id="thing-id"
            placeholder="namespace:name"
            value={input}
            autocomplete="off"
            list="known-things"
            spellcheck={false}
            onInput={(e) => setInput(e.currentTarget.value)}
          />
        </div>
        <button type="submit" class="primary">
          Look up
        </button>
      </form>
      <datalist id="known-things">
        {known.map((id) => (
          <option key={id} value={id} />
        ))}
      </datalist>
      <ErrorBox error={error} />
      {!thing && known.length > 0 && (
        <section aria-labelledby="known-h">
          <h2 id="known-h">Things</h2>
          <p class="hint">The first {known.length} things by id; choose one to see it.</p>
          <ul class="known-things" aria-label="Known things">
            {known.map((id) => (
              <li key={id}>
                <button type="button" class="link" onClick={() => show(id)}>
                  {id}
                </button>
              </li>
            ))}
          </ul>
        </section>
      )}
      {thing && (
        <section aria-labelledby="thing-h">
          <div class="page-head">
            <h2 id="thing-h">{thing.thingId || thingId}</h2>
            <div class="actions">
              {watching ? (
                <button type="button" onClick={stop}>
                  Stop watching
                </button>
              ) : (
                <button type="button" class="primary" onClick={() => watch(thingId)}>
                  Watch
                </button>
              )}
            </div>
          </div>
          <dl class="facts">
            <div>
              <dt>Revision</dt>
              <dd data-testid="thing-revision" aria-live="polite">
                {thing._revision ?? '—'}
              </dd>
            </div>
            <div>
              <dt>Modified</dt>
              <dd>{formatTime(thing._modified)}</dd>
            </div>
            <div>
              <dt>Policy</dt>
              <dd class="mono">{thing.policyId || '—'}</dd>
            </div>
          </dl>
          <p class="hint" role="status">
            {watchState}
          </p>
          <ErrorBox error={watchError} title="Watching failed:" />
          <pre class="json-out" tabIndex={0} aria-label="Thing JSON">
            {pretty(thing)}
          </pre>
        </section>
      )}
      {(watching || events.length > 0) && (
        <section aria-labelledby="events-h">
          <h2 id="events-h">Events</h2>
          {events.length === 0 && <p>No changes yet.</p>}
          <ol class="events" aria-label="Thing events" aria-live="polite">
            {events.map((ev, i) => (
              <li key={events.length - i}>
                <span class="when">{formatTime(ev.at)}</span>
                {ev.data && ev.data._revision !== undefined && <span class="code">revision {ev.data._revision}</span>}
                <pre class="json-out">{typeof ev.data === 'string' ? ev.data : pretty(ev.data)}</pre>
              </li>
            ))}
          </ol>
        </section>
      )}
    </>
  );
}

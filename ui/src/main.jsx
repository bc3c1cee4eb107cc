import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, basic, credentials, onSignOut, signIn, signOut, WRONG_CREDENTIALS } from './api.js';
import { ConnectionsPage } from './connections.jsx';
import { ConnectionPage } from './connection.jsx';
import { EditorPage } from './editor.jsx';
import { MappersPage } from './mappers.jsx';
import { PlaygroundPage } from './playground.jsx';
import { ThingsPage } from './things.jsx';
import 'uplot/dist/uPlot.min.css';
import './app.css';

const NAV = [
  ['#/connections', 'Connections', 'connections'],
  ['#/mappers', 'Mappers', 'mappers'],
  ['#/playground', 'Playground', 'playground'],
  ['#/things', 'Things', 'things'],
];

/** `#/a/b%2Fc` → ['a', 'b/c'] */
function parseRoute() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = h.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { parts, query: new URLSearchParams(query) };
}

function useRoute() {
  const [route, setRoute] = useState(parseRoute);
  useEffect(() => {
    const on = () => setRoute(parseRoute());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function SignIn({ reason, onDone }) {
  const [user, setUser] = useState('devops');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(reason);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const token = basic(user, password);
    try {
      await api('/api/2/connections?ids-only=true', { token });
      signIn(token);
      onDone();
    } catch (err) {
      setError(err.status === 401 ? WRONG_CREDENTIALS : `Cannot sign in: ${err.message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="signin">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Ferrule console</h1>
        <p class="hint">Sign in with the devops user. The credentials are kept in this tab only.</p>
        <div class="field">
          <label for="signin-user">User name</label>
          <input
            id="signin-user"
            name="username"
            autocomplete="username"
            value={user}
            onInput={(e) => setUser(e.currentTarget.value)}
            required
          />
        </div>
        <div class="field">
          <label for="signin-password">Password</label>
          <input
            id="signin-password"
            name="password"
            type="password"
            autocomplete="current-password"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
            required
          />
        </div>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}

function Page({ route }) {
  const [first, second] = route.parts;
  if (first === 'connections' && second) return <ConnectionPage key={second} id={second} />;
  if (first === 'connection-editor') return <EditorPage key={second || '+new'} id={second || null} />;
  if (first === 'mappers') return <MappersPage />;
  if (first === 'playground') return <PlaygroundPage />;
  if (first === 'things') return <ThingsPage initialId={route.query.get('id') || ''} />;
  return <ConnectionsPage />;
}

function App() {
  const [signedIn, setSignedIn] = useState(() => !!credentials());
  const [reason, setReason] = useState(null);
  const route = useRoute();
  const mainRef = useRef(null);
  useEffect(
    () =>
      onSignOut((why) => {
        setReason(why);
        setSignedIn(false);
      }),
    [],
  );
  useEffect(() => {
    if (!location.hash || location.hash === '#' || location.hash === '#/') {
      history.replaceState(null, '', '#/connections');
    }
  }, []);
  const section = route.parts[0] === 'connection-editor' ? 'connections' : route.parts[0] || 'connections';
  useEffect(() => {
    const name = NAV.find((n) => n[2] === section);
    document.title = `${name ? name[1] : 'Console'} · Ferrule`;
  }, [section]);
  if (!signedIn) {
    document.title = 'Sign in · Ferrule';
    return (
      <SignIn
        reason={reason}
        onDone={() => {
          setReason(null);
          setSignedIn(true);
        }}
      />
    );
  }
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); mainRef.current && mainRef.current.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Ferrule</span>
        <nav aria-label="Main">
          <ul>
            {NAV.map(([href, label, key]) => (
              <li key={key}>
                <a href={href} aria-current={section === key ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button type="button" class="signout" onClick={() => signOut(null)}>
          Sign out
        </button>
      </header>
      <main id="main" ref={mainRef} tabIndex={-1}>
        <Page route={route} />
      </main>
    </>
  );
}

render(<App />, document.getElementById('app'));

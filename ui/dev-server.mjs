// Development server: serves the built console (../host/ui/, rebuilt by `npm run build`) at /ui/
// with the production Content-Security-Policy, and proxies everything else to a running Ferrule.
//   FERRULE_URL=http://127.0.0.1:8080 PORT=5173 npm run dev
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const upstream = new URL(process.env.FERRULE_URL || 'http://127.0.0.1:8080');
const port = Number(process.env.PORT || 5173);
const CSP =
  "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const FILES = {
  '/ui/': ['index.html', 'text/html; charset=utf-8'],
  '/ui/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/ui/app.css': ['app.css', 'text/css; charset=utf-8'],
};

http
  .createServer((req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/' || path === '/ui') {
      res.writeHead(308, { location: '/ui/' });
      return res.end();
    }
    const file = FILES[path];
    if (file) {
      res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-cache', 'content-security-policy': CSP });
      return res.end(readFileSync(join(here, '..', 'host', 'ui', file[0])));
    }
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port || 80, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host } },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 502, error: 'dev.proxy', message: `${upstream.href}: ${e.message}` }));
    });
    req.pipe(forward);
  })
  .listen(port, '127.0.0.1', () => console.log(`console at http://127.0.0.1:${port}/ui/ → ${upstream.href}`));

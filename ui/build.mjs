// Builds the console into ../host/ui/: index.html, app.js (one minified ES module) and app.css
// (the console's CSS with uPlot's). The same sources give the same bytes.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'host', 'ui');
const tmp = join(here, 'node_modules', '.build-ui');

rmSync(tmp, { recursive: true, force: true });
await build({
  entryPoints: { app: join(here, 'src', 'main.jsx') },
  outdir: tmp,
  bundle: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: false,
  legalComments: 'eof',
  charset: 'utf8',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
  absWorkingDir: here,
});

mkdirSync(out, { recursive: true });
const files = readdirSync(tmp).sort();
for (const f of ['app.js', 'app.css']) {
  if (!files.includes(f)) throw new Error(`esbuild wrote no ${f} (wrote ${files.join(', ')})`);
  copyFileSync(join(tmp, f), join(out, f));
}
copyFileSync(join(here, 'index.html'), join(out, 'index.html'));
rmSync(tmp, { recursive: true, force: true });
// The digest of the sources these files were built from: a test of the host (api::ui) computes
// it again and fails when ui/ changed without a new build.
const sources = ['build.mjs', 'index.html', 'package-lock.json', 'package.json']
  .concat(readdirSync(join(here, 'src')).map((f) => `src/${f}`))
  .sort();
const digest = createHash('sha256');
for (const f of sources) {
  digest.update(`${f}\0`);
  digest.update(readFileSync(join(here, f)));
  digest.update('\0');
}
writeFileSync(join(out, 'SOURCES.sha256'), `${digest.digest('hex')}\n`);
for (const f of ['index.html', 'app.js', 'app.css']) {
  console.log(`host/ui/${f}\t${statSync(join(out, f)).size} bytes`);
}

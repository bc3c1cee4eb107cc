// `node build.mjs APP.js OUT.wasm`: builds a mapper (an ES module exporting `mapping`) into a
// component of Ferrule's world (`../wit`, world `mapper`) with componentize-js. Relative imports
// are bundled (`import * as fm from './ferrule-mapper.js'`). The engine's random, clocks, stdio
// and HTTP features are left out: a mapper gets none of them from the host.

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [app, out] = process.argv.slice(2);
if (!app || !out) {
  console.error('usage: node build.mjs APP.js OUT.wasm');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const wit = path.join(here, '..', 'wit');
// componentize-js reads the imported files below its working directory: work from the
// directory that holds both the app and this package (the examples import ../../ferrule-mapper.js),
// or, when that is the file system's root, from the app's own directory (a project of
// `ferrule mapper new` has its copy of ferrule-mapper.js beside the app).
const source = path.resolve(app);
const target = path.resolve(out);
let root = here;
while (path.relative(root, source).startsWith('..')) root = path.dirname(root);
if (root === path.parse(root).root) root = path.dirname(source);
process.chdir(root);
const { component } = await componentize({
  sourcePath: path.relative(root, source),
  witPath: wit,
  worldName: 'mapper',
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(target, component);
console.log(`${out}: ${component.length} bytes`);

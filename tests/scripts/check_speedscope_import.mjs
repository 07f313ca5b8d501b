// Import a profile file with speedscope's own importer (the npm package `speedscope`,
// unpacked by scripts/install-test-tools.sh) and print what speedscope sees, as JSON:
//
//   {"importer": "...", "warnings": [...], "profiles": [{"name", "totalWeight", "stacks": [
//       {"frames": [{"name", "file", "line"}, ...root first], "weight"}]}]}
//
// `stacks` lists every call-tree node with self weight, so it is the profile's samples
// merged by stack. Exits 1 when speedscope cannot import the file.
//
// Usage: node check_speedscope_import.mjs SPEEDSCOPE_PACKAGE_DIR FILE [NAME]
// NAME is the file name speedscope is told (it picks some importers by extension).
//
// speedscope ships only a browser bundle, so this runs the bundle in a `vm` context
// with stubbed DOM globals and grabs the lazily loaded import module (the one exporting
// importProfileGroupFromText): nothing here reimplements any parsing.
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';

const [pkgDir, file, givenName] = process.argv.slice(2);
if (!pkgDir || !file) {
  console.error('usage: check_speedscope_import.mjs SPEEDSCOPE_DIR FILE [NAME]');
  process.exit(2);
}
const releaseDir = path.join(pkgDir, 'dist', 'release');
const bundleName = fs.readdirSync(releaseDir).find((f) => /^speedscope-.*\.js$/.test(f));
if (!bundleName) throw new Error(`no speedscope bundle in ${releaseDir}`);
const src = fs.readFileSync(path.join(releaseDir, bundleName), 'utf8');

// var M={}; X(M,{importFromFileSystemDirectoryEntry:...,importProfileGroupFromText:...})
const mod = /var ([\w$]+)=\{\};[\w$]+\(\1,\{importFromFileSystemDirectoryEntry:/.exec(src);
if (!mod) throw new Error('speedscope bundle: import module not found (new version?)');
const esc = (s) => s.replace(/\$/g, '\\$');
// Promise.resolve().then(()=>(init(),M)) loads it lazily; expose that promise.
const lazy = new RegExp(`Promise\\.resolve\\(\\)\\.then\\(\\(\\)=>\\(([\\w$]+)\\(\\),${esc(mod[1])}\\)\\)`).exec(src);
if (!lazy) throw new Error('speedscope bundle: lazy import of the import module not found');
const patched = src.replace(lazy[0], `(globalThis.__pyprofImport=${lazy[0]})`);

// Enough of a browser for the bundle's top level; the UI mount at the end fails, which
// is expected and harmless (the importer does not use the DOM).
const stub = new Proxy(function () {}, {
  get: (_t, k) => (k === Symbol.toPrimitive ? () => '' : stub),
  apply: () => stub,
  construct: () => stub,
});
const ctx = {
  console: { log() {}, info() {}, debug() {}, warn() {}, error() {} },
  setTimeout, clearTimeout, TextDecoder, TextEncoder, URL, Promise, Uint8Array, ArrayBuffer,
  DataView, Map, Set, WeakMap, Math, JSON, Error, Array, Object, String, Number,
  document: stub, navigator: { userAgent: 'node' },
  location: { hash: '', search: '', href: 'file:///pyprof-check' },
  localStorage: { getItem: () => null, setItem() {} },
  addEventListener() {}, removeEventListener() {}, requestAnimationFrame: () => 0,
};
ctx.globalThis = ctx;
ctx.window = ctx;
ctx.self = ctx;
vm.createContext(ctx);
try {
  vm.runInContext(patched, ctx);
} catch (e) {
  // The UI mount; see above.
}
if (!ctx.__pyprofImport) throw new Error('speedscope bundle: import module was not exposed');
const importer = await ctx.__pyprofImport;

// From here on, whatever speedscope logs while importing is kept: the importer used,
// and its warnings (e.g. badly nested trace events), which the tests require empty.
let importerUsed = '';
const warnings = [];
ctx.console.log = (...a) => {
  const s = a.map(String).join(' ');
  if (s.startsWith('Importing as')) importerUsed = s;
};
ctx.console.warn = (...a) => warnings.push(a.map(String).join(' '));
ctx.console.error = (...a) => warnings.push(a.map(String).join(' '));
const bytes = fs.readFileSync(file);
const name = givenName || path.basename(file);
const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
const group = await importer.importProfilesFromArrayBuffer(name, ab);
if (!group || !group.profiles || group.profiles.length === 0) {
  console.error(`speedscope could not import ${file}`);
  process.exit(1);
}

const out = { importer: importerUsed, warnings, name: group.name, profiles: [] };
for (const p of group.profiles) {
  const stacks = [];
  const walk = (node, trail) => {
    const here = node.frame && !node.isRoot() ? [...trail, node.frame] : trail;
    if (here.length > 0 && node.getSelfWeight() > 0) {
      stacks.push({
        frames: here.map((f) => ({ name: f.name, file: f.file ?? null, line: f.line ?? null })),
        weight: node.getSelfWeight(),
      });
    }
    for (const c of node.children) walk(c, here);
  };
  walk(p.getAppendOrderCalltreeRoot(), []);
  out.profiles.push({ name: p.getName(), totalWeight: p.getTotalWeight(), stacks });
}
process.stdout.write(JSON.stringify(out) + '\n');

// The web demo in headless Debian chromium against native `dml embed` on the same files.
//
// Usage: node browser.test.mjs (from web/tests, after web/build.sh). Environment: DML_BIN, the
// native dml binary; DML_WEB_DIST, the built page [../dist]; DML_WEB_WORK, a scratch folder.
// Trains a short default run, exports it with `dml export --web`, serves page and data from a
// local server, and checks: embeddings of uploaded files within 1e-4 of native ones with the same
// top-5 gallery neighbours; a gallery image finds itself first; a drawing gets neighbours;
// a file that is not an image, an oversized image and corrupt model bytes each give a message in
// the page. Prints the inference times; with DML_WEBGPU=1 also runs all of it on WebGPU (SwiftShader).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';

const here = path.dirname(new URL(import.meta.url).pathname);
const dist = path.resolve(process.env.DML_WEB_DIST || path.join(here, '../dist'));
const dml = process.env.DML_BIN;
if (!dml) throw new Error('DML_BIN must name the native dml binary');
const work = process.env.DML_WEB_WORK || fs.mkdtempSync(path.join(os.tmpdir(), 'dml-web-'));
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });

let failures = 0;
function check(condition, message) {
  console.log(`${condition ? 'ok  ' : 'FAIL'} ${message}`);
  if (!condition) failures += 1;
}

function run(...args) {
  return execFileSync(dml, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

// A float32/int64 .npy file's shape and values (little-endian, C order, as dml writes them).
function readNpy(file) {
  const bytes = fs.readFileSync(file);
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + headerLength).toString('latin1');
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const data = bytes.subarray(10 + headerLength);
  const values = header.includes("'<f4'")
    ? Array.from(new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)))
    : Array.from(new BigInt64Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)), Number);
  return { shape, values };
}

function topK(gallery, query, k) {
  const [n, d] = gallery.shape;
  const scores = [];
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += gallery.values[i * d + j] * query[j];
    scores.push([s, i]);
  }
  scores.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  return scores.slice(0, k).map(([, i]) => i);
}

// A PNG whose header claims `width` × `height` pixels (with one tiny IDAT that cannot fill it).
function pngClaiming(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const length = Buffer.alloc(4); length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const sum = Buffer.alloc(4); sum.writeUInt32BE(crc(body));
    return Buffer.concat([length, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 0; // 8-bit grey
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.alloc(64))), chunk('IEND', Buffer.alloc(0)),
  ]);
}

// --- A trained run and its export -------------------------------------------------------------
const runDir = path.join(work, 'run');
run('train', '--run-dir', runDir, '--iterations', '30', '--eval-interval', '0', '--backend', 'cpu');
const data = path.join(work, 'data');
run('export', '--run', runDir, '--web', data, '--gallery', '600', '--backend', 'cpu');
const manifest = JSON.parse(fs.readFileSync(path.join(data, 'manifest.json'), 'utf8'));
const gallery = readNpy(path.join(data, 'gallery.npy'));
check(gallery.shape[0] === 600 && manifest.images.length === 600, 'export: 600 gallery images and embeddings');

// Corrupt model bytes: the same export with model.bpk cut short.
const bad = path.join(work, 'bad');
fs.cpSync(data, bad, { recursive: true });
const model = fs.readFileSync(path.join(data, 'model.bpk'));
fs.writeFileSync(path.join(bad, 'model.bpk'), model.subarray(0, Math.floor(model.length / 2)));

// The query files: gallery PNGs, a large RGB PNG and a JPEG of another size, as a user uploads.
const queries = [path.join(data, manifest.images[3]), path.join(data, manifest.images[321])];
const repo = path.resolve(here, '../..');
queries.push(path.join(repo, 'docs/screenshots/retrieval.png'));
const jpeg = path.join(work, 'photo.jpg');
execFileSync('convert', [path.join(repo, 'docs/screenshots/projection.png'), '-resize', '333x207!', '-quality', '85', jpeg]);
queries.push(jpeg);
const native = path.join(work, 'native.npy');
run('embed', '--run', runDir, '--images', ...queries, '--out', native, '--backend', 'cpu');
const nativeRows = readNpy(native);
const notImage = path.join(work, 'notes.png');
fs.writeFileSync(notImage, 'this is text, not a picture\n');
const huge = path.join(work, 'huge.png');
fs.writeFileSync(huge, pngClaiming(40000, 30000));

// --- A local server: the page from dist, /data/ and /bad/ from the exports ---------------------
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png', '.jpg': 'image/jpeg' };
const server = http.createServer((req, res) => {
  const url = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const [root, rest] = url.startsWith('/data/') ? [data, url.slice(6)] : url.startsWith('/bad/') ? [bad, url.slice(5)] : [dist, url.slice(1) || 'index.html'];
  const file = path.join(root, rest);
  if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404).end('not found');
    return;
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const common = ['--headless', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const flags = {
  cpu: [...common, '--disable-gpu'],
  webgpu: [...common, '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--use-vulkan=swiftshader'],
};

async function openPage(kind, query) {
  const userDataDir = fs.mkdtempSync(path.join(work, 'profile-'));
  const context = await chromium.launchPersistentContext(userDataDir, { executablePath: '/usr/bin/chromium', args: flags[kind], headless: true });
  const page = context.pages()[0] || (await context.newPage());
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(`${origin}/${query}`);
  const loaded = await page.evaluate(() => window.dmlDemo.ready);
  return { context, page, loaded, logs };
}

// Does `act` and waits until the page has answered one more query.
async function answer(page, act) {
  const before = await page.evaluate(() => window.dmlDemo.answered);
  await act();
  await page.waitForFunction((b) => window.dmlDemo.answered > b, before, { timeout: 120000 });
}

// Uploads `file` and waits for the page's answer (a result or an error).
async function upload(page, file) {
  await page.click('[data-tab=upload]');
  await answer(page, () => page.setInputFiles('#file', file));
  await page.evaluate(() => { document.getElementById('file').value = ''; });
  return page.evaluate(() => window.dmlDemo.last);
}

async function exercise(kind) {
  const { context, page, loaded, logs } = await openPage(kind, `?backend=${kind}`);
  check(loaded, `${kind}: the page loads the export`);
  if (logs.length) console.log(`     console: ${logs.slice(0, 3).map((l) => l.slice(0, 200)).join(' | ')}${logs.length > 3 ? ` (+${logs.length - 3} more)` : ''}`);
  const backend = await page.textContent('#backend');
  console.log(`     backend shown: ${backend}`);
  if (kind === 'webgpu') {
    // The page uses WebGPU only when its results pass the wasm's self-check against the CPU
    // backend (otherwise it says why and computes on the CPU); on SwiftShader they must pass.
    check(backend.startsWith('WebGPU'), 'webgpu: the page computes on WebGPU');
  }
  const times = [];
  for (const [q, file] of queries.entries()) {
    const result = await upload(page, file);
    if (result.error) { check(false, `${kind}: ${path.basename(file)}: ${result.error}`); continue; }
    const expected = nativeRows.values.slice(q * nativeRows.shape[1], (q + 1) * nativeRows.shape[1]);
    const diff = Math.max(...expected.map((v, j) => Math.abs(v - result.embedding[j])));
    check(diff <= 1e-4, `${kind}: ${path.basename(file)}: max |browser - native| = ${diff.toExponential(2)} <= 1e-4`);
    const shown = await page.$$eval('#results figure', (fs) => fs.slice(0, 5).map((f) => Number(f.dataset.index)));
    const want = topK(gallery, expected, 5);
    check(JSON.stringify(shown) === JSON.stringify(want), `${kind}: ${path.basename(file)}: top-5 shown ${shown} = native ${want}`);
    // On WebGPU the neighbours come from dml's retrieval shader, on the CPU build from the CPU.
    const rankedBy = kind === 'webgpu' ? 'WebGPU shader' : 'CPU';
    check(result.ranked_by === rankedBy, `${kind}: ${path.basename(file)}: ranked by ${result.ranked_by}`);
    times.push(result.ms);
  }
  // A gallery image finds itself.
  await page.click('[data-tab=gallery]');
  await answer(page, () => page.click('#gallery img[data-index="42"]'));
  const self = await page.evaluate(() => window.dmlDemo.last);
  check(self.neighbours && self.neighbours[0].index === 42 && self.neighbours[0].score > 0.9999, `${kind}: gallery image 42 finds itself first (${JSON.stringify(self.neighbours?.[0])})`);
  check((await page.$$('#results figure.same, #results figure.other')).length === 10, `${kind}: the ten results are framed by class`);
  // A drawing.
  await page.click('[data-tab=draw]');
  const box = await page.locator('#pad').boundingBox();
  await page.mouse.move(box.x + 60, box.y + 60);
  await page.mouse.down();
  await page.mouse.move(box.x + 220, box.y + 80, { steps: 8 });
  await page.mouse.move(box.x + 140, box.y + 230, { steps: 8 });
  await page.mouse.up();
  await answer(page, () => page.click('#pad-embed'));
  const drawn = await page.evaluate(() => window.dmlDemo.last);
  check(drawn.neighbours?.length === 10 && drawn.position?.length === 2, `${kind}: a drawing gets 10 neighbours and a place on the map`);
  // Bad input.
  const notAnImage = await upload(page, notImage);
  const shownError = await page.textContent('#error');
  check(notAnImage.error && shownError.includes('notes.png') && shownError.includes('not an image'), `${kind}: a text file: "${shownError}"`);
  const leftOver = await page.evaluate(() => [document.getElementById('query-preview').childElementCount, document.getElementById('results').childElementCount, document.getElementById('query-label').textContent]);
  check(leftOver[0] === 0 && leftOver[1] === 0 && leftOver[2] === '', `${kind}: a failed upload leaves no earlier query or results on screen (${leftOver})`);
  const tooLarge = await upload(page, huge);
  check(tooLarge.error && (await page.textContent('#error')).includes('too large'), `${kind}: a 40000 × 30000 PNG: "${tooLarge.error}"`);
  const after = await upload(page, queries[0]);
  check(after.embedding && (await page.isHidden('#error')), `${kind}: the page still works after bad input`);
  const timings = await page.evaluate(() => window.dmlDemo.timings);
  const steady = timings.slice(1).sort((a, b) => a - b)[Math.floor((timings.length - 1) / 2)];
  console.log(`     ${kind}: first inference ${timings[0].toFixed(1)} ms, median of the next ${timings.length - 1}: ${steady.toFixed(1)} ms`);
  await context.close();
}

try {
  await exercise('cpu');
  const corrupt = await openPage('cpu', '?backend=cpu&data=bad/');
  const message = await corrupt.page.textContent('#error');
  check(!corrupt.loaded && message.includes('model.bpk'), `corrupt model bytes: "${message.split('\n')[0]}"`);
  await corrupt.context.close();
  // ?data= names a folder on this server only; the page's CSP blocks other origins anyway.
  const elsewhere = await openPage('cpu', '?backend=cpu&data=http://localhost:9/evil/');
  const refused = await elsewhere.page.textContent('#error');
  check(!elsewhere.loaded && refused.includes('not another site'), `?data= on another origin: "${refused.split('\n')[0]}"`);
  const violated = await elsewhere.page.evaluate(() => new Promise((resolve) => {
    document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective), { once: true });
    fetch('http://localhost:9/x').catch(() => {});
    setTimeout(() => resolve(null), 5000);
  }));
  check(violated === 'connect-src', `the Content Security Policy blocks a fetch from another origin (${violated})`);
  await elsewhere.context.close();
  // WebGPU asked for where the browser has no adapter (headless chromium without a GPU): a short
  // badge, the whole message in its tooltip.
  const noAdapter = await openPage('cpu', '?backend=webgpu');
  const badge = await noAdapter.page.textContent('#backend');
  const tooltip = await noAdapter.page.getAttribute('#backend', 'title');
  console.log(`     no adapter: badge "${badge}", tooltip "${tooltip.slice(0, 120)}"`);
  check(noAdapter.loaded && badge.length <= 40 && badge.includes('WebGPU') && tooltip.length > badge.length, `a browser without a WebGPU adapter: short badge "${badge}"`);
  await noAdapter.context.close();
  if (process.env.DML_WEBGPU === '1') await exercise('webgpu');
} finally {
  server.close();
  // A scratch folder this test made itself (browser profiles, a run, its export) goes with it.
  if (!process.env.DML_WEB_WORK) fs.rmSync(work, { recursive: true, force: true });
}
console.log(failures ? `${failures} check(s) failed` : 'all browser checks passed');
process.exit(failures ? 1 : 0);

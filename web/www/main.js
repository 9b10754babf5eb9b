// The page around dml_web.wasm: loads an export of `dml export --web`, takes a query (a gallery
// image, an uploaded file, or a drawing), embeds it in the browser and shows its nearest gallery
// images and its place on the map.

const K = 10;
// Larger files are refused before they reach the decoder (whose own limit is on pixels).
const MAX_FILE_BYTES = 64 * 1024 * 1024;
const TAB10 = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

// The export's folder: `?data=DIR`, a path on this page's own server only. A page that loaded
// a model and images from any address given in its link would show whatever that address
// serves under this page's name (the Content Security Policy of index.html enforces the same).
function dataFolder(raw) {
  const url = new URL(raw.replace(/\/?$/, '/'), location.href);
  if (url.origin !== location.origin || !/^https?:$/.test(url.protocol)) {
    throw new Error(`?data=${raw}: the export must be a folder on this server (a path such as data/ or /exports/run1/), not another site`);
  }
  return url.pathname;
}
let base = 'data/';
let baseError = null;
try {
  base = dataFolder(params.get('data') || 'data');
} catch (error) {
  baseError = error;
}

// Two builds of dml_web: pkg/ computes on Burn's CPU backend (small); pkg-webgpu/ adds Burn's wgpu
// backend on the browser's WebGPU (several times larger), fetched only where WebGPU may serve.
const choice = params.get('backend') || 'auto';
const wantWebgpu = choice === 'webgpu' || (choice === 'auto' && 'gpu' in navigator);
let wasm = null;

async function loadModule(dir) {
  const module = await import(`./${dir}/dml_web.js`);
  await module.default();
  return module;
}

// The demo on WebGPU where wanted and working (the wasm checks its GPU results against its CPU
// backend), else on the CPU build; a failed WebGPU attempt is a note, not an error.
async function loadDemo(files) {
  let note = '';
  if (wantWebgpu) {
    try {
      wasm = await loadModule('pkg-webgpu');
      const demo = await wasm.loadDemo(...files, true);
      return [demo, ''];
    } catch (error) {
      note = describe(error);
      console.warn(`WebGPU not used: ${note}`);
    }
  }
  wasm = await loadModule('pkg');
  return [await wasm.loadDemo(...files, false), note];
}

const state = { demo: null, manifest: null, labels: [], map: [], timings: [], last: null, answered: 0 };
// For automated tests and the curious: the loaded demo and the latest query's result.
window.dmlDemo = state;

function classColor(label) {
  if (label >= 0 && label < TAB10.length) return TAB10[label];
  const hue = ((label * 0.618034) % 1 + 1) % 1;
  return `hsl(${Math.round(hue * 360)}, 65%, 55%)`;
}

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

// A message for something thrown by the wasm module or the page: a panic in Rust reaches
// JavaScript as a bare RuntimeError, so its Rust message is fetched separately.
function describe(error) {
  const panic = wasm && wasm.lastPanic();
  if (panic) return `internal error: ${panic}`;
  return error && error.message ? error.message : String(error);
}

async function fetchBytes(name) {
  const response = await fetch(base + name);
  if (!response.ok) throw new Error(`${base}${name}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function fetchText(name) {
  const response = await fetch(base + name);
  if (!response.ok) throw new Error(`${base}${name}: ${response.status} ${response.statusText}`);
  return response.text();
}

function className(label) {
  return state.manifest.classes[String(label)] ?? String(label);
}

// The badge's words for a failed WebGPU start; the full message goes to its tooltip. Burn's
// error for a browser with WebGPU but no adapter is a 300-character debug string.
function shortWebgpuNote(detail) {
  if (/no adapter|found no adapters|requestAdapter/i.test(detail)) return 'WebGPU: no GPU adapter';
  if (/differ|mismatch/i.test(detail)) return 'WebGPU: wrong results';
  return 'WebGPU not used';
}

async function load() {
  if (baseError) throw baseError;
  let manifest;
  try {
    manifest = JSON.parse(await fetchText('manifest.json'));
  } catch (error) {
    throw new Error(`${describe(error)}\nNo exported run here: write one with \`dml export --run RUN_DIR --web DIR\` and open this page with ?data=DIR (default: data/ beside the page).`);
  }
  if (manifest.format !== 'dml-web 1') throw new Error(`${base}manifest.json: unknown format ${manifest.format}`);
  state.manifest = manifest;
  const [config, model, gallery, labels, map] = await Promise.all([
    fetchText('config.toml'), fetchBytes('model.bpk'), fetchBytes('gallery.npy'), fetchBytes('labels.npy'), fetchBytes('map.npy'),
  ]);
  const [demo, note] = await loadDemo([config, model, gallery, labels, map]);
  state.demo = demo;
  state.backend = note ? `${demo.backend} (${shortWebgpuNote(note)})` : demo.backend;
  state.backendDetail = note ? `WebGPU not used: ${note}` : demo.backendDetail;
  state.labels = Array.from(state.demo.labels);
  state.map = Array.from(state.demo.map);
  $('run').textContent = `${manifest.run}: ${manifest.dataset}, ${manifest.loss} loss, ${manifest.backbone}, ${manifest.dim}-d, ${manifest.images.length} gallery images`;
  $('backend').textContent = state.backend;
  $('backend').title = state.backendDetail;
  $('map-method').textContent = `(${manifest.map})`;
  buildGallery();
  buildLegend();
  drawMap();
}

function buildGallery() {
  const grid = $('gallery');
  state.manifest.images.forEach((src, i) => {
    const img = document.createElement('img');
    img.src = base + src;
    img.loading = 'lazy';
    img.alt = `${className(state.labels[i])} (#${i})`;
    img.title = img.alt;
    img.dataset.index = i;
    img.addEventListener('click', () => queryGallery(i));
    grid.appendChild(img);
  });
}

function buildLegend() {
  const legend = $('legend');
  const classes = [...new Set(state.labels)].sort((a, b) => a - b);
  for (const c of classes.slice(0, 30)) {
    const item = document.createElement('span');
    const swatch = document.createElement('i');
    swatch.style.background = classColor(c);
    item.append(swatch, className(c));
    legend.appendChild(item);
  }
  if (classes.length > 30) legend.append(`and ${classes.length - 30} more classes`);
}

function drawMap(result) {
  const canvas = $('map');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const xs = state.map.filter((_, i) => i % 2 === 0);
  const ys = state.map.filter((_, i) => i % 2 === 1);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = 12;
  // One scale for both axes, as in the desktop app: distances mean the same in every direction.
  const scale = Math.min((width - 2 * pad) / Math.max(x1 - x0, 1e-9), (height - 2 * pad) / Math.max(y1 - y0, 1e-9));
  const at = (x, y) => [width / 2 + (x - (x0 + x1) / 2) * scale, height / 2 - (y - (y0 + y1) / 2) * scale];
  xs.forEach((x, i) => {
    const [px, py] = at(x, ys[i]);
    ctx.fillStyle = classColor(state.labels[i]);
    ctx.beginPath();
    ctx.arc(px, py, 2.2, 0, 2 * Math.PI);
    ctx.fill();
  });
  if (!result) return;
  ctx.strokeStyle = getComputedStyle(document.body).color;
  ctx.lineWidth = 1.5;
  for (const n of result.neighbours) {
    const [px, py] = at(xs[n.index], ys[n.index]);
    ctx.beginPath();
    ctx.arc(px, py, 5, 0, 2 * Math.PI);
    ctx.stroke();
  }
  if (result.position) {
    const [px, py] = at(result.position[0], result.position[1]);
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.moveTo(px - 8, py - 8); ctx.lineTo(px + 8, py + 8);
    ctx.moveTo(px + 8, py - 8); ctx.lineTo(px - 8, py + 8);
    ctx.stroke();
  }
}

// Embeds with `embed` (a promise-returning call into the wasm module) and shows the result.
// `label` is the query's class when known (a gallery image), else null.
async function runQuery(embed, preview, label) {
  clearError();
  // A failed query leaves neither the last query's picture nor its results on screen.
  $('results').replaceChildren();
  $('query-preview').replaceChildren();
  $('query-label').textContent = '';
  $('timing').textContent = 'embedding...';
  let embedding;
  const start = performance.now();
  try {
    embedding = await embed();
  } catch (error) {
    $('timing').textContent = '';
    state.last = { error: describe(error) };
    showError(state.last.error);
    state.answered += 1;
    return;
  }
  const ms = performance.now() - start;
  state.timings.push(ms);
  let result;
  try {
    result = JSON.parse(await state.demo.search(embedding, K));
  } catch (error) {
    $('timing').textContent = '';
    state.last = { error: describe(error) };
    showError(state.last.error);
    state.answered += 1;
    return;
  }
  state.last = { embedding: Array.from(embedding), ms, ...result };
  $('query-preview').replaceChildren(preview);
  $('query-label').textContent = label === null ? 'query: your image' : `query: ${className(label)}`;
  const [first, ...rest] = state.timings;
  const later = rest.length ? `, median of the ${rest.length} after it ${[...rest].sort((a, b) => a - b)[Math.floor(rest.length / 2)].toFixed(1)} ms` : '';
  $('timing').textContent = `inference ${ms.toFixed(1)} ms on ${state.demo.backend} (first query ${first.toFixed(1)} ms${later})`;
  for (const n of result.neighbours) {
    const figure = document.createElement('figure');
    figure.dataset.index = n.index;
    if (label !== null) figure.className = state.labels[n.index] === label ? 'same' : 'other';
    const img = document.createElement('img');
    img.src = base + state.manifest.images[n.index];
    img.alt = className(state.labels[n.index]);
    const caption = document.createElement('figcaption');
    caption.textContent = `${n.score.toFixed(3)} ${className(state.labels[n.index])}`;
    figure.append(img, caption);
    $('results').appendChild(figure);
  }
  drawMap(result);
  state.answered += 1;
}

async function queryGallery(i) {
  const img = document.createElement('img');
  img.src = base + state.manifest.images[i];
  await runQuery(async () => state.demo.embedImage(await fetchBytes(state.manifest.images[i])), img, state.labels[i]);
}

async function queryFile(file) {
  if (file.size > MAX_FILE_BYTES) {
    $('results').replaceChildren();
    $('query-preview').replaceChildren();
    $('query-label').textContent = '';
    state.last = { error: `${file.name}: ${(file.size / 1048576).toFixed(0)} MB is too large (at most ${MAX_FILE_BYTES / 1048576} MB)` };
    showError(state.last.error);
    state.answered += 1;
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  const img = document.createElement('img');
  img.src = URL.createObjectURL(file);
  await runQuery(async () => {
    try {
      return await state.demo.embedImage(bytes);
    } catch (error) {
      throw new Error(`${file.name}: ${describe(error)}`);
    }
  }, img, null);
}

function setUpPad() {
  const pad = $('pad');
  const ctx = pad.getContext('2d');
  const clear = () => { ctx.fillStyle = '#000'; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let drawing = false;
  const point = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  };
  pad.addEventListener('pointerdown', (e) => { drawing = true; pad.setPointerCapture(e.pointerId); ctx.beginPath(); ctx.moveTo(...point(e)); });
  pad.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    ctx.strokeStyle = '#fff'; ctx.lineWidth = 22; ctx.lineCap = 'round'; ctx.lineJoin = 'round';
    ctx.lineTo(...point(e)); ctx.stroke();
  });
  pad.addEventListener('pointerup', () => { drawing = false; });
  $('pad-clear').addEventListener('click', clear);
  $('pad-embed').addEventListener('click', () => {
    const pixels = ctx.getImageData(0, 0, pad.width, pad.height);
    const preview = document.createElement('canvas');
    preview.width = pad.width; preview.height = pad.height;
    preview.getContext('2d').putImageData(pixels, 0, 0);
    runQuery(() => state.demo.embedRgba(new Uint8Array(pixels.data.buffer), pad.width, pad.height), preview, null);
  });
}

function setUpTabs() {
  for (const button of document.querySelectorAll('[role=tab]')) {
    button.addEventListener('click', () => {
      for (const b of document.querySelectorAll('[role=tab]')) {
        b.setAttribute('aria-selected', String(b === button));
        $(`tab-${b.dataset.tab}`).hidden = b !== button;
      }
    });
  }
}

setUpTabs();
setUpPad();
$('file').addEventListener('change', (e) => { if (e.target.files[0]) queryFile(e.target.files[0]); });
state.ready = load().then(
  () => true,
  (error) => {
    $('run').textContent = 'not loaded';
    showError(describe(error));
    return false;
  },
);

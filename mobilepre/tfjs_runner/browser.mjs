// Runs a TF.js graph model in a real headless Chromium, through a web bundle's own page (index.html +
// loader.mjs), served from a local HTTP server on 127.0.0.1: batched inference, latency, peak memory.
//
// Usage: node browser.mjs REQUEST.json
// The request names Chromium's executable, the page folder, the model folder, a raw little-endian input
// file and where to write the outputs. Requests for TF.js on jsDelivr (what the page loads) are answered
// from this folder's node_modules; every other request off 127.0.0.1 is refused, so nothing leaves the
// machine. Puppeteer-core never downloads a browser. One JSON line on stdout; on failure, one JSON
// line {"error": "..."} and exit code 3.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const CDN = {
  'https://cdn.jsdelivr.net/npm/@tensorflow/tfjs@4.22.0/dist/': path.join(here, 'node_modules/@tensorflow/tfjs/dist'),
  'https://cdn.jsdelivr.net/npm/@tensorflow/tfjs-backend-wasm@4.22.0/dist/': path.join(here, 'node_modules/@tensorflow/tfjs-backend-wasm/dist'),
  'https://cdn.jsdelivr.net/npm/@tensorflow/tfjs-backend-webgpu@4.22.0/dist/': path.join(here, 'node_modules/@tensorflow/tfjs-backend-webgpu/dist'),
};
const TYPES = { '.html': 'text/html', '.mjs': 'text/javascript', '.js': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm', '.bin': 'application/octet-stream', '.png': 'image/png', '.jpg': 'image/jpeg' };

let browser;
async function fail(message) {
  process.stdout.write(JSON.stringify({ error: message }) + '\n');
  if (browser) await browser.close().catch(() => {});
  process.exit(3);
}

// A path under `root` for a URL path, or null when it would leave the folder.
function inside(root, relative) {
  const decoded = decodeURIComponent(relative);
  if (decoded.split('/').includes('..')) return null;
  const resolved = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  return resolved.startsWith(path.resolve(root) + path.sep) ? resolved : null;
}

function serve(req) {
  // LiteRT.js (its ES modules and wasm/ folder) beside the page, from this folder's node_modules
  // (a bundle serves its own: the first route that has the file answers)
  const routes = [['/page/', req.page_dir], ['/model/', req.model_dir],
    ['/page/runtime/litertjs/core/', path.join(here, 'node_modules/@litertjs/core/dist')],
    ['/page/runtime/litertjs/wasm-utils/', path.join(here, 'node_modules/@litertjs/wasm-utils/dist')],
    ['/page/runtime/litertjs/wasm/', path.join(here, 'node_modules/@litertjs/core/wasm')]];
  let output = null;
  const fromRunner = new Set(); // files a page needed that its own folder lacks (a bundle needs none)
  const server = http.createServer((request, response) => {
    const url = new URL(request.url, 'http://127.0.0.1');
    if (request.method === 'POST' && url.pathname === '/output') {
      const parts = [];
      request.on('data', (c) => parts.push(c));
      request.on('end', () => { output = Buffer.concat(parts); response.end('ok'); });
      return;
    }
    let file = null;
    if (url.pathname === '/input.bin' && req.input_path) file = req.input_path;
    for (const [prefix, root] of routes) {
      if (file || !root || !url.pathname.startsWith(prefix)) continue;
      const found = inside(root, url.pathname.slice(prefix.length));
      if (found && fs.existsSync(found) && fs.statSync(found).isFile()) {
        file = found;
        if (prefix.startsWith('/page/runtime/')) fromRunner.add(url.pathname.slice('/page/'.length));
      }
    }
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      response.writeHead(404).end('not found');
      return;
    }
    // cross-origin isolated (every file is same-origin): performance.now() then counts in 5 us steps,
    // not 100 us, so a page's timings of a 1 ms model resolve what its latency interval needs
    response.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' });
    fs.createReadStream(file).pipe(response);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port, output: () => output,
    fromRunner: () => [...fromRunner].sort() })));
}

async function main() {
  if (process.argv.length !== 3) await fail('usage: node browser.mjs REQUEST.json');
  const req = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const { server, port, output, fromRunner } = await serve(req);
  const origin = `http://127.0.0.1:${port}`;
  try {
    browser = await puppeteer.launch({
      executablePath: req.chromium,
      headless: true,
      userDataDir: req.profile_dir,
      args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--disable-quic', '--disable-dev-shm-usage', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
        // WebGPU on SwiftShader (a CPU implementation) where the machine has no GPU: headless Chromium exposes it with these
        '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'],
    });
  } catch (e) {
    await fail(`Chromium (${req.chromium}) did not start: ${e.message.split('\n')[0]}`);
  }
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.setRequestInterception(true);
  page.on('request', (r) => {
    const url = r.url();
    if (url.startsWith(origin + '/')) return r.continue();
    for (const [prefix, folder] of Object.entries(CDN)) {
      if (url.startsWith(prefix)) {
        const file = inside(folder, url.slice(prefix.length));
        if (file && fs.existsSync(file)) {
          return r.respond({ status: 200, contentType: TYPES[path.extname(file)] || 'application/octet-stream',
            headers: { 'Access-Control-Allow-Origin': '*' }, body: fs.readFileSync(file) });
        }
      }
    }
    problems.push(`refused a request off this machine: ${url}`);
    return r.abort();
  });
  const query = new URLSearchParams({ backend: req.backend || 'wasm' });
  if (req.model_url) query.set('model', req.model_url);
  await page.goto(`${origin}/page/${req.page || 'index.html'}?${query}`, { waitUntil: 'load' });
  const loaded = await page.evaluate(async () => {
    try {
      const b = await window.mobilepre.ready;
      return { backend: b.backend, classNames: b.classNames, dtype: b.dtype };
    } catch (e) {
      return { error: e.message };
    }
  }).catch((e) => ({ error: e.message }));
  if (!loaded || loaded.error) await fail(`the page could not load the model: ${(loaded && loaded.error) || 'no window.mobilepre'}${problems.length ? ' (' + problems[0] + ')' : ''}`);
  const answer = { backend: loaded.backend, class_names: loaded.classNames, user_agent: await browser.version() };

  if (req.runoff) {
    // A run-off: the page's LiteRT.js loader loads every model, then times them on one image in
    // interleaved rounds (a block of about block_ms each, the order turned every round), so a load that
    // comes and goes meets them all alike. Per model, the median of each round's block.
    const result = await page.evaluate(async (r) => {
      const loader = await import('/page/loader.mjs');
      const bytes = await (await fetch('/input.bin')).arrayBuffer();
      const bundles = [];
      for (const url of r.runoff.model_urls) bundles.push(await loader.loadBundle(url, r.backend));
      const values = (b) => (b.dtype === 'uint8' ? new Uint8Array(bytes) : new Float32Array(bytes));
      const time = async (b, runs) => (await loader.runBatch(b, values(b), r.input_shape, null, runs, 0)).latencyMs.median;
      const runs = [];
      for (const b of bundles) {
        const warm = await time(b, r.warmup_runs);
        runs.push(Math.min(r.runoff.max_runs, Math.max(r.runoff.min_runs, Math.floor(r.runoff.block_ms / Math.max(warm, 1e-3)))));
      }
      const medians = bundles.map(() => []);
      for (let round = 0; round < r.runoff.rounds; round++) {
        const order = bundles.map((_, k) => k);
        if (round % 2) order.reverse();
        for (const k of order) medians[k].push(await time(bundles[k], runs[k]));
      }
      return { medians, runs };
    }, req).catch((e) => ({ error: e.message }));
    if (result.error) await fail(`the run-off failed in Chromium: ${result.error}`);
    answer.runoff_ms = result.medians;
    answer.runoff_runs = result.runs;
  } else if (req.input_path) {
    const result = await page.evaluate(async (r) => {
      const bundle = await window.mobilepre.ready;
      const bytes = await (await fetch('/input.bin')).arrayBuffer();
      const Typed = { float32: Float32Array, uint8: Uint8Array, int32: Int32Array }[r.input_dtype];
      const out = await window.mobilepre.runBatch(bundle, new Typed(bytes), r.input_shape, r.output_names, r.latency_runs, r.warmup_runs, r.batch_size);
      const total = out.outputs.reduce((n, a) => n + a.length, 0);
      const flat = new Float32Array(total);
      let offset = 0;
      for (const a of out.outputs) { flat.set(a, offset); offset += a.length; }
      await fetch('/output', { method: 'POST', body: flat.buffer });
      return { outputShapes: out.outputShapes, inferenceSeconds: out.inferenceSeconds, latencyMs: out.latencyMs, peakMemoryBytes: out.peakMemoryBytes,
        repeatDifference: out.repeatDifference };
    }, req).catch((e) => ({ error: e.message }));
    if (result.error) await fail(`the model failed in Chromium: ${result.error}`);
    fs.writeFileSync(req.output_path, output());
    answer.output_shapes = result.outputShapes;
    answer.inference_seconds = result.inferenceSeconds;
    answer.latency_ms = result.latencyMs;
    answer.peak_memory_bytes = result.peakMemoryBytes;
    answer.repeat_difference = result.repeatDifference;
  }

  if (req.upload) {
    // The page as a person uses it: choose an image file, read what it shows for each output.
    const input = await page.$('#file');
    await input.uploadFile(req.upload);
    await page.waitForFunction(() => document.querySelectorAll('#outputs section').length > 0, { timeout: 30000 });
    answer.shown = await page.$$eval('#outputs section', (sections) => sections.map((s) => ({
      name: s.dataset.name,
      kind: s.dataset.kind,
      items: Array.from(s.querySelectorAll('li'), (li) => ({ index: Number(li.dataset.index), text: li.textContent })),
      text: s.textContent,
    })));
    answer.drawn = await page.$$eval('#stage canvas, #stage .box', (drawn) => drawn.map((e) => ({ what: e.className, ...e.dataset })));
    answer.shown_latency = await page.$eval('#latency', (p) => p.textContent);
  }
  answer.page_errors = problems;
  answer.runtime_from_runner = fromRunner();
  await browser.close();
  server.close();
  process.stdout.write(JSON.stringify(answer) + '\n');
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));

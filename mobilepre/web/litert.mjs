// Runs a .tflite model in the browser with LiteRT.js (@litertjs/core): the runtime mobilepre validates
// and times the file in, with the API of loader.mjs's runBatch. LiteRT.js takes static shapes only
// (every mobilepre .tflite has a batch of 1) and float32 or uint8 inputs (no int8 or int16 tensors).
//
// The page needs an import map resolving '@litertjs/core' and '@litertjs/wasm-utils' (dist/index.js of
// each package) and the package's wasm/ folder served at LITERT_WASM.
import { loadLiteRt, loadAndCompile, Tensor } from '@litertjs/core';

export const LITERT_WASM = new URL('./litertjs/core/wasm/', import.meta.url).href;

// Load the model at `modelUrl` on `accelerator` ('wasm' or 'webgpu').
export async function loadBundle(modelUrl, accelerator = 'wasm') {
  await loadLiteRt(LITERT_WASM);
  const model = await loadAndCompile(modelUrl, { accelerator });
  const input = model.getInputDetails()[0];
  return { model, backend: accelerator, classNames: [], dtype: input.dtype, input: input.name, shape: Array.from(input.shape) };
}

// `values`: N images of `shape` [N, H, W, C]; each output (by signature name, in `outputNames` order)
// as float32 rows of its raw values (an integer output is dequantized by the caller), the shapes, the
// inference seconds and the median and p90 of `latencyRuns` single-image runs.
export async function runBatch(bundle, values, shape, outputNames = null, latencyRuns = 0, warmupRuns = 5) {
  const [n, ...rest] = shape;
  const per = rest.reduce((a, b) => a * b, 1);
  const run = async (i) => {
    const x = new Tensor(values.slice(i * per, (i + 1) * per), [1, ...rest]);
    const ys = await bundle.model.run({ [bundle.input]: x });
    x.delete();
    return ys;
  };
  const names = outputNames || Object.keys(await run(0)).sort();
  const rows = names.map(() => []);
  let outShapes = null;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const ys = await run(i);
    names.forEach((name, k) => rows[k].push(Float32Array.from(ys[name].toTypedArray())));
    outShapes = outShapes || names.map((name) => Array.from(ys[name].type.layout.dimensions));
    Object.values(ys).forEach((y) => y.delete());
  }
  const inferenceSeconds = (performance.now() - t0) / 1000;
  const times = [];
  for (let i = 0; i < (latencyRuns ? warmupRuns + latencyRuns : 0); i++) {
    const s = performance.now();
    Object.values(await run(0)).forEach((y) => y.delete());
    if (i >= warmupRuns) times.push(performance.now() - s);
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.max(0, Math.ceil(q * times.length) - 1))];
  const outputs = rows.map((r) => {
    const flat = new Float32Array(r.reduce((a, b) => a + b.length, 0));
    let offset = 0;
    for (const part of r) { flat.set(part, offset); offset += part.length; }
    return flat;
  });
  return {
    outputs,
    outputShapes: (outShapes || []).map((s) => [n, ...s.slice(1)]),
    inferenceSeconds,
    latencyMs: latencyRuns ? { median: at(0.5), p90: at(0.9), runs: times.length } : null,
    peakMemoryBytes: null,
    backend: bundle.backend,
  };
}

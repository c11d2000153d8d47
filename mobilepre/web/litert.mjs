// mobilepre's loader for a LiteRT.js web bundle: runs the bundle's .tflite (the same bytes a mobile app
// ships) in the browser with LiteRT.js 2.5.3, with the API of the TF.js bundle's loader.mjs.
//
// The bundle serves LiteRT.js itself: index.html's import map resolves '@litertjs/core' and
// '@litertjs/wasm-utils' to runtime/litertjs/, whose wasm/ folder holds the builds LiteRT.js picks from.
// litertjs/contract.json (written by `mobilepre build`) holds the input (dtype, shape, colour space,
// normalisation), each output's name and kind, the class names and the quantization of integer tensors.
// LiteRT.js takes static shapes only (every mobilepre .tflite has a batch of 1) and float32 or uint8
// inputs (no int8 or int16 tensors).
//
//   const bundle = await loadBundle();                              // litertjs/model.tflite, WebGPU or wasm
//   const { outputs, ms } = await describe(bundle, imageElement);  // every output, named, with its kind
//   const { top } = await classify(bundle, imageElement);          // a classifier: [{index, name, score}, ...]
import { loadLiteRt, loadAndCompile, isWebGPUSupported, Tensor } from '@litertjs/core';
import { checkedBackends, largestDifference, pickBackend, signatureKeys, ranked } from './outputs.mjs';

export { ranked };
export const LITERTJS_VERSION = '2.5.3';
export const LITERT_WASM = new URL('./runtime/litertjs/wasm/', import.meta.url).href;

let runtime = null;

// LiteRT.js loads one wasm build per page: WebGPU with an integer input needs its JSPI build
async function compile(modelUrl, accelerator, jspi) {
  runtime = runtime || loadLiteRt(LITERT_WASM, jspi ? { jspi: true } : undefined);
  await runtime;
  return loadAndCompile(modelUrl, { accelerator });
}

// Load the model on `backend` ('wasm' or 'webgpu'; default WebGPU where the browser has it and the
// model takes float input, else wasm). An explicit backend that cannot run the model throws.
export async function loadBundle(modelUrl = './litertjs/model.tflite', backend = undefined) {
  const url = new URL(modelUrl, location.href);
  const found = await fetch(new URL('contract.json', url));
  const contract = found.ok ? ((await found.json()).mobilepre || {}) : {};
  // WebGPU with an integer input runs in LiteRT.js's JSPI build (browsers with JS Promise Integration)
  const jspi = ((contract.quantization || {}).input_dtype || 'float32') !== 'float32';
  const canGpu = isWebGPUSupported() && (!jspi || typeof WebAssembly.Suspending === 'function');
  let accelerator = pickBackend(await checkedBackends(url.href), backend, canGpu ? 'webgpu' : 'wasm');
  let model;
  let fellBack = null;
  try {
    model = await compile(url.href, accelerator, jspi && accelerator === 'webgpu');
  } catch (error) {
    if (backend || runtime === null) throw new Error(`LiteRT.js could not run the model on ${accelerator}: ${error.message}`);
    fellBack = `${accelerator}: ${error.message}`;
    accelerator = 'wasm';
    model = await compile(url.href, accelerator, jspi);
  }
  const details = model.getInputDetails()[0];
  const input = contract.input || {};
  const shape = Array.from(details.shape);
  const described = contract.outputs || [];
  const keys = signatureKeys(described.map((o) => o.name));
  const names = new Set(model.getOutputDetails().map((d) => d.name));
  const outputs = described.map((o, i) => ({ name: o.name, kind: o.kind, node: keys[i] }));
  return {
    model,
    contract,
    backend: accelerator,
    fellBack,
    input: details.name,
    height: shape[1],
    width: shape[2],
    channels: shape[3],
    shape,
    dtype: details.dtype,
    normalization: input.normalization || null,
    quantization: contract.quantization || {},
    classNames: contract.class_names || [],
    outputs: outputs.every((o) => names.has(o.node)) ? outputs : [],
    kind: (described[0] && described[0].kind) || 'probabilities',
  };
}

// One image (img, canvas, video or ImageData) as the model takes it: drawn at the model's size, in its
// dtype and units (a uint8 input quantized with its own scale and zero point).
export function toInput(bundle, source) {
  const canvas = document.createElement('canvas');
  canvas.width = bundle.width;
  canvas.height = bundle.height;
  const context = canvas.getContext('2d');
  if (typeof ImageData !== 'undefined' && source instanceof ImageData) {
    const own = document.createElement('canvas');
    own.width = source.width;
    own.height = source.height;
    own.getContext('2d').putImageData(source, 0, 0);
    source = own;
  }
  context.drawImage(source, 0, 0, bundle.width, bundle.height);
  const rgba = context.getImageData(0, 0, bundle.width, bundle.height).data;
  const c = bundle.channels;
  const n = bundle.width * bundle.height;
  const pixel = (p, k) => (c === 1 ? Math.round(0.299 * rgba[4 * p] + 0.587 * rgba[4 * p + 1] + 0.114 * rgba[4 * p + 2]) : rgba[4 * p + k]);
  const norm = bundle.normalization;
  const [scale, zero] = bundle.quantization.input || [1, 0];
  const values = bundle.dtype === 'uint8' ? new Uint8Array(n * c) : new Float32Array(n * c);
  for (let p = 0; p < n; p++) {
    for (let k = 0; k < c; k++) {
      let v = pixel(p, k);
      if (norm) v = (v - (Array.isArray(norm.mean) ? norm.mean[k] : norm.mean)) / (Array.isArray(norm.std) ? norm.std[k] : norm.std);
      values[p * c + k] = bundle.dtype === 'uint8' ? Math.min(255, Math.max(0, Math.round(v / scale + zero))) : v;
    }
  }
  return values;
}

// The outputs of one image's values, by signature key, as float32 (an integer output dequantized).
async function runOne(bundle, values, keys) {
  const x = new Tensor(values, bundle.shape);
  const ys = await bundle.model.run({ [bundle.input]: x });
  x.delete();
  const names = keys || Object.keys(ys).sort();
  const out = [];
  for (const name of names) {
    const raw = await ys[name].data();
    const q = (bundle.quantization.outputs || {})[name];
    out.push(q ? Float32Array.from(raw, (v) => q[0] * (v - q[1])) : Float32Array.from(raw));
  }
  const shapes = names.map((name) => Array.from(ys[name].type.layout.dimensions));
  Object.values(ys).forEach((y) => y.delete());
  return { names, values: out, shapes };
}

// Every output of one image: [{name, kind, shape, values}] in the Keras model's order (values a
// Float32Array, batch of one), and the inference time in ms (run to values on the CPU).
export async function describe(bundle, source) {
  const values = toInput(bundle, source);
  const keys = bundle.outputs.length ? bundle.outputs.map((o) => o.node) : null;
  const t0 = performance.now();
  const y = await runOne(bundle, values, keys);
  const ms = performance.now() - t0;
  const outputs = y.values.map((v, i) => ({
    name: bundle.outputs[i] ? bundle.outputs[i].name : y.names[i],
    kind: bundle.outputs[i] ? bundle.outputs[i].kind : bundle.kind,
    shape: y.shapes[i],
    values: v,
  }));
  return { outputs, ms };
}

// The `top` classes of one image (its first output) and the inference time in ms.
export async function classify(bundle, source, top = 3) {
  const { outputs, ms } = await describe(bundle, source);
  return { top: ranked(bundle, outputs[0], top), ms };
}

// Raw values in, raw outputs out (used by `mobilepre validate` and the tests), as the TF.js loader's
// runBatch: `values` a typed array of N images of `shape` [N, H, W, C], the model's own dtype (a uint8
// model's values are its quantized input); every output as float32 rows in `outputNames` order
// (signature keys; integer outputs stay raw: the caller dequantizes), the shapes, the inference seconds,
// the median and p90 of `latencyRuns` single-image runs, and how far the first images' outputs moved
// when run a second and a third time.
export async function runBatch(bundle, values, shape, outputNames = null, latencyRuns = 0, warmupRuns = 5) {
  const [n, ...rest] = shape;
  const per = rest.reduce((a, b) => a * b, 1);
  const Typed = bundle.dtype === 'uint8' ? Uint8Array : Float32Array;
  const raw = { ...bundle, quantization: {} };
  const image = (i) => Typed.from(values.subarray(i * per, (i + 1) * per));
  let names = outputNames;
  const rows = [];
  let outShapes = null;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const y = await runOne(raw, image(i), names);
    names = y.names;
    rows.push(y.values);
    outShapes = outShapes || y.shapes;
  }
  const inferenceSeconds = (performance.now() - t0) / 1000;
  let repeatDifference = 0;
  for (let again = 0; again < 2; again++) {
    for (let i = 0; i < Math.min(n, 3); i++) {
      repeatDifference = Math.max(repeatDifference, largestDifference(rows[i], (await runOne(raw, image(i), names)).values));
    }
  }
  const times = [];
  for (let i = 0; i < (latencyRuns ? warmupRuns + latencyRuns : 0); i++) {
    const s = performance.now();
    await runOne(raw, image(0), names);
    if (i >= warmupRuns) times.push(performance.now() - s);
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.max(0, Math.ceil(q * times.length) - 1))];
  const outputs = (names || []).map((_, k) => {
    const flat = new Float32Array(rows.reduce((a, r) => a + r[k].length, 0));
    let offset = 0;
    for (const r of rows) { flat.set(r[k], offset); offset += r[k].length; }
    return flat;
  });
  return {
    outputs,
    outputShapes: (outShapes || []).map((s) => [n, ...s.slice(1)]),
    inferenceSeconds,
    latencyMs: latencyRuns ? { median: at(0.5), p90: at(0.9), runs: times.length, samples: times } : null,
    peakMemoryBytes: null,
    repeatDifference,
    backend: bundle.backend,
  };
}

// mobilepre's loader for a web bundle: loads the bundle's TF.js model and runs images through it.
//
// Copy index.html and this file next to the bundle's tfjs/ folder and serve the folder over HTTP(S).
// It needs the global `tf` of TF.js 4.22 (index.html loads it) and reads everything else from the model:
// model.json's userDefinedMetadata.mobilepre holds the input (dtype, shape, colour space, normalisation),
// each output's name and kind and the class names, written by `mobilepre build`.
//
//   const bundle = await loadBundle('./tfjs/model.json', 'webgl');
//   const { outputs, ms } = await describe(bundle, imageElement);  // every output, named, with its kind
//   const { top } = await classify(bundle, imageElement);          // a classifier: [{index, name, score}, ...]

import { checkedBackends, largestDifference, pickBackend, signatureKeys, ranked } from './outputs.mjs';

export { ranked };
const tf = globalThis.tf;
export const TFJS_VERSION = '4.22.0';
export const WASM_PATH = `https://cdn.jsdelivr.net/npm/@tensorflow/tfjs-backend-wasm@${TFJS_VERSION}/dist/`;
// TF.js's WebGPU backend is a separate script, loaded only when asked for (most pages never need it).
export const WEBGPU_URL = `https://cdn.jsdelivr.net/npm/@tensorflow/tfjs-backend-webgpu@${TFJS_VERSION}/dist/tf-backend-webgpu.min.js`;

function loadScript(url) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = url;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${url}`));
    document.head.append(script);
  });
}

// Load the model on `asked` ('webgl', 'wasm', 'webgpu' or 'cpu'; default webgl, or the first backend the
// bundle's manifest says it runs right on); throws when the browser has no such backend.
export async function loadBundle(modelUrl = './tfjs/model.json', asked = undefined) {
  if (!tf) throw new Error('TF.js is not loaded: include tf.min.js (and tf-backend-wasm.min.js for wasm) before this module');
  const backend = pickBackend(await checkedBackends(modelUrl), asked, 'webgl');
  if (backend === 'wasm') tf.wasm.setWasmPaths(WASM_PATH);
  if (backend === 'webgpu' && !tf.findBackendFactory('webgpu')) {
    if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu): use ?backend=webgl or wasm');
    await loadScript(WEBGPU_URL);
  }
  if (!(await tf.setBackend(backend))) throw new Error(`the TF.js ${backend} backend is not available in this browser`);
  await tf.ready();
  const model = await tf.loadGraphModel(modelUrl);
  const contract = (model.metadata && model.metadata.mobilepre) || {};
  const input = contract.input || {};
  const shape = input.shape || model.inputs[0].shape;
  // each output by name, in the Keras model's order, with the graph node model.execute reads it from
  const described = contract.outputs || [];
  const signature = (model.signature && model.signature.outputs) || {};
  const keys = signatureKeys(described.map((o) => o.name));
  const outputs = described.map((o, i) => ({ name: o.name, kind: o.kind, node: signature[keys[i]] && signature[keys[i]].name }));
  return {
    model,
    contract,
    backend: tf.getBackend(),
    height: shape[1],
    width: shape[2],
    channels: shape[3],
    dtype: input.dtype || model.inputs[0].dtype,
    normalization: input.normalization || null,
    classNames: contract.class_names || [],
    outputs: outputs.every((o) => o.node) ? outputs : [],
    kind: (described[0] && described[0].kind) || 'probabilities',
  };
}

// One image (img, canvas, video or ImageData) as the model takes it: resized, in its dtype and units.
export function toInput(bundle, source) {
  // an <img> is read at its own size, not the size CSS shows it at (fromPixels reads an image's layout size)
  if (typeof HTMLImageElement !== 'undefined' && source instanceof HTMLImageElement) {
    const canvas = document.createElement('canvas');
    canvas.width = source.naturalWidth;
    canvas.height = source.naturalHeight;
    canvas.getContext('2d').drawImage(source, 0, 0);
    source = canvas;
  }
  return tf.tidy(() => {
    let x = tf.browser.fromPixels(source, bundle.channels === 1 ? 1 : 3);
    if (x.shape[0] !== bundle.height || x.shape[1] !== bundle.width) {
      x = tf.image.resizeBilinear(x, [bundle.height, bundle.width]).round().clipByValue(0, 255);
    }
    if (bundle.dtype === 'float32') {
      x = x.toFloat();
      if (bundle.normalization) x = x.sub(bundle.normalization.mean).div(bundle.normalization.std);
    } else {
      x = x.toInt(); // TF.js has no uint8 tensor: raw pixels 0..255 go in as int32, which the graph casts
    }
    return x.expandDims(0);
  });
}

// Every output of one image: [{name, kind, shape, values}] in the Keras model's order (values a
// Float32Array, batch of one), and the inference time in ms (model.execute to values on the CPU).
export async function describe(bundle, source) {
  const x = toInput(bundle, source);
  const nodes = bundle.outputs.length ? bundle.outputs.map((o) => o.node) : undefined;
  const t0 = performance.now();
  let ys = bundle.model.execute(x, nodes);
  ys = Array.isArray(ys) ? ys : [ys];
  const values = await Promise.all(ys.map((t) => t.data()));
  const ms = performance.now() - t0;
  const outputs = ys.map((t, i) => ({
    name: bundle.outputs[i] ? bundle.outputs[i].name : `output_${i}`,
    kind: bundle.outputs[i] ? bundle.outputs[i].kind : bundle.kind,
    shape: t.shape,
    values: Float32Array.from(values[i]),
  }));
  tf.dispose([x, ...ys]);
  return { outputs, ms };
}

// The `top` classes of one image (its first output) and the inference time in ms.
export async function classify(bundle, source, top = 3) {
  const { outputs, ms } = await describe(bundle, source);
  return { top: ranked(bundle, outputs[0], top), ms };
}

// Raw pixels in, raw outputs out (used by `mobilepre validate --runtime chromium` and the tests):
// `values` a typed array of N images of `shape` [N, H, W, C]; returns every output as float32 rows,
// the shapes, the inference seconds, the median and p90 of `latencyRuns` single-image runs, the
// peak tensor bytes of one inference and how far the first batch's outputs moved when run twice more.
export async function runBatch(bundle, values, shape, outputNames = null, latencyRuns = 0, warmupRuns = 5, batch = 64) {
  const [n, ...rest] = shape;
  const dtype = bundle.dtype === 'float32' ? 'float32' : 'int32';
  const per = rest.reduce((a, b) => a * b, 1);
  // one tensor per batch: the whole set never sits in the backend's memory
  const batchTensor = (start, size) => {
    const part = values.subarray(start * per, (start + size) * per);
    return tf.tensor(dtype === 'float32' ? Float32Array.from(part) : Int32Array.from(part), [size, ...rest], dtype);
  };
  const run = (x) => {
    const y = bundle.model.execute(x, outputNames || undefined);
    return Array.isArray(y) ? y : [y];
  };
  const one = tf.zeros([1, ...rest], dtype);
  const profile = await tf.profile(async () => {
    const ys = run(one);
    await Promise.all(ys.map((t) => t.data()));
    tf.dispose(ys);
  });
  const chunks = [];
  const t0 = performance.now();
  for (let start = 0; start < n; start += batch) {
    const size = Math.min(batch, n - start);
    const x = batchTensor(start, size);
    const ys = run(x);
    chunks.push(await Promise.all(ys.map(async (t) => ({ shape: t.shape, data: await t.data() }))));
    tf.dispose([x, ...ys]);
  }
  const inferenceSeconds = (performance.now() - t0) / 1000;
  // the first batch a second and a third time: a runtime whose later answers differ from its first is refused
  let repeatDifference = 0;
  for (let again = 0; again < 2 && chunks.length; again++) {
    const x = batchTensor(0, Math.min(batch, n));
    const ys = run(x);
    const values = await Promise.all(ys.map((t) => t.data()));
    tf.dispose([x, ...ys]);
    repeatDifference = Math.max(repeatDifference, largestDifference(chunks[0].map((c) => c.data), values));
  }
  const outputShapes = [];
  const parts = [];
  for (let k = 0; k < (chunks[0] || []).length; k++) {
    let rows = 0;
    for (const c of chunks) {
      parts.push(Float32Array.from(c[k].data));
      rows += c[k].shape[0];
    }
    outputShapes.push([rows, ...chunks[0][k].shape.slice(1)]);
  }
  const times = [];
  if (latencyRuns) {
    const once = async () => {
      const ys = run(one);
      await Promise.all(ys.map((t) => t.data()));
      tf.dispose(ys);
    };
    for (let i = 0; i < warmupRuns; i++) await once();
    for (let i = 0; i < latencyRuns; i++) {
      const s = performance.now();
      await once();
      times.push(performance.now() - s);
    }
    times.sort((a, b) => a - b);
  }
  one.dispose();
  const at = (q) => times[Math.min(times.length - 1, Math.max(0, Math.ceil(q * times.length) - 1))];
  return {
    outputs: parts,
    outputShapes,
    inferenceSeconds,
    latencyMs: latencyRuns ? { median: at(0.5), p90: at(0.9), runs: times.length, samples: times } : null,
    peakMemoryBytes: profile.peakBytes,
    repeatDifference,
    backend: tf.getBackend(),
  };
}

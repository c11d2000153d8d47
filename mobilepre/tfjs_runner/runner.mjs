// Runs one TF.js graph model in Node.js on the wasm backend: batched inference and latency.
//
// Usage: node runner.mjs REQUEST.json
// The request names the model folder, a raw little-endian input file and where to write the outputs.
// It answers with one JSON line on stdout; on failure, one JSON line {"error": "..."} and exit code 3.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

const here = path.dirname(fileURLToPath(import.meta.url));

function fail(message) {
  process.stdout.write(JSON.stringify({ error: message }) + '\n');
  process.exit(3);
}

// Resolve a weight path from model.json strictly inside the model folder: TF.js itself does not guard
// against "../" or absolute paths in weightsManifest.
function insideFolder(folder, relative) {
  if (path.isAbsolute(relative) || relative.split(/[\\/]/).includes('..')) {
    fail(`weight path ${JSON.stringify(relative)} in model.json leaves the model folder`);
  }
  const resolved = path.resolve(folder, relative);
  const root = path.resolve(folder) + path.sep;
  if (!resolved.startsWith(root)) {
    fail(`weight path ${JSON.stringify(relative)} in model.json leaves the model folder`);
  }
  return resolved;
}

function fileHandler(folder) {
  return {
    async load() {
      const modelJson = JSON.parse(fs.readFileSync(path.join(folder, 'model.json'), 'utf8'));
      const weightSpecs = [];
      const buffers = [];
      for (const group of modelJson.weightsManifest || []) {
        weightSpecs.push(...group.weights);
        for (const p of group.paths) {
          const bytes = fs.readFileSync(insideFolder(folder, p));
          buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
        }
      }
      const total = buffers.reduce((n, b) => n + b.byteLength, 0);
      const weightData = new Uint8Array(total);
      let offset = 0;
      for (const b of buffers) {
        weightData.set(new Uint8Array(b), offset);
        offset += b.byteLength;
      }
      return {
        modelTopology: modelJson.modelTopology,
        format: modelJson.format,
        generatedBy: modelJson.generatedBy,
        convertedBy: modelJson.convertedBy,
        signature: modelJson.signature,
        userDefinedMetadata: modelJson.userDefinedMetadata,
        modelInitializer: modelJson.modelInitializer,
        weightSpecs,
        weightData: weightData.buffer,
      };
    },
  };
}

const typed = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array };

function readInput(file, dtype) {
  const Ctor = typed[dtype];
  if (!Ctor) fail(`input dtype ${dtype} is not supported by the runner`);
  const bytes = fs.readFileSync(file);
  return new Ctor(bytes.buffer, bytes.byteOffset, bytes.byteLength / Ctor.BYTES_PER_ELEMENT);
}

// One batch of `values` as a tensor. TF.js has no int8/uint8 tensors: uint8 pixels go in as int32,
// which the graph casts.
function batchTensor(values, offset, length, shape, dtype) {
  const part = values.subarray(offset, offset + length);
  return dtype === 'float32' ? tf.tensor(Float32Array.from(part), shape, 'float32') : tf.tensor(Int32Array.from(part), shape, 'int32');
}

function percentile(sorted, q) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

async function main() {
  if (process.argv.length !== 3) fail('usage: node runner.mjs REQUEST.json');
  const req = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  setWasmPaths(path.join(here, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist') + path.sep);
  if (!(await tf.setBackend('wasm'))) fail('the TF.js wasm backend did not initialise');
  await tf.ready();

  let model;
  try {
    model = await tf.loadGraphModel(fileHandler(req.model_dir));
  } catch (e) {
    fail(`TF.js could not load ${req.model_dir}: ${e.message}`);
  }
  const inputs = model.inputs.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype }));
  const outputs = model.outputs.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype }));
  const answer = { backend: tf.getBackend(), inputs, outputs };

  if (req.input_shape) {
    // Peak tensor bytes of one inference, the weights included (tf.profile: the largest total after
    // any kernel); the wasm heap holds exactly these tensors.
    const one = tf.zeros([1, ...req.input_shape.slice(1)], req.input_dtype === 'float32' ? 'float32' : 'int32');
    const info = await tf.profile(async () => {
      const y = model.execute(one, req.output_names || undefined);
      const ys = Array.isArray(y) ? y : [y];
      await Promise.all(ys.map((t) => t.data()));
      tf.dispose(ys);
    });
    one.dispose();
    answer.peak_memory_bytes = info.peakBytes;
  }

  if (req.input_path) {
    const batch = req.batch_size || 64;
    const [n, ...rest] = req.input_shape;
    // Each batch becomes a tensor of its own: the whole set never sits in the wasm heap (which made
    // the cost per image grow with the set's size).
    const values = readInput(req.input_path, req.input_dtype);
    const per = rest.reduce((a, b) => a * b, 1);
    const chunks = [];
    const t0 = performance.now();
    for (let start = 0; start < n; start += batch) {
      const size = Math.min(batch, n - start);
      const x = batchTensor(values, start * per, size * per, [size, ...rest], req.input_dtype);
      const y = model.execute(x, req.output_names || undefined);
      const ys = Array.isArray(y) ? y : [y];
      chunks.push(await Promise.all(ys.map(async (t) => ({ shape: t.shape, data: await t.data() }))));
      tf.dispose([x, ...ys]);
    }
    answer.inference_seconds = (performance.now() - t0) / 1000;
    // Outputs are written output by output, each as float32 rows of all batches in order.
    const fd = fs.openSync(req.output_path, 'w');
    answer.output_shapes = [];
    for (let k = 0; k < (chunks[0] || []).length; k++) {
      let rows = 0;
      for (const c of chunks) {
        const data = Float32Array.from(c[k].data);
        fs.writeSync(fd, Buffer.from(data.buffer));
        rows += c[k].shape[0];
      }
      answer.output_shapes.push([rows, ...chunks[0][k].shape.slice(1)]);
    }
    fs.closeSync(fd);
  }

  if (req.latency_runs) {
    const shape = [1, ...req.input_shape.slice(1)];
    const x = req.input_dtype === 'float32' ? tf.zeros(shape, 'float32') : tf.zeros(shape, 'int32');
    const once = async () => {
      const y = model.execute(x, req.output_names || undefined);
      const ys = Array.isArray(y) ? y : [y];
      await Promise.all(ys.map((t) => t.data()));
      tf.dispose(ys);
    };
    for (let i = 0; i < (req.warmup_runs ?? 5); i++) await once();
    const times = [];
    for (let i = 0; i < req.latency_runs; i++) {
      const t0 = performance.now();
      await once();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    answer.latency_ms = { median: percentile(times, 0.5), p90: percentile(times, 0.9), runs: times.length, samples: times };
    x.dispose();
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));

// What both of mobilepre's loaders (TF.js: loader.mjs, LiteRT.js: loader.mjs of a LiteRT.js bundle) read
// the same way: the outputs' signature keys, ranked class scores, and the repeated-inference check.

// The serving signature's key of each output (what `mobilepre build` exports): the Keras output names
// when they are unique plain identifiers, else output_0, output_1, ...
export function signatureKeys(names) {
  const plain = names.every((n) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(n)) && new Set(names).size === names.length;
  return plain ? names : names.map((_, i) => `output_${i}`);
}

// Class scores as probabilities (a `logits` output through softmax), ranked: the `top` of them.
export function ranked(bundle, output, top = 3) {
  let scores = output.values;
  if (output.kind === 'logits') {
    const max = Math.max(...scores);
    const exps = Array.from(scores, (v) => Math.exp(v - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    scores = exps.map((v) => v / sum);
  }
  const order = Array.from(scores, (score, index) => ({ index, name: bundle.classNames[index] ?? String(index), score }));
  order.sort((a, b) => b.score - a.score);
  return order.slice(0, top);
}

// The largest difference between the outputs of the same images run again (`again`, float32 rows per
// output) and their first run (`first`): 0 for a runtime that gives the same answer every time.
export function largestDifference(first, again) {
  let largest = 0;
  first.forEach((rows, k) => {
    for (let i = 0; i < rows.length; i++) {
      const a = rows[i];
      const b = again[k][i];
      const nan = Number.isNaN(a) + Number.isNaN(b);
      largest = Math.max(largest, nan === 2 ? 0 : nan === 1 ? Infinity : Math.abs(a - b));
    }
  });
  return largest;
}

// The backends the bundle's manifest says this model runs right on ({wasm: 'ok', webgpu: 'refused: ...'})
// when the build ran it on several (a profile's web_backends); null when it says nothing.
export async function checkedBackends(modelUrl) {
  try {
    const url = new URL(modelUrl, location.href);
    const found = await fetch(new URL('../manifest.json', url));
    if (!found.ok) return null;
    const manifest = await found.json();
    const path = url.pathname.split('/').slice(-2).join('/');
    const artifact = (manifest.artifacts || []).find((a) => a.path === path);
    return (artifact && artifact.runtime && artifact.runtime.backends) || null;
  } catch (e) {
    return null;
  }
}

// The backend to load on: `asked` when given (a refused one throws), else `preferred` unless the
// manifest refused it, else the first backend it says runs right.
export function pickBackend(checked, asked, preferred) {
  const ok = (b) => !checked || !(b in checked) || checked[b] === 'ok';
  if (asked) {
    if (!ok(asked)) throw new Error(`this model was refused on ${asked} when it was built (${checked[asked]})`);
    return asked;
  }
  if (ok(preferred)) return preferred;
  const first = Object.keys(checked).find((b) => checked[b] === 'ok');
  return first || preferred;
}

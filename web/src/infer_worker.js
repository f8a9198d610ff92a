// The effect model in a worker: onnxruntime-web (WASM with SIMD and threads, or WebGPU), so inference of frame n
// overlaps the main thread's detection of frame n+1. Messages: {type: 'load', url, backend, threads} ->
// {type: 'loaded', backend, threads} | {type: 'error', message}; {type: 'run', id, input (Float32Array), n, size}
// -> {type: 'result', id, output (Float32Array), ms, input} (buffers are transferred, not copied; the input comes
// back for reuse).

let ort = null, session = null, inputName = null, outputName = null, backendUsed = null;

async function importOrt(backend) {
  // The WASM-only bundle loads its 14 MB runtime instead of the 28 MB one that WebGPU needs.
  const file = backend === 'webgpu' ? 'ort.webgpu.min.mjs' : 'ort.wasm.min.mjs';
  const mod = await import(new URL(`../node_modules/onnxruntime-web/dist/${file}`, import.meta.url).href);
  mod.env.wasm.wasmPaths = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url).href;
  return mod;
}

async function load({url, backend, threads, input, output}) {
  if (!ort) {
    ort = await importOrt(backend);
    ort.env.wasm.numThreads = threads;  // once per worker, before the first session
    ort.env.wasm.simd = true;
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  session = await ort.InferenceSession.create(bytes, {
    executionProviders: backend === 'webgpu' ? ['webgpu', 'wasm'] : ['wasm'],
    graphOptimizationLevel: 'all',
  });
  inputName = session.inputNames.includes(input) ? input : session.inputNames[0];
  outputName = session.outputNames.includes(output) ? output : session.outputNames[0];
  backendUsed = backend;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const hash = [...digest].map(b => b.toString(16).padStart(2, '0')).join('');
  return {backend: backendUsed, threads: ort.env.wasm.numThreads, crossOriginIsolated: self.crossOriginIsolated, hash};
}

self.onmessage = async ({data}) => {
  try {
    if (data.type === 'load') {
      self.postMessage({type: 'loaded', ...(await load(data))});
    } else if (data.type === 'run') {
      const t0 = performance.now(), per = 3 * data.size * data.size;
      // The shipped models take a batch of one (fixed in the graph): one run per face, outputs side by side.
      const y = new Float32Array(data.n * per);
      for (let i = 0; i < data.n; i++) {
        const x = new ort.Tensor('float32', data.input.subarray(i * per, (i + 1) * per), [1, 3, data.size, data.size]);
        const out = (await session.run({[inputName]: x}))[outputName];
        y.set(out.data, i * per);
        out.dispose?.();
      }
      const ms = performance.now() - t0;
      self.postMessage({type: 'result', id: data.id, output: y, ms, input: data.input}, [y.buffer, data.input.buffer]);
    }
  } catch (err) {
    self.postMessage({type: 'error', id: data.id, message: String(err?.message ?? err).split('\n')[0]});
  }
};

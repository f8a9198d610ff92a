// The facefx web app: camera (front camera on phones), a picked video or image, or the bundled demo clip ->
// face effect -> canvas, with an effect picker, a before/after split, an FPS + per-stage overlay and a benchmark.
// URL parameters (all optional): effect, precision (int8|fp32), backend (auto|wasm|webgpu), threads, source
// (camera|demo|none), split (1), overlap (1|0), detectEvery (k), detectScale (0.1-1), inferEvery (k), paste (canvas|js), bench (N frames: run the benchmark at start), device
// (a name for the benchmark record), keep (keep each frame's input: facefx.last.original, for tests).
import './privacy.js';  // first: nothing may leave the page, whatever loads next
import {loadContract, loadEffects} from './contract.js';
import {Detector} from './detector.js';
import {InferClient, Pipeline} from './pipeline.js';
import {StageTimer, resultRows} from './timer.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const app = {
  effects: [], detector: null, infer: null, pipeline: null, contract: null, modelInfo: null, timer: new StageTimer(),
  source: null, busy: false, split: false, backend: null, threads: 1, generation: 0, record: null,
};
globalThis.facefx = app;  // for the console and the tests

// ---- messages -------------------------------------------------------------------------------------------------
function message(text) {  // one visible line: what went wrong and what to do
  $('message').textContent = text || '';
  $('message').hidden = !text;
}
function note(text) {
  $('note').textContent = text || '';
  $('note').hidden = !text;
}
function status(text) { $('status').textContent = text; }

// ---- backend ----------------------------------------------------------------------------------------------------
async function chooseBackend(asked) {
  if (asked === 'wasm') return {backend: 'wasm', why: ''};
  if (!navigator.gpu) return {backend: 'wasm', why: 'WebGPU is not available in this browser'};
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return {backend: 'wasm', why: 'WebGPU has no adapter here'};
    if (adapter.info?.isFallbackAdapter || adapter.isFallbackAdapter)
      return {backend: 'wasm', why: 'WebGPU offers only a software adapter here'};
  } catch (err) {
    return {backend: 'wasm', why: `WebGPU failed (${err.message})`};
  }
  return {backend: 'webgpu', why: ''};
}

function defaultThreads() {
  if (!crossOriginIsolated) return 1;  // no SharedArrayBuffer: onnxruntime-web runs single-threaded
  // One core stays with the main thread, which detects, crops and pastes while the model runs (overlap): on 2 cores
  // 1 model thread gave 31 FPS and 2 gave 25 (docs/web.md, "Speed").
  return Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1));
}

// ---- the model ---------------------------------------------------------------------------------------------------
async function loadEffect() {
  const gen = ++app.generation;
  const eff = app.effects.find(e => e.effect === $('effect').value) ?? app.effects[0];
  const precision = $('precision').value in eff.models ? $('precision').value : Object.keys(eff.models)[0];
  const url = eff.models[precision];
  status(`loading ${eff.effect} ${precision}…`);
  message('');
  let infer = null;
  try {
    const contract = await loadContract(eff.contract);
    if (JSON.stringify(contract.detector) !== JSON.stringify(app.detectorSpec)) {  // the contract names the detector
      status('loading the face detector…');
      try {
        const det = await Detector.create(contract.detector);
        app.detector?.close();
        app.detector = det;
        app.detectorSpec = contract.detector;
        if (app.pipeline) app.pipeline.detector = det;
      } catch (err) {
        message(`The face detector could not load (${err.message ?? err}); check that /assets/${contract.detector.model} is served.`);
        status('no detector');
        return false;
      }
    }
    let backend = app.backend;
    infer = new InferClient();
    let info;
    try {
      info = await infer.load(url, {backend, threads: app.threads, input: contract.input, output: contract.output});
    } catch (err) {
      if (backend !== 'webgpu') throw err;
      infer.terminate();  // a WebGPU failure is not the model's: fall back to WASM and say so
      note(`WebGPU could not run this model (${err.message}): running on WASM instead.`);
      app.backend = backend = 'wasm';
      infer = new InferClient();
      info = await infer.load(url, {backend, threads: app.threads, input: contract.input, output: contract.output});
    }
    if (gen !== app.generation) { infer.terminate(); return false; }  // another effect was picked meanwhile
    app.infer?.terminate();
    app.infer = infer;
    app.contract = contract;
    app.modelInfo = {...info, url, file: url.split('/').pop(), effect: eff.effect, precision};
    if (app.pipeline) app.pipeline.setModel(contract, infer);
    else app.pipeline = new Pipeline(app.detector, contract, infer, {
      overlap: params.get('overlap') !== '0', detectEvery: Number(params.get('detectEvery') || 1),
      pasteMode: params.get('paste') === 'js' ? 'js' : 'canvas', inferEvery: Number(params.get('inferEvery') || 1)});
    app.timer = new StageTimer();
    status(`${eff.effect} ${precision} · ${info.backend === 'webgpu' ? 'WebGPU' : `WASM SIMD, ${info.threads} thread${info.threads > 1 ? 's' : ''}`}`);
    return true;
  } catch (err) {
    infer?.terminate();
    if (gen === app.generation) {
      message(`Could not load the ${eff.effect} model (${url}): ${err.message}. Pick another effect, or check the file.`);
      status('no model');
    }
    return false;
  }
}

// ---- frames ------------------------------------------------------------------------------------------------------
const work = document.createElement('canvas');
const workCtx = work.getContext('2d', {willReadFrequently: true});

const small = document.createElement('canvas');
const smallCtx = small.getContext('2d');
const detectScale = Math.min(1, Math.max(0.1, Number(params.get('detectScale') || 1)));

/** The frame as ImageData, and (detectScale < 1) a smaller copy for the detector: {image, small}. */
function grab(source, w, h) {
  if (work.width !== w || work.height !== h) { work.width = w; work.height = h; }
  workCtx.drawImage(source, 0, 0, w, h);
  const image = workCtx.getImageData(0, 0, w, h);
  if (detectScale === 1) return {image, small: null};
  const sw = Math.round(w * detectScale), sh = Math.round(h * detectScale);
  if (small.width !== sw || small.height !== sh) { small.width = sw; small.height = sh; }
  smallCtx.drawImage(source, 0, 0, sw, sh);
  return {image, small: {image: small, scale: sw / w}};
}

function show(done) {
  const view = $('view'), {width: w, height: h} = done.image;
  if (view.width !== w || view.height !== h) { view.width = w; view.height = h; }
  const ctx = view.getContext('2d');
  if (done.canvas) ctx.drawImage(done.canvas, 0, 0); else ctx.putImageData(done.result, 0, 0);
  if (app.split && done.original && done.original !== done.result) {
    ctx.putImageData(done.original, 0, 0, 0, 0, Math.floor(w / 2), h);  // before on the left, after on the right
    ctx.fillStyle = '#fff';
    ctx.fillRect(Math.floor(w / 2) - 1, 0, 2, h);
  }
}

function overlay() {
  const t = app.timer, m = (s) => t.recentMs(s).toFixed(1);
  $('fps').textContent = t.recentFps().toFixed(1);
  $('stages').textContent = `detect ${m('detect')} · crop ${m('crop')} · infer ${m('infer')} · paste ${m('paste')} ms`;
  $('faces').textContent = String(app.lastFaces ?? 0);
}

/** One frame through the pipeline (dropped when the previous one is still busy: live sources do not queue). */
async function onFrame(source, w, h, t) {
  if (app.busy || !app.pipeline) return;
  app.busy = true;
  try {
    const t0 = performance.now();
    const {image, small: smallFrame} = grab(source, w, h);
    app.pipeline.keepOriginal = app.split || params.has('keep');
    app.pipeline.readBack = params.has('keep');  // keep: the tests compare before and after
    const done = await app.pipeline.step(image, t, {capture: performance.now() - t0, t0, small: smallFrame});
    if (done) {
      done.ms.capture = done.capture;
      show(done);
      app.last = done;
      app.lastFaces = done.faces.length;
      app.timer.addFrame(done.ms, performance.now() - done.t0);
      overlay();
    }
  } catch (err) {
    if (!err.cancelled) message(`Frame failed: ${err.message}`);
  } finally {
    app.busy = false;
  }
}

function stopSource() {
  const s = app.source;
  app.source = null;
  if (app.pipeline) app.pipeline.pending = null;  // a frame of the old source is not shown after the new one starts
  if (!s) return;
  s.stop?.();
}

function playVideo(video, onEnd) {  // every new video frame -> onFrame
  let stopped = false;
  if (!video.requestVideoFrameCallback) {  // browsers without it: every animation frame (the timestamp is the clock)
    const poll = () => {
      if (stopped) return;
      if (video.readyState >= 2) onFrame(video, video.videoWidth, video.videoHeight, performance.now() / 1000);
      requestAnimationFrame(poll);
    };
    requestAnimationFrame(poll);
  } else {
    // A camera's mediaTime and performance.now() both increase; a looping file's mediaTime restarts, so the clock
    // given to the detector and the filter is the frame's presentation time, which never goes back.
    const tick = (now) => {
      if (stopped) return;
      onFrame(video, video.videoWidth, video.videoHeight, now / 1000);
      video.requestVideoFrameCallback(tick);
    };
    video.requestVideoFrameCallback(tick);
  }
  return {stop() { stopped = true; video.pause(); onEnd?.(); }};
}

async function startCamera() {
  stopSource();
  if (!navigator.mediaDevices?.getUserMedia) {
    message(`The camera needs HTTPS or localhost (this page is ${location.origin}); serve with --cert, or pick a video or image file.`);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: {facingMode: 'user', width: {ideal: 640}, height: {ideal: 480}}, audio: false});
  } catch (err) {
    message(err.name === 'NotAllowedError' || err.name === 'SecurityError'
      ? 'Camera access was denied: allow the camera for this site in the browser settings, or pick a video or image file.'
      : err.name === 'NotFoundError' ? 'No camera found: pick a video or image file instead.'
      : `The camera could not start (${err.name}: ${err.message}); pick a video or image file instead.`);
    return;
  }
  message('');
  const video = $('video');
  video.srcObject = stream;
  await video.play();
  const player = playVideo(video, () => stream.getTracks().forEach(tr => tr.stop()));
  app.source = {kind: 'camera', stop: player.stop};
}

async function startFile(file) {
  stopSource();
  message('');
  if (file.type.startsWith('image/')) {
    let bmp;
    try { bmp = await createImageBitmap(file); } catch { message(`${file.name} is not an image this browser can read.`); return; }
    app.pipeline.tracker?.reset();
    app.busy = false;
    await onFrame(bmp, bmp.width, bmp.height, performance.now() / 1000);
    const last = await app.pipeline.flush();  // one image: no next frame to overlap with
    if (last) { show(last); app.last = last; app.lastFaces = last.faces.length; overlay(); }
    if (!last || !last.faces.length) message(`No face found in ${file.name}.`);
    return;
  }
  const video = $('video');
  video.srcObject = null;
  video.src = URL.createObjectURL(file);
  video.loop = true;
  try { await video.play(); } catch { message(`${file.name} is not a video this browser can play.`); return; }
  app.source = {kind: 'file', ...playVideo(video)};
}

// ---- the demo clip: decoded frames from the server (demo.mp4 is MPEG-4 Part 2, which browsers do not play) ------
async function demoFrames(indices) {
  const res = await fetch('/assets/demo/index.json');
  if (!res.ok) throw new Error(`/assets/demo/index.json: HTTP ${res.status}`);
  const info = await res.json();
  const frames = [];
  for (const i of indices) {
    const r = await fetch(`/assets/demo/${String(i % info.frames).padStart(3, '0')}.png`);
    if (!r.ok) throw new Error(`demo frame ${i}: HTTP ${r.status}`);
    frames.push(await createImageBitmap(await r.blob(), {colorSpaceConversion: 'none', premultiplyAlpha: 'none'}));
  }
  return {info, frames};
}

async function startDemo() {
  stopSource();
  message('');
  status('loading the demo clip…');
  let demo;
  try {
    const info = await (await fetch('/assets/demo/index.json')).json();
    demo = await demoFrames([...Array(info.frames).keys()]);
  } catch (err) {
    message(`The demo clip could not load (${err.message}).`);
    return;
  }
  loadEffectStatus();
  let i = 0, stopped = false;
  const dt = 1000 / demo.info.fps;
  const timer = setInterval(() => {
    if (stopped) return;
    const bmp = demo.frames[i % demo.frames.length];
    onFrame(bmp, bmp.width, bmp.height, i * dt / 1000);
    i++;
  }, dt);
  app.source = {kind: 'demo', stop() { stopped = true; clearInterval(timer); }};
}

function loadEffectStatus() {
  const m = app.modelInfo;
  if (m) status(`${m.effect} ${m.precision} · ${m.backend === 'webgpu' ? 'WebGPU' : `WASM SIMD, ${m.threads} thread${m.threads > 1 ? 's' : ''}`}`);
}

// ---- benchmark ----------------------------------------------------------------------------------------------------
async function versions() {
  const out = [];
  for (const [name, pkg] of [['onnxruntime-web', 'onnxruntime-web'], ['tasks-vision', '@mediapipe/tasks-vision']]) {
    try { out.push(`${name}=${(await (await fetch(`/node_modules/${pkg}/package.json`)).json()).version}`); } catch { /* unknown */ }
  }
  const brand = navigator.userAgentData?.brands?.find(b => /Chrom/.test(b.brand));
  if (brand) out.push(`${brand.brand.toLowerCase().replace(/\s+/g, '-')}=${brand.version}`);
  return out.join(' ');
}

/** Run N frames of the demo clip's one-face part (frames 0-39, looped) as fast as the pipeline goes; the record
 * (benchmarks/results rows) is shown, kept in facefx.record and offered as a JSON download. */
async function benchmark(n) {
  stopSource();
  $('bench').disabled = true;
  message('');
  status(`benchmark: loading ${n} demo frames…`);
  try {
    const warmup = 5;
    const {frames} = await demoFrames([...Array(40).keys()]);
    const pipe = app.pipeline;
    pipe.tracker?.reset();
    pipe.keepOriginal = false;
    pipe.readBack = false;
    const timer = new StageTimer();
    status(`benchmark: ${n} frames…`);
    const keep = (done) => {
      if (!done) return;
      show(done);
      if (done.index >= warmup) timer.addFrame({...done.ms, capture: done.capture}, performance.now() - done.t0);
    };
    for (let i = 0; i < n + warmup; i++) {
      const bmp = frames[i % frames.length], t0 = performance.now();
      const {image, small: smallFrame} = grab(bmp, bmp.width, bmp.height);
      keep(await pipe.step(image, i / 20, {index: i, capture: performance.now() - t0, t0, small: smallFrame}));
    }
    keep(await pipe.flush());  // the last frame still in flight
    const summary = timer.summary();
    const m = app.modelInfo;
    const info = {
      device: params.get('device') || `browser-${(navigator.userAgentData?.platform || navigator.platform || 'unknown').toLowerCase().replace(/[^a-z0-9]+/g, '-')}`,
      cpu: `${navigator.hardwareConcurrency} logical cores`, threads: m.backend === 'webgpu' ? '' : m.threads,
      versions: await versions(), model: m.file, modelHash: m.hash.slice(0, 12),
      backend: m.backend === 'webgpu' ? 'ort-web-webgpu' : 'ort-web-wasm', precision: m.precision, size: app.contract.size,
      note: `demo.mp4 frames 0-39 (one face) looped to ${n} frames, first ${warmup} not timed; overlap ${pipe.overlap ? 'on' : 'off'}, ${pipe.pasteMode} paste, detect every ${pipe.detectEvery} at scale ${detectScale}, model every ${pipe.inferEvery}; ${navigator.userAgent}`,
    };
    const rows = resultRows(summary, info);
    app.record = {rows, summary, user_agent: navigator.userAgent, backend: info.backend, threads: info.threads};
    $('record').textContent = JSON.stringify(rows.map(r => ({stage: r.stage, p50_ms: r.p50_ms, p95_ms: r.p95_ms, fps: r.fps})), null, 0)
      .replaceAll('},{', '},\n{');
    const blob = new Blob([JSON.stringify(rows, null, 1)], {type: 'application/json'});
    const a = $('download');
    a.href = URL.createObjectURL(blob);
    a.download = `facefx-web-${m.effect}-${m.precision}-${info.backend}-${info.threads || 'gpu'}t.json`;
    a.hidden = false;
    status(`benchmark: ${summary.fps.toFixed(1)} FPS end to end over ${summary.frames} frames`);
  } catch (err) {
    message(`Benchmark failed: ${err.message}`);
  } finally {
    $('bench').disabled = false;
  }
  return app.record;
}
app.benchmark = benchmark;

// ---- start ----------------------------------------------------------------------------------------------------------
async function main() {
  if (!crossOriginIsolated)
    note('This page is not cross-origin isolated, so the model runs on one thread: serve it with realtime/serve_web.py.');
  try {
    app.effects = await loadEffects();
  } catch (err) {
    message(`Could not list the effects (${err.message}): is realtime/serve_web.py serving this page?`);
    return;
  }
  const effSel = $('effect');
  for (const e of app.effects) effSel.add(new Option(e.effect, e.effect));
  effSel.value = params.get('effect') ?? app.effects[0].effect;
  $('precision').value = params.get('precision') ?? 'int8';
  const chosen = await chooseBackend(params.get('backend') ?? 'auto');
  app.backend = chosen.backend;
  if (chosen.why) note(`${chosen.why}: running on WASM (SIMD${crossOriginIsolated ? ', threads' : ''}).`);
  app.threads = Number(params.get('threads')) || defaultThreads();
  if (!(await loadEffect())) return;
  effSel.onchange = $('precision').onchange = () => loadEffect();
  $('camera').onclick = () => startCamera();
  $('demo').onclick = () => startDemo();
  $('file').onchange = (e) => e.target.files[0] && startFile(e.target.files[0]);
  $('split').onchange = (e) => { app.split = e.target.checked; };
  $('bench').onclick = () => benchmark(Number($('frames').value) || 100);
  app.split = $('split').checked = params.get('split') === '1';
  const bench = Number(params.get('bench'));
  if (bench) await benchmark(bench);
  else if (params.get('source') === 'demo') await startDemo();
  else if (params.get('source') !== 'none') await startCamera();
  document.body.dataset.ready = '1';
}

main();

// The per-frame face-effect pipeline of facefx/runtime/pipeline.py, in the browser:
// detect (MediaPipe, main thread) -> smooth keypoints per tracked face (One-Euro) -> crop with THE crop geometry
// (the contract's) -> one batch of all faces through the model (a worker) -> paste each back, feathered.
//
// overlap: frame n's inference runs in the worker while the main thread detects and crops frame n+1; a frame is
// shown one step later (about one inference of latency) and throughput is set by the slower of the two sides,
// not their sum. detectEvery k > 1 runs the detector on one frame in k and tracks in between (the One-Euro filter
// keeps smoothing the last detection); detectScale < 1 detects on a smaller copy of the frame (BlazeFace sees
// 128x128 anyway); inferEvery k > 1 runs the model on one frame in k (see the constructor). docs/web.md has what
// each buys.
import * as geo from './geometry.js';
import {CanvasPaster} from './paste_canvas.js';
import {FaceTracker} from './smoothing.js';

/** The model in its worker: load once, then run batches (Float32Array NCHW) -> Promise<{output, ms}>. */
export class InferClient {
  constructor(workerUrl = new URL('./infer_worker.js', import.meta.url)) {
    this.worker = new Worker(workerUrl, {type: 'module'});
    this.jobs = new Map();
    this.nextId = 1;
    this.worker.onmessage = ({data}) => {
      const job = this.jobs.get(data.id ?? 0);
      if (!job) return;
      this.jobs.delete(data.id ?? 0);
      if (data.type === 'error') job.reject(new Error(data.message)); else job.resolve(data);
    };
    this.worker.onerror = (e) => { for (const j of this.jobs.values()) j.reject(new Error(e.message || 'model worker failed')); this.jobs.clear(); };
  }
  _call(id, msg, transfer = []) {
    return new Promise((resolve, reject) => { this.jobs.set(id, {resolve, reject}); this.worker.postMessage(msg, transfer); });
  }
  load(url, {backend = 'wasm', threads = 2, input, output} = {}) {
    return this._call(0, {type: 'load', url, backend, threads, input, output});
  }
  run(input, n, size) {
    const id = this.nextId++;
    return this._call(id, {type: 'run', id, input, n, size}, [input.buffer]);
  }
  /** Stop the worker; jobs still in flight fail with err.cancelled (an effect switch, not an error to show). */
  terminate() {
    this.worker.terminate();
    for (const j of this.jobs.values()) j.reject(Object.assign(new Error('model replaced'), {cancelled: true}));
    this.jobs.clear();
  }
}

export class Pipeline {
  /** detector: Detector; contract: parseContract(...); infer: InferClient (loaded). */
  /** pasteMode: 'canvas' (the browser's warp and blend, paste_canvas.js; the default) or 'js' (geometry.paste, the
   * reference port). */
  /** inferEvery k > 1: the model runs on one frame in k; the frames between paste the latest output of the same
   * tracked faces at their own (new) crop matrices: the face follows at full rate, its expression one step late. */
  constructor(detector, contract, infer, {maxFaces = 8, smooth = true, overlap = true, detectEvery = 1,
                                          pasteMode = 'canvas', inferEvery = 1} = {}) {
    this.detector = detector;
    this.maxFaces = maxFaces;
    this.overlap = overlap;
    this.detectEvery = Math.max(1, detectEvery | 0);
    this.inferEvery = Math.max(1, inferEvery | 0);
    this.lastJob = null;  // {job, ids, frame}: the latest model run, for inferEvery > 1
    this.smooth = smooth;
    this.setModel(contract, infer);
    this.pending = null;
    this.frameIndex = 0;
    this.lastDets = null;
    this.keepOriginal = false;  // js paste: a copy of each frame before paste (the before/after split)
    this.readBack = false;  // canvas paste: also return the result as ImageData (tests)
    this.pasteMode = typeof OffscreenCanvas === 'undefined' ? 'js' : pasteMode;
    this.out = null;
  }

  setModel(contract, infer) {
    this.contract = contract;
    this.spec = contract.crop;
    this.infer = infer;
    this.tracker = this.smooth ? new FaceTracker(contract.smoothing) : null;
    this.pending = null;
    this.spare = null;
    this.paster = null;
    this.lastJob = null;
  }

  /** Faces of a frame at time t (seconds): smoothed keypoints, track ids and crop matrices. */
  faces(image, t, small = null) {
    let dets;
    if (this.lastDets === null || this.frameIndex % this.detectEvery === 0) {
      // small: {image, scale}, the same frame drawn smaller (detectScale < 1); keypoints scaled back to the frame.
      const src = small?.image ?? image, k = small ? 1 / small.scale : 1;
      dets = this.detector.detect(src, src.width, src.height, t * 1000).slice(0, this.maxFaces);
      if (k !== 1) dets = dets.map(d => ({...d, box: d.box.map(v => v * k), keypoints: d.keypoints.map(([x, y]) => [x * k, y * k])}));
      this.lastDets = dets;
    } else {
      dets = this.lastDets;  // tracking between detections: the last detection, still smoothed
    }
    this.frameIndex++;
    let kps = dets.map(d => d.keypoints), ids = dets.map((_, i) => i);
    if (this.tracker) ({keypoints: kps, ids} = this.tracker.update(dets.map(d => d.box), kps, t));
    return dets.map((d, i) => ({box: d.box, score: d.score, keypoints: kps[i], track: ids[i],
                                matrix: geo.faceTransform(kps[i], this.spec)}));
  }

  /** Start frame `image` (ImageData) at time t. Returns the finished frame that is now ready (with overlap, the
   * previous one; without, this one), or null: {image, original, faces, ms: {detect, crop, infer, paste}, t0, ...extra}.
   * extra: fields carried with the frame (the caller's frame index, capture time, start time t0), and small: the
   * frame drawn smaller for the detector ({image, scale}), when detecting on a reduced frame. */
  async step(image, t, extra = {}) {
    const t0 = performance.now(), ms = {};
    const faces = this.faces(image, t, extra.small);
    const t1 = performance.now();
    ms.detect = t1 - t0;
    let job = null, reused = false;
    const ids = faces.map(f => f.track).join(',');
    if (faces.length && this.inferEvery > 1 && this.lastJob && this.lastJob.ids === ids
        && this.frameIndex - this.lastJob.frame < this.inferEvery) {
      job = this.lastJob.job;  // the same faces: their latest output, pasted at this frame's matrices
      reused = true;
    } else if (faces.length) {
      const s = this.spec.size, n = faces.length, per = 3 * s * s;
      const input = this.spare && this.spare.length === n * per ? this.spare : new Float32Array(n * per);
      this.spare = null;
      const rgba = new Uint8ClampedArray(s * s * 4);
      faces.forEach((f, i) => geo.toTensor(geo.crop(image.data, image.width, image.height, f.matrix, this.spec, rgba),
                                           s, this.contract.pixels, input, i * per));
      ms.crop = performance.now() - t1;
      job = this.infer.run(input, n, s);
      job.catch(() => {});  // awaited (and reported) in finish(); this only keeps it from counting as unhandled
      this.lastJob = {job, ids, frame: this.frameIndex};
    }
    const cur = {image, faces, job, reused, ms, t0, ...extra};
    if (!this.overlap) return this.finish(cur);
    const prev = this.pending;
    this.pending = cur;
    return prev ? this.finish(prev) : null;
  }

  /** The frame still in flight (end of a clip), finished; null when none. */
  async flush() {
    const p = this.pending;
    this.pending = null;
    return p ? this.finish(p) : null;
  }

  /** Wait for a frame's model output and paste it back. Sets p.original (the input frame), and the output as
   * p.canvas (canvas paste) and/or p.result (ImageData: js paste, or canvas paste with readBack). */
  async finish(p) {
    p.original = p.image;
    if (!p.job) { p.result = p.image; return p; }
    if (this.pasteMode === 'js' && this.keepOriginal) p.original = new ImageData(new Uint8ClampedArray(p.image.data), p.image.width, p.image.height);
    const res = await p.job;
    if (!p.reused) {
      p.ms.infer = res.ms;
      if (res.input) this.spare = res.input;  // the worker hands the input buffer back: reused for the next batch
    }
    const t0 = performance.now(), s = this.spec.size, per = 3 * s * s, rgba = new Uint8ClampedArray(s * s * 4);
    const {width: w, height: h} = p.image;
    if (this.pasteMode === 'canvas') {
      if (!this.out || this.out.width !== w || this.out.height !== h) {
        this.out = new OffscreenCanvas(w, h);
        this.outCtx = this.out.getContext('2d', {willReadFrequently: this.readBack});
      }
      this.paster ??= new CanvasPaster(this.spec);
      this.outCtx.putImageData(p.image, 0, 0);
      p.faces.forEach((f, i) => this.paster.paste(this.outCtx, geo.fromTensor(res.output, s, this.contract.pixels, rgba, i * per), f.matrix));
      p.canvas = this.out;
      p.result = this.readBack ? this.outCtx.getImageData(0, 0, w, h) : null;
    } else {
      p.faces.forEach((f, i) => {
        geo.fromTensor(res.output, s, this.contract.pixels, rgba, i * per);
        geo.paste(p.image.data, w, h, rgba, f.matrix, this.spec);
      });
      p.result = p.image;
    }
    p.ms.paste = performance.now() - t0;
    return p;
  }
}

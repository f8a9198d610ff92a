// Keypoint smoothing across frames, ported from facefx/runtime/smoothing.py: a One-Euro filter per tracked
// face (Casiez et al. 2012), faces matched frame to frame by box-centre distance, keypoints filtered in units
// of the face's size. Parameters come from the contract (contract.js), never from here.

function alpha(cutoffHz, dt) {
  const tau = 1 / (2 * Math.PI * cutoffHz);
  return 1 / (1 + tau / dt);
}

/** One-Euro filter over a flat array of numbers (each element filtered independently). */
export class OneEuroFilter {
  constructor(minCutoff, beta, dCutoff) {
    this.minCutoff = minCutoff; this.beta = beta; this.dCutoff = dCutoff;
    this.x = null; this.dx = null; this.t = null;
  }
  reset() { this.x = this.dx = this.t = null; }
  /** Filtered value of x (array of numbers) observed at time t (seconds, increasing). */
  filter(x, t) {
    if (this.x === null || this.t === null || t <= this.t) {
      if (this.x === null) { this.x = Float64Array.from(x); this.dx = new Float64Array(x.length); this.t = t; }
      return Array.from(this.x);
    }
    const dt = t - this.t, ad = alpha(this.dCutoff, dt);
    for (let i = 0; i < x.length; i++) {
      const dx = (x[i] - this.x[i]) / dt;
      this.dx[i] += ad * (dx - this.dx[i]);
      const cutoff = this.minCutoff + this.beta * Math.abs(this.dx[i]);
      this.x[i] += alpha(cutoff, dt) * (x[i] - this.x[i]);
    }
    this.t = t;
    return Array.from(this.x);
  }
}

/** Matches faces frame to frame and smooths each face's keypoints with its own One-Euro filter. */
export class FaceTracker {
  /** params: {min_cutoff, beta, d_cutoff, max_match, max_age_s} (contract smoothing section). */
  constructor(params) {
    this.p = params;
    this.tracks = [];
    this.nextId = 0;
  }
  reset() { this.tracks = []; }
  /** boxes: [x, y, w, h] pixels; keypoints: [[x, y], ...] pixels; t seconds -> {keypoints, ids}. */
  update(boxes, keypoints, t) {
    const p = this.p;
    this.tracks = this.tracks.filter(tr => t - tr.lastT <= p.max_age_s);
    const centres = boxes.map(b => [b[0] + b[2] / 2, b[1] + b[3] / 2]);
    const sizes = boxes.map(b => Math.max(b[2], b[3], 1));
    const pairs = [];
    centres.forEach((c, i) => this.tracks.forEach((tr, j) => {
      pairs.push([Math.hypot(c[0] - tr.centre[0], c[1] - tr.centre[1]) / Math.max(sizes[i], tr.size), i, j]);
    }));
    pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);  // Python sorts the tuples the same way
    const match = new Map(), used = new Set();
    for (const [dist, i, j] of pairs) {
      if (dist <= p.max_match && !match.has(i) && !used.has(j)) { match.set(i, j); used.add(j); }
    }
    const out = [], ids = [];
    keypoints.forEach((kp, i) => {
      let tr;
      if (match.has(i)) { tr = this.tracks[match.get(i)]; tr.hits += 1; }
      else {
        tr = {centre: centres[i], size: sizes[i], filter: new OneEuroFilter(p.min_cutoff, p.beta, p.d_cutoff),
              lastT: t, unit: sizes[i], id: this.nextId++, hits: 1};
        this.tracks.push(tr);
      }
      const flat = kp.flat().map(v => v / tr.unit);
      const sm = tr.filter.filter(flat, t).map(v => v * tr.unit);
      tr.centre = centres[i]; tr.size = sizes[i]; tr.lastT = t;
      out.push(kp.map((_, k) => [sm[2 * k], sm[2 * k + 1]]));
      ids.push(tr.id);
    });
    return {keypoints: out, ids};
  }
}

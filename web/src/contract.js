// The model's contract (v2): the ONE place the web app reads geometry, pixel, detector and smoothing parameters.
// Every number that shapes a crop (template, size, border, keypoints used), the paste mask, the pixels or the
// One-Euro filter comes from the effect's shipped models/<effect>/contract.json (made and validated by
// facefx/runtime/contract.py against contract.schema.json); nothing here or in the other modules retypes them.

/** The shipped effects: [{effect, contract (URL), models: {int8: URL, fp32: URL}}]. */
export async function loadEffects(base = '') {
  const res = await fetch(`${base}/models/index.json`);
  if (!res.ok) throw new Error(`models/index.json: HTTP ${res.status}`);
  const {effects} = await res.json();
  if (!effects.length) throw new Error('no effect in models/ (nothing to run)');
  return effects;
}

function need(obj, path) {
  const v = path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
  if (v === undefined || v === null) throw new Error(`contract lacks ${path} (re-export the model with export/export.py)`);
  return v;
}

/** Normalize a contract.json into what the pipeline needs (names as in facefx.runtime: crop spec, FaceTracker). */
export function parseContract(c) {
  const version = need(c, 'contract_version');
  if (version !== 2) throw new Error(`contract version ${version}: this app reads version 2 (re-export the model)`);
  const size = need(c, 'size'), crop = need(c, 'crop'), pixels = need(c, 'pixels');
  if (crop.size !== size) throw new Error(`crop size ${crop.size} differs from model size ${size}`);
  if (pixels.layout !== 'NCHW' || pixels.channels !== 'RGB')
    throw new Error(`unsupported pixel layout ${pixels.layout}/${pixels.channels} (this app feeds NCHW RGB)`);
  const [lo, hi] = need(c, 'pixels.range'), mask = need(c, 'paste.mask'), inner = need(c, 'inner_face');
  const sm = need(c, 'smoothing');
  return {
    version,
    effect: c.effect,
    size,
    crop: {
      size, template: crop.template.map(p => [p[0], p[1]]), border: crop.border, feather: crop.feather, name: crop.name,
      keypointsUsed: need(c, 'fit.keypoints_used'),
      mask: {centre: mask.head_centre, axes: mask.head_axes, ramp: mask.head_ramp, edgeExponent: mask.edge_exponent,
             edgeRadius: mask.edge_radius, edgeRamp: mask.edge_ramp},
      inner: {centre: inner.centre, axes: inner.axes, outer: inner.outer},
    },
    // uint8 -> model: x * scale + offset (the range [lo, hi] spans 0..255); back: round((clip(y) - offset) / scale).
    pixels: {lo, hi, scale: (hi - lo) / 255, offset: lo},
    input: need(c, 'input'),
    output: need(c, 'output'),
    detector: {model: need(c, 'detector.model'), minScore: need(c, 'detector.min_score')},
    smoothing: {min_cutoff: sm.min_cutoff_hz, beta: sm.beta, d_cutoff: sm.d_cutoff_hz,
                max_match: need(sm, 'tracking.max_match_box_sides'), max_age_s: need(sm, 'tracking.max_age_s')},
  };
}

export async function loadContract(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return parseContract(await res.json());
}

// THE crop geometry, ported line for line from facefx/runtime/crop.py (the Python reference):
// keypoints -> least-squares similarity onto the contract's template -> S x S crop -> feathered paste-back.
// Conventions are OpenCV's: pixel (i, j) sits at coordinate (i, j) (no half-pixel shift), bilinear sampling,
// a 2x3 matrix maps frame pixels to crop pixels. Images are RGBA Uint8ClampedArray (ImageData.data); masks are
// Float32Array. Checked against golden/ (tests/test_web.py): matrices within 1e-3, crops >= 40 dB,
// pasted frames >= 35 dB. The spec argument is parseContract(...).crop: every parameter (template, keypoints used,
// border, mask and inner-face ellipses) is the contract's.

/** Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst: a 2x3 matrix [[a,-b,tx],[b,a,ty]].
 * In 2-D this closed form is the same optimum as crop.py's Umeyama SVD (rotations only, no reflection). */
export function similarityTransform(src, dst) {
  const n = src.length;
  let msx = 0, msy = 0, mdx = 0, mdy = 0;
  for (let i = 0; i < n; i++) { msx += src[i][0]; msy += src[i][1]; mdx += dst[i][0]; mdy += dst[i][1]; }
  msx /= n; msy /= n; mdx /= n; mdy /= n;
  let num_a = 0, num_b = 0, den = 0;
  for (let i = 0; i < n; i++) {
    const sx = src[i][0] - msx, sy = src[i][1] - msy, dx = dst[i][0] - mdx, dy = dst[i][1] - mdy;
    num_a += sx * dx + sy * dy;
    num_b += sx * dy - sy * dx;
    den += sx * sx + sy * sy;
  }
  const a = num_a / den, b = num_b / den;
  return [[a, -b, mdx - (a * msx - b * msy)], [b, a, mdy - (b * msx + a * msy)]];
}

/** 2x3 matrix mapping frame pixels -> crop pixels for one face's keypoints ([[x, y], ...] in pixels). */
export function faceTransform(keypoints, spec) {
  const kp = spec.keypointsUsed.map(i => keypoints[i]);
  const tpl = spec.template.map(([u, v]) => [u * spec.size, v * spec.size]);
  return similarityTransform(kp, tpl);
}

export function invert(m) {
  const [[a, b, c], [d, e, f]] = m;
  const det = a * e - b * d;
  if (det === 0) throw new Error('singular transform');
  const ia = e / det, ib = -b / det, id = -d / det, ie = a / det;
  return [[ia, ib, -(ia * c + ib * f)], [id, ie, -(id * c + ie * f)]];
}

export function apply(m, pts) {
  return pts.map(([x, y]) => [m[0][0] * x + m[0][1] * y + m[0][2], m[1][0] * x + m[1][1] * y + m[1][2]]);
}

function borderIndex(i, n, border) {
  if (i >= 0 && i < n) return i;
  if (border === 'replicate') return i < 0 ? 0 : n - 1;
  if (border === 'reflect101') {
    if (n === 1) return 0;
    const period = 2 * n - 2;
    i = ((i % period) + period) % period;
    return i < n ? i : period - i;
  }
  return -1;  // constant: outside reads 0
}

/** Bilinear sample of an RGBA image at (sx, sy) into out[o..o+2] (alpha set to 255), OpenCV's border rules. */
function sampleRGBA(src, w, h, sx, sy, border, out, o) {
  const x0 = Math.floor(sx), y0 = Math.floor(sy), fx = sx - x0, fy = sy - y0;
  const xa = borderIndex(x0, w, border), xb = borderIndex(x0 + 1, w, border);
  const ya = borderIndex(y0, h, border), yb = borderIndex(y0 + 1, h, border);
  const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
  const i00 = ya >= 0 && xa >= 0 ? (ya * w + xa) * 4 : -1, i01 = ya >= 0 && xb >= 0 ? (ya * w + xb) * 4 : -1;
  const i10 = yb >= 0 && xa >= 0 ? (yb * w + xa) * 4 : -1, i11 = yb >= 0 && xb >= 0 ? (yb * w + xb) * 4 : -1;
  for (let c = 0; c < 3; c++) {
    const v = (i00 >= 0 ? w00 * src[i00 + c] : 0) + (i01 >= 0 ? w01 * src[i01 + c] : 0)
            + (i10 >= 0 ? w10 * src[i10 + c] : 0) + (i11 >= 0 ? w11 * src[i11 + c] : 0);
    out[o + c] = v;
  }
  out[o + 3] = 255;
}

/** Warp an RGBA frame (w x h) into the S x S crop (RGBA Uint8ClampedArray); outside the frame per spec.border. */
export function crop(frame, w, h, m, spec, out = new Uint8ClampedArray(spec.size * spec.size * 4)) {
  const s = spec.size, mi = invert(m);
  for (let y = 0; y < s; y++) {
    let sx = mi[0][1] * y + mi[0][2], sy = mi[1][1] * y + mi[1][2];
    for (let x = 0; x < s; x++, sx += mi[0][0], sy += mi[1][0]) sampleRGBA(frame, w, h, sx, sy, spec.border, out, (y * s + x) * 4);
  }
  return out;
}

function smoothstep(a) { return a * a * (3 - 2 * a); }
function clip01(v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

const masks = new Map();

/** (S*S) Float32Array in [0, 1]: 1 over the head, smoothly 0 around it and at the crop's edge (contract paste.mask;
 * crop.py feather_mask). Sampled at pixel centres, u = (i + 0.5) / S. */
export function featherMask(spec) {
  const key = `${spec.size}|${JSON.stringify(spec.mask)}`;
  if (masks.has(key)) return masks.get(key);
  const s = spec.size, {centre: [cx, cy], axes: [ax, ay], ramp, edgeExponent: n, edgeRadius, edgeRamp} = spec.mask;
  const out = new Float32Array(s * s);
  for (let j = 0; j < s; j++) {
    const v = (j + 0.5) / s;
    for (let i = 0; i < s; i++) {
      const u = (i + 0.5) / s;
      const rho = Math.sqrt(((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2);  // 1 on the head's outline
      const head = clip01((1 + ramp / 2 - rho) / ramp);
      const r = (Math.abs(2 * u - 1) ** n + Math.abs(2 * v - 1) ** n) ** (1 / n);
      const edge = clip01((edgeRadius - r) / edgeRamp);
      out[j * s + i] = smoothstep(head * edge);
    }
  }
  masks.set(key, out);
  return out;
}

/** (S*S) Float32Array: 1 over the inner face, smoothly 0 at `outer` times its ellipse (contract inner_face;
 * crop.py inner_face_mask). */
export function innerFaceMask(spec) {
  const s = spec.size, {centre: [cx, cy], axes: [ax, ay], outer} = spec.inner;
  const out = new Float32Array(s * s);
  for (let j = 0; j < s; j++) {
    const v = (j + 0.5) / s;
    for (let i = 0; i < s; i++) {
      const u = (i + 0.5) / s;
      const rad = Math.sqrt(((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2);
      out[j * s + i] = smoothstep(clip01((outer - rad) / (outer - 1)));
    }
  }
  return out;
}

/** The frame box [x0, x1) x [y0, y1) that the crop's footprint covers, clipped to the frame; null when empty. */
export function pasteBox(m, spec, w, h) {
  const s = spec.size;
  const c = apply(invert(m), [[0, 0], [s, 0], [0, s], [s, s]]);
  const xs = c.map(p => p[0]), ys = c.map(p => p[1]);
  const x0 = Math.max(Math.floor(Math.min(...xs)), 0), y0 = Math.max(Math.floor(Math.min(...ys)), 0);
  const x1 = Math.min(Math.ceil(Math.max(...xs)), w), y1 = Math.min(Math.ceil(Math.max(...ys)), h);
  return x1 <= x0 || y1 <= y0 ? null : [x0, y0, x1, y1];
}

/** Paste an S x S RGBA crop (a model's output) into the RGBA frame in place, feathered (crop.py paste).
 * Only the footprint's bounding box is touched; where the mask is 0 the frame keeps its exact pixels.
 * The face is sampled bilinearly with a replicated border, the mask with a zero border (crop.py's warps). */
export function paste(frame, w, h, face, m, spec) {
  const box = pasteBox(m, spec, w, h);
  if (!box) return frame;
  const [x0, y0, x1, y1] = box, s = spec.size, mask = featherMask(spec), last = s - 1;
  const [[a, b, c], [d, e, f]] = m;
  for (let y = y0; y < y1; y++) {
    let u = a * x0 + b * y + c, v = d * x0 + e * y + f;
    for (let x = x0; x < x1; x++, u += a, v += d) {
      if (u <= -1 || v <= -1 || u >= s || v >= s) continue;  // all four mask taps outside: alpha 0
      const ux = Math.floor(u), vy = Math.floor(v), fx = u - ux, fy = v - vy;
      const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
      const inX0 = ux >= 0, inX1 = ux + 1 <= last, inY0 = vy >= 0, inY1 = vy + 1 <= last;
      const alpha = (inX0 && inY0 ? w00 * mask[vy * s + ux] : 0) + (inX1 && inY0 ? w01 * mask[vy * s + ux + 1] : 0)
                  + (inX0 && inY1 ? w10 * mask[(vy + 1) * s + ux] : 0) + (inX1 && inY1 ? w11 * mask[(vy + 1) * s + ux + 1] : 0);
      if (alpha <= 0) continue;
      const cx0 = ux < 0 ? 0 : ux > last ? last : ux, cx1 = ux + 1 > last ? last : ux + 1 < 0 ? 0 : ux + 1;
      const cy0 = vy < 0 ? 0 : vy > last ? last : vy, cy1 = vy + 1 > last ? last : vy + 1 < 0 ? 0 : vy + 1;
      const i00 = (cy0 * s + cx0) * 4, i01 = (cy0 * s + cx1) * 4, i10 = (cy1 * s + cx0) * 4, i11 = (cy1 * s + cx1) * 4;
      const o = (y * w + x) * 4, keep = 1 - alpha;
      for (let k = 0; k < 3; k++) {
        const val = w00 * face[i00 + k] + w01 * face[i01 + k] + w10 * face[i10 + k] + w11 * face[i11 + k];
        frame[o + k] = Math.round(val * alpha + frame[o + k] * keep);
      }
    }
  }
  return frame;
}

/** RGBA crop -> the model's NCHW RGB float input, scaled per the contract's pixel range. */
export function toTensor(rgba, s, pixels, out = new Float32Array(3 * s * s), offset = 0) {
  const n = s * s;
  for (let i = 0; i < n; i++) {
    out[offset + i] = rgba[i * 4] * pixels.scale + pixels.offset;
    out[offset + n + i] = rgba[i * 4 + 1] * pixels.scale + pixels.offset;
    out[offset + 2 * n + i] = rgba[i * 4 + 2] * pixels.scale + pixels.offset;
  }
  return out;
}

/** The model's NCHW RGB float output -> RGBA uint8 (clipped to the range, rounded half to even like numpy's rint). */
export function fromTensor(x, s, pixels, out = new Uint8ClampedArray(s * s * 4), offset = 0) {
  const n = s * s;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) {
      let v = x[offset + c * n + i];
      v = v < pixels.lo ? pixels.lo : v > pixels.hi ? pixels.hi : v;
      const y = (v - pixels.offset) / pixels.scale, r = Math.round(y);
      out[i * 4 + c] = (r - y === 0.5 && r % 2 === 1) ? r - 1 : r;  // numpy rint: ties to even
    }
  }
  for (let i = 0; i < n; i++) out[i * 4 + 3] = 255;
  return out;
}

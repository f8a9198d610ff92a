// The paste-back on a 2D canvas: the browser's own bilinear warp and alpha blend (SIMD, off the JS interpreter) in
// place of geometry.paste's per-pixel loop, which costs ~3x the crop here. Same geometry: the model's output
// with the contract's feather mask as its alpha, drawn through the inverse of the crop matrix. Canvas pixel centres
// sit at i + 0.5, OpenCV's at i, hence the half-pixel shifts. Checked against the golden pasted frames like the
// reference port (golden_check.js), at a slightly lower PSNR (8-bit premultiplied alpha).
import {featherMask, invert} from './geometry.js';

export class CanvasPaster {
  constructor(spec) {
    this.spec = spec;
    const s = spec.size;
    this.face = new OffscreenCanvas(s, s);
    this.faceCtx = this.face.getContext('2d');
    this.rgba = new ImageData(s, s);
    const mask = featherMask(spec);
    this.alpha = new Uint8ClampedArray(s * s);
    for (let i = 0; i < s * s; i++) this.alpha[i] = Math.round(mask[i] * 255);
  }

  /** Draw an S x S RGBA crop (the model's output) onto ctx (holding the frame), feathered, through matrix m. */
  paste(ctx, faceRGBA, m) {
    const px = this.rgba.data, a = this.alpha;
    px.set(faceRGBA);
    for (let i = 0, n = a.length; i < n; i++) px[i * 4 + 3] = a[i];
    this.faceCtx.putImageData(this.rgba, 0, 0);
    const [[p, q, r], [s, t, u]] = invert(m);  // crop -> frame, OpenCV coordinates
    // canvas: x_c = inv(m) (u_c - 0.5) + 0.5
    ctx.save();
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'low';  // bilinear, as OpenCV's INTER_LINEAR
    ctx.setTransform(p, s, q, t, r + 0.5 - 0.5 * (p + q), u + 0.5 - 0.5 * (s + t));
    ctx.drawImage(this.face, 0, 0);
    ctx.restore();
  }
}

// This port against the golden vectors (golden/, made by realtime/make_golden.py from the Python reference):
// matrices, crops, pasted frames, masks and the One-Euro trace, with the tolerances golden/index.json sets.
// Open /golden.html to see the report; tests/test_web.py asserts it. Any other port (Swift, Kotlin, C++) can
// follow the same steps: docs/web.md, "Porting".
import {loadContract, loadEffects} from './contract.js';
import * as geo from './geometry.js';
import {CanvasPaster} from './paste_canvas.js';
import {InferClient} from './pipeline.js';
import {FaceTracker} from './smoothing.js';

async function imageData(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  // No colour management or premultiplication: the PNG's own 8-bit values.
  const bmp = await createImageBitmap(await res.blob(), {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  const c = new OffscreenCanvas(bmp.width, bmp.height), ctx = c.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(bmp, 0, 0);
  return ctx.getImageData(0, 0, bmp.width, bmp.height);
}

/** A 16-bit greyscale PNG (the golden masks) as Float32Array in [0, 1]; canvases only give 8 bits. */
async function mask16(url) {
  const buf = new Uint8Array(await (await fetch(url)).arrayBuffer()), dv = new DataView(buf.buffer);
  let pos = 8, w = 0, h = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = dv.getUint32(pos), type = String.fromCharCode(...buf.subarray(pos + 4, pos + 8));
    if (type === 'IHDR') {
      w = dv.getUint32(pos + 8); h = dv.getUint32(pos + 12);
      if (buf[pos + 16] !== 16 || buf[pos + 17] !== 0) throw new Error(`${url}: not a 16-bit greyscale PNG`);
    } else if (type === 'IDAT') idat.push(buf.subarray(pos + 8, pos + 8 + len));
    pos += 12 + len;
  }
  const raw = new Uint8Array(await new Response(new Blob(idat).stream().pipeThrough(new DecompressionStream('deflate'))).arrayBuffer());
  const stride = w * 2, out = new Float32Array(w * h), prev = new Uint8Array(stride), cur = new Uint8Array(stride);
  for (let y = 0; y < h; y++) {
    const ft = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {  // PNG filters, 2 bytes per pixel
      const a = i >= 2 ? cur[i - 2] : 0, b = prev[i], c = i >= 2 ? prev[i - 2] : 0;
      const pred = ft === 0 ? 0 : ft === 1 ? a : ft === 2 ? b : ft === 3 ? (a + b) >> 1
        : (() => { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
                   return pa <= pb && pa <= pc ? a : pb <= pc ? b : c; })();
      cur[i] = (line[i] + pred) & 255;
    }
    for (let x = 0; x < w; x++) out[y * w + x] = ((cur[2 * x] << 8) | cur[2 * x + 1]) / 65535;
    prev.set(cur);
  }
  return out;
}

/** PSNR (dB) over RGB of two RGBA buffers of the same size. */
export function psnr(a, b) {
  let se = 0, n = 0;
  for (let i = 0; i < a.length; i += 4) for (let c = 0; c < 3; c++) { const d = a[i + c] - b[i + c]; se += d * d; n++; }
  return se === 0 ? Infinity : 10 * Math.log10(255 * 255 / (se / n));
}

function region(img, [x0, y0, x1, y1]) {
  const out = new Uint8ClampedArray((x1 - x0) * (y1 - y0) * 4);
  for (let y = y0; y < y1; y++) out.set(img.data.subarray((y * img.width + x0) * 4, (y * img.width + x1) * 4), (y - y0) * (x1 - x0) * 4);
  return out;
}

/** Every check, with its measured value, its tolerance and pass/fail. */
export async function checkGolden(base = '') {
  const index = await (await fetch(`${base}/golden/index.json`)).json();
  const tol = index.tolerances, checks = [];
  const add = (name, value, limit, ok) => checks.push({name, value, limit, ok});
  // The geometry comes from the shipped contract, exactly as the app reads it; the golden set must agree.
  const eff = (await loadEffects(base)).find(e => e.effect === index.effect);
  const contract = await loadContract(eff.contract), spec = contract.crop;
  add('contract template', JSON.stringify(spec.template), JSON.stringify(index.contract.crop.template),
      JSON.stringify(spec.template) === JSON.stringify(index.contract.crop.template) && spec.size === index.contract.size);
  // The models themselves (onnxruntime-web, WASM), on the golden crops: int8 and fp32 outputs vs Python's.
  const models = {};
  for (const [precision, url] of Object.entries(eff.models)) {
    models[precision] = new InferClient();
    await models[precision].load(url, {backend: 'wasm', threads: 1, input: contract.input, output: contract.output});
  }
  for (const fr of index.frames) {
    const frame = await imageData(`${base}/golden/${fr.frame}`);
    const pasted = new ImageData(new Uint8ClampedArray(frame.data), frame.width, frame.height);
    // The app's paste: the same geometry through the browser's canvas (paste_canvas.js).
    const canvas = new OffscreenCanvas(frame.width, frame.height), ctx = canvas.getContext('2d', {willReadFrequently: true});
    ctx.putImageData(frame, 0, 0);
    const paster = new CanvasPaster(spec);
    for (const [k, face] of fr.faces.entries()) {
      const m = geo.faceTransform(face.keypoints, spec);
      const d = Math.max(...m.flat().map((v, i) => Math.abs(v - face.matrix.flat()[i])));
      add(`${fr.name} face ${k} matrix max |diff|`, d, tol.matrix_abs, d <= tol.matrix_abs);
      const crop = geo.crop(frame.data, frame.width, frame.height, m, spec);
      const db = psnr(crop, (await imageData(`${base}/golden/${face.crop}`)).data);
      add(`${fr.name} face ${k} crop PSNR dB`, db, tol.crop_psnr_db, db >= tol.crop_psnr_db);
      const goldenCrop = (await imageData(`${base}/golden/${face.crop}`)).data;
      for (const [precision, client] of Object.entries(models)) {
        const s = spec.size, {output} = await client.run(geo.toTensor(goldenCrop, s, contract.pixels), 1, s);
        const ref = (await imageData(`${base}/golden/${face.output[precision]}`)).data;
        const mdb = psnr(geo.fromTensor(output, s, contract.pixels), ref);
        add(`${fr.name} face ${k} ${precision} model output PSNR dB`, mdb, tol.crop_psnr_db, mdb >= tol.crop_psnr_db);
      }
      const out = await imageData(`${base}/golden/${face.output[fr.pasted.model]}`);
      geo.paste(pasted.data, pasted.width, pasted.height, out.data, m, spec);
      paster.paste(ctx, out.data, m);
    }
    const ref = await imageData(`${base}/golden/${fr.pasted.file}`);
    const [x0, y0, x1, y1] = fr.pasted.region;
    for (const [how, img] of [['', pasted], [' (canvas)', ctx.getImageData(0, 0, frame.width, frame.height)]]) {
      const db = psnr(region(img, fr.pasted.region), ref.data);
      add(`${fr.name} pasted${how} PSNR dB (region ${fr.pasted.region.join(',')})`, db, tol.pasted_psnr_db, db >= tol.pasted_psnr_db);
      // Outside the pasted region the frame must be the input, bit for bit.
      let changed = 0;
      for (let y = 0; y < frame.height; y++) for (let x = 0; x < frame.width; x++) {
        if (x >= x0 && x < x1 && y >= y0 && y < y1) continue;
        const i = (y * frame.width + x) * 4;
        if (img.data[i] !== frame.data[i] || img.data[i + 1] !== frame.data[i + 1] || img.data[i + 2] !== frame.data[i + 2]) changed++;
      }
      add(`${fr.name} pixels changed outside the region${how}`, changed, 0, changed === 0);
    }
  }
  Object.values(models).forEach(m => m.terminate());
  for (const [name, fn] of [['feather', geo.featherMask], ['inner_face', geo.innerFaceMask]]) {
    const ref = await mask16(`${base}/golden/${index.masks[name]}`), mine = fn(spec);
    let d = 0;
    for (let i = 0; i < ref.length; i++) d = Math.max(d, Math.abs(ref[i] - mine[i]));
    add(`${name} mask max |diff|`, d, tol.mask_abs, d <= tol.mask_abs && ref.length === mine.length);
  }
  const trace = await (await fetch(`${base}/golden/${index.one_euro}`)).json();
  const same = Object.entries(trace.params).every(([k, v]) => contract.smoothing[k] === v);
  add('One-Euro settings (contract vs golden trace)', JSON.stringify(contract.smoothing), JSON.stringify(trace.params), same);
  const tracker = new FaceTracker(contract.smoothing);
  let worst = 0, idsOk = true;
  for (const st of trace.steps) {
    const {keypoints, ids} = tracker.update(st.boxes, st.keypoints, st.t);
    idsOk &&= JSON.stringify(ids) === JSON.stringify(st.ids);
    keypoints.forEach((kp, i) => kp.forEach((p, j) => {
      worst = Math.max(worst, Math.abs(p[0] - st.smoothed[i][j][0]), Math.abs(p[1] - st.smoothed[i][j][1]));
    }));
  }
  add(`One-Euro trace (${trace.steps.length} frames) max |diff| px`, worst, tol.one_euro_abs_px, worst <= tol.one_euro_abs_px);
  add('One-Euro track ids', idsOk ? 'same' : 'differ', 'same', idsOk);
  return {ok: checks.every(c => c.ok), checks};
}

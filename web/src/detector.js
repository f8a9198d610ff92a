// Face detection: MediaPipe Tasks Vision FaceDetector with the model and threshold the contract names (BlazeFace
// short range, bundled with the Python package in facefx/assets), VIDEO mode, CPU delegate (the GPU delegate moves keypoints
// by up to 3.5 px against the Python reference, see docs/web.md). WASM and model load from this server only.
import {FaceDetector, FilesetResolver} from '../node_modules/@mediapipe/tasks-vision/vision_bundle.mjs';


export class Detector {
  /** detector: the contract's detector section ({model, minScore}, contract.js). */
  static async create(detector) {
    const fileset = await FilesetResolver.forVisionTasks(new URL('../node_modules/@mediapipe/tasks-vision/wasm', import.meta.url).href);
    const det = await FaceDetector.createFromOptions(fileset, {
      baseOptions: {modelAssetPath: `/assets/${detector.model}`, delegate: 'CPU'},
      runningMode: 'VIDEO', minDetectionConfidence: detector.minScore,
    });
    return new Detector(det);
  }

  constructor(det) { this.det = det; this.lastTs = -1; }

  /** Faces of an image source (canvas, ImageData, video frame) in pixels, highest score first:
   * [{box: [x, y, w, h], score, keypoints: [[x, y] x 6]}] (BlazeFace order: right eye, left eye, nose, mouth, ears). */
  detect(source, width, height, timestampMs) {
    const ts = Math.max(Math.round(timestampMs), this.lastTs + 1);  // VIDEO mode refuses non-increasing timestamps
    this.lastTs = ts;
    const res = this.det.detectForVideo(source, ts);
    return res.detections.map(d => ({
      box: [d.boundingBox.originX, d.boundingBox.originY, d.boundingBox.width, d.boundingBox.height],
      score: d.categories[0].score,
      keypoints: d.keypoints.map(k => [k.x * width, k.y * height]),
    })).sort((a, b) => b.score - a.score);
  }

  close() { this.det.close(); }
}

// Stage timers and the benchmark record, shaped like facefx.bench.benchmark (StageTimer.summary, RESULT_COLUMNS rows)
// so benchmarks/ reads a browser run like any other.

export const STAGES = ['capture', 'detect', 'crop', 'infer', 'paste', 'output'];

/** numpy.percentile's default (linear interpolation between closest ranks). */
export function percentile(values, q) {
  if (!values.length) return NaN;
  const a = [...values].sort((x, y) => x - y), pos = (a.length - 1) * q / 100, lo = Math.floor(pos);
  return lo + 1 < a.length ? a[lo] + (a[lo + 1] - a[lo]) * (pos - lo) : a[lo];
}

export class StageTimer {
  constructor() { this.samples = Object.fromEntries(STAGES.map(s => [s, []])); this.totals = []; this.ends = []; this.t0 = null; }
  /** One finished frame: {stage: ms} for the stages that ran, its own wall ms, and when it was shown. */
  addFrame(stages, totalMs, end = performance.now()) {
    if (this.t0 === null) this.t0 = end - totalMs;
    for (const [k, v] of Object.entries(stages)) (this.samples[k] ??= []).push(v);
    this.totals.push(totalMs);
    this.ends.push(end);
  }
  recentMs(stage, n = 30) {
    const v = (this.samples[stage] ?? []).slice(-n);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0;
  }
  recentFps(n = 30) {
    const e = this.ends.slice(-(n + 1));
    return e.length > 1 && e.at(-1) > e[0] ? (e.length - 1) * 1000 / (e.at(-1) - e[0]) : 0;
  }
  stats(values) {
    return {n: values.length, mean_ms: values.reduce((a, b) => a + b, 0) / values.length, p50_ms: percentile(values, 50),
            p95_ms: percentile(values, 95), p5_ms: percentile(values, 5)};
  }
  summary() {
    const out = {};
    for (const [k, v] of Object.entries(this.samples)) if (v.length) out[k] = this.stats(v);
    if (this.totals.length) out.total = this.stats(this.totals);
    const wall = this.ends.length ? (this.ends.at(-1) - this.t0) / 1000 : 0;
    Object.assign(out, {frames: this.totals.length, wall_s: wall, fps: wall > 0 ? this.totals.length / wall : 0});
    return out;
  }
}

const r3 = v => Math.round(v * 1000) / 1000;

/** benchmarks/results rows (facefx.bench.benchmark.RESULT_COLUMNS), one per stage plus "total" (with the FPS). */
export function resultRows(summary, info) {
  const header = {
    date: new Date().toISOString().replace(/\.\d+Z$/, '+00:00'),
    device: info.device, cpu: info.cpu, threads: info.threads, versions: info.versions,
    model: info.model, model_hash: info.modelHash, backend: info.backend, precision: info.precision, size: info.size,
  };
  const rows = [];
  for (const stage of ['total', ...STAGES]) {
    const s = summary[stage];
    if (!s) continue;
    rows.push({...header, p50_ms: r3(s.p50_ms), p95_ms: r3(s.p95_ms),
               fps: stage === 'total' ? Math.round(summary.fps * 100) / 100 : '', spread_ms: r3(s.p95_ms - s.p5_ms),
               repeats: s.n, macs: '', params: '', kind: 'end-to-end', stage, note: info.note});
  }
  return rows;
}

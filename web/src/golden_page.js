import './privacy.js';
import {checkGolden} from './golden_check.js';

const fmt = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : v);
checkGolden().then((report) => {
  globalThis.goldenReport = report;
  document.getElementById('status').textContent = report.ok ? 'all checks pass' : 'SOME CHECKS FAIL';
  document.getElementById('report').textContent = report.checks
    .map(c => `${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${fmt(c.value)} (limit ${fmt(c.limit)})`).join('\n');
}).catch((err) => {
  globalThis.goldenReport = {ok: false, error: String(err.message ?? err), checks: []};
  document.getElementById('status').textContent = `golden check failed to run: ${err.message ?? err}`;
});

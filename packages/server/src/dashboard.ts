/**
 * The built-in dashboard (ARCHITECTURE.md §13): one static page at `/dashboard` that reads `/metrics` every
 * two seconds and shows, live, whether users suffer from delivery problems — connections by
 * transport, how they end, resumes that held or broke, catch-up, throughput, errors and latency.
 * The page holds no secret: it asks for an API key or token and keeps it in sessionStorage.
 *
 * Hardened like any page that shows data it did not write: its script is a separate file
 * (`/dashboard.js`) under a CSP that allows no inline script, label values from `/metrics` are
 * written as text (never parsed as HTML), and it cannot be framed.
 */

export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mooring dashboard</title>
<style>
  :root { font: 14px/1.4 system-ui, sans-serif; color: #1d2430; background: #f5f6f8; }
  body { margin: 0; }
  [hidden] { display: none !important; }
  header { display: flex; align-items: center; gap: 12px; padding: 14px 24px; background: #fff; border-bottom: 1px solid #e2e5ea; }
  header h1 { font-size: 18px; margin: 0; }
  #state { margin-left: auto; padding: 2px 10px; border-radius: 10px; background: #eceff3; }
  #state.ok { background: #e3f6e8; color: #17692f; }
  #state.bad { background: #fde8e8; color: #9b1c1c; }
  main { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 14px; padding: 20px 24px; }
  section { background: #fff; border: 1px solid #e2e5ea; border-radius: 8px; padding: 12px 14px; }
  h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: #5b6472; margin: 0 0 8px; }
  .big { font-size: 28px; font-weight: 600; }
  table { width: 100%; border-collapse: collapse; }
  td { padding: 2px 0; } td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
  .muted { color: #7a8391; }
  form { display: flex; gap: 8px; padding: 20px 24px; }
  input { flex: 1; padding: 6px 8px; border: 1px solid #c9ced6; border-radius: 6px; }
  button { padding: 6px 12px; border-radius: 6px; border: 1px solid #c9ced6; background: #fff; cursor: pointer; }
</style>
</head>
<body>
<header><h1>Mooring</h1><span class="muted">live delivery health, from /metrics</span><span id="state">…</span></header>
<form id="login" hidden>
  <input id="key" placeholder="API key (name:secret) or token" autocomplete="off">
  <button>Show</button>
</form>
<main id="panels" hidden>
  <section><h2>Connections</h2><div class="big" id="connections">0</div><table id="byTransport"></table></section>
  <section><h2>Connections ended (total · now)</h2><table id="closed"></table></section>
  <section><h2>Resumes</h2><table id="resumes"></table></section>
  <section><h2>Throughput (per s)</h2><table id="throughput"></table></section>
  <section><h2>Latency</h2><table id="latency"></table></section>
  <section><h2>Errors (total · now)</h2><table id="errors"></table></section>
</main>
<script src="/dashboard.js"></script>
</body>
</html>
`;

/** The dashboard's script, served as `/dashboard.js` (no inline script under the CSP). */
export const DASHBOARD_SCRIPT = `(() => {
  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem('mooring-dashboard-key') || '';
  let previous = null;

  function parse(text) {
    const samples = [];
    for (const line of text.split('\\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][\\w:]*)(?:\\{(.*)\\})? (\\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      for (const pair of (m[2] || '').matchAll(/(\\w+)="([^"]*)"/g)) labels[pair[1]] = pair[2];
      samples.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return samples;
  }
  const sum = (s, name, filter = () => true) => s.filter((x) => x.name === name && filter(x.labels)).reduce((a, x) => a + x.value, 0);
  const group = (s, name, label) => {
    const out = {};
    for (const x of s) if (x.name === name) out[x.labels[label]] = (out[x.labels[label]] || 0) + x.value;
    return out;
  };
  function quantile(s, name, q, filter = () => true) {
    const buckets = s.filter((x) => x.name === name + '_bucket' && filter(x.labels)).map((x) => [Number(x.labels.le), x.value]).sort((a, b) => a[0] - b[0]);
    const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
    if (!total) return null;
    const target = total * q;
    for (const [le, count] of buckets) if (count >= target) return le;
    return Infinity;
  }
  // label values come from clients (error codes, reasons): text only, never HTML
  const rows = (el, entries) => {
    const cell = (text, muted) => {
      const td = document.createElement('td');
      td.textContent = String(text);
      if (muted) td.className = 'muted';
      return td;
    };
    const trs = (entries.length ? entries : [['none', '']]).map(([k, v]) => {
      const tr = document.createElement('tr');
      tr.append(cell(k, !entries.length), cell(v, false));
      return tr;
    });
    el.replaceChildren(...trs);
  };
  const rate = (now, before, seconds, per) => before === undefined ? '…' : (((now - before) / seconds) * per).toFixed(per === 1 ? 1 : 0);
  const ms = (seconds) => seconds === null ? '–' : seconds === Infinity ? '> 1 s' : '≤ ' + (seconds * 1000).toFixed(seconds < 0.001 ? 1 : 0) + ' ms';

  async function tick() {
    let text;
    try {
      const res = await fetch('/metrics', { headers: { authorization: 'Bearer ' + key }, cache: 'no-store' });
      if (res.status === 401 || res.status === 403) { showLogin(); return; }
      text = await res.text();
    } catch {
      $('state').textContent = 'server unreachable'; $('state').className = 'bad'; return;
    }
    $('state').textContent = 'live'; $('state').className = 'ok';
    const s = parse(text);
    const at = Date.now();
    const counters = {
      closed: group(s, 'mooring_connections_closed_total', 'reason'),
      errors: group(s, 'mooring_errors_total', 'code'),
      ops: sum(s, 'mooring_operations_total'),
      catchup: sum(s, 'mooring_catchup_messages_total'),
      resumed: sum(s, 'mooring_attaches_total', (l) => l.mode === 'resume' && l.resumed === 'true'),
      failures: group(s, 'mooring_resume_failures_total', 'reason'),
    };
    const seconds = previous ? (at - previous.at) / 1000 : 0;
    const byTransport = group(s, 'mooring_connections', 'transport');
    $('connections').textContent = Object.values(byTransport).reduce((a, b) => a + b, 0);
    rows($('byTransport'), Object.entries(byTransport));
    rows($('closed'), Object.entries(counters.closed).map(([k, v]) => [k, v + ' · ' + rate(v, previous?.closed[k], seconds || 1, 60) + '/min']));
    rows($('resumes'), [
      ['resumed (since start)', counters.resumed],
      ...Object.entries(counters.failures).map(([k, v]) => ['lost: ' + k, v]),
      ['messages caught up', counters.catchup],
    ]);
    rows($('throughput'), [
      ['operations stored', rate(counters.ops, previous?.ops, seconds || 1, 1)],
      ['catch-up messages', rate(counters.catchup, previous?.catchup, seconds || 1, 1)],
    ]);
    rows($('latency'), [
      ['publish p50', ms(quantile(s, 'mooring_publish_seconds', 0.5))],
      ['publish p99', ms(quantile(s, 'mooring_publish_seconds', 0.99))],
      ['store append p99', ms(quantile(s, 'mooring_store_seconds', 0.99, (l) => l.operation === 'append'))],
      ['store read p99', ms(quantile(s, 'mooring_store_seconds', 0.99, (l) => l.operation === 'read'))],
    ]);
    rows($('errors'), Object.entries(counters.errors).map(([k, v]) => [k, v + ' · ' + rate(v, previous?.errors[k], seconds || 1, 60) + '/min']));
    previous = { at, ...counters };
    $('panels').hidden = false;
  }
  function showLogin() {
    $('panels').hidden = true; $('login').hidden = false;
    $('state').textContent = 'sign in'; $('state').className = '';
  }
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    key = $('key').value.trim();
    sessionStorage.setItem('mooring-dashboard-key', key);
    $('login').hidden = true;
    previous = null;
    tick();
  });
  tick();
  setInterval(() => { if ($('login').hidden) tick(); }, 2000);
})();
`;

/**
 * The built-in dashboard (ARCHITECTURE.md §13): one static page at `/dashboard` that shows, live,
 * whether users suffer from delivery problems — charts of the last hour (`/metrics/history`: the
 * server's ring buffer), the sessions in trouble (`/v1/health`) and a session inspector (a channel's
 * health, leases, presence, conversation tree and log). Charts are drawn with uPlot, served from
 * this package (`/dashboard/uplot.js`, `/dashboard/uplot.css`): no CDN, no build step.
 *
 * The page holds no secret: it asks for an API key or token, keeps it in sessionStorage and sends
 * it only as an `authorization` header (never in a URL). Hardened like any page that shows data it
 * did not write: its script is a separate file (`/dashboard.js`) under a CSP that allows no inline
 * script, every value (channel names, clientIds, headers, message data) is written as text, never
 * parsed as HTML, and it cannot be framed.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

export { DASHBOARD_SCRIPT } from './dashboard-script.ts';

export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; " +
  "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const ASSETS: Record<string, { file: string; type: string }> = {
  '/dashboard/uplot.js': { file: 'uplot/dist/uPlot.iife.min.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/uplot.css': { file: 'uplot/dist/uPlot.min.css', type: 'text/css; charset=utf-8' },
};
const loaded = new Map<string, Promise<Buffer>>();

/** A file the page loads from the package (uPlot), or undefined for any other path. */
export async function dashboardAsset(path: string): Promise<{ type: string; body: Buffer } | undefined> {
  const asset = ASSETS[path];
  if (!asset) return undefined;
  let body = loaded.get(path);
  if (!body) {
    body = readFile(createRequire(import.meta.url).resolve(asset.file));
    loaded.set(path, body);
    body.catch(() => loaded.delete(path));
  }
  return { type: asset.type, body: await body };
}

/** The charts: id, title, unit. The script fills them from `/metrics/history` (same ids). */
const CHARTS: Array<[string, string]> = [
  ['connections', 'Connections by transport'],
  ['closed', 'Connections ended (per min, by reason)'],
  ['resumes', 'Resumes vs continuity lost (per min)'],
  ['operations', 'Operations (per s)'],
  ['latency', 'Publish → deliver and store latency (ms)'],
  ['errors', 'Errors (per min, by code)'],
  ['slow', 'Slow-consumer drops (per min)'],
  ['abandoned', 'Runs abandoned by a lease expiry (per min)'],
];

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mooring dashboard</title>
<link rel="stylesheet" href="/dashboard/uplot.css">
<style>
  :root { font: 14px/1.4 system-ui, sans-serif; color: #1d2430; background: #f5f6f8; }
  body { margin: 0; }
  [hidden] { display: none !important; }
  header { display: flex; align-items: center; gap: 12px; padding: 14px 24px; background: #fff; border-bottom: 1px solid #e2e5ea; }
  header h1 { font-size: 18px; margin: 0; }
  #state { margin-left: auto; padding: 2px 10px; border-radius: 10px; background: #eceff3; }
  #state.ok { background: #e3f6e8; color: #17692f; }
  #state.bad { background: #fde8e8; color: #9b1c1c; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 14px; padding: 20px 24px 0; }
  section { background: #fff; border: 1px solid #e2e5ea; border-radius: 8px; padding: 12px 14px; min-width: 0; }
  .wide { margin: 14px 24px; }
  h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: #5b6472; margin: 0 0 8px; }
  .chart { min-height: 200px; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th { text-align: left; font-weight: 600; color: #5b6472; font-size: 12px; }
  td, th { padding: 3px 8px 3px 0; border-bottom: 1px solid #f0f1f4; vertical-align: top; }
  tr.pick { cursor: pointer; } tr.pick:hover { background: #f5f8ff; }
  .muted { color: #7a8391; }
  pre { white-space: pre-wrap; word-break: break-all; margin: 0; font-size: 12px; }
  form { display: flex; gap: 8px; padding: 20px 24px; }
  #inspect { padding: 0 0 8px; }
  input { flex: 1; padding: 6px 8px; border: 1px solid #c9ced6; border-radius: 6px; }
  button { padding: 6px 12px; border-radius: 6px; border: 1px solid #c9ced6; background: #fff; cursor: pointer; }
</style>
</head>
<body>
<header><h1>Mooring</h1><span class="muted">delivery health, last hour</span><span id="state">…</span></header>
<form id="login" hidden>
  <input id="key" placeholder="API key (name:secret) or token" autocomplete="off">
  <button>Show</button>
</form>
<div id="panels" hidden>
<div class="grid">
${CHARTS.map(([id, title]) => `  <section><h2>${title}</h2><div class="chart" id="chart-${id}" data-chart="${id}" data-points="0"></div></section>`).join('\n')}
</div>
<section class="wide"><h2>Sessions in trouble (last 15 min)</h2><table id="trouble"></table></section>
<section class="wide"><h2>Session inspector</h2>
  <form id="inspect"><input id="channel" placeholder="channel, e.g. session:8f3a…" autocomplete="off"><button>Inspect</button></form>
  <div id="inspector"></div>
</section>
</div>
<script src="/dashboard/uplot.js"></script>
<script src="/dashboard.js"></script>
</body>
</html>
`;

/**
 * The dashboard's script, served as `/dashboard.js` (the CSP allows no inline script). It draws
 * `/metrics/history` with uPlot, lists `/v1/health`, and inspects one channel (health, leases,
 * presence, an AI session's conversation tree with run statuses, the last messages rolled up).
 * Everything from the server is written with textContent.
 * The charts' data is also kept on `window.mooringDashboard` (what the Chromium test asserts on).
 */
export const DASHBOARD_SCRIPT = `(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];
  const state = { charts: {}, plots: {}, health: null };
  window.mooringDashboard = state;
  let key = sessionStorage.getItem('mooring-dashboard-key') || '';

  async function get(path) {
    const res = await fetch(path, { headers: { authorization: 'Bearer ' + key }, cache: 'no-store' });
    if (res.status === 401 || res.status === 403) throw Object.assign(new Error('auth'), { auth: true, status: res.status });
    const body = await res.json();
    if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText);
    return body;
  }
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };
  const table = (target, head, rows, onPick) => {
    const trs = [el('tr')];
    for (const h of head) trs[0].append(el('th', h));
    if (!rows.length) { const tr = el('tr'); const td = el('td', 'none', 'muted'); td.colSpan = head.length; tr.append(td); trs.push(tr); }
    for (const row of rows) {
      const tr = el('tr');
      for (const cell of row.cells) tr.append(el('td', cell));
      if (onPick) { tr.className = 'pick'; tr.addEventListener('click', () => onPick(row)); }
      trs.push(tr);
    }
    target.replaceChildren(...trs);
  };
  const ms = (v) => v === null || v === undefined ? '–' : v < 1000 ? Math.round(v) + ' ms' : (v / 1000).toFixed(1) + ' s';
  const bytes = (v) => v < 1024 ? v + ' B' : v < 1048576 ? (v / 1024).toFixed(1) + ' KiB' : (v / 1048576).toFixed(1) + ' MiB';
  const time = (t) => new Date(t).toISOString().slice(11, 19);

  function draw(history) {
    for (const [name, series] of Object.entries(history.series)) {
      const target = $('chart-' + name);
      if (!target) continue;
      const names = Object.keys(series);
      const data = [history.t, ...names.map((n) => series[n])];
      state.charts[name] = { names, data };
      target.dataset.points = String(history.t.length);
      let plot = state.plots[name];
      if (plot && plot.series.length !== names.length + 1) { plot.destroy(); plot = undefined; }
      if (!plot) {
        target.replaceChildren();
        plot = new uPlot({
          width: Math.max(300, target.clientWidth), height: 180,
          scales: { x: { time: true } },
          series: [{}, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: name !== 'latency' }))],
          axes: [{}, { size: 56 }],
          legend: { live: true },
        }, data, target);
        state.plots[name] = plot;
      } else plot.setData(data);
    }
  }

  // the count of all, and the transports of those listed (a report lists at most 200)
  function subscriberCell(h) {
    const transports = [...new Set(h.subscribers.map((s) => s.transport))].join(', ');
    return h.subscriberCount + (transports ? ' (' + transports + ')' : '');
  }

  function trouble(report) {
    state.health = report;
    table($('trouble'), ['channel', 'subscribers', 'reconnects', 'resumed', 'continuity lost', 'lost conns', 'offline (max)', 'caught up', 'slow drops', 'oldest unacked'],
      report.channels.map((h) => ({
        channel: h.channel,
        cells: [h.channel, subscriberCell(h), h.reconnects, h.resumes, h.continuityLost,
          h.connectionsLost, ms(h.offlineMs) + ' (' + ms(h.maxOfflineMs) + ')', h.caughtUpMessages + ' · ' + bytes(h.caughtUpBytes),
          h.slowConsumerDrops, ms(h.oldestUnackedMs)],
      })),
      (row) => { $('channel').value = row.channel; inspect(row.channel); });
  }

  async function inspect(channel) {
    const out = $('inspector');
    const c = encodeURIComponent(channel);
    try {
      const [health, presence, log, conversation] = await Promise.all([
        get('/v1/channels/' + c + '/health'),
        get('/v1/channels/' + c + '/presence'),
        get('/v1/channels/' + c + '/messages?limit=50'),
        get('/v1/channels/' + c + '/conversation').catch((err) => {
          if (err.auth) throw err;
          return { ai: true, messages: 0, truncated: false, lines: ['(conversation unavailable: ' + err.message + ')'] };
        }),
      ]);
      const parts = [];
      const add = (title, node) => { parts.push(el('h2', title)); parts.push(node); };
      const t = () => el('table');
      const subs = t();
      table(subs, ['connection', 'clientId', 'transport', 'attached'], health.subscribers.map((s) => ({ cells: [s.connectionId, s.clientId || '–', s.transport, time(s.since)] })));
      add('Subscribers (' + health.subscriberCount + (health.subscribers.length < health.subscriberCount ? ', the first ' + health.subscribers.length + ' listed' : '') + ')', subs);
      add('Last 15 min', el('pre', 'reconnects ' + health.reconnects + ' · resumed ' + health.resumes + ' · continuity lost ' + health.continuityLost +
        (health.lastContinuityLost ? ' (last: ' + health.lastContinuityLost.reason + ' at ' + time(health.lastContinuityLost.at) + ')' : '') +
        ' · connections lost ' + health.connectionsLost + ' · offline ' + ms(health.offlineMs) + ' (max ' + ms(health.maxOfflineMs) + ')' +
        ' · caught up ' + health.caughtUpMessages + ' messages, ' + bytes(health.caughtUpBytes) + ' · slow drops ' + health.slowConsumerDrops +
        ' · unacked publishes ' + health.unackedPublishes + ' (oldest ' + ms(health.oldestUnackedMs) + ')'));
      const leases = t();
      table(leases, ['message', 'clientId', 'lease', 'state'], health.leases.map((l) => ({
        cells: [l.serial, l.clientId || '–', ms(l.ms), l.held ? 'held (publisher connected)' : 'abandoned in ' + ms(Math.max(0, l.deadline - health.serverTime))],
      })));
      // a server from before leaseCount lists them all
      const leaseCount = health.leaseCount ?? health.leases.length;
      add('Leases (' + leaseCount + (health.leases.length < leaseCount ? ', the first ' + health.leases.length + ' listed' : '') + ')', leases);
      const members = t();
      table(members, ['clientId', 'connection', 'data'], presence.members.map((m) => ({ cells: [m.clientId, m.connectionId, m.data === undefined ? '' : JSON.stringify(m.data)] })));
      add('Presence (' + presence.members.length + ')', members);
      if (conversation.ai) {
        const tree = el('pre', conversation.lines.join('\\n'));
        tree.id = 'conversation';
        add('Conversation (' + conversation.messages + ' latest messages' + (conversation.truncated ? ', older ones not read' : '') + ')', tree);
      }
      const messages = t();
      table(messages, ['serial', 'version', 'action', 'name', 'id', 'clientId', 'headers', 'data'], log.items.slice().reverse().map((m) => ({
        cells: [m.serial, m.version, m.action, m.name || '', m.id, m.clientId || '–', m.headers ? JSON.stringify(m.headers) : '',
          (typeof m.data === 'string' ? m.data : JSON.stringify(m.data) || '').slice(0, 200)],
      })));
      add('Log, rolled up (last ' + log.items.length + ')', messages);
      out.replaceChildren(...parts);
    } catch (err) {
      out.replaceChildren(el('p', err.auth ? 'your credentials may not inspect ' + channel + ' (needs history and presence)' : String(err.message), 'muted'));
    }
  }

  async function tick() {
    try {
      const [history, health] = await Promise.all([get('/metrics/history'), get('/v1/health?limit=20')]);
      $('state').textContent = 'live'; $('state').className = 'ok';
      $('panels').hidden = false;
      draw(history);
      trouble(health);
    } catch (err) {
      if (err.auth) { showLogin(); return; }
      $('state').textContent = 'server unreachable'; $('state').className = 'bad';
    }
  }
  function showLogin() {
    $('panels').hidden = true; $('login').hidden = false;
    $('state').textContent = 'sign in'; $('state').className = '';
  }
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    key = $('key').value.trim();
    $('key').value = '';
    sessionStorage.setItem('mooring-dashboard-key', key);
    $('login').hidden = true;
    tick();
  });
  $('inspect').addEventListener('submit', (e) => { e.preventDefault(); if ($('channel').value.trim()) inspect($('channel').value.trim()); });
  tick();
  setInterval(() => { if ($('login').hidden) tick(); }, 3000);
})();
`;

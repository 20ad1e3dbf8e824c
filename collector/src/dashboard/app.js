// Ember's dashboard: one page, no framework, no build step. The fleet comes from /api/hosts,
// history from /api/hosts/{id}/history, live changes from the /api/events stream.
// Where reading needs a token, a login form posts it once to /login, which sets an HttpOnly
// session cookie: fetch, EventSource and <img> then all send it (EventSource cannot send headers).
// The Content-Security-Policy allows no inline style attributes: styles are set through CSSOM.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids.flat(Infinity)) if (k !== undefined && k !== null) e.append(k.nodeType ? k : String(k));
  return e;
};

// ---- formatting (the API speaks the wire units: hundredths of a percent, millidegrees, bytes)
const pct = h => h == null ? '–' : (h / 100).toFixed(1) + ' %';
const bytes = b => {
  if (b == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(b < 10 ? 1 : 0) : b) + ' ' + u[i];
};
const rate = b => b == null ? '–' : bytes(b) + '/s';
const celsius = m => m == null ? '–' : (m / 1000).toFixed(1) + ' °C';
const ago = ms => {
  if (!ms) return 'never';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 5) return 'now';
  if (s < 90) return Math.round(s) + ' s ago';
  if (s < 5400) return Math.round(s / 60) + ' min ago';
  if (s < 129600) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
};

// ---- derived figures of a host summary
const figures = h => {
  const s = h.latest;
  if (!s) return {};
  const root = (s.filesystems || []).find(f => f.mount === '/') || (s.filesystems || [])[0];
  const temps = (s.temperatures || []).map(t => t.millicelsius);
  const sum = k => (s.networks || []).reduce((a, n) => a + n[k], 0);
  return {
    cpu: s.cpu.busy,
    mem: s.memory.total ? 10000 * s.memory.used / s.memory.total : null,
    disk: root && root.total ? 10000 * root.used / root.total : null,
    temp: temps.length ? Math.max(...temps) : null,
    rx: sum('rx_bps'), tx: sum('tx_bps'),
  };
};

// ---- state
const state = {
  hosts: new Map(),
  sort: { key: 'id', dir: 1 },
  filter: '', status: 'all',
  view: { name: 'fleet' },
  range: { preset: '1h' },
  history: null,
  alerts: { active: [], history: [] },
  host: { alerts: null, commands: [] },
  locked: false,
  operator: null,
};
let dirty = false;
const redraw = () => { if (!dirty) { dirty = true; requestAnimationFrame(() => { dirty = false; render(); }); } };

async function getJSON(url) {
  const r = await fetch(url);
  if (r.status === 401) { showLogin(); throw new Error('log in to read'); }
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return r.json();
}

async function loadHosts() {
  const list = await getJSON('/api/hosts');
  state.hosts = new Map(list.map(h => [h.id, h]));
  redraw();
}

// ---- alerts and commands (small: the newest 20 events, a host's newest 8 commands)
async function loadAlerts() {
  const [a, h] = await Promise.all([getJSON('/api/alerts'), getJSON('/api/alerts/history?limit=20')]);
  state.alerts = { active: a.active, history: h.history };
  redraw();
}

async function loadHostExtras(id) {
  const [a, c] = await Promise.all([getJSON(`/api/hosts/${id}/alerts`).catch(() => null), getJSON(`/api/hosts/${id}/commands?limit=8`)]);
  if (state.view.name !== 'host' || state.view.id !== id) return;
  state.host = { alerts: a, commands: c.commands };
  redraw();
  // A pending command's result comes back within its timeout: look again shortly.
  if (c.commands.some(x => x.status === 'pending')) setTimeout(() => loadHostExtras(id), 500);
}

// ---- the operator token: commands (and every other change) need one as a bearer token; the
// session cookie only reads. Asked for on a 401/403 in a small form, kept in sessionStorage.
const OPERATOR_KEY = 'ember.operator-token';

// A change (POST/DELETE) with the operator token, if there is one. On a refusal it forgets the
// token, shows the form, and runs `retry` once a token is given; the answer is then null.
async function operatorFetch(url, opts, retry) {
  const token = sessionStorage.getItem(OPERATOR_KEY);
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = 'Bearer ' + token;
  const r = await fetch(url, { ...opts, headers });
  if (r.status !== 401 && r.status !== 403) return r;
  sessionStorage.removeItem(OPERATOR_KEY);
  const why = !token ? 'Commands need an operator token.'
    : r.status === 403 ? 'That token may only read: commands need an operator token.' : 'Unknown token.';
  askOperatorToken(why, retry);
  return null;
}

// The form is made once and kept across renders, so that what is typed survives live updates.
function askOperatorToken(why, retry) {
  if (!state.operator) {
    const input = el('input', { type: 'password', id: 'operator-token', placeholder: 'Operator token', 'aria-label': 'operator token', autocomplete: 'off', required: '' });
    const note = el('span', { class: 'muted', id: 'operator-note' });
    const form = el('form', { id: 'operator', class: 'operator', onsubmit: e => {
      e.preventDefault();
      sessionStorage.setItem(OPERATOR_KEY, input.value.trim());
      input.value = '';
      const again = state.operator.retry;
      state.operator = null;
      redraw();
      if (again) again();
    } },
    note, ' ', el('code', {}, 'ember-collector token add NAME --role operator'), ' makes one.',
    el('div', { class: 'toolbar' }, input,
      el('button', { type: 'submit', id: 'operator-submit' }, 'Send'),
      el('button', { type: 'button', id: 'operator-cancel', onclick: () => { state.operator = null; redraw(); } }, 'Cancel')));
    state.operator = { form, input, note };
  }
  state.operator.note.textContent = why;
  state.operator.retry = retry;
  redraw();
  requestAnimationFrame(() => state.operator && state.operator.input.focus());
}

async function sendCommand(id, action) {
  const r = await operatorFetch(`/api/hosts/${id}/commands`, { method: 'POST', body: JSON.stringify({ action }) }, () => sendCommand(id, action));
  if (!r) return;
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { state.host.error = body.error || r.statusText; redraw(); return; }
  state.host.error = null;
  loadHostExtras(id);
}

const alertRow = a => el('li', { class: 'sev-' + a.severity, 'data-rule': a.rule, 'data-host': a.host },
  el('b', {}, a.rule), ' on ', el('a', { href: '#/host/' + a.host }, a.host), a.summary ? ': ' + a.summary : '',
  el('span', { class: 'muted' }, ` · since ${ago(a.since_ms)}${a.silenced ? ' · silenced' : ''}`));
const eventRow = e => el('li', { class: 'sev-' + e.alert.severity },
  el('span', { class: 'change ' + e.change }, e.change), ' ', el('b', {}, e.alert.rule), ' on ', e.alert.host,
  el('span', { class: 'muted' }, ' · ' + ago(e.at_ms)));

function alertsCard(active, history, title) {
  return el('div', { class: 'card alerts', id: 'alerts' },
    el('h3', {}, title, el('span', {}, active.length ? `${active.length} firing` : 'none firing')),
    active.length ? el('ul', { class: 'active' }, active.map(alertRow)) : null,
    history.length ? el('details', {}, el('summary', { class: 'muted' }, 'Recent'), el('ul', { class: 'history' }, history.map(eventRow))) : null);
}

// ---- login, where reading needs a token
function showLogin() {
  if (state.locked) return;
  state.locked = true;
  const token = el('input', { type: 'password', id: 'token', placeholder: 'Token', 'aria-label': 'token', autocomplete: 'current-password', required: '' });
  const note = el('span', { class: 'muted', id: 'login-error' });
  const form = el('form', { id: 'login', class: 'card', onsubmit: async e => {
    e.preventDefault();
    const r = await fetch('/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: token.value }) });
    if (!r.ok) { note.textContent = 'Unknown token.'; token.select(); return; }
    state.locked = false;
    start();
  } },
  el('h2', {}, 'Log in'),
  el('p', {}, 'This collector needs a token to read. ', el('code', {}, 'ember-collector token add NAME --role read'), ' makes one.'),
  token, el('button', { type: 'submit', id: 'login-submit' }, 'Log in'), note);
  $('#app').replaceChildren(form);
  token.focus();
}

// ---- live events
let es = null;
function connect() {
  const live = $('#live');
  if (es) es.close();
  es = new EventSource('/api/events');
  es.onopen = () => { live.style.color = 'var(--ok)'; live.title = 'live'; };
  es.onerror = () => { live.style.color = 'var(--bad)'; live.title = 'reconnecting…'; };
  es.addEventListener('sample', e => {
    const { host, sample } = JSON.parse(e.data);
    const h = state.hosts.get(host);
    if (!h) { loadHosts(); return; }
    h.latest = sample; h.last_seen_ms = Date.now(); h.samples = (h.samples || 0) + 1;
    if (h.status !== 'offline') h.status = 'online';
    if (state.view.name === 'host' && state.view.id === host) appendLive(sample);
    redraw();
  });
  es.addEventListener('status', e => {
    const { host, status } = JSON.parse(e.data);
    const h = state.hosts.get(host);
    if (h) { h.status = status; redraw(); } else loadHosts();
  });
  es.addEventListener('info', () => loadHosts());
}

// ---- fleet view
const COLUMNS = [
  ['id', 'Host', h => h.id],
  ['status', 'Status', h => h.status],
  ['seen', 'Last seen', h => -h.last_seen_ms],
  ['cpu', 'CPU', h => figures(h).cpu ?? -1],
  ['mem', 'Memory', h => figures(h).mem ?? -1],
  ['disk', 'Disk', h => figures(h).disk ?? -1],
  ['temp', 'Temp', h => figures(h).temp ?? -1e9],
  ['net', 'Network ↓ / ↑', h => (figures(h).rx ?? 0) + (figures(h).tx ?? 0)],
  ['tags', 'Tags', h => (h.tags || []).join(' ')],
  ['board', 'Board', h => (h.info && h.info.board) || ''],
];
const meter = h => h == null ? '–' : [el('span', { class: 'bar' }, el('i', { style: `width:${Math.min(100, h / 100)}%` })), pct(h)];

function fleet() {
  const hosts = [...state.hosts.values()];
  const q = state.filter.toLowerCase();
  const shown = hosts
    .filter(h => state.status === 'all' || h.status === state.status)
    .filter(h => !q || h.id.includes(q) || (h.tags || []).some(t => t.toLowerCase().includes(q)) || ((h.info && h.info.board) || '').toLowerCase().includes(q));
  const [, , key] = COLUMNS.find(c => c[0] === state.sort.key);
  shown.sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * state.sort.dir; });

  const head = el('tr', {}, COLUMNS.map(([k, label]) => el('th', {
    'data-key': k, class: ['board', 'disk', 'seen'].includes(k) ? 'hide-s' : '',
    'aria-sort': state.sort.key === k ? (state.sort.dir > 0 ? 'ascending' : 'descending') : null,
    onclick: () => { state.sort = { key: k, dir: state.sort.key === k ? -state.sort.dir : 1 }; redraw(); },
  }, label)));
  const rows = shown.map(h => {
    const f = figures(h);
    return el('tr', { 'data-host': h.id, 'data-status': h.status, 'data-seq': h.latest ? h.latest.seq : 0, class: h.status,
      onclick: () => { location.hash = '#/host/' + h.id; } },
      el('td', {}, el('span', { class: 'dot' }), h.id),
      el('td', { class: 'status' }, h.status),
      el('td', { class: 'hide-s muted' }, ago(h.last_seen_ms)),
      el('td', { class: 'num cpu' }, meter(f.cpu)),
      el('td', { class: 'num' }, meter(f.mem)),
      el('td', { class: 'num hide-s' }, meter(f.disk)),
      el('td', { class: 'num' }, celsius(f.temp)),
      el('td', { class: 'num' }, rate(f.rx) + ' / ' + rate(f.tx)),
      el('td', { class: 'tags' }, (h.tags || []).map(t => el('span', { class: 'tag' }, t))),
      el('td', { class: 'hide-s muted' }, (h.info && h.info.board) || ''));
  });
  const search = el('input', { type: 'search', placeholder: 'Filter hosts…', value: state.filter, 'aria-label': 'filter',
    oninput: e => { state.filter = e.target.value; redraw(); } });
  const status = el('select', { 'aria-label': 'status', onchange: e => { state.status = e.target.value; redraw(); } },
    ['all', 'online', 'stale', 'offline', 'unknown'].map(s => el('option', { value: s, selected: s === state.status ? '' : null }, s)));
  return [
    alertsCard(state.alerts.active, state.alerts.history, 'Alerts'),
    el('div', { class: 'toolbar' }, search, status),
    hosts.length
      ? el('table', { id: 'fleet' }, el('thead', {}, head), el('tbody', {}, rows))
      : el('div', { class: 'empty' }, 'No hosts yet. Start an agent: ', el('code', {}, 'ember-agent --broker HOST:1883')),
  ];
}

// ---- charts: canvas, min/avg/max bands from the tiers
const COLORS = ['--c1', '--c2', '--c3', '--c4', '--c5', '--c6'].map(v => getComputedStyle(document.documentElement).getPropertyValue(v).trim() || '#888');

function drawChart(canvas, series, fmt, range) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 400, h = canvas.clientHeight || 160;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  const css = getComputedStyle(document.body);
  const fg = css.color, line = css.getPropertyValue('--line') || '#ccc';
  const pad = { l: 58, r: 8, t: 6, b: 18 };
  const t0 = range.from, t1 = range.to;
  let lo = 0, hi = 0, n = 0;
  for (const s of series) for (const p of s.points) { hi = Math.max(hi, p[3]); lo = Math.min(lo, p[1]); n++; }
  canvas.dataset.points = n;
  if (!n) { g.font = '13px system-ui, sans-serif'; g.fillStyle = fg; g.globalAlpha = .6; g.fillText('no data in this range', w / 2 - 60, h / 2); g.globalAlpha = 1; return; }
  if (hi === lo) hi = lo + 1;
  const X = t => pad.l + (t - t0) / (t1 - t0 || 1) * (w - pad.l - pad.r);
  const Y = v => h - pad.b - (v - lo) / (hi - lo) * (h - pad.t - pad.b);
  g.font = '11px system-ui, sans-serif'; g.fillStyle = fg; g.strokeStyle = line; g.lineWidth = 1;
  for (let i = 0; i <= 3; i++) {
    const v = lo + (hi - lo) * i / 3, y = Y(v);
    g.globalAlpha = .5; g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke(); g.globalAlpha = 1;
    g.fillText(fmt(v), 2, y + 4);
  }
  const span = t1 - t0;
  const label = t => { const d = new Date(t); return span > 2 * 86400e3 ? d.toLocaleDateString() : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }); };
  for (let i = 0; i <= 3; i++) { const t = t0 + span * i / 3; g.fillText(label(t), Math.min(X(t), w - 60), h - 4); }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = s.points.filter(p => p[0] >= t0 && p[0] <= t1);
    if (!pts.length) return;
    if (pts.some(p => p[1] !== p[3])) {
      g.globalAlpha = .15; g.fillStyle = c; g.beginPath();
      pts.forEach((p, j) => j ? g.lineTo(X(p[0]), Y(p[3])) : g.moveTo(X(p[0]), Y(p[3])));
      [...pts].reverse().forEach(p => g.lineTo(X(p[0]), Y(p[1])));
      g.fill(); g.globalAlpha = 1;
    }
    g.strokeStyle = c; g.lineWidth = 1.5; g.beginPath();
    let last = null;
    for (const p of pts) {
      // A gap longer than three steps is drawn as a gap.
      const gap = last !== null && p[0] - last > 3 * (state.history ? state.history.step_ms : 1000);
      gap || last === null ? g.moveTo(X(p[0]), Y(p[2])) : g.lineTo(X(p[0]), Y(p[2]));
      last = p[0];
    }
    g.stroke();
    // Points with no neighbour (a young host, a lone bucket) as dots.
    g.fillStyle = c;
    pts.forEach((p, j) => {
      const near = k => pts[k] && Math.abs(pts[k][0] - p[0]) <= 3 * (state.history ? state.history.step_ms : 1000);
      if (!near(j - 1) && !near(j + 1)) { g.beginPath(); g.arc(X(p[0]), Y(p[2]), 2, 0, 7); g.fill(); }
    });
  });
}

const CHARTS = [
  { id: 'cpu', title: 'CPU', metrics: ['cpu.busy', 'cpu.core'], fmt: v => (v / 100).toFixed(0) + ' %', name: s => s.metric === 'cpu.busy' ? 'all' : 'core ' + s.label },
  { id: 'memory', title: 'Memory', metrics: ['memory.used', 'memory.cached'], fmt: bytes, name: s => s.metric.split('.')[1] },
  { id: 'network', title: 'Network', metrics: ['net.rx', 'net.tx'], fmt: rate, name: s => s.label + (s.metric === 'net.rx' ? ' ↓' : ' ↑') },
  { id: 'disk', title: 'Disk I/O', metrics: ['disk.read', 'disk.write'], fmt: rate, name: s => s.label + (s.metric === 'disk.read' ? ' read' : ' write') },
  { id: 'temp', title: 'Temperature', metrics: ['temp'], fmt: v => (v / 1000).toFixed(0) + ' °C', name: s => s.label },
];
const PRESETS = { '15m': 900e3, '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };

function currentRange() {
  const r = state.range;
  if (r.preset) { const to = Date.now(); return { from: to - PRESETS[r.preset], to }; }
  return { from: r.from, to: r.to };
}

async function loadHistory(id) {
  const { from, to } = currentRange();
  const series = CHARTS.flatMap(c => c.metrics).join(',');
  try {
    state.history = await getJSON(`/api/hosts/${id}/history?from=${Math.round(from)}&to=${Math.round(to)}&resolution=auto&series=${series}`);
    state.history.range = { from, to };
  } catch (e) {
    state.history = { error: String(e.message || e), series: [], range: { from, to } };
  }
  redraw();
}

// A live sample extends the raw history while a preset range is shown.
function appendLive(s) {
  const hist = state.history;
  if (!hist || !state.range.preset || hist.resolution !== 'raw') return;
  const add = (metric, label, v) => {
    let ser = hist.series.find(x => x.metric === metric && (x.label || null) === (label ?? null));
    if (!ser) { ser = { metric, label, points: [] }; if (label === undefined) delete ser.label; hist.series.push(ser); }
    ser.points.push([s.timestamp_ms, v, v, v]);
  };
  add('cpu.busy', undefined, s.cpu.busy);
  s.cpu.cores.forEach((c, i) => add('cpu.core', String(i), c));
  add('memory.used', undefined, s.memory.used); add('memory.cached', undefined, s.memory.cached);
  for (const n of s.networks) { add('net.rx', n.interface, n.rx_bps); add('net.tx', n.interface, n.tx_bps); }
  for (const d of s.disks) { add('disk.read', d.device, d.read_bps); add('disk.write', d.device, d.write_bps); }
  for (const t of s.temperatures) add('temp', t.sensor, t.millicelsius);
}

function hostView(id) {
  const h = state.hosts.get(id);
  if (!h) return el('div', { class: 'empty' }, 'No host ', el('code', {}, id), '. ', el('a', { href: '#/' }, 'Back to the fleet'));
  const hist = state.history;
  const range = currentRange();
  const buttons = Object.keys(PRESETS).map(p => el('button', { 'data-range': p, 'aria-pressed': String(state.range.preset === p),
    onclick: () => { state.range = { preset: p }; loadHistory(id); } }, p));
  const iso = t => new Date(t - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
  const from = el('input', { type: 'datetime-local', id: 'from', value: iso(range.from), 'aria-label': 'from' });
  const to = el('input', { type: 'datetime-local', id: 'to', value: iso(range.to), 'aria-label': 'to' });
  const apply = el('button', { id: 'apply', onclick: () => {
    const f = new Date(from.value).getTime(), t = new Date(to.value).getTime();
    if (f < t) { state.range = { from: f, to: t }; loadHistory(id); }
  } }, 'Apply');

  const charts = CHARTS.map(c => {
    const series = hist ? hist.series.filter(s => c.metrics.includes(s.metric)) : [];
    const canvas = el('canvas', { 'data-chart': c.id });
    requestAnimationFrame(() => drawChart(canvas, series, c.fmt, hist ? hist.range : range));
    return el('div', { class: 'card' },
      el('h3', {}, c.title, el('span', {}, hist ? hist.resolution : '')),
      canvas,
      el('div', { class: 'legend' }, series.map((s, i) => el('span', {}, el('b', { style: `background:${COLORS[i % COLORS.length]}` }), c.name(s)))));
  });

  const s = h.latest;
  const info = h.info || {};
  const inventory = el('div', { class: 'card' }, el('h3', {}, 'Inventory'), el('dl', {},
    [['Board', info.board], ['OS', info.os], ['Kernel', info.kernel], ['CPU', info.cpu_model && `${info.cpu_model} × ${info.cpu_cores}`],
     ['Memory', info.memory && bytes(info.memory)], ['Agent', info.agent_version],
     ['Addresses', (info.interfaces || []).flatMap(i => i.ipv4.map(a => `${i.name} ${a.join('.')}`)).join(', ')],
     ['Disks', (info.disks || []).map(d => `${d.name} ${bytes(d.size)}`).join(', ')]]
      .filter(([, v]) => v).map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])));
  const procs = (title, list) => el('div', { class: 'card' }, el('h3', {}, title),
    el('table', {}, el('tbody', {}, (list || []).map(p => el('tr', {}, el('td', {}, p.name), el('td', { class: 'num' }, (p.cpu / 100).toFixed(1) + ' %'), el('td', { class: 'num' }, bytes(p.memory)))))));
  const panel = el('div', { class: 'card panel' }, el('h3', {}, 'Panel', el('span', {}, 'what its display shows')),
    el('img', { id: 'panel', alt: `${id}'s panel`, src: `/api/hosts/${id}/panel.png?seq=${s ? s.seq : 0}`, onerror: e => { e.target.parentNode.hidden = true; } }));

  const extras = state.host;
  const alerts = extras.alerts ? alertsCard(extras.alerts.active, extras.alerts.history, 'Alerts') : null;
  const actions = [['identify', 'Identify'], ['previous-page', '◀ Page'], ['next-page', 'Page ▶'], ['republish-inventory', 'Republish inventory']];
  const commands = el('div', { class: 'card commands', id: 'commands' },
    el('h3', {}, 'Commands', el('span', {}, 'sent to the agent over MQTT')),
    el('div', { class: 'toolbar' }, actions.map(([a, label]) => el('button', { 'data-action': a, onclick: () => sendCommand(id, a) }, label))),
    state.operator ? state.operator.form : null,
    extras.error ? el('div', { class: 'error' }, extras.error) : null,
    el('table', {}, el('tbody', {}, extras.commands.map(c => el('tr', { 'data-id': c.id, 'data-status': c.status },
      el('td', {}, c.name || c.action), el('td', { class: 'status' }, c.status), el('td', { class: 'muted' }, c.detail || ''),
      el('td', { class: 'muted' }, `${c.actor} · ${ago(c.requested_ms)}`))))));
  return [
    el('div', { class: 'hosthead' },
      el('a', { href: '#/' }, '← Fleet'),
      el('h2', { class: h.status, id: 'host-status', 'data-status': h.status }, el('span', { class: 'dot' }), id),
      el('span', { class: 'muted' }, `${h.status} · last seen ${ago(h.last_seen_ms)}`)),
    el('div', { class: 'toolbar' }, buttons, from, to, apply, hist && hist.error ? el('span', { class: 'muted' }, hist.error) : null),
    el('div', { class: 'grid' }, alerts, commands, charts, panel, inventory, procs('Top CPU', s && s.top_cpu), procs('Top memory', s && s.top_memory)),
  ];
}

// ---- routing and rendering
function route() {
  const m = location.hash.match(/^#\/host\/([a-z0-9-]+)/);
  state.view = m ? { name: 'host', id: m[1] } : { name: 'fleet' };
  if (m) {
    state.range = { preset: '1h' }; state.history = null; state.host = { alerts: null, commands: [] }; state.operator = null;
    loadHistory(m[1]); loadHostExtras(m[1]).catch(() => {});
  }
  redraw();
}

function render() {
  if (state.locked) return;
  const hosts = [...state.hosts.values()];
  const up = hosts.filter(h => h.status === 'online').length;
  $('#counts').textContent = `${hosts.length} hosts · ${up} up · ${hosts.length - up} down`;
  const app = $('#app');
  // Keep the filter's focus and caret across renders.
  const focused = document.activeElement && document.activeElement.matches('input[type=search]');
  const typing = state.operator && document.activeElement === state.operator.input;
  app.replaceChildren(...[state.view.name === 'host' ? hostView(state.view.id) : fleet()].flat());
  if (focused) { const i = $('input[type=search]'); i.focus(); i.setSelectionRange(i.value.length, i.value.length); }
  if (typing && state.operator.input.isConnected) state.operator.input.focus();
}

$('#theme').addEventListener('click', () => {
  const root = document.documentElement;
  const dark = root.dataset.theme ? root.dataset.theme === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
  root.dataset.theme = dark ? 'light' : 'dark';
  redraw();
});
addEventListener('hashchange', route);
function start() {
  loadAlerts().catch(() => {});
  loadHosts().then(route).catch(e => { if (!state.locked) $('#app').replaceChildren(el('div', { class: 'empty' }, 'Cannot reach the collector: ' + e.message)); });
  connect();
}
start();
// Ages and stale states move on without events; refresh the list now and then.
setInterval(() => {
  if (state.locked) return;
  loadHosts().catch(() => {});
  loadAlerts().catch(() => {});
  if (state.view.name === 'host') loadHostExtras(state.view.id).catch(() => {});
}, 10000);

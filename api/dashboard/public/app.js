/*
 * Sophia dashboard: plain browser JavaScript, no build step. Served with a strict Content-Security-Policy
 * (scripts from this origin only), so everything happens here, wired with addEventListener.
 *
 * Every value that comes from the API is put into the page with textContent / text nodes, never innerHTML.
 * Live updates come from GET /runs/:id/events (Server-Sent Events) read with fetch() — EventSource cannot send
 * the Authorization header.
 */
(function () {
  'use strict';

  const KEY_STORAGE = 'sophia.apiKey';
  /** The API root: the dashboard lives at <root>/dashboard/. */
  const API_ROOT = new URL('../', document.baseURI);
  const RUNS_REFRESH_MS = 5000;
  const REDRAW_MS = 250;
  const RECONNECT_MS = 2000;
  const CHART_HEIGHT = 210;
  const SMALL_CHART_HEIGHT = 150;
  const TERMINAL = new Set(['completed', 'failed', 'canceled', 'terminated', 'timed_out', 'continued_as_new']);

  const STAGE_LABELS = {
    prepareData: 'Data',
    sftWarmup: 'SFT warmup',
    rewardModel: 'Reward model',
    trustGrpo: 'Trust-GRPO',
    evaluation: 'Evaluation',
  };

  /** The metrics-log stage name of each pipeline stage that logs steps. */
  const METRIC_STAGES = { sftWarmup: 'sft', rewardModel: 'rm', trustGrpo: 'grpo' };

  const COLORS = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#dc2626', '#0891b2', '#ca8a04', '#db2777'];

  /**
   * The main charts: each series is one numeric field of the records of one (stage, kind). A chart shows only
   * the series that have data, and only when at least one has. Fields not claimed here go to "More metrics".
   */
  const CHARTS = [
    {
      id: 'sft-loss',
      title: 'SFT loss',
      series: [
        { stage: 'sft', kind: 'step', field: 'loss', label: 'train loss' },
        { stage: 'sft', kind: 'validation', field: 'valLoss', label: 'validation loss', sparse: true },
      ],
    },
    {
      id: 'rm-loss',
      title: 'Reward model loss',
      series: [
        { stage: 'rm', kind: 'step', field: 'loss', label: 'train loss' },
        { stage: 'rm', kind: 'validation', field: 'valLoss', label: 'validation loss', sparse: true },
      ],
    },
    {
      id: 'rewards',
      title: 'Rewards',
      series: [
        { stage: 'grpo', kind: 'step', field: 'outcomeReward', label: 'outcome' },
        { stage: 'grpo', kind: 'step', field: 'thinkingReward', label: 'thinking' },
        { stage: 'grpo', kind: 'step', field: 'reward', label: 'total' },
      ],
    },
    {
      id: 'accuracy',
      title: 'Accuracy',
      series: [
        { stage: 'grpo', kind: 'step', field: 'accuracy', label: 'train (rollouts)' },
        { stage: 'grpo', kind: 'eval', field: 'testAccuracy', label: 'test', sparse: true },
        { stage: 'grpo', kind: 'eval', field: 'oodAccuracy', label: 'ood', sparse: true },
        { stage: 'sft', kind: 'validation', field: 'accuracy', label: 'SFT validation', sparse: true },
      ],
    },
    { id: 'gamma', title: 'Trust γ', series: [{ stage: 'grpo', kind: 'step', field: 'gamma', label: 'γ' }] },
    {
      id: 'kl',
      title: 'KL / entropy',
      series: [
        { stage: 'grpo', kind: 'step', field: 'kl', label: 'KL' },
        { stage: 'grpo', kind: 'step', field: 'entropy', label: 'entropy' },
      ],
    },
  ];
  /** Checkpoint metrics worth a column's space, in this order (the rest are in the cell's tooltip). */
  const CHECKPOINT_METRICS = ['loss', 'valLoss', 'reward', 'accuracy', 'testAccuracy', 'gamma', 'kl'];
  const CLAIMED = new Set(CHARTS.flatMap((c) => c.series.map((s) => `${s.stage}|${s.kind}|${s.field}`)));
  const NOT_METRICS = new Set(['stage', 'kind', 'step', 'time']);
  /** Tick spacings of the step axis: whole steps only. */
  const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 25000, 50000, 100000, 200000, 500000, 1000000];

  // ---------------------------------------------------------------------------------------------- state

  const state = {
    key: readKey(),
    runs: [],
    runsLoading: false,
    runId: null,
    detail: null,
    records: [],
    work: null, // AbortController for everything the selected run has in flight
    charts: new Map(), // chart id → { card, holder, plot, signature, small }
    redrawTimer: null,
    reportLoaded: false,
    reportLoading: false,
    imageUrls: [],
    statusSource: null,
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------------------------------- helpers

  /** createElement with attributes, listeners (`on…`) and children (nodes or strings → text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === undefined || value === null || value === false) continue;
        if (name === 'class') node.className = value;
        else if (name === 'text') node.textContent = String(value);
        else if (name.startsWith('on') && typeof value === 'function') node.addEventListener(name.slice(2), value);
        else node.setAttribute(name, value === true ? '' : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /** replaceChildren, skipping null/undefined/false (replaceChildren itself would print "null"). */
  function setChildren(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  }

  function readKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || '';
    } catch {
      return '';
    }
  }

  function writeKey(key) {
    try {
      if (key) localStorage.setItem(KEY_STORAGE, key);
      else localStorage.removeItem(KEY_STORAGE);
    } catch {
      /* private mode: the key lives for this page only */
    }
  }

  function fmt(v) {
    if (typeof v !== 'number') return String(v);
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return Math.abs(v) >= 1e6 ? v.toExponential(2) : String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  function fmtBytes(n) {
    if (typeof n !== 'number') return '';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
  }

  function fmtTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  }

  function fmtDuration(ms) {
    if (!(ms >= 0)) return '';
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  function stageLabel(stage) {
    return Object.hasOwn(STAGE_LABELS, stage) ? STAGE_LABELS[stage] : String(stage);
  }

  function badge(status) {
    return el('span', { class: `badge badge-${String(status).replace(/[^a-z_]/g, '')}`, text: String(status).replace(/_/g, ' ') });
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  const isAbort = (err) => err && (err.name === 'AbortError' || err.name === 'TimeoutError');

  // ------------------------------------------------------------------------------------- status line

  /** tone: info | ok | warn | error; source: who may clear it (a later success of the same source). */
  function setStatus(message, tone = 'info', source = null) {
    const line = $('status-line');
    line.replaceChildren(el('span', { class: 'status-text', text: message }), el('button', { type: 'button', class: 'status-close', 'aria-label': 'Dismiss', text: '×', onclick: clearStatus }));
    line.className = `status-line tone-${tone}`;
    line.hidden = false;
    state.statusSource = source;
  }

  function clearStatus(source) {
    if (typeof source === 'string' && state.statusSource !== source) return;
    const line = $('status-line');
    line.hidden = true;
    line.replaceChildren();
    state.statusSource = null;
  }

  // ---------------------------------------------------------------------------------------------- API

  function authHeaders() {
    return state.key ? { Authorization: `Bearer ${state.key}` } : {};
  }

  const apiUrl = (path) => new URL(path.replace(/^\//, ''), API_ROOT);
  const runPath = (runId, rest = '') => `runs/${encodeURIComponent(runId)}${rest}`;

  /** An Error from a failed response, with the API's JSON error body when it has one. */
  async function failure(res) {
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    const message = body && typeof body.message === 'string' ? body.message : res.statusText || 'request failed';
    const title = body && typeof body.error === 'string' ? body.error : '';
    const field = body && typeof body.field === 'string' ? ` (${body.field})` : '';
    const err = new Error(`${res.status}${title ? ` ${title}` : ''}: ${message}${field}`);
    err.status = res.status;
    err.body = body;
    return err;
  }

  async function api(path, options = {}) {
    const headers = { Accept: 'application/json', ...authHeaders() };
    const init = { method: options.method || 'GET', headers, cache: 'no-store' };
    if (options.signal) init.signal = options.signal;
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    }
    const res = await fetch(apiUrl(path), init);
    if (!res.ok) throw await failure(res);
    return options.blob ? res.blob() : res.json();
  }

  // ------------------------------------------------------------------------------------------ API key

  function renderKeyState() {
    const s = $('key-state');
    s.textContent = state.key ? 'key set' : 'no key';
    s.className = `key-state ${state.key ? 'set' : 'unset'}`;
  }

  function useKey(event) {
    event.preventDefault();
    const input = $('api-key');
    const key = input.value.trim();
    if (!key && !state.key) {
      setStatus('Type an API key first.', 'warn');
      return;
    }
    state.key = key;
    writeKey(key);
    input.value = '';
    renderKeyState();
    if (key) setStatus('Using the new key.', 'ok', 'key');
    else setStatus('Key removed.', 'info', 'key');
    void refreshRuns();
    if (state.runId) openRun(state.runId);
  }

  // --------------------------------------------------------------------------------------------- runs

  async function refreshRuns() {
    if (!state.key) {
      renderRuns();
      return;
    }
    if (state.runsLoading) return;
    state.runsLoading = true;
    try {
      const list = await api('runs?pageSize=50');
      state.runs = Array.isArray(list.runs) ? list.runs : [];
      renderRuns();
      clearStatus('runs');
      if (state.statusSource === 'key') setTimeout(() => clearStatus('key'), 1500);
    } catch (err) {
      setStatus(`Runs: ${err.message}`, 'error', 'runs');
    } finally {
      state.runsLoading = false;
    }
  }

  function renderRuns() {
    const list = $('runs-list');
    if (!state.key) {
      list.replaceChildren(el('li', { class: 'muted list-note', text: 'Enter an API key above to list runs.' }));
      return;
    }
    if (state.runs.length === 0) {
      list.replaceChildren(el('li', { class: 'muted list-note', text: 'No runs yet.' }));
      return;
    }
    list.replaceChildren(
      ...state.runs.map((run) => {
        const status = run.runId === state.runId && state.detail ? state.detail.status : run.status;
        const sub = [run.name, fmtTime(run.startTime)].filter(Boolean).join(' · ');
        return el(
          'li',
          null,
          el(
            'button',
            {
              type: 'button',
              class: `run-item${run.runId === state.runId ? ' selected' : ''}`,
              'data-run-id': run.runId,
              title: run.runId,
              onclick: () => selectRun(run.runId),
            },
            el('span', { class: 'run-line' }, el('span', { class: 'run-id', text: run.runId }), badge(status)),
            el('span', { class: 'run-sub', text: sub }),
          ),
        );
      }),
    );
  }

  function runIdFromHash() {
    const m = /^#run=(.+)$/.exec(location.hash);
    if (!m) return null;
    try {
      return decodeURIComponent(m[1]);
    } catch {
      return null;
    }
  }

  function selectRun(runId) {
    const hash = `#run=${encodeURIComponent(runId)}`;
    if (location.hash !== hash) location.hash = hash; // → hashchange → openRun
    else if (state.runId !== runId) openRun(runId);
  }

  // ------------------------------------------------------------------------------------- selected run

  function openRun(runId) {
    if (state.work) state.work.abort();
    const work = new AbortController();
    state.work = work;
    state.runId = runId;
    state.detail = null;
    state.records = [];
    state.reportLoaded = false;
    state.reportLoading = false;
    destroyCharts();
    clearReport();
    delete document.body.dataset.runStatus;

    $('run-empty').hidden = true;
    $('run-detail').hidden = false;
    $('run-title').textContent = runId;
    $('run-meta').replaceChildren();
    $('timeline').replaceChildren();
    $('current').hidden = true;
    $('run-error').hidden = true;
    $('results-panel').hidden = true;
    $('checkpoints').replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
    $('report').replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
    $('charts-empty').hidden = false;
    $('charts-empty').textContent = 'Waiting for metrics…';
    setLive('connecting');
    renderControls();
    renderRuns();
    document.title = `${runId} · Sophia`;

    if (!state.key) {
      setStatus('Enter an API key to load this run.', 'warn', 'key');
      setLive('');
      return;
    }
    void loadDetail(runId, work.signal);
    void loadCheckpoints(runId, work.signal);
    void loadReport(runId, work.signal);
    void streamEvents(runId, work.signal);
  }

  const current = (runId, signal) => state.runId === runId && !signal.aborted;

  async function loadDetail(runId, signal) {
    try {
      const detail = await api(runPath(runId), { signal });
      if (current(runId, signal)) applyDetail(detail);
    } catch (err) {
      if (isAbort(err) || !current(runId, signal)) return;
      setStatus(`Run ${runId}: ${err.message}`, 'error', 'detail');
    }
  }

  function applyDetail(detail) {
    if (!detail || detail.runId !== state.runId) return;
    const before = state.detail;
    state.detail = detail;
    if (detail.status) document.body.dataset.runStatus = detail.status;
    renderHeader(detail);
    renderProgress(detail);
    renderControls();
    const listed = state.runs.find((r) => r.runId === detail.runId);
    if (listed && listed.status !== detail.status) {
      listed.status = detail.status;
      listed.closeTime = detail.closeTime;
      renderRuns();
    }
    const signal = state.work ? state.work.signal : undefined;
    const ended = before && before.status === 'running' && detail.status !== 'running';
    if (signal && ended) void loadCheckpoints(detail.runId, signal);
    const reportReady = detail.progress && detail.progress.reportKey;
    if (signal && !state.reportLoaded && (ended || (reportReady && !(before && before.progress && before.progress.reportKey)))) void loadReport(detail.runId, signal);
  }

  function renderHeader(d) {
    const parts = [badge(d.status)];
    const p = d.progress;
    if (p && p.status && p.status !== d.status && !(p.status === 'failed' && d.status !== 'running')) parts.push(el('span', { class: 'meta-item' }, 'pipeline ', badge(p.status)));
    if (d.name) parts.push(el('span', { class: 'meta-item', text: d.name }));
    if (d.startTime) parts.push(el('span', { class: 'meta-item', text: `started ${fmtTime(d.startTime)}` }));
    if (d.startTime) {
      const end = d.closeTime ? new Date(d.closeTime).getTime() : Date.now();
      parts.push(el('span', { class: 'meta-item', text: `${d.closeTime ? 'took' : 'running for'} ${fmtDuration(end - new Date(d.startTime).getTime())}` }));
    }
    $('run-meta').replaceChildren(...parts);
  }

  function renderProgress(d) {
    const p = d.progress;
    const timeline = $('timeline');
    const cur = $('current');
    const errBox = $('run-error');
    if (!p) {
      timeline.replaceChildren();
      cur.hidden = false;
      cur.replaceChildren(el('span', { class: 'muted', text: d.progressError ? `Progress unavailable: ${d.progressError}` : 'No progress yet.' }));
      errBox.hidden = true;
      $('results-panel').hidden = true;
      return;
    }
    const stages = Array.isArray(p.stages) ? p.stages : [];
    const step = currentStep(p);
    timeline.replaceChildren(
      ...stages.map((stage, i) => {
        let cls = 'pending';
        if (i < p.stageIndex || p.status === 'completed') cls = 'done';
        else if (i === p.stageIndex) cls = p.status === 'failed' ? 'failed' : p.status === 'paused' ? 'paused' : 'current';
        const pill = el('li', { class: `pill ${cls}`, 'data-stage': stage }, el('span', { class: 'pill-dot' }), el('span', { class: 'pill-name', text: stageLabel(stage) }));
        if ((cls === 'current' || cls === 'paused' || cls === 'failed') && step && step.totalSteps > 0) {
          pill.append(el('span', { class: 'pill-step', text: `${step.step}/${step.totalSteps}` }));
          const pct = Math.max(0, Math.min(100, (100 * step.step) / step.totalSteps));
          pill.append(el('span', { class: 'pill-bar', style: `width:${pct.toFixed(1)}%` }));
        } else if (cls === 'done') {
          pill.append(el('span', { class: 'pill-check', text: '✓' }));
        }
        return pill;
      }),
    );

    const c = p.current;
    if (c && p.status !== 'completed' && (d.status === 'running' || p.status === 'failed')) {
      const bits = [el('strong', { text: stageLabel(c.stage) })];
      if (step && step.totalSteps > 0) bits.push(el('span', { text: `step ${step.step} of ${step.totalSteps}` }));
      if (c.activity) bits.push(el('span', { text: c.activity }));
      if (c.worker) bits.push(el('span', { class: 'muted', text: `on ${c.worker}` }));
      const metrics = Object.entries(c.metrics || {}).filter(([, v]) => typeof v === 'number');
      if (p.live && typeof p.live.loss === 'number') metrics.unshift(['loss (live)', p.live.loss]);
      const row = el('div', { class: 'current-line' }, ...bits.flatMap((b, i) => (i ? [el('span', { class: 'sep', text: '·' }), b] : [b])));
      const kv = metrics.length ? el('div', { class: 'kv-inline' }, ...metrics.slice(0, 8).map(([k, v]) => el('span', { class: 'kv' }, el('span', { class: 'k', text: k }), el('span', { class: 'v', text: fmt(v) })))) : null;
      setChildren(cur, row, kv);
      cur.hidden = false;
    } else {
      cur.hidden = true;
      cur.replaceChildren();
    }

    if (p.error) {
      errBox.replaceChildren(el('strong', { text: 'Error: ' }), p.error);
      errBox.hidden = false;
    } else {
      errBox.hidden = true;
    }
    renderResults(p.results || {});
  }

  /**
   * The freshest step of the current stage: the progress signal comes at chunk ends, the heartbeat (`live`)
   * and the metrics log can be ahead of it.
   */
  function currentStep(p) {
    const c = p.current;
    const live = p.live;
    let step = c && typeof c.step === 'number' ? c.step : null;
    let totalSteps = (c && c.totalSteps) || 0;
    if (live && typeof live.step === 'number' && (step === null || live.step > step)) {
      step = live.step;
      totalSteps = live.totalSteps || totalSteps;
    }
    const stage = p.stages && p.stages[p.stageIndex];
    const logged = stage && Object.hasOwn(METRIC_STAGES, stage) && (!c || c.stage === stage) ? lastLoggedStep(METRIC_STAGES[stage]) : null;
    if (logged !== null && (step === null || logged > step) && (!totalSteps || logged <= totalSteps)) step = logged;
    return step === null ? null : { step, totalSteps };
  }

  function lastLoggedStep(stage) {
    let last = null;
    for (const r of state.records) if (r && r.stage === stage && r.kind === 'step' && typeof r.step === 'number' && (last === null || r.step > last)) last = r.step;
    return last;
  }

  function renderResults(results) {
    const entries = Object.entries(results).filter(([, m]) => m && typeof m === 'object' && Object.keys(m).length > 0);
    $('results-panel').hidden = entries.length === 0;
    $('results').replaceChildren(
      ...entries.map(([stage, metrics]) =>
        el(
          'div',
          { class: 'result-card' },
          el('h3', { text: stageLabel(stage) }),
          el(
            'dl',
            null,
            ...Object.entries(metrics).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: typeof v === 'number' ? fmt(v) : JSON.stringify(v) })]),
          ),
        ),
      ),
    );
  }

  // ------------------------------------------------------------------------------------------ control

  function renderControls() {
    const running = state.detail ? state.detail.status === 'running' : false;
    const known = Boolean(state.detail);
    for (const b of document.querySelectorAll('#controls button')) {
      b.disabled = !state.runId || (known && !running);
      b.title = known && !running ? `The run is ${state.detail.status}` : '';
    }
  }

  async function control(action) {
    const runId = state.runId;
    if (!runId) return;
    if (action === 'cancel' && !window.confirm(`Cancel run ${runId}? Running work stops; committed checkpoints are kept.`)) return;
    try {
      const res = await api(runPath(runId, `/${action}`), { method: 'POST' });
      setStatus(res && res.message ? res.message : `${action} requested`, 'ok', 'control');
    } catch (err) {
      setStatus(`${action}: ${err.message}`, 'error', 'control');
    }
  }

  // ---------------------------------------------------------------------------------------- live events

  function setLive(what) {
    const s = $('live-state');
    const text = { connecting: 'connecting…', live: 'live', ended: 'final', retrying: 'reconnecting…', '': '' }[what] ?? what;
    s.textContent = text;
    s.className = `live-state ${what}`;
  }

  function parseEvent(block) {
    let event = 'message';
    let id;
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    }
    if (data.length === 0) return null;
    return { event, id, data: data.join('\n') };
  }

  async function streamEvents(runId, signal) {
    let lastId = 0;
    let ended = false;
    while (!ended && current(runId, signal)) {
      try {
        const headers = { Accept: 'text/event-stream', ...authHeaders() };
        if (lastId > 0) headers['Last-Event-ID'] = String(lastId);
        const res = await fetch(apiUrl(runPath(runId, '/events')), { headers, signal, cache: 'no-store' });
        if (!res.ok) throw await failure(res);
        if (!res.body) throw new Error('this browser cannot read a streamed response');
        setLive('live');
        clearStatus('stream');
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const ev = parseEvent(block);
            if (!ev || !current(runId, signal)) continue;
            const n = Number(ev.id);
            if (ev.id !== undefined && Number.isInteger(n) && n >= 0) lastId = n;
            if (handleEvent(ev) === 'end') ended = true;
          }
        }
      } catch (err) {
        if (isAbort(err) || !current(runId, signal)) return;
        if (err.status && err.status >= 400 && err.status < 500) {
          setStatus(`Live updates for ${runId}: ${err.message}`, 'error', 'stream');
          setLive('');
          return;
        }
        setStatus(`Live updates interrupted (${err.message}); reconnecting…`, 'warn', 'stream');
      }
      if (!ended && current(runId, signal)) {
        setLive('retrying');
        await sleep(RECONNECT_MS, signal);
      }
    }
    if (ended && current(runId, signal)) setLive('ended');
  }

  function handleEvent(ev) {
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return undefined;
    }
    switch (ev.event) {
      case 'metrics': {
        const records = Array.isArray(data.records) ? data.records : [];
        // A batch as long as the total is everything from the start (first batch, or the log was rewritten).
        if (data.total === records.length) state.records = records.slice();
        else state.records.push(...records);
        scheduleRedraw();
        return undefined;
      }
      case 'progress':
        applyDetail(data);
        return undefined;
      case 'end':
        applyDetail(data);
        scheduleRedraw();
        return 'end';
      case 'warning':
        setStatus(`Server: ${data && data.message ? data.message : 'warning'}`, 'warn', 'stream');
        return undefined;
      default:
        return undefined;
    }
  }

  // ------------------------------------------------------------------------------------------- charts

  function scheduleRedraw() {
    if (state.redrawTimer !== null) return;
    state.redrawTimer = setTimeout(() => {
      state.redrawTimer = null;
      redraw();
    }, REDRAW_MS);
  }

  /** (stage|kind) → Map(step → record), the last record of a step winning. */
  function indexRecords(records) {
    const groups = new Map();
    for (const r of records) {
      if (!r || typeof r.step !== 'number') continue;
      const key = `${r.stage}|${r.kind}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = new Map()));
      g.set(r.step, r);
    }
    return groups;
  }

  /** Charts for numeric fields that no main chart shows, one per field, grouped by stage and kind. */
  function extraCharts(groups) {
    const out = [];
    const seen = new Set();
    for (const [key, steps] of groups) {
      const [stage, kind] = key.split('|');
      for (const r of steps.values()) {
        for (const [field, v] of Object.entries(r)) {
          if (NOT_METRICS.has(field) || typeof v !== 'number') continue;
          const id = `${stage}|${kind}|${field}`;
          if (CLAIMED.has(id) || seen.has(id)) continue;
          seen.add(id);
          out.push({
            id: `${stage}-${kind}-${field}`.replace(/[^A-Za-z0-9_-]/g, '_'),
            title: `${stage} ${kind} · ${field}`,
            small: true,
            series: [{ stage, kind, field, label: field, sparse: kind !== 'step' }],
          });
        }
      }
    }
    return out.sort((a, b) => a.title.localeCompare(b.title));
  }

  /** uPlot data for a chart: x = union of steps, one y array per series with data (null in the gaps). */
  function chartData(def, groups) {
    const present = def.series.filter((s) => {
      const g = groups.get(`${s.stage}|${s.kind}`);
      if (!g) return false;
      for (const r of g.values()) if (typeof r[s.field] === 'number' && Number.isFinite(r[s.field])) return true;
      return false;
    });
    if (present.length === 0) return null;
    const xs = new Set();
    for (const s of present) {
      for (const [step, r] of groups.get(`${s.stage}|${s.kind}`)) if (typeof r[s.field] === 'number' && Number.isFinite(r[s.field])) xs.add(step);
    }
    const x = [...xs].sort((a, b) => a - b);
    let points = 0;
    const ys = present.map((s) => {
      const g = groups.get(`${s.stage}|${s.kind}`);
      return x.map((step) => {
        const r = g.get(step);
        const v = r ? r[s.field] : undefined;
        if (typeof v === 'number' && Number.isFinite(v)) {
          points++;
          return v;
        }
        return null;
      });
    });
    return { present, data: [x, ...ys], points };
  }

  function redraw() {
    if (state.detail && state.detail.status === 'running') renderProgress(state.detail); // the step may have moved on
    const groups = indexRecords(state.records);
    let shown = 0;
    for (const def of CHARTS) if (drawChart(def, groups, $('charts'))) shown++;

    const extras = extraCharts(groups);
    const more = $('more-metrics');
    more.hidden = extras.length === 0;
    $('more-summary').textContent = `More metrics (${extras.length})`;
    if (more.open) for (const def of extras) drawChart(def, groups, $('more-charts'));

    $('charts-empty').hidden = shown > 0 || extras.length > 0;
    if (shown === 0 && extras.length === 0) $('charts-empty').textContent = state.detail && state.detail.status !== 'running' ? 'This run logged no metrics.' : 'Waiting for metrics…';
  }

  /** Creates, updates or removes one chart; returns whether it is shown. */
  function drawChart(def, groups, parent) {
    const computed = chartData(def, groups);
    let entry = state.charts.get(def.id);
    if (!computed) {
      if (entry) {
        entry.plot?.destroy();
        entry.card.remove();
        state.charts.delete(def.id);
      }
      return false;
    }
    const signature = computed.present.map((s) => `${s.stage}|${s.kind}|${s.field}`).join(',');
    if (!entry) {
      const holder = el('div', { class: 'chart-plot' });
      const card = el('div', { class: `chart${def.small ? ' chart-small' : ''}`, 'data-chart': def.id, 'data-points': '0' }, el('h3', { class: 'chart-title', text: def.title }), holder);
      entry = { card, holder, plot: null, signature: '', small: Boolean(def.small), order: CHARTS.findIndex((c) => c.id === def.id) };
      insertInOrder(parent, card, entry.order, def.id);
      state.charts.set(def.id, entry);
    }
    if (!entry.plot || entry.signature !== signature) {
      entry.plot?.destroy();
      entry.holder.replaceChildren();
      entry.plot = makePlot(def, computed, entry);
      entry.signature = signature;
    } else {
      entry.plot.setData(computed.data);
    }
    entry.card.setAttribute('data-points', String(computed.points));
    return true;
  }

  function insertInOrder(parent, card, order, id) {
    card.dataset.order = String(order >= 0 ? order : 1000);
    card.dataset.sortKey = id;
    const next = [...parent.children].find((c) => {
      const o = Number(c.dataset.order);
      return o > Number(card.dataset.order) || (o === Number(card.dataset.order) && (c.dataset.sortKey || '') > id);
    });
    parent.insertBefore(card, next || null);
  }

  function plotWidth(entry) {
    return Math.max(200, Math.floor(entry.holder.clientWidth || entry.card.clientWidth - 24 || 400));
  }

  function countValues(ys) {
    let n = 0;
    for (const v of ys || []) if (v != null) n++;
    return n;
  }

  function makePlot(def, computed, entry) {
    if (typeof window.uPlot !== 'function') throw new Error('uPlot did not load');
    const axisStyle = { stroke: '#6b7280', font: '11px system-ui, sans-serif', grid: { stroke: '#eef0f4', width: 1 }, ticks: { stroke: '#e2e5ea', width: 1, size: 4 } };
    const series = [{ label: 'step', value: (_u, v) => (v == null ? '–' : fmt(v)) }];
    computed.present.forEach((s) => {
      const color = COLORS[def.series.indexOf(s) % COLORS.length];
      series.push({
        label: s.label,
        stroke: color,
        width: 1.6,
        spanGaps: true,
        value: (_u, v) => (v == null ? '–' : fmt(v)),
        // Sparse series (validation, evaluation) always show their points; dense ones only while they are few.
        points: s.sparse ? { show: true, size: 6, fill: color, stroke: color } : { show: (u, si) => countValues(u.data[si]) < 30, size: 4 },
      });
    });
    const opts = {
      width: plotWidth(entry),
      height: entry.small ? SMALL_CHART_HEIGHT : CHART_HEIGHT,
      scales: { x: { time: false } },
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false, setScale: true }, points: { size: 6 } },
      axes: [
        { ...axisStyle, size: 34, incrs: STEP_INCRS, values: (_u, vals) => vals.map((v) => (v == null ? '' : fmt(v))) },
        { ...axisStyle, size: 52, values: (_u, vals) => vals.map((v) => (v == null ? '' : fmt(v))) },
      ],
      series,
    };
    return new window.uPlot(opts, computed.data, entry.holder);
  }

  function destroyCharts() {
    if (state.redrawTimer !== null) {
      clearTimeout(state.redrawTimer);
      state.redrawTimer = null;
    }
    for (const entry of state.charts.values()) {
      entry.plot?.destroy();
      entry.card.remove();
    }
    state.charts.clear();
    $('more-metrics').hidden = true;
  }

  let resizeFrame = 0;
  function resizeCharts() {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => {
      for (const entry of state.charts.values()) {
        if (!entry.plot) continue;
        const width = plotWidth(entry);
        if (Math.abs(width - entry.plot.width) > 2) entry.plot.setSize({ width, height: entry.small ? SMALL_CHART_HEIGHT : CHART_HEIGHT });
      }
    });
  }

  // ---------------------------------------------------------------------------------------- checkpoints

  async function loadCheckpoints(runId, signal) {
    try {
      const res = await api(runPath(runId, '/checkpoints'), { signal });
      if (current(runId, signal)) renderCheckpoints(res.checkpoints || []);
    } catch (err) {
      if (isAbort(err) || !current(runId, signal)) return;
      $('checkpoints').replaceChildren(el('p', { class: 'error-text', text: err.message }));
    }
  }

  function renderCheckpoints(list) {
    const box = $('checkpoints');
    if (list.length === 0) {
      box.replaceChildren(el('p', { class: 'muted', text: 'No checkpoints committed yet.' }));
      return;
    }
    const prefix = `runs/${state.runId}/`;
    const sorted = [...list].sort((a, b) => String(a.createdAt).localeCompare(String(b.createdAt)) || a.step - b.step);
    const rows = sorted.map((c) => {
      const all = Object.entries(c.metrics || {}).filter(([, v]) => typeof v === 'number');
      const shown = [...all.filter(([k]) => CHECKPOINT_METRICS.includes(k)).sort(([a], [b]) => CHECKPOINT_METRICS.indexOf(a) - CHECKPOINT_METRICS.indexOf(b)), ...all.filter(([k]) => !CHECKPOINT_METRICS.includes(k))].slice(0, 4);
      const text = shown.map(([k, v]) => `${k} ${fmt(v)}`).join(' · ') + (all.length > shown.length ? ` · +${all.length - shown.length}` : '');
      const key = typeof c.key === 'string' && c.key.startsWith(prefix) ? c.key.slice(prefix.length) : String(c.key);
      return el(
        'tr',
        null,
        el('td', { class: 'nowrap', text: c.stage }),
        el('td', { class: 'num', text: String(c.step) }),
        el('td', { class: 'nowrap', text: fmtTime(c.createdAt) }),
        el('td', { class: 'num nowrap', text: fmtBytes(c.totalBytes) }),
        el('td', { class: 'metrics-cell', title: all.map(([k, v]) => `${k} ${fmt(v)}`).join('\n') || null, text: text }),
        el('td', { class: 'key-cell', title: c.key, text: key }),
      );
    });
    box.replaceChildren(
      el(
        'div',
        { class: 'table-wrap' },
        el(
          'table',
          { class: 'table' },
          el('thead', null, el('tr', null, ...['Stage', 'Step', 'Created', 'Size', 'Metrics', 'Key'].map((h) => el('th', { text: h })))),
          el('tbody', null, rows),
        ),
      ),
    );
  }

  // --------------------------------------------------------------------------------------------- report

  function clearReport() {
    for (const url of state.imageUrls) URL.revokeObjectURL(url);
    state.imageUrls = [];
  }

  async function loadReport(runId, signal) {
    if (state.reportLoading) return;
    state.reportLoading = true;
    try {
      const report = await api(runPath(runId, '/report'), { signal });
      if (!current(runId, signal)) return;
      const images = new Map();
      const pngs = (report.files || []).filter((f) => f && typeof f.url === 'string' && /^image\/png/.test(f.contentType || ''));
      await Promise.all(
        pngs.map(async (f) => {
          try {
            const blob = await api(f.url, { signal, blob: true });
            const url = URL.createObjectURL(blob);
            state.imageUrls.push(url);
            images.set(f.name, url);
          } catch (err) {
            if (!isAbort(err)) images.set(f.name, err);
          }
        }),
      );
      if (!current(runId, signal)) return;
      renderReport(report, images);
      state.reportLoaded = true;
    } catch (err) {
      if (isAbort(err) || !current(runId, signal)) return;
      const box = $('report');
      if (err.status === 404) box.replaceChildren(el('p', { class: 'muted', text: 'No report yet: it is written when the evaluation stage ends.' }));
      else box.replaceChildren(el('p', { class: 'error-text', text: err.message }));
    } finally {
      if (state.runId === runId) state.reportLoading = false;
    }
  }

  function renderReport(report, images) {
    const box = $('report');
    const used = new Set();
    const body = el('div', { class: 'markdown' });
    if (typeof report.markdown === 'string' && report.markdown.trim()) renderMarkdown(report.markdown, body, images, used);
    else body.append(el('p', { class: 'muted', text: 'The report has no markdown.' }));
    const rest = [...images.keys()].filter((name) => !used.has(name)).sort();
    const gallery = rest.length ? el('div', { class: 'gallery' }, ...rest.map((name) => figure(name, name, images.get(name)))) : null;
    const files = (report.files || []).map((f) => el('li', null, el('span', { class: 'mono', text: f.name }), el('span', { class: 'muted', text: ` ${fmtBytes(f.size)}` })));
    setChildren(box, body, gallery, files.length ? el('details', { class: 'files' }, el('summary', { text: `Files (${files.length})` }), el('ul', null, files)) : null);
  }

  function figure(name, caption, src, withCaption = true) {
    if (src instanceof Error || !src) return el('figure', { class: 'report-figure missing' }, el('figcaption', { text: `${caption}: ${src instanceof Error ? src.message : 'not available'}` }));
    return el('figure', { class: 'report-figure' }, el('img', { src, alt: caption, title: caption, 'data-file': name, loading: 'eager' }), withCaption ? el('figcaption', { text: caption }) : null);
  }

  /** Inline markdown (**bold**, `code`, [text](url) → text) as DOM nodes; everything else stays text. */
  function inline(text) {
    const out = [];
    const re = /(\*\*([^*]+)\*\*|`([^`]+)`|\[([^\]]+)\]\([^)]*\))/g;
    let last = 0;
    let m;
    while ((m = re.exec(text))) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[2] !== undefined) out.push(el('strong', { text: m[2] }));
      else if (m[3] !== undefined) out.push(el('code', { text: m[3] }));
      else out.push(m[4]);
      last = re.lastIndex;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  /** A small, safe markdown subset: headings, paragraphs, lists, tables, code fences, block images. */
  function renderMarkdown(md, into, images, used) {
    const lines = md.replace(/\r\n/g, '\n').split('\n');
    let i = 0;
    let para = [];
    let grid = null; // consecutive "### Title / ![Title](plot.png)" pairs share one grid of figures
    const flush = () => {
      if (para.length) into.append(el('p', null, inline(para.join(' '))));
      para = [];
    };
    const nextNonBlank = (from) => {
      let j = from;
      while (j < lines.length && lines[j].trim() === '') j++;
      return j;
    };
    const imageOf = (line) => /^!\[([^\]]*)\]\(([^)\s]+)\)$/.exec((line || '').trim());
    while (i < lines.length) {
      const line = lines[i];
      const trimmed = line.trim();
      if (trimmed === '') {
        flush();
        i++;
        continue;
      }
      const titled = /^#{1,6}\s+(.*)$/.exec(trimmed);
      const j = titled ? nextNonBlank(i + 1) : -1;
      const titledImage = titled ? imageOf(lines[j]) : null;
      const loneImage = imageOf(trimmed);
      if (titledImage || loneImage) {
        flush();
        const m = titledImage || loneImage;
        const name = m[2].split('/').pop();
        const caption = titled ? titled[1] : m[1] || name;
        if (!grid) into.append((grid = el('div', { class: 'figure-grid' })));
        if (images.has(name)) {
          used.add(name);
          grid.append(figure(name, caption, images.get(name), !titled));
        } else {
          grid.append(el('p', { class: 'muted', text: `[image ${caption}]` }));
        }
        i = titledImage ? j + 1 : i + 1;
        continue;
      }
      grid = null;
      if (trimmed.startsWith('```')) {
        flush();
        const code = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith('```')) code.push(lines[i++]);
        i++;
        into.append(el('pre', null, el('code', { text: code.join('\n') })));
        continue;
      }
      const heading = /^(#{1,6})\s+(.*)$/.exec(trimmed);
      if (heading) {
        flush();
        const level = Math.min(6, heading[1].length + 2);
        into.append(el(`h${level}`, null, inline(heading[2])));
        i++;
        continue;
      }
      if (trimmed.startsWith('|')) {
        flush();
        const rows = [];
        while (i < lines.length && lines[i].trim().startsWith('|')) rows.push(lines[i++].trim());
        into.append(markdownTable(rows));
        continue;
      }
      if (/^([-*+]|\d+\.)\s+/.test(trimmed)) {
        flush();
        const ordered = /^\d+\./.test(trimmed);
        const list = el(ordered ? 'ol' : 'ul');
        while (i < lines.length && /^\s*([-*+]|\d+\.)\s+/.test(lines[i])) {
          list.append(el('li', null, inline(lines[i].trim().replace(/^([-*+]|\d+\.)\s+/, ''))));
          i++;
        }
        into.append(list);
        continue;
      }
      para.push(trimmed);
      i++;
    }
    flush();
  }

  function markdownTable(rows) {
    const cells = (row) => row.replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
    const isRule = (row) => /^\|?[\s:|-]+\|?$/.test(row) && row.includes('-');
    const head = rows.length > 1 && isRule(rows[1]) ? cells(rows[0]) : null;
    const body = rows.filter((r, idx) => !(head && idx <= 1) && !isRule(r)).map(cells);
    const isNum = (c) => /^([-+]?[\d.,]+(e[-+]?\d+)?\s?%?|–|-)$/i.test(c);
    const numeric = (col) => body.length > 0 && body.every((r) => r[col] === undefined || isNum(r[col])) && body.some((r) => r[col] !== undefined && /\d/.test(r[col]));
    const width = Math.max(head ? head.length : 0, ...body.map((r) => r.length));
    const cols = Array.from({ length: width }, (_, i) => numeric(i));
    return el(
      'div',
      { class: 'table-wrap' },
      el(
        'table',
        { class: 'table md-table' },
        head ? el('thead', null, el('tr', null, head.map((c, i) => el('th', { class: cols[i] ? 'num' : null }, inline(c))))) : null,
        el('tbody', null, body.map((r) => el('tr', null, r.map((c, i) => el('td', { class: cols[i] ? 'num' : null }, inline(c)))))),
      ),
    );
  }

  // ------------------------------------------------------------------------------------------ startup

  function start() {
    $('key-form').addEventListener('submit', useKey);
    $('refresh-runs').addEventListener('click', () => void refreshRuns());
    $('refresh-checkpoints').addEventListener('click', () => {
      if (state.runId && state.work) void loadCheckpoints(state.runId, state.work.signal);
    });
    $('refresh-report').addEventListener('click', () => {
      if (state.runId && state.work) void loadReport(state.runId, state.work.signal);
    });
    for (const b of document.querySelectorAll('#controls button')) b.addEventListener('click', () => void control(b.dataset.action));
    $('more-metrics').addEventListener('toggle', () => {
      if ($('more-metrics').open) redraw();
    });
    window.addEventListener('hashchange', () => {
      const id = runIdFromHash();
      if (id && id !== state.runId) openRun(id);
    });
    if (typeof ResizeObserver === 'function') new ResizeObserver(resizeCharts).observe($('run-view'));
    else window.addEventListener('resize', resizeCharts);

    renderKeyState();
    renderControls();
    if (!state.key) setStatus('Enter an API key to start (it is kept in this browser only).', 'info', 'key');
    void refreshRuns();
    setInterval(() => void refreshRuns(), RUNS_REFRESH_MS);
    // Keep the "running for" time fresh between events.
    setInterval(() => {
      if (state.detail && state.detail.status === 'running') renderHeader(state.detail);
    }, 1000);
    const id = runIdFromHash();
    if (id) openRun(id);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();

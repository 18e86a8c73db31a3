/*
 * Sophia dashboard, the page itself (loaded last): the API key form, the runs list, selecting a run (#run=ID),
 * loading it and following its live events (metrics, progress, end) with reconnects, and the startup wiring.
 * The other scripts (see util.js) provide the pieces through the `window.Sophia` namespace.
 */
(function () {
  'use strict';

  const S = (window.Sophia = window.Sophia || {});
  const { state, $, el, fmtTime, badge, sleep, isAbort, current } = S;
  const { writeKey, setStatus, clearStatus, api, runPath, readEvents } = S;
  const { scheduleRedraw, redraw, destroyCharts, resizeCharts } = S;
  const { loadCheckpoints, loadReport, clearReport } = S;
  const { renderHeader, renderProgress, renderControls, control } = S;

  const RUNS_REFRESH_MS = 5000;
  const RECONNECT_MS = 2000;

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

  // ---------------------------------------------------------------------------------------- live events

  function setLive(what) {
    const s = $('live-state');
    const text = { connecting: 'connecting…', live: 'live', ended: 'final', retrying: 'reconnecting…', '': '' }[what] ?? what;
    s.textContent = text;
    s.className = `live-state ${what}`;
  }

  async function streamEvents(runId, signal) {
    let lastId = 0;
    let ended = false;
    while (!ended && current(runId, signal)) {
      try {
        await readEvents(runPath(runId, '/events'), {
          signal,
          lastEventId: lastId,
          onOpen: () => {
            setLive('live');
            clearStatus('stream');
          },
          onEvent: (ev) => {
            if (!current(runId, signal)) return;
            const n = Number(ev.id);
            if (ev.id !== undefined && Number.isInteger(n) && n >= 0) lastId = n;
            if (handleEvent(ev) === 'end') ended = true;
          },
        });
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

/*
 * Sophia dashboard, the selected run's state at a glance: the header (status, name, times), the stage
 * timeline with the current step, the "current" line with live metrics (and a warning while the running activity's
 * heartbeat is overdue: its worker may be gone), the error box, the per-stage results, and the pause / resume / stop /
 * cancel controls.
 */
(function () {
  'use strict';

  const S = (window.Sophia = window.Sophia || {});
  const { state, $, el, setChildren, fmt, fmtTime, fmtDuration, stageLabel, badge, api, runPath, setStatus } = S;

  /** The metrics-log stage name of each pipeline stage that logs steps. */
  const METRIC_STAGES = { sftWarmup: 'sft', rewardModel: 'rm', trustGrpo: 'grpo' };

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
      // `stalled` (LiveProgress): "no heartbeat for N s from worker W (activity, attempt n)", worded by the API.
      const stall = p.stalled && typeof p.stalled.message === 'string' ? el('div', { class: 'stall', text: p.stalled.message }) : null;
      setChildren(cur, row, stall, kv);
      cur.hidden = false;
    } else {
      cur.hidden = true;
      cur.replaceChildren();
    }

    if (p.error) {
      // A failed run's innermost cause (failure: type, message, stage, activity), else the error in words.
      const f = p.failure;
      const where = f ? [f.stage && `stage ${f.stage}`, f.activity && `activity ${f.activity}`, f.retryState].filter(Boolean).join(', ') : '';
      errBox.replaceChildren(el('strong', { text: f ? `${f.type}: ` : 'Error: ' }), f ? f.message : p.error, ...(where ? [el('div', { text: where })] : []));
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

  Object.assign(S, { renderHeader, renderProgress, renderControls, control });
})();

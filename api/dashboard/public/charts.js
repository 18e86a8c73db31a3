/*
 * Sophia dashboard, the curves: which metrics go on which uPlot chart, aligning each chart's series on the
 * union of their steps, creating / updating / removing the chart cards (with the data-chart and data-points
 * attributes), the "More metrics" charts for fields no main chart claims, redraw throttling and resizing.
 */
(function () {
  'use strict';

  const S = (window.Sophia = window.Sophia || {});
  const { state, $, el, fmt } = S;

  const REDRAW_MS = 250;
  const CHART_HEIGHT = 210;
  const SMALL_CHART_HEIGHT = 150;

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
  const CLAIMED = new Set(CHARTS.flatMap((c) => c.series.map((s) => `${s.stage}|${s.kind}|${s.field}`)));
  const NOT_METRICS = new Set(['stage', 'kind', 'step', 'time']);
  /** Tick spacings of the step axis: whole steps only. */
  const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 25000, 50000, 100000, 200000, 500000, 1000000];

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
    if (state.detail && state.detail.status === 'running') S.renderProgress(state.detail); // the step may have moved on (run-view.js)
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

  Object.assign(S, { scheduleRedraw, redraw, destroyCharts, resizeCharts });
})();

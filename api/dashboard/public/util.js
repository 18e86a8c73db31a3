/*
 * Sophia dashboard, shared base (loaded first): the `window.Sophia` namespace every dashboard script adds to,
 * the page state they share, DOM builders and value formatters.
 *
 * The dashboard is plain browser JavaScript, no build step, served with a strict Content-Security-Policy
 * (scripts from this origin only), so everything is wired with addEventListener. Every value that comes from
 * the API is put into the page with textContent / text nodes, never innerHTML.
 *
 * Scripts, in load order (index.html): util.js, api-client.js, charts.js, report.js, run-view.js, app.js.
 */
(function () {
  'use strict';

  const S = (window.Sophia = window.Sophia || {});

  const STAGE_LABELS = {
    prepareData: 'Data',
    sftWarmup: 'SFT warmup',
    rewardModel: 'Reward model',
    trustGrpo: 'Trust-GRPO',
    evaluation: 'Evaluation',
  };

  // ---------------------------------------------------------------------------------------------- state

  const state = {
    key: '', // read from localStorage by api-client.js
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

  /** Whether work started for `runId` still matters: that run is still selected and its work not aborted. */
  const current = (runId, signal) => state.runId === runId && !signal.aborted;

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

  Object.assign(S, { state, $, current, el, setChildren, fmt, fmtBytes, fmtTime, fmtDuration, stageLabel, badge, sleep, isAbort });
})();

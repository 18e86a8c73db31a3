/*
 * Sophia dashboard, what a run left behind: the checkpoints table and the report (its markdown rendered as a
 * small, safe subset into DOM nodes, its PNG plots fetched with the API key and shown as blob: images).
 */
(function () {
  'use strict';

  const S = (window.Sophia = window.Sophia || {});
  const { state, $, el, setChildren, fmt, fmtBytes, fmtTime, isAbort, current, api, runPath } = S;

  /** Checkpoint metrics worth a column's space, in this order (the rest are in the cell's tooltip). */
  const CHECKPOINT_METRICS = ['loss', 'valLoss', 'reward', 'accuracy', 'testAccuracy', 'gamma', 'kl'];

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

  Object.assign(S, { loadCheckpoints, loadReport, clearReport });
})();

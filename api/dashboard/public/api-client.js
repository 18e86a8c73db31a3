/*
 * Sophia dashboard, talking to the API: the API key kept in localStorage, fetch() with the Authorization
 * header, errors from the API's JSON bodies, the status line that shows them, and the Server-Sent Events
 * reader/parser for GET /runs/:id/events (read with fetch(): EventSource cannot send the Authorization header).
 */
(function () {
  'use strict';

  const S = (window.Sophia = window.Sophia || {});
  const { state, $, el } = S;

  const KEY_STORAGE = 'sophia.apiKey';
  /** The API root: the dashboard lives at <root>/dashboard/. */
  const API_ROOT = new URL('../', document.baseURI);

  // ------------------------------------------------------------------------------------------ API key

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

  state.key = readKey();

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

  // ------------------------------------------------------------------------------- Server-Sent Events

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

  /**
   * Reads one event stream until the server closes it: `onOpen()` once the response is accepted, then
   * `onEvent({ event, id, data })` for each event. Throws like api() on a failed response (and on abort).
   */
  async function readEvents(path, { signal, lastEventId = 0, onOpen, onEvent }) {
    const headers = { Accept: 'text/event-stream', ...authHeaders() };
    if (lastEventId > 0) headers['Last-Event-ID'] = String(lastEventId);
    const res = await fetch(apiUrl(path), { headers, signal, cache: 'no-store' });
    if (!res.ok) throw await failure(res);
    if (!res.body) throw new Error('this browser cannot read a streamed response');
    if (onOpen) onOpen();
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
        if (ev) onEvent(ev);
      }
    }
  }

  Object.assign(S, { writeKey, setStatus, clearStatus, runPath, api, readEvents });
})();

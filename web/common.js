// Warmline: helpers shared by the demo chat page (/) and the agent page (/agent/).
// Plain JS, no build step. Everything rendered from the wire goes through textContent.
'use strict';
window.Warmline = (function () {
  function load(key) { try { return localStorage.getItem(key); } catch (e) { return null; } }
  function store(key, value) { // null removes
    try { value == null ? localStorage.removeItem(key) : localStorage.setItem(key, String(value)); } catch (e) { /* storage off */ }
  }
  // crypto.randomUUID exists only in secure contexts (https, localhost); getRandomValues everywhere.
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return [x.slice(0, 8), x.slice(8, 12), x.slice(12, 16), x.slice(16, 20), x.slice(20)].join('-');
  }
  // Element builder: attrs become attributes (on* become listeners); kids are appended as text or nodes.
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null && k !== false) e.append(k);
    return e;
  }
  function wsUrl(path) { return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + path; }
  // Reconnect delay: 0.5 s doubling up to 10 s, with jitter (between half and all of it).
  function backoff(attempt) {
    const base = Math.min(10000, 500 * Math.pow(2, attempt));
    return base / 2 + Math.random() * base / 2;
  }
  // What each close code asks of us (docs/protocol.md, "Close codes"): the table of
  // `CloseCode::reconnect` in src/protocol/codes.rs, copied in web/widget.js; tests/close_codes.rs
  // fails when they differ. yes: reconnect with backoff, resume, send what was not acked;
  // without_resending: the same, but what was not acked is not sent again by itself (one of those
  // frames was too large); fresh_token: reconnect with a new token; no: do not reconnect by ourselves.
  const RECONNECT = {
    1000: 'no', 1001: 'yes', 1002: 'no', 1007: 'no', 1008: 'no', 1009: 'without_resending',
    1011: 'yes', 1012: 'yes', 4000: 'yes', 4001: 'yes', 4003: 'fresh_token', 4004: 'no',
  };
  // A code the table does not have (1006: the connection dropped without a close) means reconnect.
  function reconnectAfter(ev) { return RECONNECT[ev.code] || 'yes'; }
  // Why the server closed, when it closed for good (the table says `no`); else null.
  function refusedBy(ev) {
    if (reconnectAfter(ev) !== 'no') return null;
    return ev.reason || 'the server closed the connection (' + ev.code + ')';
  }
  function parse(data) {
    try { const f = JSON.parse(data); return f && typeof f.type === 'string' ? f : null; } catch (e) { return null; }
  }
  function statusLine(line, el) {
    return (text, isError) => { el.textContent = text; line.classList.toggle('error', !!isError); };
  }
  // Enter sends, Shift+Enter makes a new line.
  function enterSends(textarea, form) {
    textarea.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); form.requestSubmit(); }
    });
  }
  function timeOf(ts) { // ts: an RFC 3339 string or a Date
    const d = new Date(ts);
    return h('time', { datetime: d.toISOString() }, d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
  }
  function messageItem(cls, name, text, ts) {
    return h('li', { class: 'msg ' + cls, 'data-testid': 'message', 'data-role': cls }, h('span', { class: 'who' }, name),
      h('p', { class: 'text', 'data-testid': 'message-text' }, text),
      h('span', { class: 'meta' }, ts ? timeOf(ts) : null));
  }

  // One conversation's transcript: events ordered and deduplicated by seq, plus own messages not
  // yet acknowledged. `sendMessage(transcript, item)` sends a message frame and returns whether it went out.
  class Transcript {
    constructor(id, ol, sendMessage) {
      this.id = id; this.ol = ol; this.sendMessage = sendMessage;
      this.seen = new Set();
      this.lastSeq = 0;     // highest seq received as an event: the point to resume from
      this.pending = [];    // own messages without an ack, oldest first
      this.live = false;    // welcome + (resumed or start ack / conversation) on the current socket
    }
    isNew(f) { return typeof f.seq === 'number' && !this.seen.has(f.seq); }
    // Events arrive in seq order, so the highest one is where to resume. An ack's seq only counts
    // as seen: an ack may overtake an earlier event, which must not be skipped on resume.
    note(seq, isEvent) {
      this.seen.add(seq);
      if (isEvent) this.lastSeq = Math.max(this.lastSeq, seq);
    }
    // After `resumed` (or a full transcript): everything up to lastSeq was delivered; send what waits.
    caughtUp(lastSeq) {
      this.lastSeq = Math.max(this.lastSeq, lastSeq || 0);
      this.live = true;
      this.pending.forEach((item) => { if (item.state !== 'failed') this.transmit(item); });
    }
    add(li, seq) { this.note(seq, true); this.place(li, seq); }
    // Keeps the list ordered by seq; items still without a seq stay at the end.
    place(li, seq) {
      li.dataset.seq = String(seq);
      const next = [...this.ol.children].find((k) => k !== li && (!k.dataset.seq || Number(k.dataset.seq) > seq));
      this.ol.insertBefore(li, next || null);
      this.scroll();
    }
    scroll() { this.ol.scrollTop = this.ol.scrollHeight; }
    // Own message: shown at once as "Sending…"; sent now if live, else after the next caughtUp().
    addPending(text) {
      const item = { text, clientMsgId: uuid(), li: messageItem('mine', 'You', text, null), state: '' };
      this.pending.push(item);
      this.ol.append(item.li);
      this.scroll();
      this.transmit(item);
    }
    transmit(item) { // a retry reuses the same client_msg_id, so the server keeps one copy
      this.setState(item, 'sending');
      if (this.live) this.sendMessage(this, item);
    }
    ack(item, seq) {
      const i = this.pending.indexOf(item);
      if (i < 0) return;
      this.pending.splice(i, 1);
      if (this.seen.has(seq)) { item.li.remove(); return; } // already shown by a replay
      this.note(seq, false);
      this.setState(item, 'sent');
      this.place(item.li, seq);
    }
    failAll() { this.pending.forEach((item) => this.setState(item, 'failed')); }
    setState(item, state) {
      item.state = state;
      item.li.dataset.state = state;
      item.li.classList.toggle('failed', state === 'failed');
      const meta = item.li.querySelector('.meta');
      // Sent: the ack carries no time, so show when it was acknowledged (as a reload would show it).
      if (state === 'sent') { meta.replaceChildren(timeOf(new Date())); meta.title = 'Sent'; return; }
      if (state !== 'failed') { meta.replaceChildren('Sending…'); return; }
      meta.replaceChildren(h('span', { class: 'failed' }, 'Not sent.'),
        h('button', { type: 'button', class: 'secondary', 'data-testid': 'retry', onclick: () => this.transmit(item) }, 'Retry'));
    }
  }

  // Own typing: on:true at most once every 2 s while typing; on:false after 3 s idle or stop(true).
  class TypingSender {
    constructor(send) { this.send = send; this.conv = null; this.last = 0; this.timer = null; }
    input(conversationId) {
      if (this.conv && this.conv !== conversationId) this.stop(true);
      const now = Date.now();
      if (now - this.last >= 2000) {
        this.last = now; this.conv = conversationId;
        this.send({ type: 'typing', conversation_id: conversationId, on: true });
      }
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.stop(true), 3000);
    }
    stop(notify) {
      clearTimeout(this.timer);
      if (this.conv && notify) this.send({ type: 'typing', conversation_id: this.conv, on: false });
      this.conv = null; this.last = 0;
    }
  }

  return { load, store, uuid, h, wsUrl, backoff, reconnectAfter, refusedBy, parse, statusLine, enterSends, timeOf, messageItem, Transcript, TypingSender };
})();

/*! Warmline chat widget. Embed with
 *   <script src="https://HOST/widget.js" data-queue="support" async></script>
 * and see docs/widget.md for every option. One file, no dependencies, no build step.
 * Everything that comes from the wire is rendered as text (textContent / text nodes), never as HTML. */
(function () {
  'use strict';
  if (window.Warmline && window.Warmline.widget) return; // embedded twice: the first one wins

  // ---- configuration (the <script> tag) ---------------------------------------------------
  const script = document.currentScript ||
    [].slice.call(document.querySelectorAll('script[src]')).reverse().find((s) => /\/widget\.js([?#].*)?$/.test(s.src));
  const base = new URL(script && script.src ? script.src : location.href, location.href);
  const WS_URL = (base.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + base.host + '/ws/customer';
  const ds = (script && script.dataset) || {};
  const parseJson = (s, dflt) => {
    if (!s) return dflt;
    try { return JSON.parse(s); } catch (e) { console.warn('Warmline widget: ignoring invalid JSON', s); return dflt; }
  };
  const topics = [].concat(parseJson(ds.topics, [])).filter((t) => t && typeof t.label === 'string' && t.label);
  const cfg = {
    queue: ds.queue || 'demo',
    title: ds.title || 'Chat with us',
    greeting: ds.greeting || 'Questions? We\u2019re here to help.',
    voice: ds.voice === 'true',
    left: ds.position === 'left',
    open: ds.open === 'true',
    prechat: (ds.prechat != null ? ds.prechat : topics.length ? 'name,topic' : 'name').split(',').map((s) => s.trim()).filter(Boolean),
    iceServers: [].concat(parseJson(ds.iceServers, [])),
    // The page the chat starts on, for the agent: `path` (default: its title and address
    // without query string or fragment) or `none`.
    pageContext: ds.pageContext === 'none' ? 'none' : 'path',
  };
  // The conversation's language (`start.language`; agents must speak it to be offered the chat):
  // `data-language` (a code, or "none"), else the browser's primary subtag when `data-languages`
  // (what the agents speak) lists it. By default none is sent and the queue's language applies:
  // agents configured without languages speak none, so a guessed language would never be routed.
  const language = (function () {
    if (ds.language) return ds.language === 'none' ? null : ds.language;
    if (!ds.languages) return null;
    const mine = String(navigator.language || '').split('-')[0].toLowerCase();
    return ds.languages.split(',').map((s) => s.trim().toLowerCase()).includes(mine) ? mine : null;
  })();

  // ---- small helpers --------------------------------------------------------------------------
  const KEY = 'warmline:' + base.host + ':';
  function load(k, session) { try { return (session ? sessionStorage : localStorage).getItem(KEY + k); } catch (e) { return null; } }
  function store(k, v, session) {
    try { const s = session ? sessionStorage : localStorage; v == null ? s.removeItem(KEY + k) : s.setItem(KEY + k, String(v)); } catch (e) { /* storage off */ }
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  }
  // Element builder: attributes (on* become listeners), children as text or nodes.
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids) if (k != null && k !== false) e.append(k);
    return e;
  }
  const ICONS = {
    chat: 'M21 11.5a8.4 8.4 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.4 8.4 0 0 1-3.8-.9L3 21l1.9-5.7a8.4 8.4 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.4 8.4 0 0 1 3.8-.9h.5a8.5 8.5 0 0 1 8 8z',
    down: 'M6 9l6 6 6-6', x: 'M18 6 6 18M6 6l12 12', back: 'M19 12H5M12 19l-7-7 7-7',
    send: 'M22 2 11 13M22 2l-7 20-4-9-9-4z',
    phone: 'M22 16.9v3a2 2 0 0 1-2.2 2 19.8 19.8 0 0 1-8.6-3.1 19.5 19.5 0 0 1-6-6A19.8 19.8 0 0 1 2.1 4.2 2 2 0 0 1 4.1 2h3a2 2 0 0 1 2 1.7c.1 1 .4 1.9.7 2.8a2 2 0 0 1-.5 2.1L8.1 9.9a16 16 0 0 0 6 6l1.3-1.3a2 2 0 0 1 2.1-.4c.9.3 1.8.6 2.8.7a2 2 0 0 1 1.7 2z',
    history: 'M3 3v5h5M3.1 13A9 9 0 1 0 6 5.3L3 8M12 7v5l4 2',
    download: 'M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4M7 10l5 5 5-5M12 15V3',
    mic: 'M12 1a3 3 0 0 0-3 3v8a3 3 0 0 0 6 0V4a3 3 0 0 0-3-3zM19 10v2a7 7 0 0 1-14 0v-2M12 19v4M8 23h8',
    micOff: 'M1 1l22 22M9 9v3a3 3 0 0 0 5.1 2.1M15 9.3V4a3 3 0 0 0-5.9-.6M17 17a7 7 0 0 1-12-5v-2m14 0v2c0 .4 0 .8-.1 1.2M12 19v4M8 23h8',
  };
  function icon(name) {
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const p = document.createElementNS(NS, 'path');
    p.setAttribute('d', ICONS[name]);
    svg.append(p);
    return svg;
  }
  const pad = (n) => String(n).padStart(2, '0');
  const clock = (d) => d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  function timeEl(ts) { const d = new Date(ts); return isNaN(d) ? '' : h('time', { datetime: d.toISOString() }, clock(d)); }
  function dateTimeText(ts) {
    const d = new Date(ts);
    if (isNaN(d)) return 'an unknown date';
    if (d.toDateString() === new Date().toDateString()) return 'Today, ' + clock(d);
    return d.toLocaleDateString([], { day: 'numeric', month: 'short', year: 'numeric' }) + ', ' + clock(d);
  }
  function backoff(attempt) { // 0.5 s doubling up to 10 s, with jitter (between half and all of it)
    const b = Math.min(10000, 500 * Math.pow(2, attempt));
    return b / 2 + Math.random() * b / 2;
  }
  // What each close code asks of us (docs/protocol.md, "Close codes"): the table of
  // `CloseCode::reconnect` in src/protocol/codes.rs, as in web/common.js; tests/close_codes.rs
  // fails when they differ. A code not in it (1006: the network dropped) means reconnect.
  const RECONNECT = {
    1000: 'no', 1001: 'yes', 1002: 'no', 1007: 'no', 1008: 'no', 1009: 'without_resending',
    1011: 'yes', 1012: 'yes', 4000: 'yes', 4001: 'yes', 4003: 'fresh_token', 4004: 'no',
  };
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; } // live regions speak changes only

  // The accent colour, normalised by a canvas; text on it is white or near-black, whichever
  // contrasts more; focus rings use it only when it stands out on white (else dark grey).
  const theme = (function () {
    const c = document.createElement('canvas').getContext('2d');
    let accent = '#1d4ed8';
    if (c && ds.accent) { c.fillStyle = accent; c.fillStyle = ds.accent; accent = c.fillStyle; }
    const m = /^#(..)(..)(..)$/.exec(accent) || /(\d+),\s*(\d+),\s*(\d+)/.exec(accent);
    const ch = m ? [1, 2, 3].map((i) => (accent[0] === '#' ? parseInt(m[i], 16) : +m[i]) / 255) : [0.1, 0.3, 0.85];
    const lum = ch.map((v) => (v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4)));
    const L = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2];
    const vsWhite = 1.05 / (L + 0.05), vsDark = (L + 0.05) / 0.0566;
    return { accent, on: vsWhite >= vsDark ? '#fff' : '#111', ring: vsWhite >= 3 ? accent : '#1b1f24' };
  })();

  // ---- public API (calls made before the page has a body are queued) -----------------------
  const listeners = {};
  function emit(name, detail) { (listeners[name] || []).slice().forEach((fn) => { try { fn(detail); } catch (e) { console.error(e); } }); }
  let inited = false;
  const early = [];
  const later = (fn) => function () { const a = arguments; if (inited) return fn.apply(null, a); early.push(() => fn.apply(null, a)); };
  const prior = window.Warmline;
  let identity = ds.identity || null;
  const API = {
    widget: true,
    ready: false,
    open: later(() => open(true)),
    close: later(() => close(true)),
    identify(jwt) {
      const next = jwt || null;
      if (next === identity && !identityRefused) return;
      identity = next;
      identityRefused = null;
      if (inited && ws && helloSent) reconnectNow(); // one hello per connection: say hello again with it
    },
    on(name, fn) {
      (listeners[name] = listeners[name] || []).push(fn);
      return () => { listeners[name] = (listeners[name] || []).filter((x) => x !== fn); };
    },
  };
  window.Warmline = API;

  // ---- state ---------------------------------------------------------------------------------
  let ws = null, ready = false, attempt = 0, retryTimer = null, reqNo = 0, everReady = false, refused = null;
  const requests = new Map();  // request id -> { kind, ... }
  let identityRefused = null, helloSent = null, customerId = null;
  let conv = null;             // the conversation shown: a Transcript plus its fields
  let survey = null;           // { conversationId, csat, effort, resolved, state: ''|'sending'|'done'|'answered' }
  let history = null, historyUnsupported = false, openList = [], pickOnHistory = false;
  let view = 'chat';           // 'chat' (pre-chat form or conversation) or 'history'
  let past = null;             // a past conversation shown read-only: { id, entry, t, done }
  let isOpen = false, unread = 0, theirTypingTimer = null, noticeTimer = null;
  let call = null;             // the voice call, see startVoice()
  const followUps = new Map(), notFollowUps = new Set(), shown = new Set();
  let alertFor = null;
  const startedHere = () => { const v = parseJson(load('started'), []); return Array.isArray(v) ? v : []; };
  const noteStarted = (id) => store('started', JSON.stringify([id].concat(startedHere().filter((x) => x !== id)).slice(0, 50)));
  const readSeq = (id) => Number(load('read.' + id)) || 0;

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }
  function request(kind, frame, extra) {
    frame.id = 'w' + (++reqNo);
    requests.set(frame.id, Object.assign({ kind }, extra));
    return send(frame);
  }
  const pendingRequest = (kind) => [...requests.values()].some((r) => r.kind === kind);

  // ---- one conversation's transcript --------------------------------------------------------
  // Events are ordered and de-duplicated by seq; own messages wait in `pending` until their ack and
  // are sent again (same client_msg_id: the server keeps one copy) after every reconnect.
  class Transcript {
    constructor(id, ol, sendMessage) {
      Object.assign(this, { id, ol, sendMessage, seen: new Set(), lastSeq: 0, pending: [], live: false,
        closed: false, agent: null, provisional: null, waiting: null, channel: 'chat' });
    }
    isNew(f) { return typeof f.seq === 'number' && !this.seen.has(f.seq); }
    // Events arrive in seq order, so the highest is where to resume from. An ack's seq only counts as
    // seen: an ack may overtake an earlier event, which must not be skipped on resume.
    note(seq, isEvent) { this.seen.add(seq); if (isEvent) this.lastSeq = Math.max(this.lastSeq, seq); }
    caughtUp(lastSeq) {
      this.lastSeq = Math.max(this.lastSeq, lastSeq || 0);
      this.live = true;
      this.pending.forEach((item) => { if (item.state !== 'failed') this.transmit(item); });
    }
    add(li, seq) { this.note(seq, true); this.place(li, seq); }
    place(li, seq) { // ordered by seq; items without one (own, unacknowledged) stay at the end
      li._seq = seq;
      if (seq > 0) li.dataset.seq = String(seq);
      const next = [...this.ol.children].find((k) => k !== li && (k._seq == null || k._seq > seq));
      this.ol.insertBefore(li, next || null);
      scrollDown(this.ol);
    }
    addPending(text) {
      const item = { text, clientMsgId: uuid(), li: msgItem('customer', 'You', text), state: '' };
      this.pending.push(item);
      this.ol.append(item.li);
      scrollDown(this.ol, true);
      this.transmit(item);
    }
    transmit(item) { this.setState(item, 'sending'); if (this.live) this.sendMessage(this, item); }
    ack(item, seq) {
      const i = this.pending.indexOf(item);
      if (i < 0) return;
      this.pending.splice(i, 1);
      if (this.seen.has(seq)) { item.li.remove(); return; } // a replay already shows it
      this.note(seq, false);
      item.li.hidden = false;
      item.li._ts = new Date();
      this.setState(item, 'sent');
      this.place(item.li, seq);
    }
    failAll() { this.pending.forEach((item) => this.setState(item, 'failed')); }
    setState(item, state) {
      item.state = state;
      setMeta(item.li, state, state === 'sent' ? item.li._ts : null, () => this.transmit(item));
    }
  }
  function msgItem(role, name, text, ts) {
    const li = h('li', { class: 'msg ' + role, 'data-testid': 'wl-msg', 'data-role': role },
      h('span', { class: 'who' }, name), h('p', { class: 'text' }, text), h('span', { class: 'meta' }, ts ? timeEl(ts) : null));
    li._ts = ts ? new Date(ts) : null;
    return li;
  }
  function sysItem(text, ts) {
    const li = h('li', { class: 'sys', 'data-testid': 'wl-msg', 'data-role': 'system' }, h('span', { class: 'text' }, text));
    li._ts = ts ? new Date(ts) : null;
    return li;
  }
  // Own message state: sending, sent (time and a tick, after the ack), failed (with Retry).
  function setMeta(li, state, ts, retry) {
    li.dataset.state = state;
    li.classList.toggle('failed', state === 'failed');
    const meta = li.querySelector('.meta');
    if (state === 'sent') meta.replaceChildren(ts ? timeEl(ts) : '', h('span', { class: 'tick', title: 'Sent' }, '\u2713', h('span', { class: 'sr' }, ' Sent')));
    else if (state === 'sending') meta.replaceChildren('Sending\u2026');
    else meta.replaceChildren(h('span', null, 'Not sent.'), h('button', { type: 'button', class: 'retry', 'data-testid': 'wl-retry', onclick: retry }, 'Retry'));
  }
  function scrollDown(ol, force) {
    const box = ol.closest('.body');
    if (!box) return;
    if (force || box.scrollHeight - box.scrollTop - box.clientHeight < 160) box.scrollTop = box.scrollHeight;
  }

  // ---- the DOM (inside a shadow root) ---------------------------------------------------------
  let host, root, ui = {};
  function buildLauncher() {
    // A custom element name: the page's `div { ... }` rules do not reach it; inline !important beats the rest.
    host = h('warmline-chat', { id: 'warmline-chat' });
    host.style.cssText = 'all:initial!important;display:block!important;position:static!important';
    root = host.attachShadow({ mode: 'open' });
    // A constructed style sheet is not subject to the page's CSP style-src; a <style> element otherwise.
    try { const sheet = new CSSStyleSheet(); sheet.replaceSync(css()); root.adoptedStyleSheets = [sheet]; } catch (e) { root.append(h('style', null, css())); }
    ui.wrap = h('div', { class: 'root' + (cfg.left ? ' left' : '') });
    ui.wrap.style.setProperty('--a', theme.accent);
    ui.wrap.style.setProperty('--on', theme.on);
    ui.wrap.style.setProperty('--ring', theme.ring);
    ui.unread = h('span', { class: 'badge', 'data-testid': 'wl-unread', hidden: true });
    ui.launchIcon = h('span', { class: 'li' }, icon('chat'));
    ui.launcher = h('button', { type: 'button', class: 'launcher', 'data-testid': 'wl-launcher', 'aria-label': 'Open chat: ' + cfg.title,
      title: 'Open chat: ' + cfg.title, 'aria-expanded': 'false', 'aria-controls': 'wl-panel', onclick: () => (isOpen ? close(true) : open(true)) }, ui.launchIcon, ui.unread);
    ui.wrap.append(ui.launcher);
    root.append(ui.wrap);
    document.body.append(host);
  }
  function iconButton(name, label, testid, onclick) {
    return h('button', { type: 'button', class: 'ib', 'aria-label': label, title: label, 'data-testid': testid, onclick }, icon(name));
  }
  function field(label, control, hint) {
    return h('div', { class: 'field' }, h('label', { for: control.id }, label, hint ? h('span', { class: 'opt' }, ' ' + hint) : null), control);
  }
  function choices(testid, n, label, scale, onpick) {
    const group = h('div', { class: 'chips', role: 'group', 'aria-label': label + ' ' + scale });
    for (let i = 1; i <= n; i++) {
      group.append(h('button', { type: 'button', class: 'chip', 'data-testid': testid + i, 'data-v': i, 'aria-pressed': 'false',
        'aria-label': i + ' of ' + n, onclick: () => onpick(i) }, String(i)));
    }
    return group;
  }
  function buildPanel() {
    ui.title = h('h2', { class: 'title', id: 'wl-title' }, cfg.title);
    ui.status = h('p', { class: 'status', 'data-testid': 'wl-status', role: 'status' }, 'Connecting\u2026');
    ui.voice = iconButton('phone', 'Switch to a voice call', 'wl-voice', startVoice);
    ui.history = iconButton('history', 'Your past conversations', 'wl-history', toggleHistory);
    ui.download = iconButton('download', 'Download the transcript', 'wl-download', download);
    ui.close = iconButton('down', 'Minimise chat', 'wl-close', () => close(true));
    ui.reconnect = h('button', { type: 'button', class: 'link', 'data-testid': 'wl-reconnect', hidden: true,
      onclick: () => { attempt = 0; refused = null; connect(); } }, 'Reconnect');
    const head = h('header', { class: 'head' },
      h('div', { class: 'hm' }, ui.title, h('div', { class: 'sl' }, ui.status, ui.reconnect)),
      ui.voice, ui.history, ui.download, ui.close);

    // Who is helping (or the place in the queue).
    ui.queueInfo = h('p', { class: 'qi', 'data-testid': 'wl-queue-info', 'aria-live': 'polite' });
    ui.avatar = h('span', { class: 'av', 'aria-hidden': 'true' });
    ui.agent = h('span', { class: 'an', 'data-testid': 'wl-agent' });
    ui.agentBox = h('div', { class: 'ag', hidden: true }, ui.avatar, h('div', null, ui.agent, h('span', { class: 'ar' }, 'is helping you')));
    ui.bar = h('div', { class: 'bar', hidden: true }, ui.agentBox, ui.queueInfo);

    // The voice call.
    ui.audio = h('audio', { autoplay: true });
    ui.callText = h('span', { class: 'ct', role: 'status' });
    ui.mute = h('button', { type: 'button', class: 'cb', 'data-testid': 'wl-mute', 'aria-pressed': 'false', 'aria-label': 'Mute microphone', title: 'Mute microphone', onclick: toggleMute }, icon('mic'));
    ui.hangup = h('button', { type: 'button', class: 'cb hang', 'data-testid': 'wl-hangup', 'aria-label': 'Hang up', title: 'Hang up', onclick: () => endCall(true) }, icon('phone'));
    ui.call = h('div', { class: 'call', hidden: true }, h('span', { class: 'pulse', 'aria-hidden': 'true' }), ui.callText, ui.mute, ui.hangup, ui.audio);

    ui.notice = h('p', { class: 'note', role: 'alert', hidden: true });
    ui.alertText = h('span');
    ui.alert = h('div', { class: 'note info', 'data-testid': 'wl-follow-up-alert', role: 'status', hidden: true }, ui.alertText, ' ',
      h('button', { type: 'button', class: 'link', onclick: () => { if (alertFor) showOpen(alertFor); render(); focusInput(); } }, 'Open it'));

    // Pre-chat form.
    ui.name = h('input', { id: 'wl-name', 'data-testid': 'wl-name', name: 'name', autocomplete: 'name', maxlength: '80' });
    ui.name.value = load('name') || '';
    ui.email = h('input', { id: 'wl-email', 'data-testid': 'wl-email', type: 'email', name: 'email', autocomplete: 'email', maxlength: '200' });
    ui.topic = h('select', { id: 'wl-topic', 'data-testid': 'wl-topic', name: 'topic' }, ...topics.map((t, i) => h('option', { value: String(i) }, t.label)));
    ui.first = h('textarea', { id: 'wl-first-message', 'data-testid': 'wl-first-message', rows: '3', placeholder: 'How can we help?' });
    ui.start = h('button', { type: 'submit', class: 'primary', 'data-testid': 'wl-start' }, 'Start chat');
    const want = (f) => cfg.prechat.includes(f);
    // After a reload or a restart: the customer's last conversation, one click away.
    ui.lastInfo = h('span', { class: 'lw' });
    ui.continue = h('button', { type: 'button', class: 'primary', 'data-testid': 'wl-continue', onclick: continueLast }, 'Continue your last conversation');
    ui.lastBox = h('div', { class: 'last', 'data-testid': 'wl-last', role: 'group', 'aria-label': 'Your last conversation', hidden: true },
      ui.lastInfo, ui.continue, h('p', { class: 'or' }, 'or start a new one:'));
    ui.prechat = h('form', { class: 'prechat', 'data-testid': 'wl-prechat', 'aria-labelledby': 'wl-greet', onsubmit: startChat },
      ui.lastBox,
      h('p', { class: 'greet', id: 'wl-greet' }, cfg.greeting),
      h('p', { class: 'sub' }, 'Tell us a little about what you need and we\u2019ll connect you with the right person.'),
      want('name') ? field('Your name', ui.name, '(optional)') : null,
      want('email') ? field('Email', ui.email, '(optional)') : null,
      want('topic') && topics.length ? field('Topic', ui.topic) : null,
      field('Message', ui.first, '(optional)'),
      ui.start);
    enterSubmits(ui.first, ui.prechat);

    // The conversation.
    ui.followUp = h('p', { class: 'note info', 'data-testid': 'wl-follow-up', role: 'status', hidden: true });
    ui.log = h('ol', { class: 'log', 'data-testid': 'wl-transcript', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' });
    ui.typing = h('p', { class: 'typing', 'data-testid': 'wl-typing', 'aria-live': 'polite', hidden: true });
    ui.closedText = h('p', { class: 'ctx', 'data-testid': 'wl-closed-text' });
    ui.comment = h('textarea', { id: 'wl-comment', 'data-testid': 'wl-comment', rows: '2', maxlength: '2000' });
    ui.csat = choices('wl-csat-', 5, 'Your rating', '(1 = very poor, 5 = excellent)', (v) => pick('csat', v));
    ui.effort = choices('wl-effort-', 7, 'Effort', '(1 = very easy, 7 = very hard)', (v) => pick('effort', v));
    ui.resolved = h('div', { class: 'chips', role: 'group', 'aria-labelledby': 'wl-res' },
      ...[['Yes', true], ['No', false]].map(([t, v]) => h('button', { type: 'button', class: 'chip wide', 'data-testid': 'wl-resolved-' + t.toLowerCase(),
        'data-v': String(v), 'aria-pressed': 'false', onclick: () => pick('resolved', v) }, t)));
    ui.surveySend = h('button', { type: 'submit', class: 'primary', 'data-testid': 'wl-survey-send' }, 'Send feedback');
    ui.surveyNote = h('p', { class: 'err', role: 'status' });
    ui.survey = h('form', { class: 'survey', 'data-testid': 'wl-survey', 'aria-labelledby': 'wl-sv', hidden: true, onsubmit: sendSurvey },
      h('h3', { id: 'wl-sv' }, 'How did we do?'),
      h('p', { class: 'q' }, 'Your rating', h('span', { class: 'opt' }, ' 1 = very poor, 5 = excellent')), ui.csat,
      h('p', { class: 'q' }, 'How easy was it to get help?', h('span', { class: 'opt' }, ' (optional) 1 = very easy, 7 = very hard')), ui.effort,
      h('p', { class: 'q', id: 'wl-res' }, 'Did we solve your problem?', h('span', { class: 'opt' }, ' (optional)')), ui.resolved,
      field('Anything else?', ui.comment, '(optional)'), ui.surveyNote, ui.surveySend);
    ui.surveyDone = h('p', { class: 'done', 'data-testid': 'wl-survey-done', role: 'status', hidden: true });
    ui.newChat = h('button', { type: 'button', class: 'secondary', 'data-testid': 'wl-new-chat', onclick: newChat }, 'Start a new chat');
    ui.closed = h('div', { class: 'closed', 'data-testid': 'wl-closed', hidden: true }, ui.closedText, ui.survey, ui.surveyDone, ui.newChat);
    ui.chat = h('div', { class: 'chat', hidden: true }, ui.followUp, ui.log, ui.typing, ui.closed);

    // Past conversations.
    ui.historyList = h('ul', { class: 'hl', 'data-testid': 'wl-history-list', 'aria-label': 'Your conversations' });
    ui.historyNote = h('p', { class: 'sub', role: 'status' });
    ui.pastTitle = h('h3', { class: 'pt', tabindex: '-1' });
    ui.pastInfo = h('p', { class: 'sub' });
    ui.pastLog = h('ol', { class: 'log', 'data-testid': 'wl-past-transcript', 'aria-labelledby': 'wl-pt' });
    ui.pastTitle.id = 'wl-pt';
    ui.pastLoading = h('p', { class: 'sub', role: 'status' });
    ui.past = h('div', { class: 'past', hidden: true }, ui.pastTitle, ui.pastInfo, ui.pastLoading, ui.pastLog);
    ui.back = h('button', { type: 'button', class: 'link back', 'data-testid': 'wl-history-back', onclick: historyBack }, icon('back'), 'Back');
    ui.historyBox = h('div', { class: 'hist', hidden: true }, ui.back, ui.histTitle = h('h3', { class: 'ht' }, 'Your conversations'), ui.historyNote, ui.historyList, ui.past);

    ui.body = h('div', { class: 'body' }, ui.prechat, ui.chat, ui.historyBox);

    // Composer.
    ui.input = h('textarea', { id: 'wl-input', 'data-testid': 'wl-input', rows: '1', placeholder: 'Write a message\u2026', 'aria-label': 'Message', maxlength: '20000' });
    ui.send = h('button', { type: 'submit', class: 'send', 'data-testid': 'wl-send', 'aria-label': 'Send message', title: 'Send message' }, icon('send'));
    ui.composer = h('form', { class: 'composer', hidden: true, onsubmit: sendMessage }, ui.input, ui.send);
    enterSubmits(ui.input, ui.composer);
    ui.input.addEventListener('input', () => { grow(); if (conv && !conv.closed && conv.live && ui.input.value) typing.input(conv.id); });
    ui.end = h('button', { type: 'button', class: 'link end', 'data-testid': 'wl-end', onclick: endChat }, 'End chat');
    ui.foot = h('div', { class: 'foot' }, ui.end, h('span', { class: 'brand' }, 'Powered by Warmline'));

    ui.panel = h('section', { id: 'wl-panel', class: 'panel', 'data-testid': 'wl-panel', role: 'dialog', 'aria-labelledby': 'wl-title', hidden: true },
      head, ui.bar, ui.call, ui.notice, ui.alert, ui.body, ui.composer, ui.foot);
    ui.panel.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.stopPropagation(); close(true); } });
    ui.wrap.insertBefore(ui.panel, ui.launcher);
  }
  function enterSubmits(textarea, form) { // Enter sends, Shift+Enter makes a new line
    textarea.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); form.requestSubmit(); }
    });
  }
  function grow() { ui.input.style.height = 'auto'; ui.input.style.height = Math.min(ui.input.scrollHeight + 2, 120) + 'px'; }

  // ---- open / close ----------------------------------------------------------------------------
  function open(byUser) {
    if (isOpen) return;
    isOpen = true;
    store('open', '1', true);
    ui.panel.hidden = false;
    ui.wrap.classList.add('open');
    ui.launcher.setAttribute('aria-expanded', 'true');
    ui.launcher.setAttribute('aria-label', 'Close chat');
    ui.launcher.title = 'Close chat';
    ui.launchIcon.replaceChildren(icon('down'));
    markRead();
    render();
    scrollDown(ui.log, true);
    if (byUser) focusFirst();
    emit('open');
  }
  function close(byUser) {
    if (!isOpen) return;
    isOpen = false;
    store('open', null, true);
    ui.panel.hidden = true;
    ui.wrap.classList.remove('open');
    ui.launcher.setAttribute('aria-expanded', 'false');
    ui.launcher.setAttribute('aria-label', 'Open chat: ' + cfg.title);
    ui.launcher.title = 'Open chat: ' + cfg.title;
    ui.launchIcon.replaceChildren(icon('chat'));
    if (byUser) ui.launcher.focus();
    emit('close');
  }
  function focusFirst() {
    const target = view === 'history' ? ui.back : !conv ? (ui.lastBox.hidden ? ui.prechat.querySelector('input,select,textarea') : ui.continue)
      : !conv.closed || conv.continued ? ui.input : !ui.survey.hidden ? ui.csat.querySelector('button') : ui.newChat;
    (target || ui.close).focus();
  }
  function focusInput() { if (isOpen && conv && (!conv.closed || conv.continued)) ui.input.focus(); }
  function markRead() {
    unread = 0;
    if (conv) store('read.' + conv.id, Math.max(readSeq(conv.id), conv.lastSeq));
    renderUnread();
  }
  function bumpUnread() {
    unread++;
    renderUnread();
    emit('unread', unread);
  }
  function renderUnread() {
    ui.unread.hidden = isOpen || !unread;
    ui.unread.textContent = unread > 9 ? '9+' : String(unread);
    ui.unread.setAttribute('aria-label', unread + ' unread');
  }

  // ---- connection ------------------------------------------------------------------------------
  function setStatus(text, kind) {
    setText(ui.status, text);
    ui.status.dataset.kind = kind || 'ok';
  }
  function connect() {
    clearTimeout(retryTimer);
    ui.reconnect.hidden = true;
    setStatus(attempt ? 'Reconnecting\u2026' : 'Connecting\u2026', attempt ? 'warn' : 'wait');
    let sock;
    try { sock = new WebSocket(WS_URL); } catch (e) { setStatus('Chat unavailable: ' + e.message, 'err'); return; }
    ws = sock;
    sock.onopen = hello;
    sock.onmessage = (ev) => {
      let f = null;
      try { f = JSON.parse(ev.data); } catch (e) { /* not ours */ }
      if (f && typeof f.type === 'string') handle(f);
    };
    sock.onclose = (ev) => { if (ws === sock) onSocketClosed(ev); };
  }
  function hello() {
    const frame = { type: 'hello' }, token = load('visitor_token');
    if (token) frame.visitor_token = token;
    if (identity) frame.identity = identity;
    helloSent = frame;
    send(frame);
  }
  function dropSocket() {
    ws = null; ready = false; helloSent = null;
    requests.clear(); // an unanswered start or end is settled by the next welcome and resume
    if (survey && survey.state === 'sending') survey.state = ''; // send again (a second copy gets `conflict`)
    if (conv) conv.live = false;
    typing.stop(false);
    showTyping(false);
  }
  function reconnectNow() {
    const old = ws;
    dropSocket();
    if (old) old.close(1000, 'reconnect');
    attempt = 0;
    connect();
  }
  function onSocketClosed(ev) {
    dropSocket();
    const after = RECONNECT[ev.code] || 'yes';
    // The gateway refused what we sent: what is not acknowledged is not sent again by itself
    // (each such message shows Retry).
    if (after !== 'yes' && conv) conv.failAll();
    if (after === 'no' || after === 'fresh_token') { // 1008 policy, and codes a customer never gets
      refused = ev.reason || 'the chat server closed the connection';
      setStatus('Disconnected: ' + refused + '.', 'err');
      ui.reconnect.hidden = false;
      render();
      return;
    }
    // Network loss, 1001 restart, 1011, 1012, 4000 keepalive, 4001 slow consumer, and 1009 (a
    // message was too large: not sent again): reconnect and resume.
    setStatus(navigator.onLine === false ? 'Offline. Waiting for the network\u2026'
      : after === 'without_resending' ? 'A message was too large to send. Reconnecting\u2026' : 'Reconnecting\u2026', 'warn');
    retryTimer = setTimeout(connect, backoff(attempt++));
    render();
  }
  window.addEventListener('online', () => { if (!ws && !refused) { attempt = 0; connect(); } });
  // An error before the welcome is about the hello. Returns whether it was handled (a new hello went out).
  function helloRefused(f) {
    const sent = helloSent;
    if (ready || !sent || (f.code !== 'unauthorized' && f.code !== 'invalid_field')) return false;
    const aboutIdentity = !!sent.identity && (f.code === 'invalid_field' || /identity/i.test(f.message || '') || !sent.visitor_token);
    if (aboutIdentity) { // go on as an anonymous visitor and tell the host page
      identity = null;
      identityRefused = f.message || f.code;
      console.warn('Warmline widget: identity refused:', identityRefused);
      emit('identity_refused', identityRefused);
    } else if (f.code === 'unauthorized' && sent.visitor_token) {
      store('visitor_token', null); // not valid on this gateway (new secret, wiped store): start fresh
    } else return false;
    hello();
    return true;
  }

  // ---- frames from the server --------------------------------------------------------------------
  function handle(f) {
    const mine = !!conv && f.conversation_id === conv.id;
    const viewing = !!past && f.conversation_id === past.id;
    const r = f.id != null ? requests.get(f.id) : null;
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'resumed':
        if (mine) {
          conv.caughtUp(f.last_seq);
          if (conv.waiting && !conv.closed) showQueued(conv.waiting.position);
          conv.waiting = null;
          if (isOpen) markRead();
          flushRtc();
        }
        if (viewing) pastLoaded();
        break;
      case 'ack':
        requests.delete(f.id);
        if (r) onAck(r, f);
        break;
      case 'error': onError(f, r); break;
      case 'history':
        history = Array.isArray(f.conversations) ? f.conversations : [];
        renderHistory();
        if (pickOnHistory) { pickOnHistory = false; pickOpen(); } else checkFollowUps();
        renderFollowUp();
        break;
      case 'follow_up': onFollowUp(f); break;
      case 'queued':
        if (mine && !conv.closed) { conv.waiting = null; showQueued(f.position, f.eta_seconds, f.opens_at); }
        break;
      case 'message': case 'assigned': case 'closed':
        if (mine) addEvent(f);
        if (viewing && past.t.isNew(f)) past.t.add(eventItem(f), f.seq);
        break;
      case 'typing':
        if (mine && f.role !== 'customer') showTyping(!!f.on);
        break;
      case 'survey_request':
        if (mine) showSurvey(f.conversation_id);
        break;
      case 'switched':
        if (mine) onSwitched(f);
        break;
      case 'rtc':
        if (mine) onRtc(f);
        break;
      default: // other frames are not for this widget
    }
    render();
  }
  function onWelcome(f) {
    ready = true; attempt = 0; refused = null;
    if (f.visitor_token) store('visitor_token', f.visitor_token);
    customerId = f.customer_id || null;
    setStatus('Connected', 'ok');
    openList = f.open_conversations || [];
    if (conv && !conv.closed) { conv.waiting = waitingEntry(conv.id); resume(); } // same page: from the last seq seen
    pickOnHistory = !conv && openList.length > 0;
    if (past && !past.done) resumePast();
    requestHistory();
    if (!everReady) {
      everReady = true;
      API.ready = true;
      window.dispatchEvent(new CustomEvent('warmline:ready', { detail: { ms: performance.now() } }));
      emit('ready', { customerId });
    }
  }
  function onAck(r, f) {
    if (r.kind === 'start') {
      noteStarted(f.conversation_id);
      openConversation(f.conversation_id, r.text, r.continued);
      conv.caughtUp(0);
      requestHistory();
      emit('started', { conversationId: f.conversation_id });
      render();
      focusInput();
    } else if (r.kind === 'message') r.conv.ack(r.item, f.seq);
    else if (r.kind === 'survey') { surveyAnswered(r.survey, 'done'); requestHistory(); }
    else if (r.kind === 'switch' && r.call && r.call === call) { call.switched = true; maybeOffer(); }
  }
  function onError(f, r) {
    if (helloRefused(f)) return;
    requests.delete(f.id);
    const kind = r && r.kind;
    if (kind === 'survey') return surveyRefused(r.survey, f);
    if (kind === 'history') {
      if (f.code === 'unknown_type') historyUnsupported = true; // an older gateway: no list
      if (pickOnHistory) { pickOnHistory = false; pickOpen(); }
      return;
    }
    if (kind === 'past') return pastRefused(r.past, f);
    if (kind === 'rtc') return rtcRefused(r, f);
    if (kind === 'switch' && r.call && r.call === call) { teardown(); notice('The call could not start: ' + (f.message || f.code) + '.'); return; }
    if (kind === 'message' && f.code === 'rate_limited' && f.retry_after_ms > 0) {
      // Too fast: the gateway did not take it; send it again (same client_msg_id) when it says.
      const { conv: t, item } = r;
      setTimeout(() => { if (!t.closed && item.state === 'sending') t.transmit(item); }, f.retry_after_ms);
      return;
    }
    if (kind === 'message') r.conv.setState(r.item, 'failed');
    if (kind === 'start') notice('The chat could not start: ' + (f.message || f.code) + '.');
    else if (!r && conv && !conv.live && (f.code === 'not_found' || f.code === 'forbidden')) { conv = null; } // a resumed one is gone
    else notice(f.message || f.code || 'Something went wrong.');
  }
  function notice(text) {
    clearTimeout(noticeTimer);
    setText(ui.notice, text);
    ui.notice.hidden = !text;
    if (text) noticeTimer = setTimeout(() => notice(''), 10000);
  }
  function waitingEntry(id) { return openList.find((o) => o.conversation_id === id && o.state !== 'active') || null; }
  function showQueued(position, eta, opensAt) {
    if (conv) conv.agent = null; // back in the line (no agent, or the agent was lost)
    let t = typeof position === 'number' ? 'You are number ' + position + ' in the queue.' : 'Connecting you to an agent\u2026';
    if (opensAt) t += ' We open ' + dateTimeText(opensAt).replace(/^Today, /, 'at ') + '.';
    else if (typeof eta === 'number') t += ' Estimated wait: ' + formatWait(eta) + '.';
    else if (eta === null) t += ' An agent will be with you as soon as one is free.';
    setText(ui.queueInfo, t);
  }
  function formatWait(s) {
    if (s < 60) return 'under a minute';
    const m = Math.round(s / 60);
    return m < 90 ? 'about ' + m + (m === 1 ? ' minute' : ' minutes') : 'about ' + Math.round(m / 60) + ' hours';
  }

  // ---- the conversation --------------------------------------------------------------------------
  function startChat(ev) {
    ev.preventDefault();
    if (!ready || pendingRequest('start')) return;
    const name = ui.name.value.trim(), email = ui.email.value.trim(), text = ui.first.value.trim();
    const topic = cfg.prechat.includes('topic') ? topics[Number(ui.topic.value)] : null;
    if (name) store('name', name);
    const frame = { type: 'start', queue: (topic && topic.queue) || cfg.queue, channel: 'chat' };
    if (language) frame.language = language;
    if (topic && topic.skills) frame.skills = topic.skills;
    const attributes = {};
    if (name && cfg.prechat.includes('name')) attributes.name = name;
    if (email && cfg.prechat.includes('email')) attributes.email = email;
    if (topic) attributes.topic = topic.label;
    Object.assign(attributes, pageContext());
    if (Object.keys(attributes).length) frame.attributes = attributes;
    if (text) frame.text = text;
    notice('');
    request('start', frame, { text });
    ui.first.value = '';
    render();
  }
  // Where the customer is: the page's title and its address without the query string or
  // fragment (they often carry tokens, emails or search terms). Nothing with data-page-context="none".
  function pageContext() {
    if (cfg.pageContext === 'none') return {};
    const out = {};
    const title = String(document.title || '').replace(/\s+/g, ' ').trim().slice(0, 200);
    if (title) out.page_title = title;
    if (/^https?:$/.test(location.protocol)) out.page_url = (location.origin + location.pathname).slice(0, 500);
    return out;
  }
  function openConversation(id, firstText, keepEarlier) {
    typing.stop(true);
    showTyping(false);
    if (call) endCall(true);
    if (keepEarlier) { // continuing a closed conversation: its transcript stays above the new one
      for (const li of ui.log.children) li._seq = -1;
      const sep = sysItem('You continued the conversation.');
      sep._seq = -1;
      ui.log.append(sep);
    } else ui.log.replaceChildren();
    conv = new Transcript(id, ui.log, (t, item) =>
      ready && request('message', { type: 'message', conversation_id: t.id, text: item.text, client_msg_id: item.clientMsgId }, { conv: t, item }));
    shown.add(id);
    if (alertFor === id) hideAlert();
    if (firstText) { // the start text: shown first until its message event (seq 1) arrives
      const li = msgItem('customer', 'You', firstText);
      setMeta(li, 'sending');
      li._seq = 0;
      ui.log.append(li);
      conv.provisional = { text: firstText, li };
    }
    ui.queueInfo.textContent = '';
    if (survey && survey.conversationId !== id) hideSurvey();
    view = 'chat';
    renderFollowUp();
    renderHistory();
  }
  function showOpen(id) { // an open conversation (listed at hello, a follow-up, picked in the list), from seq 0
    view = 'chat';
    if (conv && conv.id === id) return;
    openConversation(id);
    conv.waiting = waitingEntry(id);
    const o = openList.find((x) => x.conversation_id === id);
    if (o && o.channel) conv.channel = o.channel;
    resume();
  }
  function resume() {
    conv.live = false;
    send({ type: 'resume', conversation_id: conv.id, last_seq: conv.lastSeq });
  }
  function eventItem(f) {
    const s = f.sender || {};
    if (f.type === 'message') {
      const role = s.role === 'customer' || s.role === 'agent' ? s.role : 'system';
      if (role === 'system') return sysItem(f.text, f.ts);
      return msgItem(role, role === 'customer' ? 'You' : s.display_name || 'Agent', f.text, f.ts);
    }
    if (f.type === 'assigned') return sysItem(((f.agent && f.agent.display_name) || 'An agent') + ' joined the chat.', f.ts);
    return sysItem(closedText(f), f.ts);
  }
  function addEvent(f) {
    if (!conv.isNew(f)) return; // de-duplicated by seq
    const s = f.sender || {}, p = conv.provisional;
    let li;
    if (f.type === 'message' && s.role === 'customer' && p && p.text === f.text) {
      conv.provisional = null;
      li = p.li;
      li._ts = new Date(f.ts);
      setMeta(li, 'sent', f.ts);
    } else {
      li = eventItem(f);
      if (f.type === 'message' && s.role === 'customer') {
        // Probably an own message that was stored before a reconnect: its ack comes after the resend
        // and removes the copy; until then, show one.
        const twin = conv.pending.find((i) => i.text === f.text && !i.li.hidden);
        if (twin) twin.li.hidden = true;
        li.dataset.state = 'sent';
      }
      if (f.type === 'message' && s.role !== 'customer') {
        if (s.role === 'agent') showTyping(false);
        if (!isOpen && f.seq > readSeq(conv.id)) bumpUnread();
        emit('message', { conversationId: conv.id, seq: f.seq, role: s.role, name: s.display_name, text: f.text });
      }
      if (f.type === 'assigned') {
        conv.agent = f.agent || {};
        conv.waiting = null;
        ui.queueInfo.textContent = '';
        if (conv.live) requestHistory();
        maybeOffer();
        emit('assigned', { conversationId: conv.id, agent: conv.agent.display_name });
      }
      if (f.type === 'closed') onClosed(f);
    }
    if (f.seq === 1 && f.type === 'message' && s.role === 'customer' && !followUps.has(conv.id)) { notFollowUps.add(conv.id); renderFollowUp(); }
    conv.add(li, f.seq);
    if (isOpen) markRead();
  }
  function closedText(f) {
    const res = { resolved: ' (resolved)', unresolved: ' (unresolved)', follow_up: ' (we will get back to you)' }[f.resolution] || '';
    return 'The chat was ended by ' + (f.by === 'customer' ? 'you' : 'the agent') + res + '.';
  }
  function onClosed(f) {
    conv.closed = true;
    typing.stop(true);
    showTyping(false);
    if (call) teardown();
    ui.queueInfo.textContent = '';
    ui.closedText.textContent = conv.continued ? 'This chat has ended. Write below to continue it: we\u2019ll pick up where we left off.'
      : f.by === 'customer' ? 'You ended this chat.' : 'This chat has ended.';
    requestHistory();
    if (!conv.continued) emit('closed', { conversationId: conv.id, by: f.by, resolution: f.resolution }); // not for a transcript read again
  }
  function sendMessage(ev) {
    ev.preventDefault();
    const text = ui.input.value.trim();
    if (!text || !conv || (conv.closed && !conv.continued)) return;
    if (new Blob([text]).size > 60000) { notice('That message is too long. Please split it up.'); return; }
    if (conv.closed) return continueWith(text);
    typing.stop(true);
    conv.addPending(text);
    ui.input.value = '';
    grow();
    ui.input.focus();
  }
  function endChat() {
    if (!conv || conv.closed || !ready) return;
    typing.stop(true);
    request('end', { type: 'end', conversation_id: conv.id });
    render();
  }
  // ---- the last conversation, after a reload or a restart ----------------------------------------
  // The pre-chat form offers it first. An open one is shown as it is; a closed one shows its
  // transcript with the composer: what the customer writes starts a new chat in the same queue
  // (the agent gets the earlier conversation with it, as a repeat contact), below the old one.
  function lastConversation() { return (history && history[0]) || null; }
  function continueLast() {
    const x = lastConversation();
    if (!x) return;
    showOpen(x.conversation_id);
    if (x.state === 'closed') conv.continued = { queue: x.queue };
    render();
    focusFirst();
  }
  function continueWith(text) {
    if (!ready || pendingRequest('start')) return;
    const frame = { type: 'start', queue: conv.continued.queue || cfg.queue, channel: 'chat', text };
    if (language) frame.language = language;
    const name = load('name');
    if (name && cfg.prechat.includes('name')) frame.attributes = { name };
    request('start', frame, { text, continued: true });
    ui.input.value = '';
    grow();
    render();
  }
  function newChat() {
    if (call) endCall(true);
    conv = null;
    hideSurvey();
    ui.log.replaceChildren();
    view = 'chat';
    render();
    renderHistory();
    focusFirst();
  }

  // ---- typing, both ways ----------------------------------------------------------------------------
  // Own: on:true at most once every 2 s while typing; on:false after 3 s idle or on send.
  const typing = {
    conv: null, last: 0, timer: null,
    input(id) {
      if (this.conv && this.conv !== id) this.stop(true);
      const now = Date.now();
      if (now - this.last >= 2000) { this.last = now; this.conv = id; send({ type: 'typing', conversation_id: id, on: true }); }
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.stop(true), 3000);
    },
    stop(notify) {
      clearTimeout(this.timer);
      if (this.conv && notify) send({ type: 'typing', conversation_id: this.conv, on: false });
      this.conv = null; this.last = 0;
    },
  };
  function showTyping(on) {
    clearTimeout(theirTypingTimer);
    if (!ui.typing) return;
    const name = (conv && conv.agent && conv.agent.display_name) || 'The agent';
    ui.typing.replaceChildren(...(on ? [h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), name + ' is typing\u2026'] : []));
    ui.typing.hidden = !on;
    if (on) { theirTypingTimer = setTimeout(() => showTyping(false), 8000); scrollDown(ui.log); } // in case "off" is lost
  }

  // ---- survey ---------------------------------------------------------------------------------------
  function showSurvey(id) {
    if (survey && survey.conversationId === id) return;
    survey = { conversationId: id, csat: null, effort: null, resolved: null, state: '' };
    ui.comment.value = '';
    ui.surveyNote.textContent = '';
    emit('survey', { conversationId: id });
  }
  function hideSurvey() { survey = null; }
  function pick(k, v) {
    if (!survey || survey.state !== '') return;
    survey[k] = k !== 'csat' && survey[k] === v ? null : v; // a second click takes an optional answer back
    render();
  }
  function sendSurvey(ev) {
    ev.preventDefault();
    const s = survey;
    if (!s || s.state !== '' || !ready) return;
    if (s.csat == null) { ui.surveyNote.textContent = 'Please choose a rating from 1 to 5.'; ui.csat.querySelector('button').focus(); return; }
    const frame = { type: 'survey', conversation_id: s.conversationId, csat: s.csat };
    if (s.effort != null) frame.effort = s.effort;
    if (s.resolved != null) frame.resolved = s.resolved;
    const comment = ui.comment.value.trim();
    if (comment) frame.comment = comment;
    s.state = 'sending';
    ui.surveyNote.textContent = '';
    request('survey', frame, { survey: s });
    render();
  }
  function surveyAnswered(s, state) {
    if (s !== survey) return;
    s.state = state;
    render();
    if (isOpen) ui.newChat.focus();
  }
  function surveyRefused(s, f) {
    if (s !== survey) return;
    if (f.code === 'conflict') return surveyAnswered(s, 'answered');
    s.state = '';
    ui.surveyNote.textContent = 'Not sent: ' + (f.message || f.code) + '.';
  }

  // ---- past conversations ------------------------------------------------------------------------
  function requestHistory() { if (ready && !historyUnsupported) request('history', { type: 'history' }); }
  function toggleHistory() {
    view = view === 'history' ? 'chat' : 'history';
    if (view === 'history') { requestHistory(); renderHistory(); }
    else if (past) hidePast();
    render();
    focusFirst();
  }
  function historyBack() {
    if (past) {
      const id = past.id;
      hidePast();
      render();
      const b = ui.historyList.querySelector('[data-conversation-id="' + CSS.escape(id) + '"]');
      if (b) return b.focus();
    }
    view = 'chat';
    render();
    focusFirst();
  }
  function stateName(x) {
    if (x.state === 'closed') return { resolved: 'Resolved', unresolved: 'Not resolved', follow_up: 'We\u2019ll get back to you' }[x.resolution] || 'Ended';
    const open = x.state === 'active' ? 'Open' : 'Waiting for an agent';
    return followUpOf(x.conversation_id) ? 'Follow-up: ' + open.toLowerCase() : open;
  }
  function renderHistory() {
    if (!ui.historyList) return;
    setText(ui.historyNote, history ? (history.length ? '' : 'No conversations yet.') : 'Loading\u2026');
    ui.historyList.replaceChildren(...(history || []).map((x) => {
      const open = x.state !== 'closed', current = !!conv && conv.id === x.conversation_id;
      return h('li', null, h('button', {
        type: 'button', class: 'hi' + (open ? ' open' : ''), 'data-testid': 'wl-history-item',
        'data-conversation-id': x.conversation_id, 'data-state': x.state, 'aria-current': current ? 'true' : null,
        onclick: () => { if (open || current) { showOpen(x.conversation_id); render(); focusFirst(); } else showPast(x); },
      },
      h('span', { class: 'hw' }, dateTimeText(x.created_at)),
      h('span', { class: 'hs' + (open ? ' on' : '') }, stateName(x)),
      h('span', { class: 'hd' }, [x.channel === 'voice' ? 'Call' : 'Chat', x.queue, x.csat != null ? 'rated ' + x.csat + '/5' : null].filter(Boolean).join(' \u00b7 '))));
    }));
  }
  function showPast(x) {
    ui.pastLog.replaceChildren();
    past = { id: x.conversation_id, entry: x, t: new Transcript(x.conversation_id, ui.pastLog, () => false), done: false };
    ui.pastTitle.textContent = 'Your conversation of ' + dateTimeText(x.created_at).replace(/^Today/, 'today');
    ui.pastInfo.textContent = [x.queue, stateName(x), x.csat != null ? 'you rated it ' + x.csat + ' of 5' : null].filter(Boolean).join(' \u00b7 ');
    ui.pastLoading.textContent = 'Loading the transcript\u2026';
    resumePast();
    render();
    ui.pastTitle.focus();
  }
  function resumePast() { if (ready) request('past', { type: 'resume', conversation_id: past.id, last_seq: past.t.lastSeq }, { past }); }
  function pastLoaded() {
    past.done = true;
    ui.pastLoading.textContent = past.t.seen.size ? 'Read only.' : 'Nothing was said in this conversation.';
  }
  function pastRefused(p, f) {
    if (p !== past) return;
    p.done = true;
    ui.pastLoading.textContent = 'The transcript could not be loaded: ' + (f.message || f.code) + '.';
  }
  function hidePast() { past = null; ui.pastLog.replaceChildren(); }

  // A .txt file of the transcript shown: time, who, text.
  function download() {
    const ol = view === 'history' && past ? ui.pastLog : ui.log;
    const id = view === 'history' && past ? past.id : conv && conv.id;
    const stamp = (d) => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
    const lines = [cfg.title + ': conversation ' + (id || ''), 'Downloaded ' + stamp(new Date()), ''];
    for (const li of ol.children) {
      if (li.hidden || !li.querySelector('.text')) continue;
      const who = li.dataset.role === 'system' ? '*' : li.querySelector('.who').textContent + ':';
      lines.push('[' + (li._ts && !isNaN(li._ts) ? stamp(li._ts) : '--') + '] ' + who + ' ' + li.querySelector('.text').textContent +
        (li.dataset.state && li.dataset.state !== 'sent' ? ' (not sent)' : ''));
    }
    const url = URL.createObjectURL(new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/plain;charset=utf-8' }));
    const a = h('a', { href: url, download: 'chat-' + stamp(new Date()).replace(/[^0-9]/g, '') + '.txt', hidden: true });
    root.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---- follow-ups (the business got back to the customer) ---------------------------------------
  function followUpOf(id) {
    if (followUps.has(id)) return followUps.get(id);
    if (notFollowUps.has(id) || startedHere().includes(id)) return null;
    const x = history && history.find((e) => e.conversation_id === id);
    return (x && x.state !== 'closed' && x.repeat_of) || null;
  }
  function followUpText(id) {
    const about = followUpOf(id), x = history && history.find((e) => e.conversation_id === about);
    return 'We\u2019re getting back to you about ' + (x ? 'your conversation of ' + dateTimeText(x.created_at).replace(/^Today/, 'today') : 'an earlier conversation') + '.';
  }
  function renderFollowUp() {
    if (!ui.followUp) return;
    const about = conv && followUpOf(conv.id);
    ui.followUp.hidden = !about;
    setText(ui.followUp, about ? followUpText(conv.id) : '');
    if (alertFor) setText(ui.alertText, followUpText(alertFor));
  }
  function onFollowUp(f) {
    followUps.set(f.conversation_id, f.about);
    requestHistory();
    if (conv && conv.id === f.conversation_id) return renderFollowUp();
    if (canSwitch()) showOpen(f.conversation_id); // its messages count as unread
    else { showAlert(f.conversation_id); if (!isOpen) bumpUnread(); }
  }
  function canSwitch() { // nothing is under way in the chat
    if (!conv) return !pendingRequest('start') && !ui.first.value.trim();
    return conv.closed && !(survey && survey.conversationId === conv.id && (survey.state === '' || survey.state === 'sending'));
  }
  function checkFollowUps() {
    if (!history) return;
    if (alertFor && !history.some((e) => e.conversation_id === alertFor && e.state !== 'closed')) hideAlert();
    const x = history.find((e) => e.state !== 'closed' && !shown.has(e.conversation_id) && followUpOf(e.conversation_id));
    if (!x || (conv && conv.id === x.conversation_id)) return;
    if (canSwitch()) showOpen(x.conversation_id); else showAlert(x.conversation_id);
  }
  function showAlert(id) { alertFor = id; renderFollowUp(); }
  function hideAlert() { alertFor = null; }
  function pickOpen() { // a fresh page with open conversations: the newest (the history is newest first)
    if (conv || !openList.length) return;
    const ids = new Set(openList.map((o) => o.conversation_id));
    const newest = history && history.find((e) => ids.has(e.conversation_id));
    showOpen(newest ? newest.conversation_id : openList[0].conversation_id);
    checkFollowUps();
  }

  // ---- voice: WebRTC through `rtc` frames -----------------------------------------------------------
  // Payloads, both ways: {type:'offer'|'answer', sdp}, {type:'candidate', candidate: RTCIceCandidate.toJSON()}, {type:'hangup'}.
  async function startVoice() {
    if (!conv || conv.closed || call) return;
    if (!window.RTCPeerConnection || !navigator.mediaDevices) return notice('Voice calls are not supported by this browser.');
    const c = call = { id: conv.id, switched: conv.channel === 'voice', offered: false, remote: false, cands: [], outbox: [], muted: false, since: 0 };
    render();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      if (call === c) call = null;
      render();
      return notice('The call needs your microphone: ' + (e.name === 'NotAllowedError' ? 'access was not allowed.' : e.message || e.name));
    }
    if (call !== c) { stream.getTracks().forEach((t) => t.stop()); return; } // hung up meanwhile
    c.stream = stream;
    const pc = c.pc = new RTCPeerConnection({ iceServers: cfg.iceServers });
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    pc.onicecandidate = (e) => { if (e.candidate) rtcSend({ type: 'candidate', candidate: e.candidate.toJSON() }); };
    pc.ontrack = (e) => { ui.audio.srcObject = e.streams[0] || new MediaStream([e.track]); ui.audio.play().catch(() => {}); };
    pc.onconnectionstatechange = () => {
      if (call !== c) return;
      if (pc.connectionState === 'connected' && !c.since) c.since = Date.now();
      if (pc.connectionState === 'failed') notice('The call connection failed. Check your network, or hang up and try again.');
      render();
    };
    c.tick = setInterval(() => { if (call === c) renderCall(); }, 1000);
    if (c.switched) maybeOffer();
    else request('switch', { type: 'switch', conversation_id: c.id, channel: 'voice' }, { call: c });
    emit('call', { state: 'starting' });
  }
  async function maybeOffer() {
    const c = call;
    if (!c || !c.pc || !c.switched || c.offered || !conv || !conv.agent) return;
    c.offered = true;
    try {
      await c.pc.setLocalDescription(await c.pc.createOffer());
      rtcSend({ type: 'offer', sdp: c.pc.localDescription.sdp }, true);
    } catch (e) { c.offered = false; notice('The call could not start: ' + e.message); }
  }
  function rtcSend(payload, first) {
    const c = call;
    if (!c) return;
    if (conv && conv.live && ready) request('rtc', { type: 'rtc', conversation_id: c.id, payload }, { payload });
    else c.outbox[first ? 'unshift' : 'push'](payload); // sent after the resume
  }
  function flushRtc() {
    if (!call || !call.outbox.length) return;
    const out = call.outbox.splice(0);
    out.forEach((p) => rtcSend(p));
  }
  function rtcRefused(r, f) {
    // `conflict`: no agent on the conversation yet; the offer goes out again at the next `assigned`.
    if (call && r.payload.type === 'offer' && f.code === 'conflict') { call.offered = false; return; }
    if (call && r.payload.type !== 'candidate') notice('Call signalling failed: ' + (f.message || f.code) + '.');
  }
  async function onRtc(f) {
    const p = f.payload || {}, c = call;
    if (f.from === 'customer') return;
    if (p.type === 'hangup') { if (c) { endCall(false); notice('The agent ended the call.'); } return; }
    if (!c || !c.pc) return;
    if (p.type === 'hold') { c.onHold = !!p.on; return render(); }
    try {
      if (p.type === 'answer' || p.type === 'offer') {
        await c.pc.setRemoteDescription({ type: p.type, sdp: p.sdp });
        c.remote = true;
        c.cands.splice(0).forEach((x) => c.pc.addIceCandidate(x).catch(() => {}));
        if (p.type === 'offer') { // the agent renegotiates: answer it
          await c.pc.setLocalDescription(await c.pc.createAnswer());
          rtcSend({ type: 'answer', sdp: c.pc.localDescription.sdp });
        }
      } else if (p.type === 'candidate' && p.candidate) {
        if (c.remote) await c.pc.addIceCandidate(p.candidate); else c.cands.push(p.candidate);
      }
    } catch (e) { console.warn('Warmline widget: rtc', e); }
  }
  function onSwitched(f) {
    conv.channel = f.channel;
    if (f.channel === 'chat' && call) teardown();
    if (f.channel === 'voice' && call) { call.switched = true; if (f.agent_kept === false) conv.agent = null; maybeOffer(); }
  }
  // Hang up: tell the agent (when we hang up), close the peer, and move the conversation back to chat.
  function endCall(byUs) {
    const c = call;
    if (!c) return;
    if (byUs && c.offered) rtcSend({ type: 'hangup' });
    teardown();
    if (conv && conv.id === c.id && !conv.closed && (c.switched || conv.channel === 'voice')) {
      request('switch', { type: 'switch', conversation_id: c.id, channel: 'chat' });
    }
    if (byUs && isOpen) focusInput();
  }
  function teardown() {
    const c = call;
    if (!c) return;
    call = null;
    clearInterval(c.tick);
    if (c.pc) c.pc.close();
    if (c.stream) c.stream.getTracks().forEach((t) => t.stop());
    ui.audio.srcObject = null;
    emit('call', { state: 'ended' });
    render();
  }
  function toggleMute() {
    if (!call || !call.stream) return;
    call.muted = !call.muted;
    call.stream.getAudioTracks().forEach((t) => { t.enabled = !call.muted; });
    render();
  }
  function renderCall() {
    const c = call;
    if (!c) return;
    let t;
    if (!c.pc) t = 'Allow the microphone to start the call\u2026';
    else if (c.since) { const s = Math.floor((Date.now() - c.since) / 1000); t = 'On a call \u00b7 ' + Math.floor(s / 60) + ':' + pad(s % 60); }
    else if (!conv || !conv.agent) t = 'Voice call: waiting for an agent\u2026';
    else t = 'Calling ' + (conv.agent.display_name || 'the agent') + '\u2026';
    if (c.onHold) t = 'On hold \u00b7 please wait';
    if (c.pc && c.pc.connectionState === 'failed') t = 'Call connection lost';
    setText(ui.callText, t);
    ui.mute.setAttribute('aria-pressed', String(c.muted));
    ui.mute.setAttribute('aria-label', c.muted ? 'Unmute microphone' : 'Mute microphone');
    ui.mute.title = ui.mute.getAttribute('aria-label');
    ui.mute.replaceChildren(icon(c.muted ? 'micOff' : 'mic'));
  }

  // ---- render --------------------------------------------------------------------------------------
  function render() {
    if (!ui.panel) return;
    const open = !!conv && !conv.closed, hist = view === 'history';
    ui.prechat.hidden = !!conv || hist || pickOnHistory;
    const last = !conv && lastConversation();
    ui.lastBox.hidden = !last;
    if (last) setText(ui.lastInfo, dateTimeText(last.created_at) + ' \u00b7 ' + stateName(last));
    ui.start.disabled = !ready || pendingRequest('start');
    ui.start.textContent = pendingRequest('start') ? 'Starting\u2026' : ready ? 'Start chat' : 'Connecting\u2026';
    ui.chat.hidden = !conv || hist;
    ui.composer.hidden = !(open || (conv && conv.closed && conv.continued)) || hist;
    ui.send.disabled = !open && pendingRequest('start');
    ui.foot.hidden = !open || hist;
    ui.end.disabled = !ready || pendingRequest('end');
    ui.historyBox.hidden = !hist;
    ui.past.hidden = !past;
    ui.historyList.hidden = ui.historyNote.hidden = ui.histTitle.hidden = !!past;
    ui.history.hidden = historyUnsupported;
    ui.history.setAttribute('aria-pressed', String(hist));
    ui.download.hidden = !(hist ? past : conv);
    ui.voice.hidden = !cfg.voice || !open || hist || !!call;
    ui.alert.hidden = !alertFor || (!!conv && conv.id === alertFor);
    // Who is helping, or where the customer is in the queue.
    const agent = open && conv.agent;
    ui.agentBox.hidden = !agent;
    if (agent) {
      const name = agent.display_name || 'Your agent';
      setText(ui.agent, name);
      setText(ui.avatar, name.split(/\s+/).map((w) => w[0] || '').join('').slice(0, 2).toUpperCase());
    } else setText(ui.agent, '');
    ui.queueInfo.hidden = !open || !!agent || !ui.queueInfo.textContent;
    ui.bar.hidden = hist || (ui.agentBox.hidden && ui.queueInfo.hidden);
    // Closed: the notice, the survey, the thanks.
    ui.closed.hidden = !conv || !conv.closed;
    const s = survey && conv && survey.conversationId === conv.id ? survey : null;
    ui.survey.hidden = !s || s.state === 'done' || s.state === 'answered';
    ui.surveyDone.hidden = !s || !ui.survey.hidden;
    setText(ui.surveyDone, s && s.state === 'answered' ? 'You already rated this chat. Thank you!' : 'Thank you for your feedback!');
    if (s) {
      ui.csat.querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', String(+b.dataset.v === s.csat)));
      ui.effort.querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', String(+b.dataset.v === s.effort)));
      ui.resolved.querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.v === String(s.resolved))));
      ui.surveySend.disabled = s.state === 'sending' || !ready;
      ui.surveySend.textContent = s.state === 'sending' ? 'Sending\u2026' : 'Send feedback';
    }
    ui.call.hidden = !call;
    renderCall();
    renderUnread();
  }

  // ---- styles --------------------------------------------------------------------------------------
  function css() {
    return `:host{all:initial}
*,*::before,*::after{box-sizing:border-box}
[hidden]{display:none!important}
.root{all:initial;display:block;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1b1f24;-webkit-font-smoothing:antialiased}
button,input,select,textarea{font:inherit;color:inherit;margin:0}
button{cursor:pointer}
button:disabled{cursor:default;opacity:.6}
:focus{outline:none}
:focus-visible{outline:3px solid var(--ring);outline-offset:2px}
svg{width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.launcher{position:fixed;bottom:20px;right:20px;z-index:2147483000;width:60px;height:60px;border:0;border-radius:50%;background:var(--a);color:var(--on);box-shadow:0 6px 24px rgba(0,0,0,.24),0 2px 6px rgba(0,0,0,.12);display:grid;place-items:center;transition:transform .15s ease}
.launcher:hover{transform:scale(1.06)}
.launcher svg{width:28px;height:28px}
.li{display:grid}
.left .launcher,.left .panel{right:auto;left:20px}
.badge{position:absolute;top:-3px;right:-3px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#c81e1e;color:#fff;font-size:12px;font-weight:700;line-height:18px;text-align:center;border:2px solid #fff}
.panel{position:fixed;bottom:92px;right:20px;z-index:2147483001;width:384px;height:min(640px,calc(100vh - 112px));display:flex;flex-direction:column;background:#fff;border-radius:16px;overflow:hidden;box-shadow:0 16px 48px rgba(0,0,0,.2),0 2px 8px rgba(0,0,0,.08);animation:wl-in .2s ease-out}
@keyframes wl-in{from{opacity:0;transform:translateY(12px)}}
.head{display:flex;align-items:center;gap:2px;padding:14px 8px 14px 18px;background:var(--a);color:var(--on)}
.head :focus-visible{outline-color:currentColor;outline-offset:-2px}
.hm{flex:1;min-width:0}
.title{margin:0;font-size:17px;font-weight:650;letter-spacing:-.01em;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.sl{display:flex;align-items:center;gap:8px}
.status{margin:1px 0 0;font-size:13px;display:flex;align-items:center;gap:6px}
.status::before{content:"";width:8px;height:8px;border-radius:50%;background:#22c55e;box-shadow:0 0 0 2px rgba(255,255,255,.6)}
.status[data-kind=wait]::before,.status[data-kind=warn]::before{background:#f59e0b}
.status[data-kind=err]::before{background:#ef4444}
.head .link{color:inherit;font-size:13px}
.ib{width:38px;height:38px;border:0;border-radius:10px;background:transparent;color:inherit;display:grid;place-items:center;flex:none}
.ib:hover,.ib[aria-pressed=true]{background:color-mix(in srgb,currentColor 16%,transparent)}
.bar{display:flex;align-items:center;gap:10px;padding:10px 16px;background:#f6f7f9;border-bottom:1px solid #e5e7eb;font-size:13.5px;color:#3f4752}
.qi{margin:0}
.ag{display:flex;align-items:center;gap:10px}
.av{width:34px;height:34px;border-radius:50%;display:grid;place-items:center;background:var(--a);color:var(--on);font-size:13px;font-weight:700;flex:none}
.an{display:block;font-weight:650;color:#1b1f24}
.ar{display:block;font-size:12.5px;color:#555e69}
.call{display:flex;align-items:center;gap:10px;padding:10px 12px 10px 16px;background:#ecfdf3;border-bottom:1px solid #bbf7d0;color:#14532d;font-size:14px;font-weight:600}
.ct{flex:1}
.pulse{width:10px;height:10px;border-radius:50%;background:#16a34a;animation:wl-p 1.6s infinite}
@keyframes wl-p{50%{opacity:.35}}
.cb{width:40px;height:40px;border-radius:50%;border:1px solid #b7c0ca;background:#fff;color:#1b1f24;display:grid;place-items:center}
.cb[aria-pressed=true]{background:#1b1f24;color:#fff;border-color:#1b1f24}
.cb.hang{background:#c81e1e;border-color:#c81e1e;color:#fff}
.cb.hang svg{transform:rotate(135deg)}
.note{margin:10px 14px 0;padding:9px 12px;border-radius:10px;background:#fdecec;color:#7a1b1b;font-size:13.5px}
.note.info{background:#eef4ff;color:#1e3a6e}
.chat .note{margin:0 0 12px}
.body{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:16px}
.greet{margin:4px 0 4px;font-size:20px;font-weight:700;letter-spacing:-.01em}
.sub{margin:0 0 14px;color:#555e69;font-size:14px}
.field{margin:0 0 12px}
label{display:block;margin:0 0 5px;font-size:13.5px;font-weight:600;color:#2f3640}
.opt{font-weight:400;color:#555e69}
input,select,textarea{display:block;width:100%;padding:10px 12px;border:1px solid #b7c0ca;border-radius:10px;background:#fff;line-height:1.4}
input:focus-visible,select:focus-visible,textarea:focus-visible{outline-width:2px;outline-offset:0;border-color:var(--ring)}
textarea{resize:vertical;min-height:44px}
.primary,.secondary{display:block;width:100%;height:46px;border-radius:10px;font-weight:650;border:0}
.primary{background:var(--a);color:var(--on);margin-top:4px}
.primary:hover:not(:disabled){filter:brightness(1.08)}
.secondary{background:#fff;border:1px solid #b7c0ca;color:#1b1f24;margin-top:12px}
.secondary:hover{background:#f3f4f6}
.last{margin:0 0 14px;padding:12px 14px 4px;border:1px solid #e1e4e8;border-radius:12px;background:#f8fafc}
.lw{display:block;font-size:13.5px;color:#555e69;margin-bottom:6px}
.or{margin:10px 0 6px;font-size:13.5px;color:#555e69;text-align:center}
.link{border:0;background:none;padding:2px;text-decoration:underline;text-underline-offset:2px;color:#1b1f24}
.log{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:8px}
.msg{display:flex;flex-direction:column;align-items:flex-start;max-width:84%}
.who{font-size:12px;color:#555e69;margin:0 0 3px 4px}
.msg.customer .who{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
.msg.agent+.msg.agent .who{display:none}
.text{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.msg .text{padding:9px 13px;border-radius:18px 18px 18px 5px;background:#f0f2f5}
.msg.customer{align-self:flex-end;align-items:flex-end}
.msg.customer .text{background:var(--a);color:var(--on);border-radius:18px 18px 5px 18px}
.msg[data-state=sending] .text{opacity:.72}
.msg.failed .text{background:#fdecec;color:#7a1b1b;border:1px solid #f5b5b5}
.meta{display:flex;align-items:center;gap:6px;margin:3px 5px 0;font-size:11.5px;color:#555e69;min-height:1em}
.tick{color:#15803d;font-weight:700}
.retry{border:0;background:none;padding:0;color:#b42318;font-weight:650;text-decoration:underline}
.sys{align-self:center;max-width:90%;margin:4px 0;padding:3px 12px;border-radius:12px;background:#f6f7f9;font-size:12.5px;color:#4b5360;text-align:center}
.typing{display:flex;align-items:center;gap:8px;margin:10px 0 0;font-size:13px;color:#555e69}
.dots{display:inline-flex;gap:3px;padding:8px 10px;border-radius:14px;background:#f0f2f5}
.dots i{width:6px;height:6px;border-radius:50%;background:#7b8490;animation:wl-d 1.2s infinite}
.dots i:nth-child(2){animation-delay:.15s}.dots i:nth-child(3){animation-delay:.3s}
@keyframes wl-d{0%,60%,100%{transform:none;opacity:.5}30%{transform:translateY(-3px);opacity:1}}
.closed{margin:16px 0 4px;padding:16px;border:1px solid #e5e7eb;border-radius:14px;background:#fafbfc}
.ctx{margin:0 0 4px;font-weight:600;text-align:center}
.survey h3{margin:12px 0 2px;font-size:16px;text-align:center}
.q{margin:14px 0 6px;font-size:13.5px;font-weight:600;color:#2f3640}
.chips{display:flex;flex-wrap:wrap;gap:6px}
.chip{min-width:40px;height:40px;padding:0 10px;border:1px solid #b7c0ca;border-radius:10px;background:#fff;font-weight:600}
.chip.wide{min-width:64px}
.chip:hover{border-color:#6b7480}
.chip[aria-pressed=true]{background:var(--a);border-color:var(--a);color:var(--on)}
.survey .field{margin-top:14px}
.err{margin:8px 0 0;color:#b42318;font-size:13.5px}
.err:empty{display:none}
.done{margin:12px 0 0;text-align:center;font-weight:600;color:#15803d}
.composer{display:flex;align-items:flex-end;gap:8px;padding:10px 12px 8px;border-top:1px solid #e5e7eb}
.composer textarea{flex:1;resize:none;min-height:42px;max-height:120px;border-radius:21px;padding:10px 16px}
.send{width:42px;height:42px;flex:none;border:0;border-radius:50%;background:var(--a);color:var(--on);display:grid;place-items:center}
.foot{display:flex;justify-content:space-between;align-items:center;padding:0 16px 8px;font-size:12px;color:#555e69}
.end{color:#b42318;font-size:12.5px}
.hist .back{display:inline-flex;align-items:center;gap:4px;text-decoration:none;font-weight:600;margin:-4px 0 8px}
.back svg{width:18px;height:18px}
.ht,.pt{margin:0 0 10px;font-size:16px}
.hl{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:8px}
.hi{display:grid;grid-template-columns:1fr auto;gap:2px 8px;width:100%;padding:11px 13px;border:1px solid #e1e4e8;border-radius:12px;background:#fff;text-align:left}
.hi:hover{border-color:#9aa3ad;background:#fafbfc}
.hi[aria-current=true]{border-color:var(--ring)}
.hw{font-weight:600}
.hs{font-size:12.5px;color:#4b5360}.hs.on{color:#15803d;font-weight:600}
.hd{grid-column:1/-1;font-size:12.5px;color:#555e69}
.past .log{margin-top:10px}
@media (max-width:480px){
.panel,.left .panel{inset:0;width:auto;height:auto;border-radius:0;animation:none}
.open .launcher{display:none}
input,select,textarea{font-size:16px}}
@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important}}
@media (forced-colors:active){.launcher,.primary,.send,.msg .text,.chip{border:1px solid CanvasText}}`;
  }

  // ---- start ---------------------------------------------------------------------------------------
  function init() {
    buildLauncher();   // the launcher first; everything else after
    buildPanel();
    inited = true;
    render();
    connect();
    if (cfg.open || load('open', true)) open(false);
    early.splice(0).forEach((fn) => fn());
  }
  if (prior && typeof prior === 'object') { // a stub the page set before this script loaded
    if (typeof prior.identity === 'string') identity = prior.identity;
    [].concat(prior.q || []).forEach((c) => { if (c && typeof API[c[0]] === 'function') API[c[0]].apply(null, [].slice.call(c, 1)); });
  }
  if (document.body) init(); else document.addEventListener('DOMContentLoaded', init);
})();

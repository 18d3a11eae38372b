// Warmline agent page: the agent side of /ws/agent. Uses ../common.js (window.Warmline).
'use strict';
(function () {
  const W = window.Warmline;
  const h = W.h;
  const TOKEN_KEY = 'warmline.agent_token';
  const STATES = { available: 'Available', away: 'Away', wrap_up: 'Wrap-up', offline: 'Offline' };
  // Why an offer came to this agent (offer.reason), in words.
  const OFFER_REASONS = {
    transfer: 'Transferred to you', history: 'Returning customer you helped before',
    expanded: 'Matched after widening', skill: 'Skill match',
  };
  const $ = (id) => document.getElementById(id);
  const ui = {
    name: $('agent-name'), availability: $('availability'), ready: $('ready'), signOut: $('sign-out'),
    status: $('status'), reconnect: $('reconnect'), tokenForm: $('token-form'), tokenInput: $('token-input'),
    offers: $('offers'), list: $('conv-list'), noConvs: $('no-convs'),
    panel: $('panel'), title: $('panel-title'), meta: $('panel-meta'), attributes: $('attributes'), history: $('history'),
    slot: $('transcript-slot'), typing: $('typing'), composer: $('composer'), input: $('message-input'), send: $('send'),
    closeForm: $('close-form'), resolution: $('resolution'), note: $('close-note'), close: $('close'),
    closed: $('closed'), closedText: $('closed-text'), dismiss: $('dismiss'),
    transferForm: $('transfer-form'), transferKind: $('transfer-kind'), transferTargetLabel: $('transfer-target-label'),
    transferTarget: $('transfer-target'), transferMode: $('transfer-mode'), transferNote: $('transfer-note'),
    transfer: $('transfer'), transferStatus: $('transfer-status'),
  };
  const setStatus = W.statusLine($('statusline'), ui.status);

  let token = null, ws = null, ready = false, attempt = 0, retryTimer = null, reqNo = 0, offerTimer = null;
  let me = {}, agentState = 'offline', selected = null;
  let stateBeforeDrop = null; // the state when the last connection was lost (after its welcome)
  const requests = new Map(); // request id -> { kind, ... }
  const convs = new Map();    // conversation id -> W.Transcript with the conversation's fields (see upsert)
  const offers = new Map();   // offer id -> { li, countdown, buttons, expiresAt, conversationId }
  const typing = new W.TypingSender(send);

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }
  function request(kind, frame, extra) {
    frame.id = 'a' + (++reqNo);
    requests.set(frame.id, Object.assign({ kind }, extra));
    return send(frame);
  }

  // ---- token and connection ----------------------------------------------------------
  function askToken(message) {
    setStatus(message, true);
    ui.tokenForm.hidden = false;
    ui.tokenInput.focus();
  }
  function connect() {
    clearTimeout(retryTimer);
    ui.reconnect.hidden = ui.tokenForm.hidden = true;
    if (!token) return askToken('Paste an agent token to connect.');
    setStatus(attempt ? 'Reconnecting…' : 'Connecting…', attempt > 0);
    const sock = new WebSocket(W.wsUrl('/ws/agent?token=' + encodeURIComponent(token)));
    let opened = false;
    ws = sock;
    sock.onopen = () => { opened = true; };
    sock.onmessage = (ev) => { const f = W.parse(ev.data); if (f) handle(f); };
    sock.onclose = (ev) => { if (ws === sock) onSocketClosed(ev, opened); };
  }
  function onSocketClosed(ev, opened) {
    if (ready) stateBeforeDrop = agentState;
    ws = null; ready = false;
    requests.clear();
    convs.forEach((c) => {
      c.live = false; c.closing = false;
      if (c.transferring) { // its outcome may come while we are away; say so rather than wait forever
        c.transferring = null;
        c.transferNote = { text: 'The connection dropped during the transfer; it may still be under way.', error: true };
      }
    });
    [...offers.keys()].forEach(removeOffer); // they belonged to the old connection; the server offers again
    typing.stop(false);
    updateControls();
    if (!opened) { // handshake failed: the token was refused if the gateway is otherwise up
      fetch('/readyz', { cache: 'no-store' }).then((r) => r.ok, () => false).then((up) => {
        if (ws) return;
        if (up) askToken('Token refused — paste a new one.'); else retryLater();
      });
      return;
    }
    const refused = W.refusedBy(ev);
    if (!refused) return retryLater();
    convs.forEach((c) => c.failAll()); // do not resend the offending frame by ourselves
    setStatus('Disconnected: ' + refused + '.', true);
    ui.reconnect.hidden = false;
  }
  function retryLater() {
    setStatus('Reconnecting…', true);
    retryTimer = setTimeout(connect, W.backoff(attempt++));
  }

  // ---- frames from the server -------------------------------------------------------
  function handle(f) {
    const c = f.conversation_id != null ? convs.get(f.conversation_id) : null;
    const r = f.id != null ? requests.get(f.id) : null;
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'status':
        setState(f.state);
        setStatus('Status: ' + (STATES[f.state] || f.state) + reasonText(f) + '.');
        break;
      case 'offer': addOffer(f); break;
      case 'offer_revoked':
        removeOffer(f.offer_id);
        setStatus(f.reason === 'timeout' ? 'An offer timed out.' : 'An offer was withdrawn.');
        break;
      case 'conversation': onConversation(f); break;
      case 'resumed': if (c) { c.caughtUp(f.last_seq); refresh(c); } break;
      case 'message': case 'assigned': case 'closed': if (c) addEvent(c, f); break;
      case 'typing': if (c && f.role === 'customer') showTyping(c, !!f.on); break;
      case 'signals': if (c) { c.signals = f; refresh(c); } break;
      case 'transferred': onTransferred(c, f); break;
      case 'transfer_failed': onTransferFailed(c, f); break;
      case 'ack':
        requests.delete(f.id);
        if (!r) break;
        if (r.kind === 'message') r.conv.ack(r.item, f.seq);
        if (r.kind === 'accept' || r.kind === 'reject') removeOffer(r.offerId);
        if (r.kind === 'status') { setState(r.state); setStatus('Status: ' + STATES[r.state] + '.'); }
        if (r.kind === 'transfer') onTransferAck(r);
        break;
      case 'error':
        requests.delete(f.id);
        if (r && r.kind === 'transfer') { onTransferRefused(r, f); break; } // shown by the transfer form
        setStatus(f.message || f.code || 'Something went wrong.', true);
        if (!r) break;
        if (r.kind === 'message') r.conv.setState(r.item, 'failed');
        if (r.kind === 'accept' || r.kind === 'reject') removeOffer(r.offerId);
        if (r.kind === 'status') setState(agentState); // put the select back
        if (r.kind === 'close') r.conv.closing = false;
        break;
      default: // switched, rtc…: not used by this page
    }
    updateControls();
  }
  function onWelcome(f) {
    me = f.agent || {}; ready = true; attempt = 0;
    ui.name.textContent = me.display_name ? 'Signed in as ' + me.display_name : '';
    setState(f.state || 'offline');
    setStatus('Connected.');
    // A gateway restart (or a drop longer than the grace period) brings the agent back `away`.
    // The agent never chose that: an agent who was available (or in wrap-up, which the restart
    // cut short) is made available again, so offers keep coming without them noticing the blip.
    const before = stateBeforeDrop;
    stateBeforeDrop = null;
    if ((before === 'available' || before === 'wrap_up') && f.state === 'away') {
      requestState('available');
      setStatus('Reconnected; setting you Available again.');
    }
    const listed = new Set();
    for (const info of f.conversations || []) {
      const c = upsert(info);
      listed.add(c.id);
      if (c.gone) c.gone = c.closed = false;
      c.transferred = null; // listed: this agent's again
      c.live = false;
      send({ type: 'resume', conversation_id: c.id, last_seq: c.lastSeq }); // 0 on a fresh page load
    }
    convs.forEach((c) => { if (!listed.has(c.id) && !c.closed) { c.closed = c.gone = true; refresh(c); } });
    if (!selected && convs.size) select(convs.keys().next().value);
  }
  function onConversation(f) {
    const c = upsert(f);
    c.closed = f.state === 'closed'; c.gone = false;
    c.transferred = c.transferring = c.transferNote = null; // accepted (again, if it was passed back to us)
    for (const ev of f.transcript || []) addEvent(c, ev);
    offers.forEach((o, id) => { if (o.conversationId === c.id) removeOffer(id); });
    c.caughtUp(f.last_seq);
    select(c.id);
  }

  // ---- status -------------------------------------------------------------------------
  function setState(state) {
    agentState = state;
    ui.availability.value = state;
    ui.ready.hidden = state !== 'wrap_up';
  }
  // `reason` is a code (wrap_up, wrap_up_ended, missed_offers…); the one that repeats the state says nothing.
  function reasonText(f) {
    return f.reason && f.reason !== f.state ? ' (' + String(f.reason).replace(/_/g, ' ').replace('wrap up', 'wrap-up') + ')' : '';
  }
  function requestState(state) { request('status', { type: 'status', state }, { state }); }

  // ---- offers -------------------------------------------------------------------------
  function addOffer(f) {
    removeOffer(f.offer_id);
    const cust = f.customer || {}, prev = cust.previous_conversations || 0;
    const countdown = h('span', { class: 'countdown', 'data-testid': 'countdown' });
    const buttons = [
      h('button', { type: 'button', 'data-testid': 'accept', onclick: () => answer(f.offer_id, 'accept') }, 'Accept'),
      h('button', { type: 'button', class: 'secondary', 'data-testid': 'reject', onclick: () => answer(f.offer_id, 'reject') }, 'Reject'),
    ];
    const li = h('li', { class: 'card', 'data-testid': 'offer', 'data-offer-id': f.offer_id, 'data-conversation-id': f.conversation_id },
      h('h3', null, 'New ' + (f.channel || 'chat') + ': ' + (cust.display_name || 'Customer')),
      f.reason ? h('p', { class: 'offer-reason', 'data-testid': 'offer-reason', 'data-reason': f.reason },
        OFFER_REASONS[f.reason] || String(f.reason).replace(/_/g, ' ')) : null,
      h('p', null, 'Queue: ' + f.queue),
      h('p', null, cust.returning ? 'Returning customer (' + prev + ' previous conversation' + (prev === 1 ? ')' : 's)') : 'New customer'),
      f.note ? h('blockquote', { class: 'offer-note', 'data-testid': 'offer-note' }, h('span', { class: 'who' }, 'Note'), f.note) : null,
      h('p', null, 'Expires in ', countdown),
      h('div', { class: 'actions' }, ...buttons));
    offers.set(f.offer_id, { li, countdown, buttons, expiresAt: Date.now() + (f.expires_in_ms || 0), conversationId: f.conversation_id });
    ui.offers.append(li);
    tick();
    if (!offerTimer) offerTimer = setInterval(tick, 250);
  }
  function tick() {
    const now = Date.now();
    offers.forEach((o, id) => {
      const left = Math.max(0, Math.ceil((o.expiresAt - now) / 1000));
      o.countdown.textContent = left + ' s';
      if (left === 0) o.buttons.forEach((b) => { b.disabled = true; });
      if (now > o.expiresAt + 5000) removeOffer(id); // offer_revoked should have come by now
    });
    if (!offers.size) { clearInterval(offerTimer); offerTimer = null; }
  }
  function answer(offerId, kind) {
    const o = offers.get(offerId);
    if (!o || !ready) return;
    o.buttons.forEach((b) => { b.disabled = true; });
    request(kind, { type: kind, offer_id: offerId }, { offerId });
  }
  function removeOffer(id) {
    const o = offers.get(id);
    if (o) { o.li.remove(); offers.delete(id); }
  }

  // ---- conversations ------------------------------------------------------------------
  function upsert(info) {
    let c = convs.get(info.conversation_id);
    if (!c) {
      const ol = h('ol', { class: 'transcript', 'data-testid': 'transcript', role: 'log', 'aria-live': 'polite', 'aria-label': 'Transcript' });
      c = new W.Transcript(info.conversation_id, ol, (t, item) =>
        ready && request('message', { type: 'message', conversation_id: t.id, text: item.text, client_msg_id: item.clientMsgId }, { conv: t, item }));
      Object.assign(c, { closed: false, gone: false, closing: false, unread: 0, draft: '', typing: false,
        transferring: null, transferred: null, transferNote: null });
      c.btn = h('button', { type: 'button', 'data-testid': 'conversation-item', 'data-conversation-id': c.id, onclick: () => select(c.id) });
      c.item = h('li', null, c.btn);
      ui.list.append(c.item);
      convs.set(c.id, c);
    }
    for (const k of ['channel', 'queue', 'state', 'customer', 'attributes', 'history']) if (info[k] !== undefined) c[k] = info[k];
    refresh(c);
    return c;
  }
  function customerName(c) { return (c.customer && c.customer.display_name) || 'Customer'; }
  function stateText(c) {
    return c.transferred ? 'transferred' : c.gone ? 'no longer yours' : c.closed ? 'closed' : (c.state || '');
  }
  // Still this agent's to work on: not closed, not handed over.
  function isOpen(c) { return !!c && !c.closed && !c.transferred; }
  // Re-renders the list entry, and the panel if this conversation is the selected one.
  function refresh(c) {
    c.btn.setAttribute('aria-current', String(c.id === selected));
    c.btn.replaceChildren(h('span', null, customerName(c),
      c.unread ? h('span', { class: 'badge', 'aria-label': c.unread + ' unread' }, String(c.unread)) : null),
      h('span', { class: 'sub' }, [c.channel, c.queue, stateText(c)].filter(Boolean).join(' · ')));
    ui.noConvs.hidden = convs.size > 0;
    if (c.id !== selected) return;
    const s = c.signals && c.signals.sentiment;
    ui.title.textContent = customerName(c);
    ui.meta.textContent = [c.channel, c.queue && 'queue ' + c.queue, stateText(c),
      s && 'sentiment ' + s.last + (s.trend ? ' (' + s.trend + ')' : '')].filter(Boolean).join(' · ');
    ui.attributes.replaceChildren(...Object.entries(c.attributes || {}).flatMap(([k, v]) =>
      [h('dt', null, k), h('dd', null, typeof v === 'string' ? v : JSON.stringify(v))]));
    ui.history.replaceChildren(...(c.history || []).map((x) =>
      h('li', null, [x.closed_at, x.resolution, x.csat != null && 'CSAT ' + x.csat].filter(Boolean).join(' · '))));
    ui.typing.textContent = c.typing ? 'Customer is typing…' : '';
    ui.closedText.textContent = c.transferred ? transferredText(c.transferred)
      : c.gone ? 'This conversation is no longer assigned to you.' : (c.closedText || 'This conversation is closed.');
    renderTransfer(c);
  }
  function select(id) {
    const prev = convs.get(selected);
    if (prev) { prev.draft = ui.input.value; typing.stop(true); }
    selected = id;
    const c = convs.get(id);
    convs.forEach((x) => x.btn.setAttribute('aria-current', String(x.id === id)));
    ui.panel.hidden = !c;
    if (c) {
      c.unread = 0;
      ui.slot.replaceChildren(c.ol);
      ui.input.value = c.draft;
      refresh(c);
      c.scroll();
    }
    updateControls();
  }
  function updateControls() {
    ui.availability.disabled = !ready;
    const c = convs.get(selected), open = isOpen(c);
    ui.composer.hidden = ui.closeForm.hidden = ui.transferForm.hidden = !open;
    ui.closed.hidden = !c || open;
    ui.input.disabled = ui.send.disabled = !open;
    ui.close.disabled = !open || !ready || c.closing;
    ui.transfer.disabled = !open || !ready || c.closing || !!c.transferring;
  }

  function addEvent(c, f) {
    if (!c.isNew(f)) return; // dedupe by seq
    let li;
    if (f.type === 'message') {
      const s = f.sender || {}, own = s.role === 'agent' && s.id === me.id;
      li = W.messageItem(own ? 'mine' : (s.role || 'system'), own ? 'You' : (s.display_name || s.role || 'System'), f.text, f.ts);
      if (s.role === 'customer') { showTyping(c, false); if (c.id !== selected) c.unread++; }
    } else if (f.type === 'assigned') {
      const a = f.agent || {};
      li = h('li', { class: 'event' }, (a.id === me.id ? 'You' : (a.display_name || 'An agent')) + ' joined the conversation.');
    } else {
      c.closedText = 'Closed by ' + (f.by || 'someone') + (f.resolution ? ' (' + f.resolution.replace('_', '-') + ')' : '') + '.';
      li = h('li', { class: 'event' }, c.closedText);
      c.closed = true; c.closing = false; c.typing = false;
      c.transferring = null; // closing ends a warm transfer under way (the server sends no transfer_failed)
      if (c.id === selected) typing.stop(true);
    }
    c.add(li, f.seq);
    refresh(c);
  }
  function showTyping(c, on) {
    clearTimeout(c.typingTimer);
    c.typing = on;
    if (on) c.typingTimer = setTimeout(() => showTyping(c, false), 8000); // in case "off" is lost
    if (c.id === selected) ui.typing.textContent = on ? 'Customer is typing…' : '';
  }

  // ---- transfers -------------------------------------------------------------------------
  // Per conversation: `transferring` {label, mode, acked} while a transfer is asked for or (warm)
  // waits for a target to accept; `transferred` {to, mode} once it left this agent;
  // `transferNote` {text, error} the last outcome to show under the transfer form.
  function targetLabel(to) {
    if (to && to.agent != null) return 'agent ' + to.agent;
    if (to && to.queue != null) return 'queue ' + to.queue;
    return 'someone else';
  }
  function transferredText(t) {
    return 'Transferred to ' + targetLabel(t.to) + (t.mode ? ' (' + t.mode + ')' : '') + '. It is no longer yours.';
  }
  function renderTransfer(c) {
    const t = c.transferring, note = c.transferNote;
    let text = '', error = false;
    if (t && t.mode === 'warm' && t.acked) text = 'Waiting for ' + t.label + ' to accept…';
    else if (t) text = 'Transferring to ' + t.label + '…';
    else if (note) { text = note.text; error = note.error; }
    ui.transferStatus.textContent = text;
    ui.transferStatus.classList.toggle('error', error);
  }
  function onTransferKind() {
    const agent = ui.transferKind.value === 'agent';
    ui.transferTargetLabel.textContent = agent ? 'Agent id' : 'Queue name';
    ui.transferTarget.placeholder = agent ? 'e.g. bob' : 'e.g. billing';
  }
  function requestTransfer(c) {
    const kind = ui.transferKind.value === 'agent' ? 'agent' : 'queue';
    const target = ui.transferTarget.value.trim(), mode = ui.transferMode.value === 'cold' ? 'cold' : 'warm';
    if (!target) { ui.transferTarget.focus(); return; }
    const to = { [kind]: target };
    const frame = { type: 'transfer', conversation_id: c.id, to, mode };
    const note = ui.transferNote.value.trim();
    if (note) frame.note = note;
    c.transferring = { label: targetLabel(to), mode, acked: false };
    c.transferNote = null;
    if (!request('transfer', frame, { conv: c })) c.transferring = null;
    refresh(c);
  }
  function onTransferAck(r) {
    const c = r.conv;
    if (c.transferring) c.transferring.acked = true;
    refresh(c);
  }
  function onTransferRefused(r, f) {
    const c = r.conv;
    c.transferring = null;
    c.transferNote = { text: 'Transfer not started: ' + (f.message || f.code) + '.', error: true };
    refresh(c);
  }
  function onTransferred(c, f) {
    if (!c) return;
    c.transferring = null;
    c.transferNote = null;
    c.transferred = { to: f.to, mode: f.mode };
    c.typing = false;
    if (c.id === selected) typing.stop(true);
    setStatus(customerName(c) + ': ' + transferredText(c.transferred));
    refresh(c);
  }
  function onTransferFailed(c, f) {
    if (!c) return;
    c.transferring = null;
    c.transferNote = { text: 'Transfer failed: ' + (f.reason || 'nobody took it') + '; the conversation stays with you.', error: true };
    if (c.id !== selected) setStatus(customerName(c) + ': ' + c.transferNote.text, true);
    refresh(c);
  }

  // ---- controls -------------------------------------------------------------------------
  ui.tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = ui.tokenInput.value.trim();
    if (!token) return;
    W.store(TOKEN_KEY, token);
    ui.tokenInput.value = '';
    attempt = 0;
    connect();
  });
  ui.signOut.addEventListener('click', () => { W.store(TOKEN_KEY, null); location.replace(location.pathname); });
  ui.reconnect.addEventListener('click', () => { attempt = 0; connect(); });
  ui.availability.addEventListener('change', () => requestState(ui.availability.value));
  ui.ready.addEventListener('click', () => requestState('available'));
  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = convs.get(selected), text = ui.input.value.trim();
    if (!isOpen(c) || !text) return;
    typing.stop(true);
    c.addPending(text);
    ui.input.value = '';
    ui.input.focus();
  });
  W.enterSends(ui.input, ui.composer);
  ui.input.addEventListener('input', () => {
    const c = convs.get(selected);
    if (isOpen(c) && c.live) typing.input(c.id);
  });
  ui.closeForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = convs.get(selected);
    if (!isOpen(c) || !ready) return;
    typing.stop(true);
    const frame = { type: 'close', conversation_id: c.id, resolution: ui.resolution.value };
    if (ui.note.value.trim()) frame.note = ui.note.value.trim();
    c.closing = true;
    request('close', frame, { conv: c });
    ui.note.value = '';
    updateControls();
  });
  ui.transferKind.addEventListener('change', onTransferKind);
  ui.transferForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = convs.get(selected);
    if (!isOpen(c) || !ready || c.closing || c.transferring) return;
    requestTransfer(c);
    ui.transferNote.value = '';
    updateControls();
  });
  ui.dismiss.addEventListener('click', () => {
    const c = convs.get(selected);
    if (!c || isOpen(c)) return;
    c.item.remove();
    convs.delete(c.id);
    selected = null;
    select(convs.size ? convs.keys().next().value : null);
    ui.noConvs.hidden = convs.size > 0;
  });

  // Token: ?token= (then dropped from the address bar), else the stored one, else the form.
  const params = new URLSearchParams(location.search);
  token = params.get('token') || W.load(TOKEN_KEY);
  if (params.has('token')) {
    if (params.get('token')) W.store(TOKEN_KEY, token);
    params.delete('token');
    history.replaceState(null, '', location.pathname + (params.toString() ? '?' + params : '') + location.hash);
  }
  onTransferKind();
  updateControls();
  connect();
})();

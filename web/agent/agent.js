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
    panel: $('panel'), title: $('panel-title'), meta: $('panel-meta'), infoSlot: $('info-slot'),
    slot: $('transcript-slot'), typing: $('typing'), composer: $('composer'), input: $('message-input'), send: $('send'),
    closeForm: $('close-form'), resolution: $('resolution'), note: $('close-note'), noteLabel: $('close-note-label'), close: $('close'),
    followUpField: $('follow-up-field'), followUpAt: $('follow-up-at'), followUpHelp: $('follow-up-help'), closeStatus: $('close-status'),
    closed: $('closed'), closedText: $('closed-text'), dismiss: $('dismiss'),
    transferForm: $('transfer-form'), transferKind: $('transfer-kind'), transferTargetLabel: $('transfer-target-label'),
    transferTarget: $('transfer-target'), transferMode: $('transfer-mode'), transferNote: $('transfer-note'),
    transfer: $('transfer'), transferStatus: $('transfer-status'),
    call: $('call'), callTitle: $('call-title'), callTimer: $('call-timer'), callStatus: $('call-status'),
    callControls: $('call-controls'), mic: $('mic'), hold: $('hold'), clearPlayback: $('clear-playback'),
    audioOn: $('audio-on'), clearHelp: $('clear-help'), callSignals: $('call-signals'), callHint: $('call-hint'),
    micLevel: $('call-mic-level'),
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
    sock.binaryType = 'arraybuffer'; // call audio (see "calls" below)
    sock.onopen = () => { opened = true; };
    sock.onmessage = (ev) => {
      if (typeof ev.data !== 'string') { onAudio(ev.data); return; }
      const f = W.parse(ev.data);
      if (f) handle(f);
    };
    sock.onclose = (ev) => { if (ws === sock) onSocketClosed(ev, opened); };
  }
  function onSocketClosed(ev, opened) {
    if (ready) stateBeforeDrop = agentState;
    ws = null; ready = false;
    requests.clear();
    convs.forEach((c) => {
      c.live = false; c.closing = false;
      if (c.call) c.call.holdPending = null; // its ack went with the connection
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
      case 'signals':
        if (!c) break;
        c.signals = f;
        if (f.voice) onVoiceSignals(c, f.voice);
        refresh(c);
        break;
      case 'switched': onSwitched(c, f); break;
      case 'mark': console.debug('warmline: playback reached mark', f.name, 'on', f.conversation_id); break;
      case 'transferred': onTransferred(c, f); break;
      case 'transfer_failed': onTransferFailed(c, f); break;
      case 'ack':
        requests.delete(f.id);
        if (!r) break;
        if (r.kind === 'message') r.conv.ack(r.item, f.seq);
        if (r.kind === 'accept' || r.kind === 'reject') removeOffer(r.offerId);
        if (r.kind === 'status') { setState(r.state); setStatus('Status: ' + STATES[r.state] + '.'); }
        if (r.kind === 'transfer') onTransferAck(r);
        if (r.kind === 'hold' || r.kind === 'clear') onCallControlAck(r);
        if (r.kind === 'close') onCloseAck(r);
        break;
      case 'error':
        requests.delete(f.id);
        if (r && r.kind === 'transfer') { onTransferRefused(r, f); break; } // shown by the transfer form
        if (r && (r.kind === 'hold' || r.kind === 'clear')) { onCallControlRefused(r, f); break; } // shown on the call
        if (r && r.kind === 'close') { onCloseRefused(r, f); break; } // shown by the close form
        if (!r && isAudioError(f)) break; // about a binary frame: handled there, not worth the status line
        setStatus(f.message || f.code || 'Something went wrong.', true);
        if (!r) break;
        if (r.kind === 'message') r.conv.setState(r.item, 'failed');
        if (r.kind === 'accept' || r.kind === 'reject') removeOffer(r.offerId);
        if (r.kind === 'status') setState(agentState); // put the select back
        break;
      default: // rtc…: not used by this page
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
      c.transferred = c.moved = null; // listed: this agent's again
      c.live = false;
      // A live call: the same one again after a blip (its hold state is still ours), or one we
      // did not know (a page load: whether it is on hold is learnt from the signals).
      if (info.media) startCall(c, info.media, !callLive(c));
      else endCall(c, 'The call ended while you were disconnected.');
      send({ type: 'resume', conversation_id: c.id, last_seq: c.lastSeq }); // 0 on a fresh page load
    }
    convs.forEach((c) => {
      if (listed.has(c.id) || c.closed) return;
      c.closed = c.gone = true;
      endCall(c, 'The call is no longer assigned to you.');
      refresh(c);
    });
    if (!selected && convs.size) select(convs.keys().next().value);
  }
  function onConversation(f) {
    const c = upsert(f);
    c.closed = f.state === 'closed'; c.gone = false;
    c.transferred = c.transferring = c.transferNote = c.moved = null; // accepted (again, if it was passed back to us)
    for (const ev of f.transcript || []) addEvent(c, ev);
    if (f.media && !c.closed) startCall(c, f.media, false);
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
      h('h3', null, 'New ' + channelText(f.channel || 'chat') + ': ' + (cust.display_name || 'Customer')),
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
        transferring: null, transferred: null, transferNote: null, moved: null, call: null,
        info: null, closeNote: null, followUpAt: null });
      c.btn = h('button', { type: 'button', 'data-testid': 'conversation-item', 'data-conversation-id': c.id, onclick: () => select(c.id) });
      c.item = h('li', null, c.btn);
      ui.list.append(c.item);
      convs.set(c.id, c);
    }
    for (const k of ['channel', 'queue', 'state', 'customer', 'attributes', 'history', 'repeat_of']) if (info[k] !== undefined) c[k] = info[k];
    if (['attributes', 'history', 'repeat_of', 'customer'].some((k) => info[k] !== undefined)) c.info = null; // built again when shown
    refresh(c);
    return c;
  }
  function customerName(c) { return (c.customer && c.customer.display_name) || 'Customer'; }
  function stateText(c) {
    return c.transferred ? 'transferred' : c.moved ? 'moved to another agent' : c.gone ? 'no longer yours'
      : c.closed ? 'closed' : (c.state || '');
  }
  // The wire's channel, in the words agents use.
  function channelText(channel) { return channel === 'voice' ? 'call' : channel; }
  // Still this agent's to work on: not closed, not handed over.
  function isOpen(c) { return !!c && !c.closed && !c.transferred && !c.moved; }
  // Re-renders the list entry, and the panel if this conversation is the selected one.
  function refresh(c) {
    c.btn.setAttribute('aria-current', String(c.id === selected));
    const onCall = callLive(c);
    c.btn.replaceChildren(h('span', null, customerName(c),
      c.unread ? h('span', { class: 'badge', 'aria-label': c.unread + ' unread' }, String(c.unread)) : null,
      onCall ? h('span', { class: 'call-pill' + (c.call.onHold ? ' hold' : ''), 'data-testid': 'call-pill' },
        c.call.onHold ? 'On hold' : 'Live call') : null),
      h('span', { class: 'sub' }, [channelText(c.channel), c.queue, stateText(c)].filter(Boolean).join(' · ')));
    ui.noConvs.hidden = convs.size > 0;
    if (c.id !== selected) return;
    const s = c.signals && c.signals.sentiment;
    ui.title.textContent = customerName(c);
    ui.meta.textContent = [channelText(c.channel), c.queue && 'queue ' + c.queue, stateText(c),
      s && 'sentiment ' + s.last + (s.trend ? ' (' + s.trend + ')' : '')].filter(Boolean).join(' · ');
    if (!c.info) c.info = buildInfo(c);
    if (ui.infoSlot.firstElementChild !== c.info) ui.infoSlot.replaceChildren(c.info);
    ui.typing.textContent = c.typing ? 'Customer is typing…' : '';
    ui.closedText.textContent = c.transferred ? transferredText(c.transferred) : c.moved ? movedText(c.moved)
      : c.gone ? 'This conversation is no longer assigned to you.' : (c.closedText || 'This conversation is closed.');
    renderTransfer(c);
    renderClose(c);
    renderCall();
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
    renderCall();
  }

  // A transcript event as a list item (the live transcript, and the earlier one of a repeat contact).
  function eventItem(f) {
    if (f.type === 'message') {
      const s = f.sender || {}, own = s.role === 'agent' && s.id === me.id;
      return W.messageItem(own ? 'mine' : (s.role || 'system'), own ? 'You' : (s.display_name || s.role || 'System'), f.text, f.ts);
    }
    if (f.type === 'assigned') {
      const a = f.agent || {};
      return h('li', { class: 'event' }, (a.id === me.id ? 'You' : (a.display_name || 'An agent')) + ' joined the conversation.');
    }
    return h('li', { class: 'event' }, closedLine(f));
  }
  function closedLine(f) {
    return 'Closed by ' + (f.by || 'someone') + (f.resolution ? ' (' + resolutionText(f.resolution).toLowerCase() + ')' : '') + '.';
  }
  function addEvent(c, f) {
    if (!c.isNew(f)) return; // dedupe by seq
    const li = eventItem(f);
    if (f.type === 'message') {
      if ((f.sender || {}).role === 'customer') { showTyping(c, false); if (c.id !== selected) c.unread++; }
    } else if (f.type === 'closed') {
      c.closedText = closedLine(f) + (f.resolution === 'follow_up' && c.followUpAt
        ? ' You get back to them ' + whenText(c.followUpAt) + '.' : '');
      c.closed = true; c.closing = false; c.typing = false;
      endCall(c, f.by === 'customer' ? 'The caller hung up.' : 'The call ended.');
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

  // ---- what came with the conversation: context, history, repeat contact --------------------
  const RESOLUTIONS = { resolved: 'Resolved', unresolved: 'Unresolved', follow_up: 'Follow-up' };
  function resolutionText(r) { return RESOLUTIONS[r] || String(r).replace(/_/g, ' '); }
  function whenText(ts) {
    const d = new Date(ts);
    if (isNaN(d)) return String(ts);
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return d.toDateString() === new Date().toDateString() ? 'today ' + time
      : d.toLocaleDateString([], { day: 'numeric', month: 'short', year: 'numeric' }) + ' ' + time;
  }
  function agoText(ts) {
    const ms = Date.now() - new Date(ts).getTime();
    if (!(ms >= 0)) return '';
    const m = Math.round(ms / 60000);
    if (m < 1) return 'less than a minute ago';
    if (m < 60) return m + (m === 1 ? ' minute ago' : ' minutes ago');
    const hrs = Math.round(m / 60);
    if (hrs < 48) return hrs + (hrs === 1 ? ' hour ago' : ' hours ago');
    return Math.round(hrs / 24) + ' days ago';
  }
  function agentText(id) { return !id ? 'nobody' : id === me.id ? 'you' : id; }
  function valueText(v) { return typeof v === 'string' ? v : JSON.stringify(v); }
  // Built once per conversation (and again when its fields change), kept while other
  // conversations are shown, so an expanded transcript stays expanded.
  function buildInfo(c) {
    const attrs = c.attributes && typeof c.attributes === 'object' && !Array.isArray(c.attributes) ? c.attributes : {};
    const hist = Array.isArray(c.history) ? c.history : [];
    const rep = c.repeat_of && typeof c.repeat_of === 'object' ? c.repeat_of : null;
    const followUpOf = attrs.follow_up_of != null ? String(attrs.follow_up_of) : null;
    const panels = [];
    if (rep || followUpOf) panels.push(repeatPanel(c, rep, followUpOf, hist));
    const keys = Object.keys(attrs);
    if (keys.length) {
      panels.push(h('section', { class: 'card', 'data-testid': 'context', 'aria-labelledby': 'ctx-' + c.id },
        h('h3', { id: 'ctx-' + c.id }, 'Context'),
        h('dl', { class: 'kv' }, ...keys.flatMap((k) => [h('dt', null, k), h('dd', null, valueText(attrs[k]))]))));
    }
    if (hist.length) {
      const linked = new Set([rep && rep.conversation_id, followUpOf].filter(Boolean));
      panels.push(h('section', { class: 'card', 'data-testid': 'history', 'aria-labelledby': 'hist-' + c.id },
        h('h3', { id: 'hist-' + c.id }, 'History (' + hist.length + (hist.length === 1 ? ' earlier conversation)' : ' earlier conversations)')),
        h('div', { class: 'history-wrap' }, h('table', { class: 'history-table', 'aria-labelledby': 'hist-' + c.id },
          h('thead', null, h('tr', null, ...['Date', 'Queue', 'Channel', 'Resolution', 'CSAT', 'Agent'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, ...hist.map((x) => h('tr', { class: linked.has(x.conversation_id) ? 'linked' : null, 'data-conversation-id': x.conversation_id },
            h('td', null, whenText(x.created_at)),
            h('td', null, x.queue || ''),
            h('td', null, channelText(x.channel || '')),
            h('td', null, x.state === 'closed' ? (x.resolution ? resolutionText(x.resolution) : 'Ended') : 'Open (' + x.state + ')'),
            h('td', null, x.csat != null ? x.csat + ' of 5' : '–'),
            h('td', null, agentText(x.agent_id)))))))));
    } else if (c.history !== undefined) {
      panels.push(h('p', { class: 'help', 'data-testid': 'history' }, 'No earlier conversations with this customer.'));
    }
    return h('div', { class: 'info-panels' }, ...panels);
  }
  // A repeat contact (with the earlier conversation and what was said), or a follow-up promised.
  function repeatPanel(c, rep, followUpOf, hist) {
    const id = 'rep-' + c.id;
    const about = followUpOf && (rep && rep.conversation_id === followUpOf ? rep : hist.find((x) => x.conversation_id === followUpOf));
    const kids = [h('h3', { id }, followUpOf ? 'Follow-up' + (rep ? ' (repeat contact)' : '') : 'Repeat contact')];
    if (followUpOf) {
      const who = about && about.agent_id ? (about.agent_id === me.id ? 'You' : about.agent_id) : 'A colleague';
      kids.push(h('p', { class: 'follow-up-of', 'data-testid': 'follow-up-of' },
        who + ' promised to get back to this customer' + (about ? ' after their conversation of ' + whenText(about.created_at) : '') +
        '. This conversation is that follow-up: the customer did not start it.'));
    }
    if (rep) {
      if (!followUpOf) {
        kids.push(h('p', null, 'The customer is back ' + (rep.closed_at ? agoText(rep.closed_at).replace(/ ago$/, '') + ' after' : 'soon after') +
          ' their last conversation on ' + (rep.queue || 'this queue') + '. Pick up where it was left.'));
      }
      kids.push(h('dl', { class: 'kv' },
        h('dt', null, 'Started'), h('dd', null, whenText(rep.created_at)),
        h('dt', null, 'Closed'), h('dd', null, rep.closed_at ? whenText(rep.closed_at) + ' (' + agoText(rep.closed_at) + ')' : 'still open'),
        h('dt', null, 'Resolution'), h('dd', null, rep.resolution ? resolutionText(rep.resolution) : '–'),
        h('dt', null, 'Agent'), h('dd', null, agentText(rep.agent_id)),
        h('dt', null, 'CSAT'), h('dd', null, rep.csat != null ? rep.csat + ' of 5' : 'not rated'),
        rep.transfers ? h('dt', null, 'Transfers') : null, rep.transfers ? h('dd', null, String(rep.transfers)) : null));
      const events = Array.isArray(rep.transcript) ? rep.transcript : [];
      if (events.length) {
        const t = new W.Transcript(rep.conversation_id, h('ol', { class: 'transcript', 'aria-label': 'Earlier transcript' }), () => false);
        events.forEach((f) => { if (t.isNew(f)) t.add(eventItem(f), f.seq); });
        const n = events.filter((f) => f.type === 'message').length;
        kids.push(h('details', { 'data-testid': 'repeat-transcript' },
          h('summary', null, 'Earlier transcript (' + n + (n === 1 ? ' message)' : ' messages)')), t.ol));
      }
    }
    return h('section', { class: 'card repeat', 'data-testid': 'repeat', 'aria-labelledby': id }, ...kids);
  }

  // ---- closing ----------------------------------------------------------------------------
  function onResolution() {
    const followUp = ui.resolution.value === 'follow_up';
    ui.followUpField.hidden = ui.followUpHelp.hidden = !followUp;
    ui.noteLabel.textContent = followUp ? 'Note for the customer (optional)' : 'Note (optional)';
    if (followUp && !ui.followUpAt.value) { // tomorrow, 9:00 local time
      const d = new Date();
      d.setDate(d.getDate() + 1);
      d.setHours(9, 0, 0, 0);
      ui.followUpAt.value = localInputValue(d);
    }
  }
  function localInputValue(d) {
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes());
  }
  function renderClose(c) {
    const n = c.closeNote;
    setText(ui.closeStatus, c.closing ? 'Closing…' : n ? n.text : '');
    ui.closeStatus.classList.toggle('error', !c.closing && !!(n && n.error));
  }
  function onCloseAck(r) {
    const c = r.conv;
    c.closing = false;
    if (c.id === selected) { ui.note.value = ''; ui.followUpAt.value = ''; ui.resolution.value = 'resolved'; onResolution(); }
    refresh(c);
  }
  function onCloseRefused(r, f) {
    const c = r.conv;
    c.closing = false;
    c.followUpAt = null;
    c.closeNote = { text: 'Not closed: ' + (f.message || f.code) + '.', error: true };
    refresh(c);
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
    endCall(c, 'The call was transferred.');
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

  // ---- calls ---------------------------------------------------------------------------------
  // A conversation with `media` has a live phone call. Its audio comes and goes as binary
  // frames on this socket (docs/protocol.md, Voice): a 4-byte header (u8 version 1, u8 codec
  // 0 = PCMU, u16 big-endian handle), then G.711 mu-law, 8 kHz mono, usually 160 bytes (20 ms).
  // Per conversation, `call` is {handle, startedAt, endedAt, endText, onHold, holdPending,
  // holdKnown, voice, prevVoice, hint, message, playAt, sources, lastAudio}; it stays after the
  // call ends (endedAt set) so the final signals remain visible during wrap-up.
  const AUDIO_VERSION = 1, CODEC_PCMU = 0, RATE = 8000, FRAME_SAMPLES = 160;
  const PLAY_TARGET = 0.06; // s scheduled ahead after a gap: the jitter cushion
  const PLAY_SOFT = 0.1;    // beyond this, quiet frames and one in five of the others are dropped
  const PLAY_MAX = 0.3;     // beyond this, every frame is dropped: late audio is worse than lost audio
  const QUIET = 1e-4;       // mean square (full scale 1) under which a frame is quiet: -40 dBov
  const SEND_BACKLOG = 8192; // bytes not yet sent on the socket past which mic frames are dropped
  const HINT_MS = 6000;     // a coaching hint stays at least this long
  const MULAW = (() => { // code -> sample in -1..1 (the standard G.711 expansion)
    const t = new Float32Array(256);
    for (let code = 0; code < 256; code++) {
      const b = ~code & 0xff, seg = (b >> 4) & 7, mag = ((((b & 0x0f) << 3) + 0x84) << seg) - 0x84;
      t[code] = (b & 0x80 ? -mag : mag) / 32768;
    }
    return t;
  })();
  function mulawEncode(x) { // sample in -1..1 -> code
    let s = Math.round(Math.max(-1, Math.min(1, x)) * 32767);
    const sign = s < 0 ? 0x80 : 0;
    if (sign) s = -s;
    s = Math.min(s, 32635) + 0x84;
    let seg = 7;
    for (let mask = 0x4000; !(s & mask) && seg > 0; seg--, mask >>= 1);
    return ~(sign | (seg << 4) | ((s >> (seg + 3)) & 0x0f)) & 0xff;
  }

  const callsByHandle = new Map(); // handle -> conversation whose call is live
  // Debug and test hook: counters only, no audio.
  const audioStats = {
    framesIn: 0,       // binary frames received
    framesOut: 0,      // frames scheduled for playback
    framesDropped: 0,  // not played: too far ahead, on hold, audio not running
    framesUnrouted: 0, // a handle that is none of our live calls, or a bad header
    underruns: 0,      // playback ran dry and restarted with a fresh cushion
    micFramesSent: 0, micFramesDropped: 0, audioErrors: 0,
  };
  window.__warmlineAudio = Object.defineProperties(audioStats, {
    context: { enumerable: true, get: () => (playCtx ? playCtx.state : 'none') },
    micOn: { enumerable: true, get: () => !!mic.stream },
    calls: {
      enumerable: true,
      get: () => [...callsByHandle].map(([handle, c]) => ({
        handle, conversation_id: c.id, onHold: c.call.onHold, framesIn: c.call.framesIn,
        aheadMs: playCtx ? Math.max(0, Math.round((c.call.playAt - playCtx.currentTime) * 1000)) : 0,
      })),
    },
  });

  function callLive(c) { return !!(c && c.call && !c.call.endedAt); }
  function startCall(c, media, holdUnknown) {
    const num = Number(media.handle);
    if (callLive(c)) { // the same call, seen again (welcome after a blip, conversation after accept)
      if (c.call.handle !== num) { callsByHandle.delete(c.call.handle); c.call.handle = num; }
      callsByHandle.set(num, c);
      return;
    }
    c.call = {
      handle: num, startedAt: Date.now(), endedAt: 0, endText: '', onHold: false, holdPending: null,
      holdKnown: !holdUnknown, voice: null, prevVoice: null, hint: null, message: null,
      playAt: 0, over: 0, sources: new Set(), lastAudio: 0, framesIn: 0,
    };
    if (media.codec && media.codec !== 'pcmu') {
      c.call.message = { text: 'This call uses audio this page cannot play (' + media.codec + ').', error: true, until: Infinity };
    }
    callsByHandle.set(num, c);
    playContext();
    if (!callTicker) callTicker = setInterval(tickCalls, 500);
    refresh(c);
  }
  // Stops the call's playback (and the mic, if it was for this call). `text` says why, on the call.
  function endCall(c, text) {
    if (!callLive(c)) return;
    const call = c.call;
    call.endedAt = Date.now();
    call.endText = text;
    call.holdPending = null;
    call.hint = call.message = null;
    stopPlayback(call);
    if (callsByHandle.get(call.handle) === c) callsByHandle.delete(call.handle);
    if (mic.conv === c) micOff();
    if (!callsByHandle.size) {
      if (playCtx) { playCtx.close().catch(() => {}); playCtx = null; }
      clearInterval(callTicker); callTicker = null;
    }
    refresh(c);
  }
  function onSwitched(c, f) {
    if (!c) return;
    c.channel = f.channel;
    const name = customerName(c);
    if (!f.agent_kept) {
      endCall(c, f.channel === 'voice' ? 'The call moved to another agent.' : 'The call ended, and the chat went to another agent.');
      c.moved = { channel: f.channel };
      c.typing = false;
      if (c.id === selected) typing.stop(false);
      setStatus(name + ': ' + movedText(c.moved));
    } else if (f.media) {
      startCall(c, f.media, false);
      setStatus(name + ' is now on a phone call with you.');
    } else if (f.channel === 'voice') { // no phone leg (yet): nothing for this page to play
      setStatus(name + ' switched to a call.');
    } else {
      endCall(c, 'The call ended; the conversation carries on in chat.');
      setStatus(name + ': the call ended; carry on in chat.');
    }
    refresh(c);
  }
  function movedText(m) {
    return m.channel === 'voice'
      ? 'The customer switched to a phone call and you have no room for another call, so it went to an agent who has. It is no longer yours.'
      : 'The customer switched to chat and you have no room for another chat, so it went to an agent who has. It is no longer yours.';
  }

  // ---- calls: playback ----
  let playCtx = null, callTicker = null;
  // One AudioContext for every call, at 8 kHz where the browser allows it (our buffers then
  // play without resampling); created when a call starts, closed when the last one ends.
  function playContext() {
    if (playCtx) return playCtx;
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    try { playCtx = new AC({ latencyHint: 'interactive', sampleRate: RATE }); } catch (e) {
      try { playCtx = new AC({ latencyHint: 'interactive' }); } catch (e2) { return null; }
    }
    const ctx = playCtx;
    ctx.onstatechange = () => { if (ctx === playCtx) renderCall(); };
    if (ctx.state === 'suspended') ctx.resume().catch(() => {}); // runs if the page was clicked before
    return ctx;
  }
  // Browsers start audio only after a click or key press on the page: any will do.
  function wakeAudio() { if (playCtx && playCtx.state === 'suspended') playCtx.resume().catch(() => {}); }
  document.addEventListener('pointerdown', wakeAudio, true);
  document.addEventListener('keydown', wakeAudio, true);

  function onAudio(data) {
    audioStats.framesIn++;
    const bytes = new Uint8Array(data);
    if (bytes.length <= 4 || bytes[0] !== AUDIO_VERSION || bytes[1] !== CODEC_PCMU) { audioStats.framesUnrouted++; return; }
    const c = callsByHandle.get((bytes[2] << 8) | bytes[3]);
    if (!c) { audioStats.framesUnrouted++; return; }
    c.call.lastAudio = Date.now();
    c.call.framesIn++;
    play(c.call, bytes.subarray(4));
  }
  // Jitter buffer: each frame is scheduled right after the previous one. After a gap it starts
  // PLAY_TARGET ahead. When the network bunched frames up (a stall, then a burst) and the delay
  // grew past PLAY_SOFT, quiet frames are skipped and one in five of the others, so it comes
  // back down within a second instead of staying wherever the burst left it; past PLAY_MAX
  // every frame is skipped.
  function play(call, payload) {
    const ctx = playCtx;
    // currentTime stays 0 until the output device really starts: frames scheduled then would pile up.
    if (!ctx || ctx.state !== 'running' || !ctx.currentTime || call.onHold) { audioStats.framesDropped++; return; }
    const n = payload.length, buffer = ctx.createBuffer(1, n, RATE), data = buffer.getChannelData(0);
    let energy = 0;
    for (let i = 0; i < n; i++) { const v = MULAW[payload[i]]; data[i] = v; energy += v * v; }
    const now = ctx.currentTime, ahead = call.playAt - now;
    if (ahead < 0.005) {
      if (call.playAt) audioStats.underruns++;
      call.playAt = now + PLAY_TARGET;
    }
    if (ahead > PLAY_MAX || (ahead > PLAY_SOFT && (energy / n < QUIET || ++call.over % 5 === 0))) {
      audioStats.framesDropped++;
      return;
    }
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(ctx.destination);
    src.onended = () => call.sources.delete(src);
    src.start(call.playAt);
    call.sources.add(src);
    call.playAt += n / RATE;
    audioStats.framesOut++;
  }
  function stopPlayback(call) {
    call.sources.forEach((src) => { try { src.stop(); } catch (e) { /* already ended */ } });
    call.sources.clear();
    call.playAt = 0;
  }

  // ---- calls: the agent's microphone ----
  // One microphone, sending to one call at a time (mic.conv). Captured at the device rate,
  // low-passed to the telephone band, downsampled to 8 kHz, encoded and sent in 20 ms frames,
  // only while that call is live, not on hold, and the socket is up and keeping pace.
  const mic = { conv: null, gen: 0, starting: false, stream: null, ctx: null, nodes: [], down: null, frame: null, fill: 0, energy: 0, level: 0, refused: 0 };
  const CAPTURE_WORKLET = `registerProcessor('warmline-capture', class extends AudioWorkletProcessor {
    constructor() { super(); this.buf = new Float32Array(512); this.n = 0; }
    process(inputs) {
      const ch = inputs[0] && inputs[0][0];
      if (ch) for (let i = 0; i < ch.length; i++) {
        this.buf[this.n++] = ch[i];
        if (this.n === this.buf.length) { this.port.postMessage(this.buf, [this.buf.buffer]); this.buf = new Float32Array(512); this.n = 0; }
      }
      return true;
    }
  });`;
  let workletUrl = null;

  async function micOn(c) {
    if (!callLive(c)) return;
    if (mic.stream || mic.starting) { mic.conv = c; renderCall(); return; } // already capturing: move it to this call
    const md = navigator.mediaDevices;
    if (!md || !md.getUserMedia) return callMessage(c, 'This browser cannot use a microphone on this page (it needs https).', true);
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return callMessage(c, 'This browser cannot capture audio.', true);
    const gen = ++mic.gen;
    mic.conv = c; mic.starting = true;
    renderCall();
    let stream = null, ctx = null;
    try {
      stream = await md.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
      if (gen !== mic.gen) { stream.getTracks().forEach((t) => t.stop()); return; } // turned off meanwhile
      ctx = new AC({ latencyHint: 'interactive' });
      const source = ctx.createMediaStreamSource(stream);
      // 4th-order Butterworth low-pass at 3.4 kHz (two biquads; Web Audio takes their Q in dB).
      const lp1 = new BiquadFilterNode(ctx, { type: 'lowpass', frequency: 3400, Q: -5.33 });
      const lp2 = new BiquadFilterNode(ctx, { type: 'lowpass', frequency: 3400, Q: 2.32 });
      let sink;
      if (ctx.audioWorklet && window.AudioWorkletNode) {
        workletUrl = workletUrl || URL.createObjectURL(new Blob([CAPTURE_WORKLET], { type: 'text/javascript' }));
        await ctx.audioWorklet.addModule(workletUrl);
        sink = new AudioWorkletNode(ctx, 'warmline-capture', { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
        sink.port.onmessage = (ev) => { if (gen === mic.gen) onMicSamples(ev.data); };
      } else { // older browsers
        sink = ctx.createScriptProcessor(1024, 1, 1);
        sink.onaudioprocess = (ev) => { if (gen === mic.gen) onMicSamples(ev.inputBuffer.getChannelData(0)); };
      }
      source.connect(lp1).connect(lp2).connect(sink);
      sink.connect(ctx.destination); // outputs silence; keeps the node pulled
      if (ctx.state === 'suspended') await ctx.resume();
      if (gen !== mic.gen) throw new Error('stopped');
      stream.getAudioTracks().forEach((t) => {
        t.onended = () => { if (gen === mic.gen) { const was = mic.conv; micOff(); callMessage(was, 'The microphone stopped (unplugged or taken by another app).', true); } };
      });
      Object.assign(mic, { starting: false, stream, ctx, nodes: [source, lp1, lp2, sink], down: new Downsampler(ctx.sampleRate), fill: 0, energy: 0, refused: 0 });
      mic.frame = new Uint8Array(4 + FRAME_SAMPLES);
      renderCall();
    } catch (e) {
      if (stream) stream.getTracks().forEach((t) => t.stop());
      if (ctx) ctx.close().catch(() => {});
      if (gen !== mic.gen) return;
      const was = mic.conv;
      mic.conv = null; mic.starting = false;
      callMessage(was, e && e.name === 'NotAllowedError' ? 'Microphone blocked: allow it for this site in the browser, then try again.'
        : e && e.name === 'NotFoundError' ? 'No microphone found.'
        : 'The microphone could not start (' + ((e && (e.message || e.name)) || 'unknown error') + ').', true);
    }
  }
  function micOff() {
    mic.gen++;
    if (mic.stream) mic.stream.getTracks().forEach((t) => t.stop());
    mic.nodes.forEach((n) => { try { n.disconnect(); } catch (e) { /* not connected */ } });
    if (mic.ctx) mic.ctx.close().catch(() => {});
    Object.assign(mic, { conv: null, starting: false, stream: null, ctx: null, nodes: [], down: null, frame: null, fill: 0, level: 0 });
    renderCall();
  }
  // Linear interpolation at 8 kHz over the (already low-passed) capture, across chunk boundaries.
  class Downsampler {
    constructor(inRate) { this.step = inRate / RATE; this.t = 0; this.last = 0; }
    // Calls out(sample) for each 8 kHz sample that falls in this chunk.
    push(chunk, out) {
      const n = chunk.length;
      let t = this.t;
      while (t < n - 1) {
        const i = Math.floor(t), f = t - i, a = i < 0 ? this.last : chunk[i];
        out(a + (chunk[i + 1] - a) * f);
        t += this.step;
      }
      this.t = t - n;
      if (n) this.last = chunk[n - 1];
    }
  }
  function onMicSamples(chunk) {
    if (!mic.down) return;
    mic.down.push(chunk, (x) => {
      mic.frame[4 + mic.fill++] = mulawEncode(x);
      mic.energy += x * x;
      if (mic.fill === FRAME_SAMPLES) sendMicFrame();
    });
  }
  function canSend(c) {
    return callLive(c) && !c.call.onHold && c.call.holdPending !== true && ready && !!ws && ws.readyState === WebSocket.OPEN;
  }
  function sendMicFrame() {
    const c = mic.conv, frame = mic.frame;
    mic.level = Math.sqrt(mic.energy / FRAME_SAMPLES);
    mic.fill = 0; mic.energy = 0;
    mic.frame = new Uint8Array(4 + FRAME_SAMPLES);
    if (c && c.id === selected) showMicLevel();
    if (!canSend(c)) return;
    if (ws.bufferedAmount > SEND_BACKLOG) { audioStats.micFramesDropped++; return; }
    frame[0] = AUDIO_VERSION; frame[1] = CODEC_PCMU; frame[2] = c.call.handle >> 8; frame[3] = c.call.handle & 0xff;
    ws.send(frame);
    audioStats.micFramesSent++;
  }
  function showMicLevel() {
    // Roughly logarithmic: -60 dBFS empty, 0 dBFS full.
    const db = 20 * Math.log10(Math.max(mic.level, 1e-6));
    ui.micLevel.firstElementChild.style.width = Math.round(Math.max(0, Math.min(1, (db + 60) / 60)) * 100) + '%';
  }
  // An error without id about a binary frame: our audio for a call the gateway no longer has
  // (it ended a moment ago) or is not ours. Expected around a hang-up; if it keeps coming, stop.
  function isAudioError(f) {
    if (!/\bhandle \d+/.test(f.message || '') || (f.code !== 'not_found' && f.code !== 'forbidden')) return false;
    audioStats.audioErrors++;
    if (mic.stream && ++mic.refused >= 50) { // a second of frames refused
      const c = mic.conv;
      micOff();
      callMessage(c, 'The gateway is not taking audio for this call, so the mic was turned off.', true);
    }
    return true;
  }

  // ---- calls: controls, signals, rendering ----
  function callMessage(c, text, error) {
    if (!c || !c.call) { setStatus(text, error); return; }
    c.call.message = { text, error: !!error, until: Date.now() + 8000 };
    refresh(c);
  }
  function requestHold(c) {
    const call = c && c.call;
    if (!callLive(c) || call.holdPending != null || !ready) return;
    const on = !call.onHold;
    call.holdPending = on;
    call.message = null;
    if (!request('hold', { type: 'hold', conversation_id: c.id, on }, { conv: c, on })) call.holdPending = null;
    refresh(c);
  }
  function requestClear(c) {
    if (!callLive(c) || !ready) return;
    request('clear', { type: 'clear', conversation_id: c.id }, { conv: c });
  }
  function onCallControlAck(r) {
    const c = r.conv;
    if (!callLive(c)) return;
    if (r.kind === 'hold') {
      c.call.onHold = r.on;
      c.call.holdPending = null;
      c.call.holdKnown = true;
      c.call.hint = null;
      if (r.on) stopPlayback(c.call);
      refresh(c);
    } else {
      callMessage(c, 'Cleared: the caller will not hear the rest of what you said before.');
    }
  }
  function onCallControlRefused(r, f) {
    const c = r.conv;
    if (!c || !c.call) return;
    if (r.kind === 'hold') c.call.holdPending = null;
    const what = r.kind === 'hold' ? (r.on ? 'Hold' : 'Resume') : 'Clear';
    callMessage(c, what + ' did not work: ' + (f.message || f.code) + '.', true);
  }
  function onVoiceSignals(c, v) {
    const call = c.call;
    if (!call) return;
    call.prevVoice = call.voice;
    call.voice = v;
    if (!callLive(c)) return;
    const p = call.prevVoice, now = Date.now();
    // The timer follows the gateway's clock (the call may have started before this page).
    const startedAt = now - (v.duration_ms || 0);
    if (Math.abs(startedAt - call.startedAt) > 1500) call.startedAt = startedAt;
    if (!call.holdKnown && p) { // after a page load: is it on hold? The hold time tells.
      if (v.hold_ms > p.hold_ms) { call.onHold = true; call.holdKnown = true; }
      else if (v.duration_ms > p.duration_ms) call.holdKnown = true;
    }
    const text = coach(call, v, p);
    if (text) call.hint = { text, until: now + HINT_MS };
    else if (call.hint && call.hint.until <= now) call.hint = null;
  }
  // A gentle nudge from the last two measurements (2 s apart), or '' when all is well.
  function coach(call, v, p) {
    if (call.onHold || call.holdPending != null) return '';
    if (p && v.silence_ms > p.silence_ms) return 'Long silence: tell the caller what you are doing.';
    if (p && v.crosstalk_ms - p.crosstalk_ms >= 600) return 'You are talking over each other: pause and let the caller finish.';
    const talk = v.caller_talk_ms + v.agent_talk_ms;
    if (v.duration_ms >= 60000 && talk >= 20000 && v.agent_talk_ms > 0.75 * talk) {
      return 'You have done most of the talking: ask a question, then listen.';
    }
    return '';
  }
  function clock(ms) {
    const s = Math.max(0, Math.floor(ms / 1000)), hh = Math.floor(s / 3600), mm = Math.floor(s / 60) % 60, ss = String(s % 60).padStart(2, '0');
    return hh ? hh + ':' + String(mm).padStart(2, '0') + ':' + ss : mm + ':' + ss;
  }
  function secs(ms) {
    const s = Math.round(ms / 1000);
    return s < 60 ? s + ' s' : Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  }
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; } // live regions speak changes only
  function callStatusText(c) {
    const call = c.call;
    if (!callLive(c)) return call.endText || 'The call ended.';
    if (call.message && call.message.until > Date.now()) return call.message.text;
    if (!ready) return 'Reconnecting… the call audio comes back with the connection.';
    if (call.holdPending === true) return 'Putting the caller on hold…';
    if (call.holdPending === false) return 'Taking the caller off hold…';
    if (call.onHold) return 'On hold: you and the caller cannot hear each other.';
    if (!playCtx) return 'This browser cannot play the call audio.';
    if (playCtx.state !== 'running') return 'The browser paused the call audio: press "Turn on call audio".';
    const micText = mic.conv !== c ? 'Mic off: the caller cannot hear you.'
      : mic.starting ? 'Starting the mic…' : 'Mic on: the caller hears you.';
    const silent = call.lastAudio ? Date.now() - call.lastAudio > 3000 : Date.now() - call.startedAt > 5000;
    return silent ? micText + ' No audio from the caller\'s line.' : micText;
  }
  function renderCall() {
    const c = convs.get(selected), call = c && c.call;
    ui.call.hidden = !call;
    if (!call) return;
    const live = callLive(c), mine = mic.conv === c;
    ui.call.dataset.state = !live ? 'ended' : call.onHold ? 'hold' : 'live';
    ui.call.dataset.handle = String(call.handle);
    ui.call.dataset.mic = mine && mic.stream ? 'on' : 'off';
    setText(ui.callTitle, !live ? 'Call ended' : call.onHold ? 'On hold' : 'Live call');
    setText(ui.callTimer, clock((call.endedAt || Date.now()) - call.startedAt));
    const status = callStatusText(c), error = !!(live && call.message && call.message.error && call.message.until > Date.now());
    setText(ui.callStatus, status);
    ui.callStatus.classList.toggle('error', error);
    ui.callControls.hidden = ui.clearHelp.hidden = !live;
    ui.micLevel.hidden = !live || !mine || !mic.stream;
    setText(ui.mic, mine ? (mic.starting ? 'Starting mic…' : 'Turn mic off') : 'Turn mic on');
    ui.mic.classList.toggle('on', mine);
    ui.mic.disabled = !live || (mine && mic.starting);
    setText(ui.hold, call.holdPending != null ? (call.holdPending ? 'Holding…' : 'Resuming…') : call.onHold ? 'Resume' : 'Hold');
    ui.hold.disabled = !live || !ready || call.holdPending != null;
    ui.clearPlayback.disabled = !live || !ready;
    ui.audioOn.hidden = !live || !playCtx || playCtx.state === 'running';
    renderSignals(call);
    setText(ui.callHint, live && call.hint ? call.hint.text : '');
  }
  function renderSignals(call) {
    const v = call.voice;
    if (ui.callSignals.shown === v && v) return; // unchanged since the last render
    ui.callSignals.shown = v;
    const item = (label, value, extra) => h('div', null, h('dt', null, label), h('dd', null, value, extra || null));
    if (!v) {
      ui.callSignals.replaceChildren(item('Signals', 'measuring…'));
      return;
    }
    const talk = v.caller_talk_ms + v.agent_talk_ms, dur = v.duration_ms || 0;
    const callerPct = talk ? Math.round(100 * v.caller_talk_ms / talk) : 0;
    const bar = talk ? h('span', { class: 'talk-bar', 'aria-hidden': 'true' },
      h('span', { class: 'caller', style: 'width:' + callerPct + '%' }), h('span', { class: 'you', style: 'width:' + (100 - callerPct) + '%' })) : null;
    const crossPct = dur ? Math.round(100 * v.crosstalk_ms / dur) : 0, deadPct = dur ? Math.round(100 * v.silence_ms / dur) : 0;
    const items = [
      item('Talk', talk ? 'caller ' + callerPct + '% · you ' + (100 - callerPct) + '%' : 'nobody yet', bar),
      item('Crosstalk', secs(v.crosstalk_ms) + (dur ? ' (' + crossPct + '%)' : '')),
      item('Dead air', v.silences ? secs(v.silence_ms) + ' in ' + v.silences + ', longest ' + secs(v.longest_silence_ms) : 'none'),
      item('Hold', secs(v.hold_ms)),
    ];
    items[1].classList.toggle('warn', crossPct >= 10 && dur >= 20000);
    items[2].classList.toggle('warn', deadPct >= 15 && dur >= 20000);
    ui.callSignals.replaceChildren(...items);
  }
  function tickCalls() {
    const c = convs.get(selected);
    if (c && c.call) renderCall();
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
    const frame = { type: 'close', conversation_id: c.id, resolution: ui.resolution.value };
    if (ui.note.value.trim()) frame.note = ui.note.value.trim();
    c.followUpAt = null;
    if (frame.resolution === 'follow_up') {
      // datetime-local is the agent's local time; the wire wants RFC 3339 UTC. Whether it is in the
      // future (and not too far) is the gateway's call: its refusal is shown below the form.
      const at = ui.followUpAt.value ? new Date(ui.followUpAt.value) : null;
      if (!at || isNaN(at)) {
        c.closeNote = { text: 'Choose when to get back to the customer.', error: true };
        refresh(c);
        ui.followUpAt.focus();
        return;
      }
      frame.follow_up_at = at.toISOString();
      c.followUpAt = frame.follow_up_at;
    }
    typing.stop(true);
    c.closing = true;
    c.closeNote = null;
    request('close', frame, { conv: c });
    updateControls();
    refresh(c);
  });
  ui.resolution.addEventListener('change', onResolution);
  ui.mic.addEventListener('click', () => {
    const c = convs.get(selected);
    if (mic.conv === c) micOff(); else micOn(c);
  });
  ui.hold.addEventListener('click', () => requestHold(convs.get(selected)));
  ui.clearPlayback.addEventListener('click', () => requestClear(convs.get(selected)));
  ui.audioOn.addEventListener('click', wakeAudio);
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
  onResolution();
  updateControls();
  connect();
})();

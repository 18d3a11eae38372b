// Warmline agent page: the agent side of /ws/agent. Uses ../common.js (window.Warmline).
'use strict';
(function () {
  const W = window.Warmline;
  const h = W.h;
  const TOKEN_KEY = 'warmline.agent_token';
  // The token lives in sessionStorage: this tab only, gone when it closes.
  const session = {
    load(key) { try { return sessionStorage.getItem(key); } catch (e) { return null; } },
    store(key, value) {
      try { value == null ? sessionStorage.removeItem(key) : sessionStorage.setItem(key, String(value)); } catch (e) { /* storage off */ }
    },
  };
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
    transfer: $('transfer'), transferStatus: $('transfer-status'), transferToggle: $('transfer-toggle'), transferHide: $('transfer-hide'),
    call: $('call'), callTitle: $('call-title'), callTimer: $('call-timer'), callStatus: $('call-status'),
    callControls: $('call-controls'), mic: $('mic'), hold: $('hold'), clearPlayback: $('clear-playback'),
    audioOn: $('audio-on'), clearHelp: $('clear-help'), callSignals: $('call-signals'), callHint: $('call-hint'),
    micLevel: $('call-mic-level'), mute: $('mute'),
    signin: $('signin'), signinError: $('signin-error'), app: $('app'), connection: $('connection'), connectionText: $('connection-text'),
    avatar: $('avatar'), presence: $('presence'), wrapUp: $('wrap-up'), wrapUpTimer: $('wrap-up-timer'),
    announcer: $('announcer'), alertAnnouncer: $('alert-announcer'), emptyText: $('empty-text'),
    mood: $('mood'), assist: $('assist'), coaching: $('coaching'),
    profileAvatar: $('profile-avatar'), profileTitle: $('profile-title'), profileSub: $('profile-sub'), profileFacts: $('profile-facts'),
    rtc: $('rtc'), rtcTitle: $('rtc-title'), rtcTimer: $('rtc-timer'), rtcStatus: $('rtc-status'), rtcControls: $('rtc-controls'),
    rtcMute: $('rtc-mute'), rtcHold: $('rtc-hold'), rtcHangup: $('rtc-hangup'),
  };
  const setStatus = W.statusLine($('statusline'), ui.status);

  let token = null, ws = null, ready = false, attempt = 0, retryTimer = null, reqNo = 0, offerTimer = null;
  let me = {}, agentState = 'offline', selected = null;
  let stateBeforeDrop = null; // the state when the last connection was lost (after its welcome)
  let stateSince = Date.now(); // when agentState last changed (the wrap-up timer counts from it)
  let signedIn = false;        // a welcome came on this token at least once
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
  function askToken(message, isError) {
    token = null; signedIn = false;
    session.store(TOKEN_KEY, null);
    setStatus(message, !!isError);
    ui.signinError.textContent = isError ? message : '';
    ui.signin.hidden = false;
    ui.app.hidden = true;
    ui.tokenForm.hidden = false;
    document.title = 'Sign in · Warmline agent';
    ui.tokenInput.focus();
  }
  function showApp() {
    ui.signin.hidden = true;
    ui.app.hidden = false;
  }
  // The connection badge in the top bar: connecting, live, reconnecting (with the next try), down.
  function setConnection(state, text) {
    ui.connection.dataset.state = state;
    setText(ui.connectionText, text);
  }
  function connect() {
    clearTimeout(retryTimer); clearInterval(retryCountdown);
    ui.reconnect.hidden = true;
    if (!token) return askToken('Paste your agent token to sign in.');
    showApp();
    setStatus(attempt ? 'Reconnecting…' : 'Connecting…', attempt > 0);
    setConnection(attempt ? 'reconnecting' : 'connecting', attempt ? 'Reconnecting…' : 'Connecting…');
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
    convs.forEach(refresh);
    if (signingOut) return;
    const after = W.reconnectAfter(ev);
    if (after === 'fresh_token') { // 4003: the token expired during the connection
      return askToken('Your session expired. Paste a fresh token to carry on; your conversations wait for you for a minute.', true);
    }
    if (!opened) { // handshake failed: the token was refused if the gateway is otherwise up
      fetch('/readyz', { cache: 'no-store' }).then((r) => r.ok, () => false).then((up) => {
        if (ws) return;
        if (up) askToken(signedIn ? 'Your token is no longer accepted. Paste a new one.' : 'That token was not accepted. Check it and paste it again.', true);
        else retryLater();
      });
      return;
    }
    if (after === 'yes') return retryLater();
    // The gateway refused something we sent: nothing unacknowledged goes out again by itself
    // (each such message shows Retry).
    convs.forEach((c) => c.failAll());
    if (after === 'without_resending') { // 1009: a message was too large; reconnect and resume
      retryLater();
      setStatus('Disconnected: ' + (ev.reason || 'a message was too large') + '. Reconnecting; unsent messages show Retry.', true);
      return;
    }
    setStatus('Disconnected: ' + W.refusedBy(ev) + '.', true);
    setConnection('down', 'Disconnected');
    ui.reconnect.hidden = false;
  }
  let retryCountdown = null;
  function retryLater() {
    const delay = W.backoff(attempt++), at = Date.now() + delay;
    const show = () => {
      const s = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      setConnection('reconnecting', navigator.onLine === false ? 'Offline' : s ? 'Reconnecting in ' + s + ' s' : 'Reconnecting…');
    };
    setStatus(navigator.onLine === false ? 'You are offline. Your messages wait and go out when the connection is back.'
      : 'Connection lost. Reconnecting… unsent messages go out when it is back.', true);
    ui.reconnect.hidden = false;
    show();
    clearInterval(retryCountdown);
    retryCountdown = setInterval(show, 500);
    retryTimer = setTimeout(connect, delay);
  }
  // Back online: try at once rather than wait out the backoff.
  window.addEventListener('online', () => { if (!ws && token && !signingOut && !ui.reconnect.hidden) { attempt = 0; connect(); } });

  // ---- frames from the server -------------------------------------------------------
  function handle(f) {
    const c = f.conversation_id != null ? convs.get(f.conversation_id) : null;
    const r = f.id != null ? requests.get(f.id) : null;
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'status':
        setState(f.state);
        setStatus('Status: ' + (STATES[f.state] || f.state) + reasonText(f) + '.');
        if (f.reason === 'missed_offers') announce('You were set to Away after missing offers. Set Available to take more.', true);
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
        if (f.sentiment) c.sentiment = f.sentiment;
        if (Array.isArray(f.flags)) onFlags(c, f.flags);
        refresh(c);
        break;
      case 'survey': // the customer answered the post-chat survey: their word replaces the estimate
        if (!c) break;
        c.survey = { csat: f.csat, effort: f.effort, resolved: f.resolved, comment: f.comment };
        c.info = null;
        if (c.id !== selected) announce(customerName(c) + ' answered the survey: ' + f.csat + ' of 5.');
        refresh(c);
        break;
      case 'rtc': onRtc(c, f); break;
      case 'switched': onSwitched(c, f); break;
      case 'mark': console.debug('warmline: playback reached mark', f.name, 'on', f.conversation_id); break;
      case 'transferred': onTransferred(c, f); break;
      case 'transfer_failed': onTransferFailed(c, f); break;
      case 'ack':
        requests.delete(f.id);
        if (!r) break;
        if (r.kind === 'message') { r.conv.ack(r.item, f.seq); r.conv.flags.forEach((fl) => markMessage(r.conv, fl)); }
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
        if (r && r.kind === 'rtc') { // the customer is gone, or it is not ours any more
          if (r.what === 'answer' && r.conv.rtc && r.conv.rtc.state !== 'ended') endRtc(r.conv, 'The browser call could not be answered: ' + (f.message || f.code) + '.', false);
          break;
        }
        if (!r && isAudioError(f)) break; // about a binary frame: handled there, not worth the status line
        setStatus(f.message || f.code || 'Something went wrong.', true);
        if (!r) break;
        if (r.kind === 'message') r.conv.setState(r.item, 'failed');
        if (r.kind === 'accept' || r.kind === 'reject') removeOffer(r.offerId);
        if (r.kind === 'status') setState(agentState); // put the select back
        break;
      default: // unknown frames from a newer gateway: ignored
    }
    updateControls();
  }
  function onWelcome(f) {
    me = f.agent || {}; ready = true; attempt = 0;
    const wasSignedIn = signedIn;
    signedIn = true;
    clearInterval(retryCountdown);
    ui.reconnect.hidden = true;
    showApp();
    ui.name.textContent = me.display_name || me.id || '';
    ui.name.title = me.id ? 'Signed in as ' + (me.display_name || me.id) + ' (' + me.id + ')' : '';
    ui.avatar.textContent = initials(me.display_name || me.id || '?');
    setConnection('live', 'Connected');
    setState(f.state || 'offline');
    setStatus(wasSignedIn ? 'Reconnected.' : 'Connected. ' + (f.state === 'available' ? 'Status: Available.' : 'You are away: change your status to take customers.'));
    flushRtc();
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
      endRtc(c, 'The call is no longer assigned to you.', false);
      refresh(c);
    });
    if (!selected && convs.size) select(convs.keys().next().value);
    updateEmpty();
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
    if (state !== agentState) stateSince = Date.now();
    agentState = state;
    ui.availability.value = state;
    ui.presence.dataset.state = state;
    ui.ready.hidden = ui.wrapUp.hidden = state !== 'wrap_up';
    renderWrapUp();
    updateEmpty();
    updateTitle();
  }
  // Wrap-up: the gateway does not say how long it lasts (the queue's wrap_up_ms), so the
  // timer counts up from its start; it ends by itself (status available) or with "Ready".
  function renderWrapUp() {
    if (agentState !== 'wrap_up') return;
    setText(ui.wrapUpTimer, clock(Date.now() - stateSince));
  }
  setInterval(renderWrapUp, 500);
  function updateEmpty() {
    ui.noConvs.hidden = convs.size > 0;
    ui.emptyText.replaceChildren(...(agentState === 'available' ? ['You are available. New customers appear above as offers.']
      : agentState === 'wrap_up' ? ['Wrapping up. Press ', h('strong', null, 'Ready for next'), ' when you are done.']
      : ['Set your status to ', h('strong', null, 'Available'), ' to start receiving customers.']));
  }
  // The tab title counts what waits for the agent: offers and unread messages.
  function updateTitle() {
    if (!signedIn) return;
    let unread = 0;
    convs.forEach((c) => { unread += c.unread; });
    const n = offers.size + unread + [...convs.values()].filter((c) => c.rtc && c.rtc.state === 'ringing').length;
    document.title = (n ? '(' + n + ') ' : '') + (STATES[agentState] || agentState) + ' · Warmline agent';
  }
  function initials(name) {
    const parts = String(name).trim().split(/\s+/).filter(Boolean);
    return ((parts[0] || '?')[0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
  }
  // Screen readers: polite for news (a message in another tab), assertive for what needs an answer now.
  function announce(text, urgent) {
    const el = urgent ? ui.alertAnnouncer : ui.announcer;
    el.textContent = '';
    setTimeout(() => { el.textContent = text; }, 50);
  }
  // `reason` is a code (wrap_up, wrap_up_ended, missed_offers…); the one that repeats the state says nothing.
  function reasonText(f) {
    return f.reason && f.reason !== f.state ? ' (' + String(f.reason).replace(/_/g, ' ').replace('wrap up', 'wrap-up') + ')' : '';
  }
  function requestState(state) { request('status', { type: 'status', state }, { state }); }

  // ---- offers -------------------------------------------------------------------------
  const REJECT_REASONS = [
    ['', 'No reason'], ['busy', 'Busy with another customer'], ['skill', 'Outside my skills'],
    ['language', 'Language'], ['break', 'Going on a break'], ['other', 'Other'],
  ];
  function addOffer(f) {
    removeOffer(f.offer_id);
    const cust = f.customer || {}, prev = cust.previous_conversations || 0, name = customerLabel(cust, null);
    // What the customer wrote first (the gateway sends its start): shown as text, one or two lines.
    const words = typeof f.preview === 'string' ? f.preview.replace(/\s+/g, ' ').trim() : '';
    const preview = words.length > 200 ? words.slice(0, 199) + '\u2026' : words;
    const channel = f.channel || 'chat', total = Math.max(1, f.expires_in_ms || 0);
    const countdown = h('span', { class: 'countdown', 'data-testid': 'countdown' });
    const bar = h('span', { class: 'offer-bar-fill' });
    const reasonId = 'rr-' + f.offer_id.replace(/[^A-Za-z0-9_-]/g, '_');
    const reasonSelect = h('select', { id: reasonId, class: 'reject-reason', 'data-testid': 'reject-reason' },
      ...REJECT_REASONS.map(([v, t]) => h('option', { value: v }, t)));
    const buttons = [
      h('button', { type: 'button', 'data-testid': 'accept', class: 'accept', onclick: () => answer(f.offer_id, 'accept') }, 'Accept'),
      h('button', { type: 'button', class: 'secondary', 'data-testid': 'reject', onclick: () => answer(f.offer_id, 'reject') }, 'Reject'),
    ];
    const titleId = 'ot-' + reasonId;
    const li = h('li', { class: 'offer-card', 'data-testid': 'offer', 'data-offer-id': f.offer_id, 'data-conversation-id': f.conversation_id,
      'data-channel': channel, 'data-reason': f.reason || null, role: 'group', 'aria-labelledby': titleId },
      h('div', { class: 'offer-top' },
        channelIcon(channel),
        h('div', { class: 'offer-who' },
          h('h3', { id: titleId, 'data-testid': 'offer-customer' }, name),
          h('p', { class: 'offer-sub' }, h('span', { 'data-testid': 'offer-channel' }, 'New ' + channelText(channel)),
            ' · ', h('span', { 'data-testid': 'offer-queue' }, f.queue || ''),
            ' · ', cust.returning ? 'Returning (' + prev + ' earlier)' : 'New customer')),
        h('span', { class: 'offer-timer' }, h('span', { class: 'visually-hidden' }, 'Expires in '), countdown)),
      f.reason ? h('p', { class: 'offer-reason reason-' + String(f.reason).replace(/[^a-z_]/g, ''), 'data-testid': 'offer-reason', 'data-reason': f.reason },
        OFFER_REASONS[f.reason] || String(f.reason).replace(/_/g, ' ')) : null,
      preview ? h('p', { class: 'offer-preview', 'data-testid': 'offer-preview', title: preview },
        h('span', { class: 'visually-hidden' }, 'They wrote: '), '\u201c' + preview + '\u201d') : null,
      f.note ? h('blockquote', { class: 'offer-note', 'data-testid': 'offer-note' }, h('span', { class: 'who' }, 'Note from the previous agent'), String(f.note)) : null,
      h('span', { class: 'offer-bar', 'aria-hidden': 'true' }, bar),
      h('div', { class: 'offer-actions' }, buttons[0], buttons[1],
        h('label', { for: reasonId, class: 'visually-hidden' }, 'Reason to reject'), reasonSelect));
    offers.set(f.offer_id, { li, countdown, bar, total, buttons, reasonSelect, expiresAt: Date.now() + (f.expires_in_ms || 0), conversationId: f.conversation_id });
    ui.offers.append(li);
    tick();
    if (!offerTimer) offerTimer = setInterval(tick, 250);
    announce('New ' + channelText(channel) + ' offer: ' + name + ', queue ' + (f.queue || '') + '. ' +
      (OFFER_REASONS[f.reason] ? OFFER_REASONS[f.reason] + '. ' : '') + Math.round(total / 1000) + ' seconds to answer. Alt+A accepts.', true);
    chime();
    updateTitle();
  }
  function tick() {
    const now = Date.now();
    offers.forEach((o, id) => {
      const ms = Math.max(0, o.expiresAt - now), left = Math.ceil(ms / 1000);
      setText(o.countdown, left + ' s');
      o.bar.style.width = (100 * ms / o.total).toFixed(1) + '%';
      o.li.classList.toggle('urgent', left <= 5);
      if (left === 0) o.buttons.forEach((b) => { b.disabled = true; });
      if (now > o.expiresAt + 5000) removeOffer(id); // offer_revoked should have come by now
    });
    if (!offers.size) { clearInterval(offerTimer); offerTimer = null; }
  }
  function answer(offerId, kind) {
    const o = offers.get(offerId);
    if (!o || !ready) return;
    o.buttons.forEach((b) => { b.disabled = true; });
    const frame = { type: kind, offer_id: offerId };
    if (kind === 'reject' && o.reasonSelect.value) frame.reason = o.reasonSelect.selectedOptions[0].textContent;
    request(kind, frame, { offerId });
  }
  function removeOffer(id) {
    const o = offers.get(id);
    if (!o) return;
    const hadFocus = o.li.contains(document.activeElement);
    o.li.remove(); offers.delete(id);
    if (hadFocus) focusAfterOffer();
    updateTitle();
  }
  // Focus must not fall to <body> when the offer it was on goes: the next offer, else the reply box.
  function focusAfterOffer() {
    const next = ui.offers.querySelector('button:not(:disabled)');
    if (next) next.focus();
    else if (!ui.input.disabled && !ui.composer.hidden) ui.input.focus();
  }
  // A short, soft two-note chime for a new offer; silent where audio is not allowed yet.
  let chimeCtx = null;
  function chime() {
    try {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return;
      chimeCtx = chimeCtx || new AC();
      if (chimeCtx.state !== 'running') { chimeCtx.resume().catch(() => {}); if (chimeCtx.state !== 'running') return; }
      const t = chimeCtx.currentTime;
      [[660, 0], [880, 0.16]].forEach(([freq, at]) => {
        const o = chimeCtx.createOscillator(), g = chimeCtx.createGain();
        o.frequency.value = freq; o.type = 'sine';
        g.gain.setValueAtTime(0.0001, t + at);
        g.gain.exponentialRampToValueAtTime(0.08, t + at + 0.02);
        g.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.35);
        o.connect(g).connect(chimeCtx.destination);
        o.start(t + at); o.stop(t + at + 0.4);
      });
    } catch (e) { /* no sound: the card and the announcement are enough */ }
  }
  // Channel icons (inline SVG, built with DOM calls: no markup strings).
  const ICONS = {
    chat: 'M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.5 4v-4h0A1.5 1.5 0 0 1 4 14.5z',
    voice: 'M6.6 10.8a15.2 15.2 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25 11.4 11.4 0 0 0 3.6.57 1 1 0 0 1 1 1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.57 3.57a1 1 0 0 1-.25 1z',
  };
  function channelIcon(channel, label) {
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('class', 'icon icon-' + (channel === 'voice' ? 'voice' : 'chat'));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', ICONS[channel === 'voice' ? 'voice' : 'chat']);
    svg.append(path);
    if (!label) return svg;
    return h('span', { class: 'icon-wrap' }, svg, h('span', { class: 'visually-hidden' }, label));
  }

  // ---- conversations ------------------------------------------------------------------
  function upsert(info) {
    let c = convs.get(info.conversation_id);
    if (!c) {
      const ol = h('ol', { class: 'transcript', 'data-testid': 'transcript', role: 'log', 'aria-live': 'polite', 'aria-label': 'Transcript' });
      c = new W.Transcript(info.conversation_id, ol, (t, item) =>
        ready && request('message', { type: 'message', conversation_id: t.id, text: item.text, client_msg_id: item.clientMsgId }, { conv: t, item }));
      Object.assign(c, { closed: false, gone: false, closing: false, unread: 0, draft: '', typing: false,
        transferring: null, transferred: null, transferNote: null, moved: null, call: null, rtc: null,
        info: null, closeNote: null, followUpAt: null, sentiment: null, flags: [], hints: [], survey: null, transferOpen: false });
      c.tabId = 'tab-' + c.id.replace(/[^A-Za-z0-9_-]/g, '_');
      c.btn = h('button', { type: 'button', role: 'tab', id: c.tabId, 'aria-selected': 'false', 'aria-controls': 'panel', tabindex: '-1',
        class: 'tab', 'data-testid': 'conversation-item', 'data-conversation-id': c.id, onclick: () => select(c.id) });
      c.item = h('li', { role: 'presentation' }, c.btn);
      ui.list.append(c.item);
      convs.set(c.id, c);
      updateEmpty();
    }
    // `welcome` (page load, reconnect) and `conversation` (accept) both carry the context,
    // history and repeat contact; the cards are built again only when something changed,
    // so an expanded earlier transcript stays expanded across a reconnect.
    let changed = false;
    for (const k of ['channel', 'queue', 'state', 'customer', 'attributes', 'history', 'repeat_of']) {
      if (info[k] === undefined) continue;
      if (['attributes', 'history', 'repeat_of', 'customer'].includes(k) && JSON.stringify(info[k]) !== JSON.stringify(c[k])) changed = true;
      c[k] = info[k];
    }
    if (changed) c.info = null; // built again when shown
    refresh(c);
    return c;
  }
  // How the customer is named: the name the gateway gives (verified, or typed in the widget),
  // else the name in the context, else "Visitor" and the end of their id: never a raw id.
  function customerLabel(cust, attrs) {
    cust = cust || {};
    const id = typeof cust.id === 'string' ? cust.id : '';
    const rawId = (s) => !s || s === id || /^[0-9a-f]{12,}$/i.test(s) || /^[0-9a-f-]{32,}$/i.test(s);
    const dn = typeof cust.display_name === 'string' ? cust.display_name.trim() : '';
    if (dn && !rawId(dn)) return dn;
    const given = attrs && typeof attrs.name === 'string' ? attrs.name.trim().slice(0, 64) : '';
    if (given && !rawId(given)) return given;
    const tail = id.replace(/[^A-Za-z0-9]/g, '').slice(-4);
    return tail ? 'Visitor ' + tail : 'Customer';
  }
  function customerName(c) { return customerLabel(c.customer, c.attributes); }
  function stateText(c) {
    return c.transferred ? 'transferred' : c.moved ? 'moved to another agent' : c.gone ? 'no longer yours'
      : c.closed ? 'closed' : (c.state || '');
  }
  // The wire's channel, in the words agents use.
  function channelText(channel) { return channel === 'voice' ? 'call' : channel; }
  // Still this agent's to work on: not closed, not handed over.
  function isOpen(c) { return !!c && !c.closed && !c.transferred && !c.moved; }
  // Re-renders the tab, and the panel if this conversation is the selected one.
  function refresh(c) {
    renderTab(c);
    updateEmpty();
    updateTitle();
    if (c.id !== selected) return;
    ui.title.textContent = customerName(c);
    ui.meta.replaceChildren(channelIcon(c.channel), ' ' + [channelText(c.channel), c.queue && 'queue ' + c.queue, stateText(c)].filter(Boolean).join(' · '));
    renderProfile(c);
    if (!c.info) c.info = buildInfo(c);
    if (ui.infoSlot.firstElementChild !== c.info) ui.infoSlot.replaceChildren(c.info);
    ui.typing.textContent = c.typing ? customerName(c) + ' is typing…' : '';
    ui.closedText.textContent = c.transferred ? transferredText(c.transferred) : c.moved ? movedText(c.moved)
      : c.gone ? 'This conversation is no longer assigned to you.' : (c.closedText || 'This conversation is closed.');
    renderMood(c);
    renderCoaching(c);
    renderTransfer(c);
    renderClose(c);
    renderCall();
    renderRtc();
  }
  // A tab: channel icon, the customer's name, unread badge, call/ringing pill, state.
  function renderTab(c) {
    const on = c.id === selected;
    c.btn.setAttribute('aria-selected', String(on));
    c.btn.setAttribute('aria-current', String(on)); // kept for older tools that looked for it
    c.btn.tabIndex = on ? 0 : -1;
    const onCall = callLive(c), ringing = c.rtc && c.rtc.state === 'ringing', rtcLive = rtcActive(c);
    c.btn.dataset.state = !isOpen(c) ? 'done' : 'open';
    c.btn.dataset.channel = c.channel || 'chat';
    const sub = [channelText(c.channel), c.queue, isOpen(c) ? (c.state === 'active' ? '' : c.state) : stateText(c)].filter(Boolean).join(' · ');
    fill(c.btn,
      channelIcon(c.channel, channelText(c.channel || 'chat')),
      h('span', { class: 'tab-text' },
        h('span', { class: 'tab-name', 'data-testid': 'tab-name' }, customerName(c)),
        h('span', { class: 'sub' }, sub)),
      c.sentiment && isOpen(c) ? h('span', { class: 'tab-mood mood-' + moodOf(c.sentiment).key, title: 'Mood: ' + moodOf(c.sentiment).label },
        h('span', { class: 'visually-hidden' }, 'Mood ' + moodOf(c.sentiment).label)) : null,
      ringing ? h('span', { class: 'call-pill ring', 'data-testid': 'ringing-pill' }, 'Ringing') : null,
      onCall || rtcLive ? h('span', { class: 'call-pill' + ((onCall ? c.call.onHold : c.rtc.onHold) ? ' hold' : ''), 'data-testid': 'call-pill' },
        (onCall ? c.call.onHold : c.rtc.onHold) ? 'On hold' : 'Live call') : null,
      c.unread ? h('span', { class: 'badge', 'data-testid': 'unread' }, String(c.unread),
        h('span', { class: 'visually-hidden' }, ' unread')) : null,
      c.typing && !on ? h('span', { class: 'tab-typing', title: 'Typing' }, h('span', { class: 'visually-hidden' }, 'typing'), h('i'), h('i'), h('i')) : null);
  }
  function renderProfile(c) {
    const cust = c.customer || {};
    const name = customerName(c);
    ui.profileAvatar.textContent = initials(name);
    ui.profileAvatar.dataset.hue = String(hueOf(cust.id || name));
    ui.profileTitle.textContent = name;
    const prev = cust.previous_conversations;
    ui.profileSub.textContent = cust.returning ? 'Returning customer' + (prev ? ' · ' + prev + ' earlier conversation' + (prev === 1 ? '' : 's') : '')
      : (cust.returning === false ? 'New customer' : '');
    const facts = [];
    const add = (k, v, cls) => { if (v != null && v !== '') facts.push(h('dt', null, k), h('dd', { class: cls || null }, String(v))); };
    add('Email', cust.email);
    add('Channel', channelText(c.channel || ''));
    add('Queue', c.queue);
    if (c.survey) add('Customer\u2019s rating', c.survey.csat + ' of 5 (their answer)');
    else if (c.sentiment) add('Satisfaction (est.)', fmt1(c.sentiment.overall) + ' of 5');
    // The id is for looking the customer up elsewhere: copied, not shown.
    if (cust.id) {
      facts.push(h('dt', null, 'Customer id'), h('dd', null, h('button', { type: 'button', class: 'ghost small', 'data-testid': 'copy-customer-id',
        onclick: (ev) => {
          const b = ev.currentTarget;
          const done = () => { b.textContent = 'Copied'; setTimeout(() => { b.textContent = 'Copy'; }, 1500); };
          if (navigator.clipboard) navigator.clipboard.writeText(String(cust.id)).then(done, () => { b.textContent = 'Copy failed'; });
          else b.textContent = 'Copy unavailable here'; // the clipboard needs https (or localhost)
        } }, 'Copy')));
    }
    ui.profileFacts.replaceChildren(...facts);
  }
  // replaceChildren without the nulls of optional parts (replaceChildren would write "null").
  function fill(el, ...kids) { el.replaceChildren(...kids.filter((k) => k != null && k !== false)); }
  function hueOf(s) { let x = 0; for (const ch of String(s)) x = (x * 31 + ch.charCodeAt(0)) % 360; return Math.round(x / 45) * 45 % 360; }
  function fmt1(x) { return typeof x === 'number' && isFinite(x) ? x.toFixed(1) : '–'; }
  function select(id, focusTab) {
    const prev = convs.get(selected);
    if (prev && prev.id !== id) { prev.draft = ui.input.value; typing.stop(true); }
    const changed = selected !== id;
    selected = id;
    const c = convs.get(id);
    convs.forEach((x) => renderTab(x));
    ui.panel.hidden = !c;
    if (c) {
      ui.panel.setAttribute('aria-labelledby', c.tabId);
      c.unread = 0;
      if (ui.slot.firstElementChild !== c.ol) ui.slot.replaceChildren(c.ol);
      if (changed) ui.input.value = c.draft;
      refresh(c);
      c.scroll();
      if (focusTab) c.btn.focus();
    }
    updateControls();
    updateTitle();
  }
  // Tabs: arrow keys move between them (and select), Home/End go to the ends (APG tabs pattern).
  ui.list.addEventListener('keydown', (ev) => {
    const tabs = [...ui.list.querySelectorAll('[role="tab"]')];
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (ev.key === 'ArrowRight' || ev.key === 'ArrowDown') j = (i + 1) % tabs.length;
    else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowUp') j = (i - 1 + tabs.length) % tabs.length;
    else if (ev.key === 'Home') j = 0;
    else if (ev.key === 'End') j = tabs.length - 1;
    else if (ev.key === 'Delete' && !isOpen(convs.get(tabs[i].dataset.conversationId))) { ev.preventDefault(); dismiss(tabs[i].dataset.conversationId); return; }
    if (j == null) return;
    ev.preventDefault();
    select(tabs[j].dataset.conversationId, true);
  });
  // Shortcuts: Alt+1..9 pick a tab, Alt+A accepts the oldest offer, Alt+R jumps to the reply box.
  document.addEventListener('keydown', (ev) => {
    if (!ev.altKey || ev.ctrlKey || ev.metaKey || ui.app.hidden) return;
    const digit = /^Digit([1-9])$/.exec(ev.code);
    if (digit) {
      const tabs = [...ui.list.querySelectorAll('[role="tab"]')], t = tabs[Number(digit[1]) - 1];
      if (t) { ev.preventDefault(); select(t.dataset.conversationId, true); }
    } else if (ev.code === 'KeyA') {
      const first = offers.keys().next();
      const ringing = [...convs.values()].find((c) => c.rtc && c.rtc.state === 'ringing');
      if (!first.done) { ev.preventDefault(); answer(first.value, 'accept'); }
      else if (ringing) { ev.preventDefault(); answerRtc(ringing); }
    } else if (ev.code === 'KeyR') {
      if (!ui.input.disabled && !ui.composer.hidden) { ev.preventDefault(); ui.input.focus(); }
    }
  });
  function updateControls() {
    ui.availability.disabled = !ready;
    const c = convs.get(selected), open = isOpen(c);
    ui.composer.hidden = ui.closeForm.hidden = !open;
    // The transfer form stays folded away until asked for (per conversation), or while one is under way.
    const showTransfer = open && (c.transferOpen || !!c.transferring || !!c.transferNote);
    ui.transferForm.hidden = !showTransfer;
    ui.transferToggle.setAttribute('aria-expanded', String(showTransfer));
    ui.transferToggle.classList.toggle('pressed', showTransfer);
    ui.closed.hidden = !c || open;
    ui.input.disabled = ui.send.disabled = !open;
    ui.close.disabled = !open || !ready || c.closing;
    ui.transfer.disabled = !open || !ready || c.closing || !!c.transferring;
    renderCall();
    renderRtc();
  }

  // A transcript event as a list item (the live transcript, and the earlier one of a repeat contact).
  function eventItem(f) {
    if (f.type === 'message') {
      const s = f.sender || {}, own = s.role === 'agent' && s.id === me.id;
      const li = W.messageItem(own ? 'mine' : (s.role || 'system'), own ? 'You' : (s.display_name || s.role || 'System'), String(f.text == null ? '' : f.text), f.ts);
      li.dataset.role = String(s.role || 'system');
      if (own) li.dataset.mine = 'true';
      return li;
    }
    if (f.type === 'assigned') {
      const a = f.agent || {};
      return h('li', { class: 'event', 'data-testid': 'event', 'data-event': 'assigned' }, (a.id === me.id ? 'You' : (a.display_name || 'An agent')) + ' joined the conversation.');
    }
    return h('li', { class: 'event', 'data-testid': 'event', 'data-event': 'closed' }, closedLine(f));
  }
  function closedLine(f) {
    return 'Closed by ' + (f.by || 'someone') + (f.resolution ? ' (' + resolutionText(f.resolution).toLowerCase() + ')' : '') + '.';
  }
  function addEvent(c, f) {
    if (!c.isNew(f)) return; // dedupe by seq
    const li = eventItem(f);
    if (f.type === 'message') {
      if ((f.sender || {}).role === 'customer') {
        showTyping(c, false);
        if (c.id !== selected && c.live) {
          c.unread++;
          announce('New message from ' + customerName(c) + ' (tab ' + tabNumber(c) + ').');
        }
      }
    } else if (f.type === 'closed') {
      c.closedText = closedLine(f) + (f.resolution === 'follow_up' && c.followUpAt
        ? ' You get back to them ' + whenText(c.followUpAt) + '.' : '');
      c.closed = true; c.closing = false; c.typing = false;
      endCall(c, f.by === 'customer' ? 'The caller hung up.' : 'The call ended.');
      endRtc(c, f.by === 'customer' ? 'The customer left.' : 'The call ended.', false);
      if (f.by === 'customer' && c.id !== selected) announce(customerName(c) + ' ended the conversation.');
      c.transferring = null; // closing ends a warm transfer under way (the server sends no transfer_failed)
      if (c.id === selected) typing.stop(true);
    }
    c.add(li, f.seq);
    c.flags.forEach((fl) => { if (fl.seq === f.seq) markMessage(c, fl); });
    refresh(c);
  }
  function tabNumber(c) { return [...convs.keys()].indexOf(c.id) + 1; }
  function showTyping(c, on) {
    clearTimeout(c.typingTimer);
    c.typing = on;
    if (on) c.typingTimer = setTimeout(() => showTyping(c, false), 8000); // in case "off" is lost
    if (c.id === selected) ui.typing.textContent = on ? customerName(c) + ' is typing…' : '';
    else renderTab(c);
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
    if (c.survey) panels.unshift(surveyPanel(c));
    const rows = contextRows(attrs);
    if (rows.length) {
      panels.push(h('section', { class: 'card', 'data-testid': 'context', 'aria-labelledby': 'ctx-' + c.id },
        h('h3', { id: 'ctx-' + c.id }, 'Context'),
        h('dl', { class: 'kv' }, ...rows)));
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
  // The context card's rows: the page the customer came from (the widget sends its title and
  // address), what they typed in the pre-chat form, then anything else an IVR or a bot attached.
  const CONTEXT_LABELS = { name: 'Name', email: 'Email', topic: 'Topic', intent: 'Intent', account_number: 'Account number' };
  const CONTEXT_HIDDEN = new Set(['page_title', 'page_url', 'follow_up_of', 'call_sid', 'stream_sid']);
  function contextRows(attrs) {
    const rows = [];
    const title = typeof attrs.page_title === 'string' ? attrs.page_title.trim() : '';
    const url = typeof attrs.page_url === 'string' ? attrs.page_url.trim() : '';
    if (title || url) {
      rows.push(h('dt', null, 'Came from'), h('dd', { 'data-testid': 'context-page' },
        title ? h('span', { class: 'page-title' }, title) : null,
        url ? h('span', { class: 'page-url', 'data-testid': 'context-page-url' }, url) : null));
    }
    for (const k of Object.keys(attrs)) {
      if (CONTEXT_HIDDEN.has(k) || attrs[k] == null || attrs[k] === '') continue;
      rows.push(h('dt', null, CONTEXT_LABELS[k] || k.replace(/_/g, ' ')), h('dd', null, valueText(attrs[k])));
    }
    return rows;
  }
  // The customer's own answer to the post-chat survey (it came after the close).
  function surveyPanel(c) {
    const sv = c.survey, id = 'sv-' + c.id;
    const effort = typeof sv.effort === 'number' ? sv.effort + ' of 7 (1: very easy)' : null;
    return h('section', { class: 'card survey-answer', 'data-testid': 'survey-answer', 'aria-labelledby': id },
      h('h3', { id }, 'The customer\u2019s answer'),
      h('dl', { class: 'kv' },
        h('dt', null, 'CSAT'), h('dd', { 'data-testid': 'survey-csat' }, sv.csat + '/5'),
        h('dt', null, 'Resolved'), h('dd', { 'data-testid': 'survey-resolved' }, sv.resolved === true ? 'Yes' : sv.resolved === false ? 'No' : 'Not answered'),
        effort ? h('dt', null, 'Effort') : null, effort ? h('dd', null, effort) : null),
      typeof sv.comment === 'string' && sv.comment.trim()
        ? h('p', { class: 'comment', 'data-testid': 'survey-comment' }, '\u201c' + sv.comment.trim() + '\u201d') : null);
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

  // ---- live mood and coaching (signals) ----------------------------------------------------
  // Sentiment: the customer's mood after their latest message that said something. The label
  // and colour are that message's own (`label`: the gateway's rule over its estimate,
  // sentiment and cues, docs/protocol.md), never the conversation's average, which stays
  // near neutral for a while. The arrow is `direction`: this message against the earlier ones.
  // (An older gateway sends no label: the message's own estimate then sets it.)
  const MOODS = {
    negative: { key: 'negative', label: 'Unhappy' },
    neutral: { key: 'neutral', label: 'Neutral' },
    positive: { key: 'positive', label: 'Happy' },
  };
  function moodOf(sn) {
    if (MOODS[sn.label]) return MOODS[sn.label];
    const x = typeof sn.estimate === 'number' ? sn.estimate : sn.overall;
    return x < 2.5 ? MOODS.negative : x < 3.5 ? MOODS.neutral : MOODS.positive;
  }
  const DIRECTIONS = { improving: ['↗', 'improving'], worsening: ['↘', 'getting worse'], steady: ['→', 'steady'] };
  function directionOf(sn) {
    if (DIRECTIONS[sn.direction]) return DIRECTIONS[sn.direction];
    const t = typeof sn.trend === 'number' ? sn.trend : 0;
    return DIRECTIONS[t >= 0.25 ? 'improving' : t <= -0.25 ? 'worsening' : 'steady'];
  }
  const CUES = {
    reject: 'said no', correction: 'corrected you', decline: 'declined', alternative: 'wants something else',
    soft_correction: 'redirected', persist: 'problem persists', repeat: 'repeating themselves', complaint: 'complaint',
    gave_up: 'gave up', shouting: 'shouting', agent_failure: 'task went badly', closing: 'wrapping up',
    positive_sentiment: 'positive words', negative_sentiment: 'negative words',
  };
  function renderMood(c) {
    const sn = c.sentiment;
    ui.mood.hidden = !sn && !c.survey;
    if (c.survey) { // the customer's own word replaces every estimate
      const sv = c.survey, key = sv.csat >= 4 ? 'positive' : sv.csat <= 2 ? 'negative' : 'neutral';
      ui.mood.dataset.mood = key;
      ui.mood.dataset.seq = '';
      ui.mood.dataset.direction = 'answered';
      fill(ui.mood,
        h('span', { class: 'mood-dot', 'aria-hidden': 'true' }),
        h('span', { class: 'mood-label', 'data-testid': 'mood-label' }, 'Customer\u2019s answer'),
        h('span', { class: 'mood-score', 'data-testid': 'mood-answer' }, sv.csat + '/5'));
      ui.mood.title = 'The customer answered the survey: ' + sv.csat + ' of 5';
      return;
    }
    if (!sn) return;
    const m = moodOf(sn), [arrow, trendWord] = directionOf(sn);
    const first = typeof sn.before !== 'number';
    const trendText = first ? 'first message that said something' : trendWord + ' since the earlier messages (' + fmt1(sn.before) + ' → ' + fmt1(sn.estimate) + ')';
    const cues = (Array.isArray(sn.cues) ? sn.cues : []).map((k) => CUES[k] || String(k).replace(/_/g, ' '));
    ui.mood.dataset.mood = m.key;
    ui.mood.dataset.seq = String(sn.seq);
    ui.mood.dataset.direction = first ? 'first' : (sn.direction || trendWord);
    fill(ui.mood,
      h('span', { class: 'mood-dot', 'aria-hidden': 'true' }),
      h('span', { class: 'mood-label', 'data-testid': 'mood-label' }, m.label),
      h('span', { class: 'mood-score', title: 'Estimated satisfaction of the latest message (1-5; below 2.5 is dissatisfied). Conversation so far: ' + fmt1(sn.overall) + ' of 5' },
        'last message ' + fmt1(sn.estimate) + '/5'),
      first ? null : h('span', { class: 'mood-trend', 'data-testid': 'mood-trend', title: 'Compared with the earlier messages: ' + trendText }, arrow + ' ' + trendWord),
      cues.length ? h('span', { class: 'mood-cues' }, cues.join(', ')) : null);
    ui.mood.title = 'Customer mood after message ' + sn.seq + ': ' + m.label + ' (satisfaction estimate of that message ' + fmt1(sn.estimate) + ' of 5); ' + trendText;
  }
  // Coaching flags arrive right after the message they are about; the latest few stay beside the
  // composer (dismissable), and the message itself gets a small marker.
  // `flags` (the latest 50) mark messages; `hints` (one per code, newest first, with how many
  // times it came) are what the coaching area shows, so a repeated hint does not pile up.
  function onFlags(c, flags) {
    for (const fl of flags) {
      if (!fl || typeof fl !== 'object') continue;
      const item = { code: String(fl.code || ''), seq: fl.seq, hint: String(fl.hint || ''), positive: !!fl.positive, at: Date.now() };
      const seen = c.flags.some((x) => x.code === item.code && x.seq === item.seq);
      c.flags = c.flags.filter((x) => !(x.code === item.code && x.seq === item.seq));
      c.flags.push(item);
      markMessage(c, item);
      if (!seen) {
        const had = c.hints.find((x) => x.code === item.code);
        c.hints = [Object.assign(item, { count: had ? had.count + 1 : 1 }), ...c.hints.filter((x) => x !== had)].slice(0, 5);
      }
      if (!item.positive && c.id === selected) announce('Coaching: ' + item.hint);
    }
    c.flags = c.flags.slice(-50);
  }
  function markMessage(c, fl) {
    const li = [...c.ol.children].find((k) => k.dataset.seq === String(fl.seq));
    if (!li || li.querySelector('.flag[data-code="' + CSS.escape(fl.code) + '"]')) return;
    const meta = li.querySelector('.meta') || li;
    meta.append(h('span', { class: 'flag ' + (fl.positive ? 'good' : 'bad'), 'data-code': fl.code, 'data-testid': 'message-flag', title: fl.hint },
      fl.positive ? '✓ ' : '! ', fl.code.replace(/_/g, ' ')));
  }
  function renderCoaching(c) {
    const open = isOpen(c);
    ui.assist.hidden = !open || !c.hints.length;
    if (ui.assist.hidden) return;
    ui.coaching.replaceChildren(...c.hints.map((fl) =>
      h('li', { class: 'hint ' + (fl.positive ? 'good' : 'bad'), 'data-testid': 'coaching-hint', 'data-code': fl.code, 'data-positive': String(fl.positive), 'data-count': String(fl.count) },
        h('span', { class: 'hint-icon', 'aria-hidden': 'true' }, fl.positive ? '✓' : '!'),
        h('span', { class: 'hint-text' }, fl.hint || fl.code.replace(/_/g, ' ')),
        fl.count > 1 ? h('span', { class: 'hint-count', 'data-testid': 'coaching-count', title: fl.count + ' times in this conversation' }, '×' + fl.count) : null,
        h('button', { type: 'button', class: 'hint-x', 'aria-label': 'Dismiss hint', 'data-testid': 'coaching-dismiss',
          onclick: () => { c.hints = c.hints.filter((x) => x !== fl); refresh(c); if (!ui.input.disabled) ui.input.focus(); } }, '×'))));
  }

  // ---- closing ----------------------------------------------------------------------------
  function onResolution() {
    const followUp = ui.resolution.value === 'follow_up';
    ui.followUpField.hidden = ui.followUpHelp.hidden = !followUp;
    ui.noteLabel.textContent = followUp ? 'Note for the customer (optional)' : 'Note (optional)';
    ui.note.placeholder = ui.noteLabel.textContent;
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
    endRtc(c, 'The call was transferred.', false);
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
      handle: num, startedAt: Date.now(), endedAt: 0, endText: '', onHold: false, holdPending: null, muted: false,
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
      endRtc(c, 'The call moved to another agent.', false);
      c.moved = { channel: f.channel };
      c.typing = false;
      if (c.id === selected) typing.stop(false);
      setStatus(name + ': ' + movedText(c.moved));
    } else if (f.media) {
      startCall(c, f.media, false);
      setStatus(name + ' is now on a phone call with you.');
    } else if (f.channel === 'voice') { // no phone leg: a browser call follows over rtc (see onRtc)
      setStatus(name + ' switched to voice; their browser call rings here in a moment.');
    } else {
      endCall(c, 'The call ended; the conversation carries on in chat.');
      endRtc(c, 'The call ended; the conversation carries on in chat.', false);
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
    return callLive(c) && !c.call.onHold && !c.call.muted && c.call.holdPending !== true && ready && !!ws && ws.readyState === WebSocket.OPEN;
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
    if (call.muted && mic.conv === c) return 'Muted: the caller cannot hear you. You still hear them.';
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
    setText(ui.mute, call.muted ? 'Unmute' : 'Mute');
    ui.mute.setAttribute('aria-pressed', String(!!call.muted));
    ui.mute.classList.toggle('pressed', !!call.muted);
    ui.mute.disabled = !live;
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

  // ---- browser calls (WebRTC, signalled with rtc frames) --------------------------------------
  // The customer's browser calls the agent; the gateway relays `rtc` payloads as they are:
  //   customer -> agent: {type:'offer', sdp}, {type:'candidate', candidate}, {type:'hangup'}
  //   agent -> customer: {type:'answer', sdp}, {type:'candidate', candidate: RTCIceCandidate.toJSON()},
  //                      {type:'hangup'}, and, informational, {type:'hold', on}
  // An offer rings (a card at the top, announced); the answer goes out only when the agent
  // presses Answer, so the microphone never opens without them. A new offer during a live call
  // (the customer renegotiating, an ICE restart) is answered at once. No STUN/TURN by default:
  // set window.WARMLINE_ICE_SERVERS before this script to add some.
  // Per conversation, `rtc` is {state: ringing|connecting|live|ended, offerSdp, candidates, pc,
  // stream, audio, muted, onHold, ringingSince, startedAt, endedAt, endText, message, card}.
  const RTC_CONFIG = { iceServers: Array.isArray(window.WARMLINE_ICE_SERVERS) ? window.WARMLINE_ICE_SERVERS : [] };
  const rtcOutbox = []; // rtc frames that could not go out while the socket was down
  let rtcTicker = null;
  function rtcActive(c) { return !!(c && c.rtc && (c.rtc.state === 'connecting' || c.rtc.state === 'live')); }
  function sendRtc(c, payload) {
    const frame = { type: 'rtc', conversation_id: c.id, payload };
    const sent = payload.type === 'candidate' ? send(frame) : request('rtc', frame, { conv: c, what: payload.type });
    if (!sent) { delete frame.id; rtcOutbox.push(frame); }
  }
  function flushRtc() {
    const frames = rtcOutbox.splice(0);
    frames.forEach((fr) => { const c = convs.get(fr.conversation_id); if (c && c.rtc && (rtcActive(c) || fr.payload.type === 'hangup')) send(fr); });
  }
  function onRtc(c, f) {
    if (!c || f.from === 'agent') return;
    const p = f.payload && typeof f.payload === 'object' ? f.payload : {};
    const r = c.rtc;
    if (p.type === 'offer' && typeof p.sdp === 'string') {
      if (rtcActive(c) && r.pc) { renegotiate(c, r, p.sdp); return; }
      if (r && r.state === 'ringing') { r.offerSdp = p.sdp; r.candidates = []; return; } // the customer tried again: ring on with it
      if (!isOpen(c)) { send({ type: 'rtc', conversation_id: c.id, payload: { type: 'hangup' } }); return; }
      ring(c, p.sdp);
    } else if (p.type === 'candidate') {
      if (!r || r.state === 'ended' || !p.candidate) return;
      if (r.pc && r.pc.remoteDescription) r.pc.addIceCandidate(p.candidate).catch((e) => console.debug('warmline: candidate refused', e));
      else r.candidates.push(p.candidate);
    } else if (p.type === 'hangup') {
      if (!r || r.state === 'ended') return;
      const missed = r.state === 'ringing';
      endRtc(c, missed ? 'Missed browser call: the customer hung up before you answered.' : 'The customer hung up.', false);
      announce(customerName(c) + (missed ? ' stopped calling.' : ' hung up.'));
    }
  }
  function ring(c, sdp) {
    endRtc(c, '', false);
    const r = c.rtc = { state: 'ringing', offerSdp: sdp, candidates: [], pc: null, stream: null, audio: null, muted: false, onHold: false,
      ringingSince: Date.now(), startedAt: 0, endedAt: 0, endText: '', message: null, card: null };
    const elapsed = h('span', { class: 'countdown', 'data-testid': 'rtc-ringing-time' }, '0:00');
    const titleId = c.tabId + '-ring';
    r.card = h('li', { class: 'offer-card ringing', 'data-testid': 'rtc-incoming', 'data-conversation-id': c.id, role: 'group', 'aria-labelledby': titleId },
      h('div', { class: 'offer-top' }, channelIcon('voice'),
        h('div', { class: 'offer-who' },
          h('h3', { id: titleId }, customerName(c)),
          h('p', { class: 'offer-sub' }, 'Incoming browser call · ' + (c.queue || ''))),
        h('span', { class: 'offer-timer' }, h('span', { class: 'visually-hidden' }, 'Ringing for '), elapsed)),
      h('p', { class: 'offer-reason' }, 'Your customer wants to talk: their browser is calling you.'),
      h('div', { class: 'offer-actions' },
        h('button', { type: 'button', class: 'accept', 'data-testid': 'rtc-answer', onclick: () => answerRtc(c) }, 'Answer'),
        h('button', { type: 'button', class: 'danger', 'data-testid': 'rtc-decline', onclick: () => { endRtc(c, 'You declined the browser call.', true); focusAfterOffer(); } }, 'Decline')));
    r.card.elapsed = elapsed;
    ui.offers.prepend(r.card);
    announce('Incoming browser call from ' + customerName(c) + '. Alt+A answers.', true);
    chime();
    startRtcTicker();
    refresh(c);
  }
  function micErrorText(e) {
    return e && e.name === 'NotAllowedError' ? 'Microphone blocked: allow it for this site.'
      : e && e.name === 'NotFoundError' ? 'No microphone found.'
      : 'The microphone could not start (' + ((e && (e.message || e.name)) || 'unknown error') + ').';
  }
  async function answerRtc(c) {
    const r = c && c.rtc;
    if (!r || r.state !== 'ringing') return;
    if (!window.RTCPeerConnection) { endRtc(c, 'This browser cannot take browser calls.', true); return; }
    r.state = 'connecting';
    if (r.card) { const had = r.card.contains(document.activeElement); r.card.remove(); r.card = null; if (had) focusAfterOffer(); }
    // One call in the agent's ears at a time: other browser calls go on hold.
    convs.forEach((x) => { if (x !== c && rtcActive(x) && !x.rtc.onHold) setRtcHold(x, true); });
    select(c.id);
    let stream = null;
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw Object.assign(new Error('needs https'), { name: 'NotSupportedError' });
      stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
    } catch (e) {
      r.message = { text: micErrorText(e) + ' The customer cannot hear you; you can hear them.', error: true };
    }
    if (c.rtc !== r || r.state === 'ended') { if (stream) stream.getTracks().forEach((t) => t.stop()); return; }
    r.stream = stream;
    const pc = r.pc = new RTCPeerConnection(RTC_CONFIG);
    pc.onicecandidate = (ev) => { if (ev.candidate && c.rtc === r && r.state !== 'ended') sendRtc(c, { type: 'candidate', candidate: ev.candidate.toJSON() }); };
    pc.ontrack = (ev) => {
      if (!r.audio) { r.audio = h('audio', { autoplay: '', 'data-testid': 'rtc-audio' }); document.body.append(r.audio); }
      r.audio.srcObject = (ev.streams && ev.streams[0]) || new MediaStream([ev.track]);
      applyRtcTracks(r);
      r.audio.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => onRtcState(c, r);
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp: r.offerSdp });
      if (stream) stream.getAudioTracks().forEach((t) => pc.addTrack(t, stream));
      const queued = r.candidates.splice(0);
      for (const cand of queued) await pc.addIceCandidate(cand).catch(() => {});
      await pc.setLocalDescription(await pc.createAnswer());
      if (c.rtc !== r || r.state === 'ended') return;
      sendRtc(c, { type: 'answer', sdp: pc.localDescription.sdp });
      applyRtcTracks(r);
    } catch (e) {
      endRtc(c, 'The browser call could not connect (' + ((e && (e.message || e.name)) || 'error') + ').', true);
    }
    refresh(c);
  }
  async function renegotiate(c, r, sdp) {
    try {
      await r.pc.setRemoteDescription({ type: 'offer', sdp });
      await r.pc.setLocalDescription(await r.pc.createAnswer());
      if (c.rtc === r && r.state !== 'ended') sendRtc(c, { type: 'answer', sdp: r.pc.localDescription.sdp });
    } catch (e) { console.debug('warmline: renegotiation failed', e); }
  }
  function onRtcState(c, r) {
    if (c.rtc !== r || r.state === 'ended') return;
    const st = r.pc.connectionState;
    if (st === 'connected') {
      if (r.state !== 'live') { r.state = 'live'; r.startedAt = r.startedAt || Date.now(); announce('Browser call connected with ' + customerName(c) + '.'); }
      if (r.message && !r.message.error) r.message = null;
      if (r.message && r.message.unstable) r.message = null;
    } else if (st === 'disconnected') {
      r.message = { text: 'The call connection is unstable; trying to recover…', error: true, unstable: true };
    } else if (st === 'failed') {
      endRtc(c, 'The call connection failed (network). Ask the customer to call again.', true);
      return;
    }
    refresh(c);
  }
  function applyRtcTracks(r) {
    if (r.stream) r.stream.getAudioTracks().forEach((t) => { t.enabled = !r.muted && !r.onHold; });
    if (r.audio) r.audio.muted = r.onHold;
  }
  function setRtcHold(c, on) {
    const r = c.rtc;
    if (!rtcActive(c) || r.onHold === on) return;
    r.onHold = on;
    applyRtcTracks(r);
    sendRtc(c, { type: 'hold', on });
    refresh(c);
  }
  // Ends the browser call here; `notify`: tell the customer (hangup) too.
  function endRtc(c, text, notify) {
    const r = c && c.rtc;
    if (!r || r.state === 'ended') return;
    if (notify) sendRtc(c, { type: 'hangup' });
    r.state = 'ended';
    r.endedAt = Date.now();
    r.endText = text;
    if (!text) c.rtc = null; // replaced or dismissed: nothing left to show
    if (r.card) { r.card.remove(); r.card = null; }
    if (r.pc) { try { r.pc.close(); } catch (e) { /* closed */ } }
    if (r.stream) r.stream.getTracks().forEach((t) => t.stop());
    if (r.audio) { r.audio.srcObject = null; r.audio.remove(); r.audio = null; }
    refresh(c);
  }
  function startRtcTicker() {
    if (rtcTicker) return;
    rtcTicker = setInterval(() => {
      let any = false;
      convs.forEach((c) => {
        const r = c.rtc;
        if (!r || r.state === 'ended') return;
        any = true;
        if (r.state === 'ringing' && r.card) {
          setText(r.card.elapsed, clock(Date.now() - r.ringingSince));
          if (Date.now() - r.ringingSince > 90000) endRtc(c, 'Missed browser call (nobody answered).', true);
        }
      });
      renderRtc();
      if (!any) { clearInterval(rtcTicker); rtcTicker = null; }
    }, 500);
  }
  function renderRtc() {
    const c = convs.get(selected), r = c && c.rtc;
    const show = !!r && r.state !== 'ringing' && !(r.state === 'ended' && !r.endText);
    ui.rtc.hidden = !show;
    if (!show) return;
    const active = rtcActive(c);
    ui.rtc.dataset.state = !active ? 'ended' : r.onHold ? 'hold' : r.state === 'live' ? 'live' : 'connecting';
    setText(ui.rtcTitle, !active ? 'Call ended' : r.onHold ? 'On hold' : r.state === 'live' ? 'Live call' : 'Connecting…');
    setText(ui.rtcTimer, r.startedAt ? clock((r.endedAt || Date.now()) - r.startedAt) : '0:00');
    const status = !active ? r.endText
      : r.message ? r.message.text
      : r.onHold ? 'On hold: you and the customer cannot hear each other.'
      : r.muted ? 'Muted: the customer cannot hear you. You still hear them.'
      : r.state === 'live' ? 'Connected: you and the customer hear each other.'
      : 'Connecting the call…';
    setText(ui.rtcStatus, status);
    ui.rtcStatus.classList.toggle('error', !!(active && r.message && r.message.error));
    ui.rtcControls.hidden = !active;
    setText(ui.rtcMute, r.muted ? 'Unmute' : 'Mute');
    ui.rtcMute.setAttribute('aria-pressed', String(r.muted));
    ui.rtcMute.classList.toggle('pressed', r.muted);
    ui.rtcMute.disabled = !r.stream;
    setText(ui.rtcHold, r.onHold ? 'Resume' : 'Hold');
    ui.rtcHold.setAttribute('aria-pressed', String(r.onHold));
    ui.rtcHold.classList.toggle('pressed', r.onHold);
  }
  ui.rtcMute.addEventListener('click', () => {
    const c = convs.get(selected);
    if (!rtcActive(c)) return;
    c.rtc.muted = !c.rtc.muted;
    applyRtcTracks(c.rtc);
    announce(c.rtc.muted ? 'Muted.' : 'Unmuted.');
    refresh(c);
  });
  ui.rtcHold.addEventListener('click', () => { const c = convs.get(selected); if (rtcActive(c)) setRtcHold(c, !c.rtc.onHold); });
  ui.rtcHangup.addEventListener('click', () => { const c = convs.get(selected); if (c) endRtc(c, 'You hung up.', true); });
  // Leaving the page drops a browser call: say so rather than leave the customer in silence.
  window.addEventListener('pagehide', () => {
    convs.forEach((c) => { if (c.rtc && c.rtc.state !== 'ended') send({ type: 'rtc', conversation_id: c.id, payload: { type: 'hangup' } }); });
  });

  // ---- controls -------------------------------------------------------------------------
  // What agents paste: the token, "Bearer TOKEN", or a whole sign-in link with ?token=.
  function cleanToken(text) {
    let t = String(text || '').trim();
    const m = /[?&]token=([^&#\s]+)/.exec(t);
    if (m) { try { t = decodeURIComponent(m[1]); } catch (e) { t = m[1]; } }
    return t.replace(/^Bearer\s+/i, '').replace(/\s+/g, '');
  }
  ui.tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = cleanToken(ui.tokenInput.value);
    if (!t) { ui.signinError.textContent = 'Paste your token first.'; ui.tokenInput.focus(); return; }
    token = t;
    session.store(TOKEN_KEY, token);
    ui.tokenInput.value = '';
    ui.signinError.textContent = '';
    attempt = 0;
    connect();
  });
  let signingOut = false;
  ui.signOut.addEventListener('click', () => {
    signingOut = true;
    convs.forEach((c) => endRtc(c, 'You signed out.', true));
    if (ready && agentState !== 'away') send({ type: 'status', state: 'away' }); // offers go to others at once
    session.store(TOKEN_KEY, null);
    W.store(TOKEN_KEY, null); // a token an older version of this page kept
    if (ws) ws.close(1000, 'signed out');
    location.replace(location.pathname);
  });
  ui.reconnect.addEventListener('click', () => { attempt = 0; connect(); });
  ui.availability.addEventListener('change', () => requestState(ui.availability.value));
  ui.ready.addEventListener('click', () => requestState('available'));
  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = convs.get(selected), text = ui.input.value.trim();
    if (!isOpen(c) || !text) return;
    typing.stop(true);
    c.addPending(text);
    const own = c.pending[c.pending.length - 1];
    if (own) { own.li.dataset.role = 'agent'; own.li.dataset.mine = 'true'; }
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
    endRtc(c, 'You closed the conversation.', true);
    c.closing = true;
    c.closeNote = null;
    request('close', frame, { conv: c });
    updateControls();
    refresh(c);
  });
  ui.resolution.addEventListener('change', onResolution);
  ui.followUpField.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-offset]');
    if (!b) return;
    const d = new Date();
    if (b.dataset.offset === '1h') { d.setHours(d.getHours() + 1); d.setSeconds(0, 0); }
    else { d.setDate(d.getDate() + (b.dataset.offset === 'week' ? 7 : 1)); d.setHours(9, 0, 0, 0); }
    ui.followUpAt.value = localInputValue(d);
    ui.followUpAt.dispatchEvent(new Event('change'));
  });
  ui.mic.addEventListener('click', () => {
    const c = convs.get(selected);
    if (mic.conv === c) micOff(); else micOn(c);
  });
  ui.hold.addEventListener('click', () => requestHold(convs.get(selected)));
  ui.mute.addEventListener('click', () => {
    const c = convs.get(selected);
    if (!callLive(c)) return;
    c.call.muted = !c.call.muted;
    announce(c.call.muted ? 'Muted.' : 'Unmuted.');
    renderCall();
    renderTab(c);
  });
  ui.clearPlayback.addEventListener('click', () => requestClear(convs.get(selected)));
  ui.audioOn.addEventListener('click', wakeAudio);
  ui.transferKind.addEventListener('change', onTransferKind);
  function showTransferForm(on) {
    const c = convs.get(selected);
    if (!isOpen(c)) return;
    c.transferOpen = on;
    if (!on) c.transferNote = null;
    updateControls();
    if (on) { ui.transferForm.scrollIntoView({ block: 'nearest' }); ui.transferTarget.focus(); } else ui.transferToggle.focus();
  }
  ui.transferToggle.addEventListener('click', () => { const c = convs.get(selected); showTransferForm(!(c && !ui.transferForm.hidden)); });
  ui.transferHide.addEventListener('click', () => showTransferForm(false));
  ui.transferForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = convs.get(selected);
    if (!isOpen(c) || !ready || c.closing || c.transferring) return;
    if (ui.transferMode.value === 'cold' && ui.transferTarget.value.trim()) endRtc(c, 'You transferred the conversation.', true);
    requestTransfer(c);
    ui.transferNote.value = '';
    ui.transferMode.value = 'warm'; // the form serves every tab: never leave "cold" armed for the next one
    updateControls();
  });
  ui.dismiss.addEventListener('click', () => dismiss(selected));
  function dismiss(id) {
    const c = convs.get(id);
    if (!c || isOpen(c)) return;
    const keys = [...convs.keys()], i = keys.indexOf(id);
    endRtc(c, '', false);
    c.item.remove();
    convs.delete(c.id);
    if (selected === id) {
      selected = null;
      const next = keys[i + 1] || keys[i - 1] || null;
      select(next && convs.has(next) ? next : null, !!next);
    }
    updateEmpty();
    updateTitle();
  }

  // Token: ?token= (then dropped from the address bar), else the stored one, else the form.
  const params = new URLSearchParams(location.search);
  W.store(TOKEN_KEY, null); // older versions kept it in localStorage: this one keeps it to the tab
  token = params.get('token') ? cleanToken(params.get('token')) : session.load(TOKEN_KEY);
  if (params.has('token')) {
    if (params.get('token')) session.store(TOKEN_KEY, token);
    params.delete('token');
    history.replaceState(null, '', location.pathname + (params.toString() ? '?' + params : '') + location.hash);
  }
  onTransferKind();
  onResolution();
  updateControls();
  connect();
})();

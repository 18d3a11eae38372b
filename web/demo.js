// Warmline demo chat page: the customer side of /ws/customer. Uses common.js (window.Warmline).
'use strict';
(function () {
  const W = window.Warmline;
  const h = W.h;
  const TOKEN_KEY = 'warmline.visitor_token';
  const SEQ_KEY = 'warmline.last_seq.';
  const STARTED_KEY = 'warmline.started'; // ids of the conversations this browser started (a JSON list)
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), reconnect: $('reconnect'),
    alert: $('follow-up-alert'), alertText: $('follow-up-alert-text'), alertOpen: $('follow-up-open'),
    startForm: $('start-form'), queue: $('queue'), firstMessage: $('first-message'), start: $('start'),
    chat: $('chat'), followUp: $('follow-up-notice'), queueInfo: $('queue-info'), transcript: $('transcript'), typing: $('typing'),
    composer: $('composer'), input: $('message-input'), send: $('send'), end: $('end'),
    closed: $('closed'), closedText: $('closed-text'), newChat: $('new-chat'),
    survey: $('survey'), csat: $('csat'), resolved: $('resolved'), comment: $('survey-comment'),
    surveySend: $('survey-send'), surveyResult: $('survey-result'),
    past: $('past'), pastStatus: $('past-status'), pastList: $('past-list'), pastView: $('past-view'),
    pastTitle: $('past-view-title'), pastSummary: $('past-view-summary'), pastLoading: $('past-view-status'),
    pastTranscript: $('past-transcript'), pastClose: $('past-close'),
    identityNote: $('identity-note'),
  };
  const setStatus = W.statusLine($('statusline'), ui.status);

  let ws = null;          // the current socket
  let ready = false;      // `welcome` received on it
  let attempt = 0;        // reconnects since the last welcome
  let retryTimer = null, reqNo = 0, theirTypingTimer = null;
  const requests = new Map(); // request id -> { kind, ... }
  // The current conversation: a W.Transcript, plus `closed` and `provisional` (the start text).
  let conv = null;
  // The survey for the current conversation, once asked: { conversationId, csat, resolved, state }
  // where state is '' (being filled in), 'sending', 'done' or 'answered' (the server had one already).
  let survey = null;
  const typing = new W.TypingSender(send);

  // Demo only: `?identity=JWT` signs the visitor in as a customer of the business (see the note on
  // the page). Sent in every hello of this page load until the gateway refuses it.
  let identity = new URLSearchParams(location.search).get('identity') || null;
  let identityRefused = null; // the gateway's reason, once it refused the identity
  let helloSent = null;       // the hello frame sent on the current socket
  let customerId = null;
  // The customer's conversations (the last `history` reply, newest first); null until one came.
  let history = null;
  let historyUnsupported = false;
  let openList = [];          // welcome.open_conversations of the current socket
  let pickOnHistory = false;  // a fresh page load with open conversations: the newest is shown once the history came
  // Follow-ups: conversations the business opened to get back to the customer.
  const followUps = new Map();   // conversation id -> the conversation it follows up on (from `follow_up`)
  const notFollowUps = new Set(); // open conversations whose first event is the customer's own message
  const shown = new Set();       // conversations shown in the chat during this page load
  let alertFor = null;           // the follow-up announced in the alert above the chat
  // The read-only transcript of a past conversation: { id, entry, t: W.Transcript, done }.
  let past = null;

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }
  function request(kind, frame, extra) {
    frame.id = 'c' + (++reqNo);
    requests.set(frame.id, Object.assign({ kind }, extra));
    return send(frame);
  }
  function pendingRequest(kind) { return [...requests.values()].some((r) => r.kind === kind); }

  function startedHere() {
    try { const v = JSON.parse(W.load(STARTED_KEY) || '[]'); return Array.isArray(v) ? v : []; } catch (e) { return []; }
  }
  function noteStarted(id) { W.store(STARTED_KEY, JSON.stringify([id, ...startedHere().filter((x) => x !== id)].slice(0, 100))); }

  // ---- connection ------------------------------------------------------------------
  function connect() {
    clearTimeout(retryTimer);
    ui.reconnect.hidden = true;
    setStatus(attempt ? 'Reconnecting…' : 'Connecting…', attempt > 0);
    const sock = new WebSocket(W.wsUrl('/ws/customer'));
    ws = sock;
    sock.onopen = hello;
    sock.onmessage = (ev) => { const f = W.parse(ev.data); if (f) handle(f); };
    sock.onclose = (ev) => { if (ws === sock) onSocketClosed(ev); };
  }
  function hello() {
    const token = W.load(TOKEN_KEY), frame = { type: 'hello' };
    if (token) frame.visitor_token = token;
    if (identity) frame.identity = identity;
    helloSent = frame;
    send(frame);
  }
  function onSocketClosed(ev) {
    ws = null; ready = false; helloSent = null;
    requests.clear(); // an unanswered start or end is settled by the next welcome and resume
    if (survey && survey.state === 'sending') survey.state = ''; // send again (a second copy gets `conflict`)
    if (conv) conv.live = false;
    typing.stop(false);
    showTyping(false);
    updateControls();
    const refused = W.refusedBy(ev);
    if (refused) { // do not resend the offending frame by ourselves; the person decides
      if (conv) conv.failAll();
      setStatus('Disconnected: ' + refused + '.', true);
      ui.reconnect.hidden = false;
      return;
    }
    setStatus('Reconnecting…', true);
    retryTimer = setTimeout(connect, W.backoff(attempt++));
  }
  // An error before the welcome: about the hello. Returns whether it was handled (a new hello went out).
  function helloRefused(f) {
    const sent = helloSent;
    if (ready || !sent || (f.code !== 'unauthorized' && f.code !== 'invalid_field')) return false;
    // The gateway checks the visitor token first; its message says which token it refused.
    const aboutIdentity = !!sent.identity && (f.code === 'invalid_field' || /identity/i.test(f.message || '') || !sent.visitor_token);
    if (aboutIdentity) {
      // Carry on as an anonymous visitor (with the visitor token, if any), and say why.
      identity = null;
      identityRefused = f.message || f.code;
      renderIdentity();
      hello();
      return true;
    }
    if (f.code === 'unauthorized' && sent.visitor_token) {
      // The stored visitor token is not valid on this gateway (another deployment, a new secret, a
      // wiped store): forget it and come in as a new visitor, as the server suggests.
      W.store(TOKEN_KEY, null);
      hello();
      return true;
    }
    return false;
  }

  // ---- frames from the server ----------------------------------------------------
  function handle(f) {
    const mine = !!conv && f.conversation_id === conv.id;
    const viewing = !!past && f.conversation_id === past.id;
    const r = f.id != null ? requests.get(f.id) : null;
    switch (f.type) {
      case 'welcome': {
        ready = true; attempt = 0;
        if (f.visitor_token) W.store(TOKEN_KEY, f.visitor_token);
        customerId = f.customer_id || null;
        renderIdentity();
        setStatus('Connected.');
        openList = f.open_conversations || [];
        if (conv && !conv.closed) resume();          // same page load: from the last seq seen
        else if (!conv && openList.length) { pickOnHistory = true; setStatus('Connected. Loading your conversations…'); }
        else if (!conv) showStart();
        // The server does not repeat `queued` to a new connection: the welcome carries the position,
        // shown once the replay (whose old `assigned`, if any, says "chatting with") is done.
        if (conv && !conv.closed) conv.waiting = waitingEntry(conv.id);
        if (past && !past.done) resumePast();
        requestHistory();
        break;
      }
      case 'resumed':
        if (mine) {
          conv.caughtUp(f.last_seq); saveSeq();
          if (conv.waiting && !conv.closed) showQueued(conv.waiting.position);
          conv.waiting = null;
        }
        if (viewing) pastLoaded();
        break;
      case 'ack':
        requests.delete(f.id);
        if (r && r.kind === 'start') {
          noteStarted(f.conversation_id);
          openConversation(f.conversation_id, r.text); conv.caughtUp(0);
          requestHistory();
        }
        if (r && r.kind === 'message') { r.conv.ack(r.item, f.seq); if (r.conv === conv) saveSeq(); }
        if (r && r.kind === 'survey') { surveyAnswered(r.survey, 'done'); requestHistory(); }
        break;
      case 'error':
        if (helloRefused(f)) break;
        requests.delete(f.id);
        if (r && r.kind === 'survey') { surveyRefused(r.survey, f); break; }
        if (r && r.kind === 'history') { historyRefused(f); break; }
        if (r && r.kind === 'past') { pastRefused(r.past, f); break; }
        setStatus(f.message || f.code || 'Something went wrong.', true);
        if (r && r.kind === 'message') r.conv.setState(r.item, 'failed');
        if (r && r.kind === 'start') showStart();
        if (!r && conv && !conv.live && (f.code === 'not_found' || f.code === 'forbidden')) { conv = null; showStart(); }
        break;
      case 'history':
        history = Array.isArray(f.conversations) ? f.conversations : [];
        renderHistory();
        if (pickOnHistory) { pickOnHistory = false; pickOpen(); } else checkFollowUps();
        renderFollowUp();
        break;
      case 'follow_up': onFollowUp(f); break;
      case 'queued':
        if (mine && !conv.closed) { conv.waiting = null; showQueued(f.position, f.eta_seconds); }
        break;
      case 'message': case 'assigned': case 'closed':
        if (mine) addEvent(f);
        if (viewing) addPastEvent(f);
        break;
      case 'typing':
        if (mine && f.role !== 'customer') showTyping(!!f.on);
        break;
      case 'survey_request':
        if (mine) showSurvey(f.conversation_id);
        break;
      default: // switched, rtc…: not used by this demo
    }
    updateControls();
  }
  function waitingEntry(id) { return openList.find((o) => o.conversation_id === id && o.state !== 'active') || null; }
  function showQueued(position, eta) {
    ui.queueInfo.textContent = typeof position !== 'number' ? 'Connecting you to an agent…'
      : 'You are number ' + position + ' in the queue.' +
        (typeof eta === 'number' ? ' Estimated wait: ' + formatWait(eta) + '.' : '');
  }
  function formatWait(s) {
    if (s < 60) return 'under a minute';
    const m = Math.round(s / 60);
    return 'about ' + m + (m === 1 ? ' minute' : ' minutes');
  }

  // ---- conversation --------------------------------------------------------------
  function openConversation(id, firstText) {
    typing.stop(true);
    showTyping(false);
    ui.transcript.replaceChildren();
    conv = new W.Transcript(id, ui.transcript, (t, item) =>
      ready && request('message', { type: 'message', conversation_id: t.id, text: item.text, client_msg_id: item.clientMsgId }, { conv: t, item }));
    conv.closed = false;
    conv.provisional = null;
    shown.add(id);
    if (alertFor === id) hideAlert();
    if (firstText) { // the start text: shown first until its message event (if any) brings a seq
      const li = W.messageItem('mine', 'You', firstText, null);
      li.querySelector('.meta').textContent = 'Sending…';
      li.dataset.seq = '0';
      ui.transcript.append(li);
      conv.provisional = { text: firstText, li };
    }
    ui.queueInfo.textContent = '';
    ui.closed.hidden = true;
    if (survey && survey.conversationId !== id) hideSurvey();
    ui.startForm.hidden = true;
    ui.chat.hidden = false;
    renderFollowUp();
    renderHistory();
  }
  // Shows an open conversation (one listed at hello, a follow-up, one picked in the list): from seq 0.
  function showOpen(id) {
    if (conv && conv.id === id) { ui.input.focus(); return; }
    openConversation(id);
    conv.waiting = waitingEntry(id);
    resume();
  }
  function resume() {
    conv.live = false;
    send({ type: 'resume', conversation_id: conv.id, last_seq: conv.lastSeq });
  }
  function saveSeq() { W.store(SEQ_KEY + conv.id, conv.lastSeq); }

  // A transcript event as a list item (used by the live chat and the read-only past transcript).
  function eventItem(f) {
    const sender = f.sender || {};
    if (f.type === 'message') {
      const role = sender.role || 'system';
      const name = role === 'customer' ? 'You' : (sender.display_name || (role === 'agent' ? 'Agent' : 'System'));
      return W.messageItem(role === 'customer' ? 'mine' : role, name, f.text, f.ts);
    }
    if (f.type === 'assigned') return h('li', { class: 'event' }, ((f.agent && f.agent.display_name) || 'An agent') + ' joined the chat.');
    return h('li', { class: 'event' }, closedText(f));
  }
  function addEvent(f) {
    if (!conv.isNew(f)) return; // dedupe by seq
    const sender = f.sender || {};
    const p = conv.provisional;
    let li;
    if (f.type === 'message' && sender.role === 'customer' && p && p.text === f.text) {
      conv.provisional = null;
      li = p.li;
      li.querySelector('.meta').replaceChildren(f.ts ? W.timeOf(f.ts) : '');
    } else {
      li = eventItem(f);
      if (f.type === 'message' && sender.role === 'agent') showTyping(false);
      if (f.type === 'assigned') {
        ui.queueInfo.textContent = 'You are chatting with ' + ((f.agent && f.agent.display_name) || 'an agent') + '.';
        if (conv.live) requestHistory(); // the list names the agent
      }
      if (f.type === 'closed') onClosed(f);
    }
    // The customer's own first message: a conversation they started (on this or another device).
    if (f.seq === 1 && f.type === 'message' && sender.role === 'customer' && !followUps.has(conv.id)) {
      notFollowUps.add(conv.id);
      renderFollowUp();
    }
    conv.add(li, f.seq);
    saveSeq();
  }
  function closedText(f) {
    const res = { resolved: ' (resolved)', unresolved: ' (unresolved)', follow_up: ' (we will get back to you)' }[f.resolution] || '';
    return 'The chat was ended by ' + (f.by === 'customer' ? 'you' : 'the agent') + res + '.';
  }
  function onClosed(f) {
    conv.closed = true;
    typing.stop(true);
    showTyping(false);
    ui.queueInfo.textContent = '';
    ui.closedText.textContent = closedText(f);
    ui.closed.hidden = false;
    requestHistory();
  }
  function showTyping(on) {
    clearTimeout(theirTypingTimer);
    ui.typing.textContent = on ? 'Agent is typing…' : '';
    if (on) theirTypingTimer = setTimeout(() => showTyping(false), 8000); // in case "off" is lost
  }

  // ---- follow-ups ------------------------------------------------------------------
  // The conversation `id` follows up on (its id), or null. The `follow_up` frame says so; for one
  // found open at hello, the history tells: it repeats an earlier one, this browser did not start
  // it, and it does not open with the customer's own message.
  function followUpOf(id) {
    if (followUps.has(id)) return followUps.get(id);
    if (notFollowUps.has(id) || startedHere().includes(id)) return null;
    const x = history && history.find((e) => e.conversation_id === id);
    return (x && x.state !== 'closed' && x.repeat_of) || null;
  }
  function aboutText(aboutId) {
    const x = history && history.find((e) => e.conversation_id === aboutId);
    return x ? 'your conversation of ' + dateTimeText(x.created_at) : 'an earlier conversation';
  }
  function followUpText(id) { return 'We\'re getting back to you about ' + aboutText(followUpOf(id)) + '.'; }
  function renderFollowUp() {
    const about = conv && followUpOf(conv.id);
    ui.followUp.hidden = !about;
    setText(ui.followUp, about ? followUpText(conv.id) : '');
    if (alertFor) setText(ui.alertText, followUpText(alertFor) + ' It is waiting for you.');
  }
  function onFollowUp(f) {
    followUps.set(f.conversation_id, f.about);
    requestHistory(); // the new conversation, and the date of the one it is about
    if (conv && conv.id === f.conversation_id) { renderFollowUp(); return; }
    if (canSwitch()) showOpen(f.conversation_id); else showAlert(f.conversation_id);
  }
  // Whether a follow-up may replace what the chat shows: nothing is under way there.
  function canSwitch() {
    if (!conv) return !pendingRequest('start') && !ui.firstMessage.value.trim();
    return conv.closed && !(survey && survey.conversationId === conv.id && (survey.state === '' || survey.state === 'sending'));
  }
  // After a history reply: an open follow-up this page has not shown yet is shown, or announced.
  function checkFollowUps() {
    if (!history) return;
    const x = history.find((e) => e.state !== 'closed' && !shown.has(e.conversation_id) && followUpOf(e.conversation_id));
    if (alertFor && !history.some((e) => e.conversation_id === alertFor && e.state !== 'closed')) hideAlert();
    if (!x || (conv && conv.id === x.conversation_id)) return;
    if (canSwitch()) showOpen(x.conversation_id); else showAlert(x.conversation_id);
  }
  function showAlert(id) {
    alertFor = id;
    ui.alert.hidden = false;
    renderFollowUp();
  }
  function hideAlert() {
    alertFor = null;
    ui.alert.hidden = true;
    ui.alertText.textContent = '';
  }
  // A fresh page load with open conversations: the newest one (the history is newest first).
  function pickOpen() {
    if (conv || !openList.length) return;
    const ids = new Set(openList.map((o) => o.conversation_id));
    const newest = history && history.find((e) => ids.has(e.conversation_id));
    showOpen(newest ? newest.conversation_id : openList[0].conversation_id);
    setStatus('Connected.');
    checkFollowUps(); // another open follow-up: announced
  }

  // ---- past conversations (`history`, and `resume` from 0 for a transcript) ----------------
  function requestHistory() {
    if (ready && !historyUnsupported) request('history', { type: 'history' });
  }
  function historyRefused(f) {
    if (f.code === 'unknown_type') historyUnsupported = true; // an older gateway: no list
    if (pickOnHistory) { pickOnHistory = false; pickOpen(); }
    if (historyUnsupported) { ui.past.hidden = true; return; }
    ui.past.hidden = false;
    ui.pastStatus.textContent = 'Your conversations could not be loaded: ' + (f.message || f.code) + '.';
  }
  function dateTimeText(ts) {
    const d = new Date(ts);
    if (isNaN(d)) return 'an unknown date';
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return 'today at ' + time;
    return d.toLocaleDateString([], { day: 'numeric', month: 'long', year: 'numeric' }) + ', ' + time;
  }
  function channelName(channel) { return channel === 'voice' ? 'Phone call' : 'Chat'; }
  function stateName(x) {
    if (x.state === 'closed') {
      return { resolved: 'Resolved', unresolved: 'Not resolved', follow_up: 'We will get back to you' }[x.resolution] || 'Ended';
    }
    const open = x.state === 'active' ? 'Open' : 'Waiting for an agent';
    return followUpOf(x.conversation_id) ? 'Follow-up: ' + open.toLowerCase() : open;
  }
  function renderHistory() {
    if (!history) return;
    ui.past.hidden = false;
    ui.pastStatus.textContent = history.length ? '' : 'No conversations yet.';
    ui.pastList.replaceChildren(...history.map((x) => {
      const open = x.state !== 'closed', current = !!conv && conv.id === x.conversation_id;
      const viewing = !!past && past.id === x.conversation_id && !ui.pastView.hidden;
      const details = [x.agent_id ? 'with ' + x.agent_id : 'no agent yet'];
      if (!open) details.push(x.csat != null ? 'your rating ' + x.csat + ' of 5' : 'not rated');
      const action = current ? 'Shown above' : open ? 'Open' : viewing ? 'Shown below' : 'Read';
      return h('li', null, h('button', {
        type: 'button', class: 'past-item' + (open ? ' open' : ''), 'data-testid': 'past-item',
        'data-conversation-id': x.conversation_id, 'data-state': x.state,
        'aria-current': current || viewing ? 'true' : null,
        onclick: () => (open ? showOpen(x.conversation_id) : showPast(x)),
      },
      h('span', { class: 'past-when' }, dateTimeText(x.created_at)),
      h('span', { class: 'past-what' }, [x.queue, channelName(x.channel)].join(' · ')),
      h('span', { class: 'past-state' }, stateName(x)),
      h('span', { class: 'sub' }, details.join(' · ')),
      h('span', { class: 'past-action', 'aria-hidden': 'true' }, action)));
    }));
  }
  function showPast(x) {
    ui.pastTranscript.replaceChildren();
    past = { id: x.conversation_id, entry: x, t: new W.Transcript(x.conversation_id, ui.pastTranscript, () => false), done: false };
    ui.pastTitle.textContent = 'Your conversation of ' + dateTimeText(x.created_at);
    ui.pastSummary.textContent = [x.queue, channelName(x.channel), stateName(x), x.agent_id && 'with ' + x.agent_id,
      x.csat != null ? 'your rating ' + x.csat + ' of 5' : null].filter(Boolean).join(' · ');
    ui.pastLoading.textContent = 'Loading the transcript…';
    ui.pastLoading.classList.remove('error');
    ui.pastView.hidden = false;
    renderHistory();
    resumePast();
    ui.pastTitle.focus();
  }
  function resumePast() {
    if (ready) request('past', { type: 'resume', conversation_id: past.id, last_seq: past.t.lastSeq }, { past });
  }
  function addPastEvent(f) {
    if (past.t.isNew(f)) past.t.add(eventItem(f), f.seq);
  }
  function pastLoaded() {
    past.done = true;
    const n = past.t.seen.size;
    ui.pastLoading.textContent = n ? 'Read only. ' + n + (n === 1 ? ' entry.' : ' entries.') : 'Nothing was said in this conversation.';
    ui.pastTranscript.scrollTop = 0;
  }
  function pastRefused(p, f) {
    if (p !== past) return;
    p.done = true;
    ui.pastLoading.textContent = 'The transcript could not be loaded: ' + (f.message || f.code) + '.';
    ui.pastLoading.classList.add('error');
  }
  function hidePast() {
    past = null;
    ui.pastView.hidden = true;
    ui.pastTranscript.replaceChildren();
    renderHistory();
  }

  // ---- identity (demo) ----------------------------------------------------------------
  function renderIdentity() {
    ui.identityNote.classList.toggle('error', !!identityRefused);
    if (identityRefused) {
      ui.identityNote.textContent = 'Your sign-in was refused (' + identityRefused + '). You are chatting as an anonymous visitor.';
    } else if (identity && customerId && ready) {
      ui.identityNote.textContent = 'Signed in as ' + customerId + ' (from ?identity=). Your conversations follow you to every device you sign in on.';
    } else {
      ui.identityNote.textContent = 'Demo: add ?identity=JWT to this page\'s address to chat as a signed-in customer. The JWT comes from ' +
        'your backend, signed with HS256 and the gateway\'s auth.identity_secret; its sub is the customer id.';
    }
  }

  // ---- survey (after `closed`, when the server sends `survey_request`) -----------------
  function showSurvey(conversationId) {
    if (survey && survey.conversationId === conversationId) return; // asked again (another tab's close)
    survey = { conversationId, csat: null, resolved: null, state: '' };
    ui.comment.value = '';
    ui.surveyResult.textContent = '';
    ui.surveyResult.classList.remove('error');
    renderSurvey();
  }
  function hideSurvey() {
    survey = null;
    ui.surveyResult.textContent = '';
    renderSurvey();
  }
  function renderSurvey() {
    const s = survey, open = !!s && (s.state === '' || s.state === 'sending');
    ui.survey.hidden = !open;
    if (!s) return;
    ui.csat.querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', String(Number(b.dataset.csat) === s.csat)));
    ui.resolved.querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.resolved === String(s.resolved))));
    ui.survey.querySelectorAll('button, textarea').forEach((e) => { e.disabled = s.state === 'sending'; });
    ui.surveySend.disabled = s.state === 'sending' || s.csat == null || !ready;
    if (s.state === 'done') ui.surveyResult.textContent = 'Thank you for your feedback.';
    if (s.state === 'answered') ui.surveyResult.textContent = 'Already answered: thank you.';
  }
  function surveyAnswered(s, state) {
    if (s !== survey) return; // a new chat was started meanwhile
    s.state = state;
    renderSurvey();
  }
  function surveyRefused(s, f) {
    if (s !== survey) return;
    if (f.code === 'conflict') return surveyAnswered(s, 'answered');
    s.state = ''; // can be sent again
    ui.surveyResult.textContent = 'Not sent: ' + (f.message || f.code) + '.';
    ui.surveyResult.classList.add('error');
    renderSurvey();
  }
  ui.csat.addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b || !survey) return;
    survey.csat = Number(b.dataset.csat);
    renderSurvey();
  });
  ui.resolved.addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b || !survey) return;
    const value = b.dataset.resolved === 'true';
    survey.resolved = survey.resolved === value ? null : value; // a second click takes the answer back
    renderSurvey();
  });
  ui.survey.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const s = survey;
    if (!s || s.state !== '' || s.csat == null || !ready) return;
    const frame = { type: 'survey', conversation_id: s.conversationId, csat: s.csat };
    if (s.resolved != null) frame.resolved = s.resolved;
    const comment = ui.comment.value.trim();
    if (comment) frame.comment = comment;
    s.state = 'sending';
    ui.surveyResult.textContent = '';
    ui.surveyResult.classList.remove('error');
    request('survey', frame, { survey: s });
    renderSurvey();
  });

  // ---- controls --------------------------------------------------------------------
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; } // live regions speak changes only
  function showStart() {
    ui.chat.hidden = true;
    ui.startForm.hidden = false;
  }
  function updateControls() {
    const open = !!conv && !conv.closed;
    ui.start.disabled = !ready || pendingRequest('start');
    ui.composer.hidden = !open;
    ui.input.disabled = ui.send.disabled = !open;
    ui.end.disabled = !open || !ready || pendingRequest('end');
    renderSurvey();
  }

  ui.startForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!ready || pendingRequest('start')) return;
    const text = ui.firstMessage.value.trim();
    const frame = { type: 'start', queue: ui.queue.value.trim() || 'demo', channel: 'chat' };
    if (text) frame.text = text;
    request('start', frame, { text });
    ui.firstMessage.value = '';
    updateControls();
  });
  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = ui.input.value.trim();
    if (!text || !conv || conv.closed) return;
    typing.stop(true);
    conv.addPending(text);
    ui.input.value = '';
    ui.input.focus();
  });
  W.enterSends(ui.input, ui.composer);
  ui.input.addEventListener('input', () => { if (conv && !conv.closed && conv.live) typing.input(conv.id); });
  ui.end.addEventListener('click', () => {
    if (!conv || conv.closed || !ready) return;
    typing.stop(true);
    request('end', { type: 'end', conversation_id: conv.id });
    updateControls();
  });
  ui.newChat.addEventListener('click', () => {
    conv = null;
    hideSurvey();
    ui.transcript.replaceChildren();
    ui.closed.hidden = true;
    showStart();
    updateControls();
    renderHistory();
    ui.queue.focus();
  });
  ui.alertOpen.addEventListener('click', () => {
    const id = alertFor;
    if (!id) return;
    showOpen(id);
    updateControls();
    ui.input.focus();
  });
  ui.pastClose.addEventListener('click', () => {
    const id = past && past.id;
    hidePast();
    const back = id && ui.pastList.querySelector('[data-conversation-id="' + CSS.escape(id) + '"]');
    if (back) back.focus();
  });
  ui.reconnect.addEventListener('click', () => { attempt = 0; connect(); });

  renderIdentity();
  updateControls();
  connect();
})();

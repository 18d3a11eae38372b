// Warmline demo chat page: the customer side of /ws/customer. Uses common.js (window.Warmline).
'use strict';
(function () {
  const W = window.Warmline;
  const TOKEN_KEY = 'warmline.visitor_token';
  const SEQ_KEY = 'warmline.last_seq.';
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), reconnect: $('reconnect'),
    startForm: $('start-form'), queue: $('queue'), firstMessage: $('first-message'), start: $('start'),
    chat: $('chat'), queueInfo: $('queue-info'), transcript: $('transcript'), typing: $('typing'),
    composer: $('composer'), input: $('message-input'), send: $('send'), end: $('end'),
    closed: $('closed'), closedText: $('closed-text'), newChat: $('new-chat'),
    survey: $('survey'), csat: $('csat'), resolved: $('resolved'), comment: $('survey-comment'),
    surveySend: $('survey-send'), surveyResult: $('survey-result'),
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

  // ---- connection ------------------------------------------------------------------
  function connect() {
    clearTimeout(retryTimer);
    ui.reconnect.hidden = true;
    setStatus(attempt ? 'Reconnecting…' : 'Connecting…', attempt > 0);
    const sock = new WebSocket(W.wsUrl('/ws/customer'));
    ws = sock;
    sock.onopen = () => {
      const token = W.load(TOKEN_KEY);
      send(token ? { type: 'hello', visitor_token: token } : { type: 'hello' });
    };
    sock.onmessage = (ev) => { const f = W.parse(ev.data); if (f) handle(f); };
    sock.onclose = (ev) => { if (ws === sock) onSocketClosed(ev); };
  }
  function onSocketClosed(ev) {
    ws = null; ready = false;
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

  // ---- frames from the server ----------------------------------------------------
  function handle(f) {
    const mine = !!conv && f.conversation_id === conv.id;
    const r = f.id != null ? requests.get(f.id) : null;
    switch (f.type) {
      case 'welcome': {
        ready = true; attempt = 0;
        if (f.visitor_token) W.store(TOKEN_KEY, f.visitor_token);
        setStatus('Connected.');
        const open = f.open_conversations || [];
        if (conv && !conv.closed) resume();          // same page load: from the last seq seen
        else if (!conv && open.length) { openConversation(open[0].conversation_id); resume(); } // fresh: from 0
        else if (!conv) showStart();
        // The server does not repeat `queued` to a new connection: the welcome carries the position,
        // shown once the replay (whose old `assigned`, if any, says "chatting with") is done.
        if (conv && !conv.closed) conv.waiting = open.find((o) => o.conversation_id === conv.id && o.state !== 'active') || null;
        break;
      }
      case 'resumed':
        if (mine) {
          conv.caughtUp(f.last_seq); saveSeq();
          if (conv.waiting && !conv.closed) showQueued(conv.waiting.position);
          conv.waiting = null;
        }
        break;
      case 'ack':
        requests.delete(f.id);
        if (r && r.kind === 'start') { openConversation(f.conversation_id, r.text); conv.caughtUp(0); }
        if (r && r.kind === 'message') { r.conv.ack(r.item, f.seq); if (r.conv === conv) saveSeq(); }
        if (r && r.kind === 'survey') surveyAnswered(r.survey, 'done');
        break;
      case 'error':
        if (!ready && f.code === 'unauthorized' && W.load(TOKEN_KEY)) {
          // The stored visitor token is not valid on this gateway (another deployment, a new secret, a
          // wiped store): forget it and come in as a new visitor, as the server suggests.
          W.store(TOKEN_KEY, null);
          send({ type: 'hello' });
          break;
        }
        if (r && r.kind === 'survey') { requests.delete(f.id); surveyRefused(r.survey, f); break; }
        setStatus(f.message || f.code || 'Something went wrong.', true);
        requests.delete(f.id);
        if (r && r.kind === 'message') r.conv.setState(r.item, 'failed');
        if (r && r.kind === 'start') showStart();
        if (!r && conv && !conv.live && (f.code === 'not_found' || f.code === 'forbidden')) { conv = null; showStart(); }
        break;
      case 'queued':
        if (mine && !conv.closed) { conv.waiting = null; showQueued(f.position, f.eta_seconds); }
        break;
      case 'message': case 'assigned': case 'closed':
        if (mine) addEvent(f);
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
    ui.transcript.replaceChildren();
    conv = new W.Transcript(id, ui.transcript, (t, item) =>
      ready && request('message', { type: 'message', conversation_id: t.id, text: item.text, client_msg_id: item.clientMsgId }, { conv: t, item }));
    conv.closed = false;
    conv.provisional = null;
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
  }
  function resume() {
    conv.live = false;
    send({ type: 'resume', conversation_id: conv.id, last_seq: conv.lastSeq });
  }
  function saveSeq() { W.store(SEQ_KEY + conv.id, conv.lastSeq); }

  function addEvent(f) {
    if (!conv.isNew(f)) return; // dedupe by seq
    const sender = f.sender || {};
    const p = conv.provisional;
    let li;
    if (f.type === 'message' && sender.role === 'customer' && p && p.text === f.text) {
      conv.provisional = null;
      li = p.li;
      li.querySelector('.meta').replaceChildren(f.ts ? W.timeOf(f.ts) : '');
    } else if (f.type === 'message') {
      const role = sender.role || 'system';
      const name = role === 'customer' ? 'You' : (sender.display_name || (role === 'agent' ? 'Agent' : 'System'));
      li = W.messageItem(role === 'customer' ? 'mine' : role, name, f.text, f.ts);
      if (role === 'agent') showTyping(false);
    } else if (f.type === 'assigned') {
      const name = (f.agent && f.agent.display_name) || 'An agent';
      li = W.h('li', { class: 'event' }, name + ' joined the chat.');
      ui.queueInfo.textContent = 'You are chatting with ' + name + '.';
    } else {
      li = W.h('li', { class: 'event' }, closedText(f));
      onClosed(f);
    }
    conv.add(li, f.seq);
    saveSeq();
  }
  function closedText(f) {
    const res = { resolved: ' (resolved)', unresolved: ' (unresolved)', follow_up: ' (follow-up planned)' }[f.resolution] || '';
    return 'The chat was ended by ' + (f.by === 'customer' ? 'you' : 'the agent') + res + '.';
  }
  function onClosed(f) {
    conv.closed = true;
    typing.stop(true);
    showTyping(false);
    ui.queueInfo.textContent = '';
    ui.closedText.textContent = closedText(f);
    ui.closed.hidden = false;
  }
  function showTyping(on) {
    clearTimeout(theirTypingTimer);
    ui.typing.textContent = on ? 'Agent is typing…' : '';
    if (on) theirTypingTimer = setTimeout(() => showTyping(false), 8000); // in case "off" is lost
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
    ui.queue.focus();
  });
  ui.reconnect.addEventListener('click', () => { attempt = 0; connect(); });

  updateControls();
  connect();
})();

//! One WebSocket connection after the handshake: the loop that reads client frames,
//! writes what the hub sends, keeps the connection alive and closes it with a reason.
//! What is the same for customers and agents lives here; `customer` and `agent`
//! translate their frames.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;

use super::audit::{self, Denial};
use super::hub::{AckFrame, Command, ConnHandle, EventFrame, Outbound};
use super::limits::{FrameLimiter, Place, RetryAfter, Strikes};
use super::{App, agent, customer, encode};
use crate::core::{ConnId, ConversationView, Event, Id, Input, Participant};
use crate::protocol::client::peek_id;
use crate::protocol::server::MediaInfo;
use crate::protocol::{CloseCode, ErrorCode};
use crate::store::StoredConversation;

const SLOW: (CloseCode, &str) = (
    CloseCode::SlowConsumer,
    "slow consumer: reconnect and resume from your last seq",
);

/// How long a close waits for the client's close reply.
const CLOSE_HANDSHAKE: Duration = Duration::from_millis(500);

/// Messages awaiting their ack that are remembered for the latency metric.
const MAX_PENDING_ACKS: usize = 1024;

/// Past conversations shown with a conversation (to its agent) or to the customer.
pub const HISTORY_LIMIT: u32 = 20;

/// Most transcript events read from the store at once.
const PAGE: u32 = 500;

/// Who is on the other end, once known.
pub enum Side {
    Customer {
        customer_id: Id,
        visitor_token: String,
        /// From a verified identity token (`name`), for agents to see.
        display_name: Option<Id>,
    },
    Agent {
        agent_id: Id,
        expires_at: tokio::time::Instant,
    },
}

impl Side {
    pub fn participant(&self) -> Participant {
        match self {
            Side::Customer { customer_id, .. } => Participant::Customer(customer_id.clone()),
            Side::Agent { agent_id, .. } => Participant::Agent(agent_id.clone()),
        }
    }
}

/// What to do after a frame.
pub enum Flow {
    Continue,
    Close(CloseCode, &'static str),
}

/// A client's WebSocket: held by this process, or by another node of a cluster
/// that relays its frames through the backplane (`remote`).
#[allow(clippy::large_enum_variant)] // one per connection, never moved on a hot path
pub enum Socket {
    Local(WebSocket),
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Remote(super::remote::RemoteSocket),
}

impl Socket {
    pub async fn send(&mut self, msg: Message) -> Result<(), axum::Error> {
        match self {
            Socket::Local(ws) => ws.send(msg).await,
            Socket::Remote(remote) => remote.send(msg).await,
        }
    }

    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        match self {
            Socket::Local(ws) => ws.recv().await,
            Socket::Remote(remote) => remote.recv().await.map(Ok),
        }
    }

    /// Writes out what the WebSocket queued by itself: the reply to a client's close
    /// (tungstenite queues it when it reads the close, and sends it only on the next
    /// read or write, which a connection that ends there never makes).
    pub async fn flush(&mut self) -> Result<(), axum::Error> {
        match self {
            Socket::Local(ws) => futures_util::SinkExt::flush(ws).await,
            Socket::Remote(_) => Ok(()),
        }
    }
}

impl Socket {
    /// Sends a close frame; then (with `drain`, when the client still reads) the
    /// closing handshake: read (and drop) what the client still sends until its
    /// close reply, briefly. Closing with unread data makes the kernel reset the
    /// connection, and a reset can overtake the close frame (the client would see
    /// 1006 instead of the reason).
    pub async fn close(&mut self, code: u16, reason: &str, write_timeout: Duration, drain: bool) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let sent =
            tokio::time::timeout(write_timeout, self.send(Message::Close(Some(frame)))).await;
        if matches!(sent, Ok(Ok(()))) && drain {
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
                while let Some(Ok(msg)) = self.recv().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

impl From<WebSocket> for Socket {
    fn from(ws: WebSocket) -> Socket {
        Socket::Local(ws)
    }
}

/// The socket with its limits: counts frames, tracks bad ones, closes with a reason.
pub struct Link {
    pub app: Arc<App>,
    pub socket: Socket,
    role: &'static str,
    /// `warmline_ws_frames_total` for this role, in and out, resolved at first use
    /// (a frame then costs no label lookup).
    frames_counted: std::cell::OnceCell<(prometheus::IntCounter, prometheus::IntCounter)>,
    bad_count: u32,
    bad_since: Instant,
    last_heard: Instant,
    write_timeout: Duration,
    /// A write did not complete within the write timeout: the client is not reading.
    pub stalled: bool,
    /// How the connection ended (a `warmline_connections_closed_total` reason), once
    /// known; unknown at the drop: it was lost.
    ended: Option<&'static str>,
    /// This connection's frame rate (`None`: not limited) and its strikes.
    frames: Option<FrameLimiter>,
    strikes: Strikes,
    /// Who is on the other end, for the audit log: the client address until the
    /// customer or agent is known.
    pub who: Id,
    /// The customer's or agent's counted connection place (held until the drop);
    /// its token is cancelled when the agent is revoked.
    pub place: Option<Place>,
    /// The client's address (`None` for a connection relayed from an edge node).
    pub ip: Option<IpAddr>,
}

pub enum Received {
    Text(Utf8Bytes),
    /// Audio from an agent client (other roles get an error for binary frames).
    Binary(Bytes),
    /// Nothing more will come: the client left or the socket failed.
    Gone,
    /// Handled here (ping, pong, a bad binary frame); read again.
    Nothing,
    Close(CloseCode, &'static str),
}

impl Link {
    pub fn new(app: Arc<App>, socket: impl Into<Socket>, role: &'static str) -> Link {
        let write_timeout = Duration::from_millis(app.config.limits.write_timeout_ms);
        app.metrics.connection_opened(role);
        Link {
            socket: socket.into(),
            role,
            frames_counted: std::cell::OnceCell::new(),
            bad_count: 0,
            bad_since: Instant::now(),
            last_heard: Instant::now(),
            write_timeout,
            stalled: false,
            ended: None,
            frames: app.limits.frames(role),
            strikes: Strikes::default(),
            who: "unknown".into(),
            place: None,
            ip: None,
            app,
        }
    }

    fn frame_counters(&self) -> &(prometheus::IntCounter, prometheus::IntCounter) {
        self.frames_counted.get_or_init(|| {
            let frames = &self.app.metrics.frames;
            (
                frames.with_label_values(&[self.role, "in"]),
                frames.with_label_values(&[self.role, "out"]),
            )
        })
    }

    /// Sends one text frame. `false`: the client is gone or did not read in time.
    pub async fn send(&mut self, frame: Utf8Bytes) -> bool {
        self.frame_counters().1.inc();
        match tokio::time::timeout(self.write_timeout, self.socket.send(Message::Text(frame))).await
        {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.stalled = true;
                false
            }
        }
    }

    /// Sends one binary audio frame. `false`: the client is gone or did not read in time.
    pub async fn send_audio(&mut self, frame: Bytes) -> bool {
        match tokio::time::timeout(self.write_timeout, self.socket.send(Message::Binary(frame)))
            .await
        {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.stalled = true;
                false
            }
        }
    }

    pub async fn error(&mut self, id: Option<&str>, code: ErrorCode, message: &str) -> Flow {
        self.app.metrics.error(code);
        let denial = match code {
            ErrorCode::Forbidden => Some(Denial::Forbidden),
            ErrorCode::Unauthorized => Some(Denial::Unauthorized),
            _ => None,
        };
        if let Some(why) = denial {
            audit::denied(
                &self.app.metrics,
                self.role,
                &self.who,
                "frame",
                why,
                message,
            );
        }
        // Boxed: an error is rare, and this function is inlined into many callers'
        // state machines (the connection's future among them).
        if !Box::pin(self.send(encode::error(id, code, message).into())).await {
            return Flow::Close(CloseCode::Normal, "");
        }
        if code.is_client_fault() {
            return self.count_bad();
        }
        Flow::Continue
    }

    fn count_bad(&mut self) -> Flow {
        if self.bad_since.elapsed() > Duration::from_secs(60) {
            self.bad_since = Instant::now();
            self.bad_count = 0;
        }
        self.bad_count += 1;
        if self.bad_count > self.app.config.limits.bad_frames_per_minute {
            self.abused();
            Flow::Close(CloseCode::Policy, "too many bad frames")
        } else {
            Flow::Continue
        }
    }

    /// A frame over this connection's rate: refused (naming its `id`, so a request
    /// still gets exactly one answer) with the time to wait; a connection that keeps
    /// at it is closed. The audit log gets the first refusal of a minute and the close.
    async fn over_rate(&mut self, text: &str, retry: RetryAfter) -> Received {
        let limits = self.app.limits.config();
        let (rate, burst) = if self.role == "agent" {
            (limits.agent_frames_per_minute, limits.agent_frame_burst)
        } else {
            (
                limits.customer_frames_per_minute,
                limits.customer_frame_burst,
            )
        };
        let allowed = limits.strikes_before_close;
        let first = self.strikes.is_fresh();
        let close = self.strikes.strike(allowed);
        if first || close {
            let detail = if close {
                "over the frame rate too often; closed"
            } else {
                "over the frame rate"
            };
            audit::denied(
                &self.app.metrics,
                self.role,
                &self.who,
                "frame",
                Denial::RateLimited,
                detail,
            );
        } else {
            self.app.metrics.denied(self.role, Denial::RateLimited);
        }
        self.app.metrics.error(ErrorCode::RateLimited);
        let id = peek_id(text);
        let message = format!(
            "too many frames: at most {rate} a minute, {burst} at once; this one was not processed, send it again in {} ms",
            retry.ms()
        );
        let sent = self
            .send(encode::rate_limited(id.as_deref(), &message, retry.ms()).into())
            .await;
        if close {
            self.abused();
            Received::Close(CloseCode::Policy, "rate limit exceeded repeatedly")
        } else if sent {
            Received::Nothing
        } else {
            Received::Gone
        }
    }

    /// This connection is being closed for abuse: its customer or agent cools off,
    /// and (a customer connection's) its address counts one more such close. Agents
    /// are named by their tokens; one agent's client does not shut out an office.
    pub fn abused(&self) {
        let ip = self.ip.filter(|_| self.role == "customer");
        self.app
            .limits
            .abused(self.place.as_ref().map(Place::principal), ip);
    }

    /// The connection is `place`'s owner's from now on: its frames, the `already`
    /// it sent to say who it is included, count against the budget all their
    /// connections share (so reconnecting does not refill it).
    pub fn hold(&mut self, place: Place, already: u32) {
        if let Some(frames) = &mut self.frames {
            frames.share(&place);
            for _ in 0..already {
                let _ = self.app.limits.frame(frames);
            }
        }
        self.place = Some(place);
    }

    pub async fn close(&mut self, code: CloseCode, reason: &str) {
        self.ended.get_or_insert(code.label());
        let drain = !self.stalled;
        self.socket
            .close(code.code(), reason, self.write_timeout, drain)
            .await;
    }

    pub async fn recv(&mut self) -> Received {
        let Some(result) = self.socket.recv().await else {
            return Received::Gone;
        };
        self.last_heard = Instant::now();
        match result {
            Ok(Message::Text(text)) => {
                self.frame_counters().0.inc();
                if let Some(frames) = &self.frames
                    && let Err(retry) = self.app.limits.frame(frames)
                {
                    // Boxed: rare, and inline it would enlarge every connection's
                    // future (`recv` is polled by the connection's loop).
                    return Box::pin(self.over_rate(&text, retry)).await;
                }
                Received::Text(text)
            }
            Ok(Message::Binary(bytes)) if self.role == "agent" => Received::Binary(bytes),
            Ok(Message::Binary(_)) => {
                let message = if self.role == "media" {
                    "the media stream takes Twilio-format JSON text events; audio goes base64-encoded in `media` events"
                } else {
                    "this endpoint takes JSON text frames; binary frames carry call audio only, between an agent and /ws/agent"
                };
                match Box::pin(self.error(None, ErrorCode::InvalidField, message)).await {
                    Flow::Continue => Received::Nothing,
                    Flow::Close(code, reason) => Received::Close(code, reason),
                }
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => Received::Nothing,
            Ok(Message::Close(_)) => {
                self.ended.get_or_insert("client");
                // Complete the closing handshake the client started (RFC 6455 5.5.1).
                let _ = tokio::time::timeout(self.write_timeout, self.socket.flush()).await;
                Received::Gone
            }
            Err(e) => {
                let inner = e.into_inner();
                let cause = inner.downcast_ref::<tungstenite::Error>();
                let too_large = cause.is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)));
                if let Some(close) = cause.and_then(failed_by_client) {
                    // RFC 6455 7.1.7: the client broke the protocol; fail the connection
                    // with a close that says how, not a bare TCP drop.
                    close
                } else if too_large {
                    let limit = self.app.config.limits.max_message_bytes;
                    let message = format!("frames and messages are limited to {limit} bytes");
                    self.app.metrics.error(ErrorCode::TooLarge);
                    let _ = Box::pin(
                        self.send(encode::error(None, ErrorCode::TooLarge, &message).into()),
                    )
                    .await;
                    Received::Close(CloseCode::TooLarge, "message too large")
                } else {
                    Received::Gone
                }
            }
        }
    }

    /// The next text frame before `deadline`, during a handshake (`hello`, a media
    /// `start`). `None`: the client left, or was closed (with `late` when too slow,
    /// and at once with 1001 when the gateway shuts down meanwhile: 1012 when a node
    /// of several stops owning routing).
    pub async fn text_before(
        &mut self,
        deadline: tokio::time::Instant,
        late: &'static str,
    ) -> Option<Utf8Bytes> {
        let ending = self.app.epoch.clone();
        loop {
            let received = tokio::select! {
                biased;
                () = ending.cancelled() => {
                    let (code, reason) = self.app.farewell();
                    self.close(code, reason).await;
                    return None;
                }
                received = tokio::time::timeout_at(deadline, self.recv()) => received,
            };
            match received {
                Err(_) => {
                    self.close(CloseCode::Policy, late).await;
                    return None;
                }
                Ok(Received::Text(text)) => return Some(text),
                Ok(Received::Nothing | Received::Binary(_)) => continue,
                Ok(Received::Gone) => return None,
                Ok(Received::Close(code, reason)) => {
                    self.close(code, reason).await;
                    return None;
                }
            }
        }
    }

    fn silent_for(&self) -> Duration {
        self.last_heard.elapsed()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.app
            .metrics
            .connection_closed(self.role, self.ended.unwrap_or("lost"));
    }
}

/// A connection the hub knows: it follows conversations and gets their events.
pub struct Session {
    pub link: Box<Link>,
    pub conn: ConnId,
    pub side: Side,
    rx: mpsc::Receiver<Outbound>,
    slow: CancellationToken,
    /// Conversation -> highest `seq` this connection has been sent.
    following: HashMap<Id, u64>,
    /// Messages sent and not yet acked: (request id, when read).
    pending_acks: VecDeque<(Id, Instant)>,
    /// Call audio for an agent connection (frames from callers).
    audio: Option<mpsc::Receiver<Bytes>>,
}

impl Session {
    /// Registers with the hub and sends the welcome. `None`: the gateway is stopping
    /// or the client left.
    pub async fn start(link: Box<Link>, side: Side) -> Option<Session> {
        let app = link.app.clone();
        let conn = app.next_conn();
        let (tx, rx) = mpsc::channel(app.config.limits.outbound_queue);
        let slow = CancellationToken::new();
        let who = side.participant();
        let handle = ConnHandle {
            tx,
            slow: slow.clone(),
        };
        let greeting = match &side {
            Side::Customer { customer_id, .. } => Input::CustomerHello {
                conn,
                customer_id: customer_id.clone(),
            },
            Side::Agent { agent_id, .. } => Input::AgentConnected {
                conn,
                agent_id: agent_id.clone(),
            },
        };
        let attached = app
            .hub
            .send(Command::Attach { conn, who, handle })
            .await
            .is_ok()
            && app.hub.send(Command::Core(greeting)).await.is_ok();
        let mut session = Session {
            link,
            conn,
            side,
            rx,
            slow,
            following: HashMap::new(),
            pending_acks: VecDeque::new(),
            audio: None,
        };
        if !attached {
            let (code, reason) = app.farewell();
            session.link.close(code, reason).await;
            return None;
        }
        // Until the welcome, hold anything else the hub sends (an offer, say).
        let mut early = Vec::new();
        let welcome = loop {
            match session.rx.recv().await {
                Some(Outbound::CustomerWelcome(open)) => {
                    let Side::Customer {
                        customer_id,
                        visitor_token,
                        ..
                    } = &session.side
                    else {
                        break None;
                    };
                    break Some(encode::customer_welcome(customer_id, visitor_token, &open));
                }
                Some(Outbound::AgentWelcome(snapshot)) => {
                    // Each conversation's context, as `conversation` has it: a console
                    // that loads again must not lose what the accept showed.
                    let mut contexts = Vec::with_capacity(snapshot.conversations.len());
                    for view in &snapshot.conversations {
                        contexts.push(Self::context(&app, view).await);
                    }
                    let calls = &app.calls;
                    break Some(encode::agent_welcome(&snapshot, &contexts, |c| {
                        calls
                            .by_conversation(c)
                            .map(|call| MediaInfo::pcmu(call.handle))
                    }));
                }
                Some(other) => early.push(other),
                None => break None,
            }
        };
        if let Side::Agent { agent_id, .. } = &session.side {
            let (tx, rx) = mpsc::channel(app.config.media.audio_queue_frames);
            app.agent_audio.add(agent_id.clone(), conn, tx);
            session.audio = Some(rx);
        }
        let Some(welcome) = welcome else {
            session.detach().await;
            return None;
        };
        let mut ok = session.link.send(welcome.into()).await;
        for item in early {
            ok = ok && session.deliver(item).await;
        }
        if !ok {
            session.detach().await;
            return None;
        }
        Some(session)
    }

    pub async fn run(mut self) {
        let ping_every = Duration::from_millis(self.link.app.config.limits.ping_interval_ms);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let shutdown = self.link.app.epoch.clone();
        let expires_at = match &self.side {
            Side::Agent { expires_at, .. } => Some(*expires_at),
            Side::Customer { .. } => None,
        };
        let revocation = self.link.place.as_ref().map(|p| p.revoked.clone());
        // Made once, not at every turn of the loop: each of these registers with its
        // token or the timer wheel when first polled, and unregisters when dropped.
        let ending = shutdown.cancelled();
        let slow = self.slow.clone();
        let slowed = slow.cancelled();
        let expired = sleep_until(expires_at);
        let revoked = revoked(revocation.as_ref());
        tokio::pin!(ending, slowed, expired, revoked);
        let closing = loop {
            tokio::select! {
                biased;
                () = &mut ending => break Some(self.link.app.farewell()),
                () = &mut slowed => break Some(SLOW),
                item = self.rx.recv() => match item {
                    Some(item) => {
                        if !self.deliver(item).await {
                            break self.link.stalled.then_some(SLOW);
                        }
                    }
                    None => break Some(self.link.app.farewell()),
                },
                Some(frame) = recv_audio(&mut self.audio) => {
                    if !self.link.send_audio(frame).await {
                        break self.link.stalled.then_some(SLOW);
                    }
                }
                received = self.link.recv() => match received {
                    // Boxed: decoding and answering a frame (a `resume`, say, reads the
                    // store and writes pages of events) is a large state machine; inline,
                    // it would stay part of every idle connection's future. One
                    // allocation per frame read, small beside decoding it.
                    Received::Text(text) => match Box::pin(self.on_text(&text)).await {
                        Flow::Continue => {}
                        Flow::Close(CloseCode::Normal, _) => break self.link.stalled.then_some(SLOW),
                        Flow::Close(code, reason) => break Some((code, reason)),
                    },
                    Received::Binary(frame) => match agent::on_audio(&mut self, frame).await {
                        Flow::Continue => {}
                        Flow::Close(CloseCode::Normal, _) => break self.link.stalled.then_some(SLOW),
                        Flow::Close(code, reason) => break Some((code, reason)),
                    },
                    Received::Nothing => {}
                    Received::Gone => break None,
                    Received::Close(code, reason) => break Some((code, reason)),
                },
                _ = ping.tick() => {
                    if self.link.silent_for() > ping_every * 2 {
                        break Some((CloseCode::KeepaliveTimeout, "no pong in time"));
                    }
                    let sent = tokio::time::timeout(
                        ping_every,
                        self.link.socket.send(Message::Ping(Default::default())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break None;
                    }
                }
                () = &mut expired => {
                    break Some((CloseCode::TokenExpired, "the agent token expired; reconnect with a fresh one"));
                }
                () = &mut revoked => {
                    break Some((CloseCode::Revoked, "access revoked by an operator"));
                }
            }
        };
        // Boxed: once per connection, at its end.
        if let Some((code, reason)) = closing {
            Box::pin(self.link.close(code, reason)).await;
        }
        Box::pin(self.detach()).await;
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        match self.side {
            Side::Customer { .. } => customer::on_text(self, text).await,
            Side::Agent { .. } => agent::on_text(self, text).await,
        }
    }

    async fn detach(&mut self) {
        if let Side::Agent { agent_id, .. } = &self.side {
            self.link.app.agent_audio.remove(agent_id, self.conn);
        }
        let who = self.side.participant();
        let _ = self
            .link
            .app
            .hub
            .send(Command::Detach {
                conn: self.conn,
                who,
            })
            .await;
    }

    /// Hands a command to the hub. `false`: the hub is gone (shutting down).
    pub async fn submit(&mut self, input: Input) -> bool {
        self.link.app.hub.send(Command::Core(input)).await.is_ok()
    }

    /// Writes what the hub sent, keeping each followed conversation in `seq` order.
    /// `false`: the client is gone.
    async fn deliver(&mut self, item: Outbound) -> bool {
        match item {
            Outbound::Frame(frame) => self.link.send(frame).await,
            Outbound::Event(event) => {
                let EventFrame {
                    conversation_id,
                    seq,
                    frame,
                    durable_at,
                } = &*event;
                let Some(&cursor) = self.following.get(conversation_id) else {
                    return true;
                };
                if *seq <= cursor {
                    return true;
                }
                if *seq > cursor + 1
                    && !Box::pin(self.fill_gap(conversation_id, cursor, seq - 1)).await
                {
                    return false;
                }
                if let Some(cursor) = self.following.get_mut(conversation_id) {
                    *cursor = *seq;
                }
                let sent = self.link.send(frame.clone()).await;
                if sent {
                    self.link
                        .app
                        .metrics
                        .delivery_seconds
                        .observe(durable_at.elapsed().as_secs_f64());
                }
                sent
            }
            Outbound::Scoped(scoped) => {
                if !self.following.contains_key(&scoped.conversation_id) {
                    return true;
                }
                self.link.send(scoped.frame.clone()).await
            }
            Outbound::Acked(ack) => {
                let AckFrame {
                    req,
                    conversation_id,
                    seq,
                    frame,
                } = *ack;
                if let Some(&cursor) = self.following.get(&conversation_id)
                    && seq > cursor
                {
                    if seq > cursor + 1
                        && !Box::pin(self.fill_gap(&conversation_id, cursor, seq - 1)).await
                    {
                        return false;
                    }
                    self.following.insert(conversation_id, seq);
                }
                if let Some(req) = req
                    && let Some(i) = self.pending_acks.iter().position(|(r, _)| *r == req)
                {
                    let (_, at) = self.pending_acks.remove(i).unwrap_or((req, Instant::now()));
                    self.link
                        .app
                        .metrics
                        .ack_seconds
                        .observe(at.elapsed().as_secs_f64());
                }
                self.link.send(frame).await
            }
            Outbound::Follow(follow) => {
                self.following
                    .entry(follow.conversation_id.clone())
                    .or_insert(0);
                self.link.send(follow.frame.clone()).await
            }
            // Boxed, as the gap filling above: rare, and large (store reads, the
            // transcript); inline they would enlarge every connection's future.
            Outbound::Joined(view) => Box::pin(self.send_conversation(&view)).await,
            Outbound::CustomerWelcome(_) | Outbound::AgentWelcome(_) => true,
        }
    }

    /// Sends events `after+1 ..= upto` from the store (they were dispatched before
    /// this connection followed the conversation, or were lost to a race).
    async fn fill_gap(&mut self, conversation_id: &Id, after: u64, upto: u64) -> bool {
        let mut cursor = after;
        while cursor < upto {
            let want = u32::try_from(upto - cursor).unwrap_or(PAGE).min(PAGE);
            let Some(events) =
                Self::read_events(self.link.app.clone(), conversation_id, cursor, want).await
            else {
                return false;
            };
            if events.is_empty() {
                break;
            }
            for event in events {
                cursor = event.seq;
                if !self.link.send(encode::event(&event).into()).await {
                    return false;
                }
            }
        }
        self.following.insert(conversation_id.clone(), cursor);
        true
    }

    /// Transcript events after `after`; `None` (logged and counted) if the store failed.
    async fn read_events(
        app: Arc<App>,
        conversation_id: &str,
        after: u64,
        limit: u32,
    ) -> Option<Vec<Event>> {
        match app.store.events_after(conversation_id, after, limit).await {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::error!(error = %e, "reading the transcript failed");
                app.metrics
                    .store_failures
                    .with_label_values(&["read"])
                    .inc();
                None
            }
        }
    }

    /// The core input for a chat message, remembering when it was read so the ack
    /// latency can be measured.
    pub fn post(
        &mut self,
        id: Option<String>,
        conversation_id: String,
        text: String,
        client_msg_id: Option<String>,
    ) -> Input {
        let req: Option<Id> = id.map(Id::from);
        if let Some(req) = &req {
            if self.pending_acks.len() >= MAX_PENDING_ACKS {
                self.pending_acks.pop_front();
            }
            self.pending_acks.push_back((req.clone(), Instant::now()));
        }
        Input::Post {
            conn: self.conn,
            req,
            from: self.side.participant(),
            conversation_id: conversation_id.into(),
            text: text.into(),
            client_msg_id: client_msg_id.map(Id::from),
        }
    }

    async fn send_conversation(&mut self, view: &ConversationView) -> bool {
        let mut transcript = Vec::new();
        let mut cursor = 0;
        loop {
            let Some(page) =
                Self::read_events(self.link.app.clone(), &view.conversation_id, cursor, PAGE).await
            else {
                return false;
            };
            let done = page.len() < PAGE as usize;
            for event in &page {
                cursor = event.seq;
                transcript.push(encode::event(event));
            }
            if done {
                break;
            }
        }
        self.following.insert(view.conversation_id.clone(), cursor);
        let media = self
            .link
            .app
            .calls
            .by_conversation(&view.conversation_id)
            .map(|call| MediaInfo::pcmu(call.handle));
        let context = Self::context(&self.link.app, view).await;
        let frame = encode::conversation(view, transcript, cursor, media, &context);
        self.link.send(frame.into()).await
    }

    /// What the agent sees beside the transcript (`encode::Context`): who this customer
    /// is to us (their other conversations, newest first) and, for a repeat contact, the
    /// conversation it repeats with what was said in it. A store error leaves those out.
    async fn context(app: &Arc<App>, view: &ConversationView) -> encode::Context {
        let history = match app
            .store
            .past_conversations(&view.customer_id, HISTORY_LIMIT)
            .await
        {
            Ok(history) => history,
            Err(e) => {
                tracing::warn!(error = %e, "reading customer history failed");
                Vec::new()
            }
        };
        let mut earlier = None;
        if let Some(id) = &view.repeat_of
            && history.iter().any(|p| *p.id == **id)
        {
            earlier = Self::read_events(app.clone(), id, 0, PAGE).await;
        }
        encode::Context::new(view, history, earlier.as_deref())
    }

    /// `resume`: checks the conversation is the client's, sends every event after
    /// `last_seq`, then `resumed` (and an `ack` when the request had an `id`).
    pub async fn resume(&mut self, id: Option<&str>, conversation_id: &str, last_seq: u64) -> Flow {
        let stored = match self.link.app.store.conversation(conversation_id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "reading a conversation failed");
                return self
                    .link
                    .error(
                        id,
                        ErrorCode::Unavailable,
                        "the store could not be read; try again",
                    )
                    .await;
            }
        };
        let Some(stored) = stored else {
            let message = format!("there is no conversation `{conversation_id}`");
            return self.link.error(id, ErrorCode::NotFound, &message).await;
        };
        match self.may_read(&stored).await {
            Ok(true) => {}
            Ok(false) => {
                let message = format!("conversation `{conversation_id}` is not yours");
                return self.link.error(id, ErrorCode::Forbidden, &message).await;
            }
            Err(()) => {
                return self
                    .link
                    .error(
                        id,
                        ErrorCode::Unavailable,
                        "the store could not be read; try again",
                    )
                    .await;
            }
        }
        if last_seq > stored.last_seq {
            let message = format!(
                "`last_seq` {last_seq} is ahead of the conversation (its latest is {}); resume from 0 to resync",
                stored.last_seq
            );
            return self.link.error(id, ErrorCode::InvalidField, &message).await;
        }
        let conversation_id: Id = stored.record.id.clone();
        let from = self
            .following
            .get(&conversation_id)
            .map_or(last_seq, |&c| c.min(last_seq));
        self.following.insert(conversation_id.clone(), from);
        if !self.fill_gap(&conversation_id, from, u64::MAX).await {
            return Flow::Close(CloseCode::Normal, "");
        }
        let cursor = self
            .following
            .get(&conversation_id)
            .copied()
            .unwrap_or(from);
        if !self
            .link
            .send(encode::resumed(&conversation_id, cursor).into())
            .await
        {
            return Flow::Close(CloseCode::Normal, "");
        }
        if id.is_some()
            && !self
                .link
                .send(encode::ack(id, Some(&conversation_id), Some(cursor)).into())
                .await
        {
            return Flow::Close(CloseCode::Normal, "");
        }
        Flow::Continue
    }

    async fn may_read(&mut self, stored: &StoredConversation) -> Result<bool, ()> {
        match &self.side {
            Side::Customer { customer_id, .. } => Ok(stored.record.customer_id == *customer_id),
            Side::Agent { agent_id, .. } => {
                if stored.record.agent_id.as_ref() == Some(agent_id) {
                    return Ok(true);
                }
                self.link
                    .app
                    .store
                    .was_assigned(&stored.record.id, agent_id)
                    .await
                    .map_err(|e| tracing::error!(error = %e, "reading assignments failed"))
            }
        }
    }
}

/// The next audio frame, or never when the connection carries no audio.
async fn recv_audio(audio: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match audio {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the connection's customer or agent is revoked; never without a place.
async fn revoked(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The close owed to a client whose frames broke RFC 6455: 1007 for a text message
/// that is not UTF-8, 1002 for any other protocol violation (reserved bits or
/// opcodes, a bad continuation, a fragmented or oversized control frame, an
/// unmasked frame). `None`: not the client's fault, or the connection is gone.
fn failed_by_client(e: &tungstenite::Error) -> Option<Received> {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::Utf8(_) => Some(Received::Close(
            CloseCode::InvalidData,
            "a text message that is not UTF-8",
        )),
        tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::SendAfterClosing
            | ProtocolError::ReceivedAfterClosing,
        ) => None,
        tungstenite::Error::Protocol(_) => Some(Received::Close(
            CloseCode::ProtocolError,
            "WebSocket protocol violation",
        )),
        _ => None,
    }
}

//! The hub: the one task that owns the switchboard and the connection registry.
//!
//! It takes commands in batches, applies them to the core, commits every record the
//! batch produced in one transaction (group commit), and only then lets the other
//! effects out: acks, events, replies. Offers alone may go out before the commit
//! (ARCHITECTURE.md, "Durable before acknowledged"): an offer carries no transcript
//! and acknowledges nothing, and the agent's `accept` is a later batch. Delivery to a connection is `try_send` on its
//! bounded queue; a full queue closes that connection as a slow consumer, it never
//! blocks the hub.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::audit::{self, Denial};
use super::calls::Calls;
use super::definitions::{ApiError, Definitions};
use super::encode;
use super::metrics::Metrics;
use crate::config::{AgentConfig, QueueConfig};
use crate::core::{
    AgentSnapshot, Channel, ConnId, ConversationState, ConversationView, Effect, EventBody,
    FollowUpDue, Id, Input, Millis, Notice, OpenConversation, Participant, Record, RefusalKind,
    Reply, RevokeReason, Switchboard,
};
use crate::protocol::ErrorCode;
use crate::protocol::server::MediaInfo;
use crate::store::Store;

/// What the hub hands a connection. Kept small (at most 40 bytes, checked below):
/// every connection's queue allocates its first block of 32 slots up front, so each
/// byte here is 32 bytes of every idle connection. What is larger is behind a
/// pointer, shared by every recipient where it can be.
#[derive(Debug)]
pub enum Outbound {
    /// Send as is.
    Frame(Utf8Bytes),
    /// A transcript event: sent only to connections that follow the conversation, in
    /// `seq` order; a gap is filled from the store first.
    Event(Arc<EventFrame>),
    /// A conversation-scoped frame without `seq` (`queued`, `typing`).
    Scoped(Arc<ScopedFrame>),
    /// The ack of a message: always sent; the connection's cursor moves past `seq`,
    /// so its own message is not echoed back to it.
    Acked(Box<AckFrame>),
    /// `start` was accepted: follow the conversation from the beginning, send the ack.
    Follow(Arc<ScopedFrame>),
    CustomerWelcome(Vec<OpenConversation>),
    AgentWelcome(Box<AgentSnapshot>),
    /// The agent accepted: send the whole conversation and follow it.
    Joined(Arc<ConversationView>),
}

const _: () = assert!(std::mem::size_of::<Outbound>() <= 40);

/// A transcript event's frame, one per event, shared by its recipients.
#[derive(Debug)]
pub struct EventFrame {
    pub conversation_id: Id,
    pub seq: u64,
    pub frame: Utf8Bytes,
    /// When the batch holding the event was committed (for the delivery latency).
    pub durable_at: Instant,
}

/// A frame about one conversation.
#[derive(Debug)]
pub struct ScopedFrame {
    pub conversation_id: Id,
    pub frame: Utf8Bytes,
}

/// The ack of a message.
#[derive(Debug)]
pub struct AckFrame {
    pub req: Option<Id>,
    pub conversation_id: Id,
    pub seq: u64,
    pub frame: Utf8Bytes,
}

#[derive(Clone)]
pub struct ConnHandle {
    pub tx: mpsc::Sender<Outbound>,
    /// Cancelled when the connection's queue overflowed.
    pub slow: CancellationToken,
}

/// What the operator API asks of the hub.
pub enum AdminRequest {
    ListQueues,
    GetQueue(String),
    PutQueue { queue: QueueConfig, create: bool },
    RemoveQueue(String),
    QueueState(String),
    ListAgents,
    GetAgent(String),
    PutAgent { agent: AgentConfig, create: bool },
    RemoveAgent(String),
}

pub type AdminReply = Result<Value, ApiError>;

pub enum Command {
    Attach {
        conn: ConnId,
        who: Participant,
        handle: ConnHandle,
    },
    Detach {
        conn: ConnId,
        who: Participant,
    },
    Core(Input),
    /// A frame for a participant's connections that follow a conversation, made by
    /// the shell without the core (a call's `mark` reached, for instance).
    Relay {
        to: Participant,
        conversation_id: Id,
        frame: Utf8Bytes,
    },
    Admin {
        request: AdminRequest,
        reply: oneshot::Sender<AdminReply>,
    },
    /// Follow-ups that fell due (`follow_ups.rs`): opened in this batch; `done` is
    /// answered once the batch is committed (or has failed), not before.
    FollowUpsDue {
        due: Vec<FollowUpDue>,
        done: oneshot::Sender<()>,
    },
}

/// Agent ids the agent handshake accepts.
pub type KnownAgents = Arc<std::sync::RwLock<std::collections::HashSet<String>>>;

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub struct Hub {
    switchboard: Switchboard,
    definitions: Definitions,
    /// Agent ids the handshake accepts, kept in step with the definitions.
    known_agents: KnownAgents,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    conns: HashMap<ConnId, ConnHandle>,
    by_participant: HashMap<Participant, Vec<ConnId>>,
    max_batch: usize,
    gauges_at: Option<Instant>,
    /// Live calls: told who their agent is as assignments are committed.
    calls: Arc<Calls>,
    /// When the last batch became durable.
    durable_at: Instant,
    /// The agent behind each agent connection.
    agent_of: HashMap<ConnId, Id>,
    /// Agents with effects waiting on a commit (in flight or gathering): their offers
    /// wait too, so each agent sees everything in the order the core made it.
    waiting_agents: std::collections::HashSet<Id>,
    /// The last transcript event encoded, with its frame: the same event told to the
    /// customer and the agent is encoded once, and one shared item goes to all of them.
    last_event: Option<(Arc<crate::core::Event>, Arc<EventFrame>)>,
    /// The connection that was just acked a message, and the message's conversation
    /// and `seq`. The core replies before it tells the event, so the event that
    /// follows is that connection's own message: it is not queued to it.
    last_ack: Option<(ConnId, Id, u64)>,
    /// Cancelled when the store refused a commit because another node took the
    /// routing ownership (several nodes): the hub stops.
    deposed: CancellationToken,
    /// The last commit failed (disk full, say): `/readyz` is unready (through the
    /// `store_commit_failing` gauge) until a commit or a write probe succeeds.
    failing: bool,
    /// The core may be ahead of the store (rebuilt after a failure, but what the
    /// rebuild made could not be committed): rebuild again before the next batch.
    stale: bool,
}

impl Hub {
    pub fn new(
        switchboard: Switchboard,
        definitions: Definitions,
        known_agents: KnownAgents,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        max_batch: usize,
        calls: Arc<Calls>,
    ) -> Hub {
        Hub {
            switchboard,
            definitions,
            known_agents,
            store,
            metrics,
            conns: HashMap::new(),
            by_participant: HashMap::new(),
            max_batch,
            gauges_at: None,
            calls,
            durable_at: Instant::now(),
            agent_of: HashMap::new(),
            waiting_agents: std::collections::HashSet::new(),
            last_event: None,
            last_ack: None,
            deposed: CancellationToken::new(),
            failing: false,
            stale: false,
        }
    }

    /// Cancelled if another node fences this one off (its commits are refused).
    pub fn deposed(&self) -> CancellationToken {
        self.deposed.clone()
    }

    /// Runs until `stop` is cancelled and every command already sent is applied and
    /// committed (or every sender is gone).
    ///
    /// One commit is in flight at a time, and the hub does not wait for it: while the
    /// store makes batch N durable, the commands that arrive are applied and their
    /// records gathered into batch N+1, committed the moment N is. Each batch's
    /// effects (acks, events, replies) go out when its commit is done, in order.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>, stop: CancellationToken) {
        let mut commands = Vec::with_capacity(self.max_batch);
        let mut effects = Vec::new();
        let mut next = Batch::default();
        let mut committing: Option<InFlight> = None;
        let mut stopping = false;
        let mut drained = false;
        // While commits fail, a write probe once a second (`probe`).
        let mut probes = tokio::time::interval(Duration::from_secs(1));
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.switchboard.next_deadline().map(|at| {
                let wait = at.saturating_sub(now_ms());
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            tokio::select! {
                n = rx.recv_many(&mut commands, self.max_batch), if !drained => {
                    if n == 0 {
                        drained = true;
                    }
                }
                (records, result) = in_flight(&mut committing), if committing.is_some() => {
                    let batch = committing.take().expect("polled only while some");
                    self.committed(batch, records, result, &mut next).await;
                    if self.deposed.is_cancelled() {
                        tracing::warn!("another node owns routing now; this hub stops");
                        break;
                    }
                }
                () = sleep_until(deadline), if !drained => {}
                _ = probes.tick(), if !stopping && committing.is_none() && (self.failing || self.stale) => {
                    self.probe().await;
                }
                () = stop.cancelled(), if !stopping => {
                    // Refuse new commands; the loop drains those already queued.
                    stopping = true;
                    rx.close();
                    continue;
                }
            }
            if self.stale && committing.is_none() {
                self.reload().await;
            }
            let now = now_ms();
            for command in commands.drain(..) {
                match command {
                    Command::Attach { conn, who, handle } => {
                        self.conns.insert(conn, handle);
                        if let Participant::Agent(agent_id) = &who {
                            self.agent_of.insert(conn, agent_id.clone());
                        }
                        self.by_participant.entry(who).or_default().push(conn);
                    }
                    Command::Detach { conn, who } => self.detach(conn, who, now, &mut effects),
                    Command::Core(input) => self.switchboard.handle(input, now, &mut effects),
                    Command::Relay {
                        to,
                        conversation_id,
                        frame,
                    } => {
                        let conns = self.by_participant.get(&to).cloned().unwrap_or_default();
                        let scoped = Arc::new(ScopedFrame {
                            conversation_id,
                            frame,
                        });
                        for conn in conns {
                            self.send(conn, Outbound::Scoped(scoped.clone()));
                        }
                    }
                    Command::Admin { request, reply } => {
                        let answer = self.admin(request, now).await;
                        let _ = reply.send(answer);
                    }
                    Command::FollowUpsDue { due, done } => {
                        for f in due {
                            self.switchboard.handle(
                                Input::OpenFollowUp(Box::new(f)),
                                now,
                                &mut effects,
                            );
                        }
                        next.done.push(done);
                    }
                }
            }
            if !drained {
                self.switchboard.handle(Input::Tick, now, &mut effects);
            }
            self.stage(&mut effects, &mut next, committing.is_some());
            if committing.is_none() && !next.is_empty() {
                committing = Some(self.begin_commit(std::mem::take(&mut next)));
            }
            self.refresh_gauges();
            if drained && committing.is_none() && next.is_empty() {
                break;
            }
        }
        tracing::debug!("hub stopped");
    }

    /// Operator API requests. A change is validated, made durable, then applied to
    /// the core; the reply is the definition as it now stands.
    async fn admin(&mut self, request: AdminRequest, now: Millis) -> AdminReply {
        match request {
            AdminRequest::ListQueues => Ok(self.definitions.queues_json()),
            AdminRequest::GetQueue(name) => self.definitions.queue_json(&name),
            AdminRequest::ListAgents => Ok(self.definitions.agents_json()),
            AdminRequest::GetAgent(id) => self.definitions.agent_json(&id),
            AdminRequest::QueueState(name) => {
                let state = self.switchboard.queue_state(&name, now).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        ErrorCode::NotFound,
                        format!("there is no queue named `{name}`"),
                    )
                })?;
                Ok(json!({
                    "queue": name,
                    "waiting": state.waiting,
                    "offered": state.offered,
                    "active": state.active,
                    "longest_wait_ms": state.longest_wait_ms,
                    "agents": {
                        "available": state.agents_available,
                        "away": state.agents_away,
                        "wrap_up": state.agents_wrap_up,
                        "offline": state.agents_offline,
                    },
                }))
            }
            AdminRequest::PutQueue { queue, create } => {
                self.definitions.check_put_queue(&queue, create)?;
                self.persist_definition("queue", &queue.name, &queue, now)
                    .await?;
                let routing = self.definitions.routing();
                let settings = queue.settings(routing);
                let percent = queue
                    .service_level_percent
                    .unwrap_or(routing.service_level_percent);
                self.metrics
                    .define_queue(&queue.name, settings.service_level_ms, percent);
                let name = queue.name.clone();
                self.definitions.put_queue(queue);
                self.switchboard.define_queue(settings, now);
                self.definitions.queue_json(&name)
            }
            AdminRequest::PutAgent { agent, create } => {
                self.definitions.check_put_agent(&agent, create)?;
                self.persist_definition("agent", &agent.id, &agent, now)
                    .await?;
                let settings = agent.settings();
                let id = agent.id.clone();
                self.definitions.put_agent(agent);
                self.switchboard.define_agent(settings);
                if let Ok(mut known) = self.known_agents.write() {
                    known.insert(id.clone());
                }
                self.definitions.agent_json(&id)
            }
            AdminRequest::RemoveQueue(name) => {
                self.definitions.check_remove_queue(&name)?;
                self.switchboard
                    .remove_queue(&name)
                    .map_err(refusal_to_api)?;
                self.unpersist_definition("queue", &name).await?;
                self.definitions.remove_queue(&name);
                self.metrics.forget_queue(&name);
                Ok(Value::Null)
            }
            AdminRequest::RemoveAgent(id) => {
                self.definitions.check_remove_agent(&id)?;
                self.switchboard.remove_agent(&id).map_err(refusal_to_api)?;
                self.unpersist_definition("agent", &id).await?;
                self.definitions.remove_agent(&id);
                if let Ok(mut known) = self.known_agents.write() {
                    known.remove(&id);
                }
                Ok(Value::Null)
            }
        }
    }

    async fn persist_definition<T: serde::Serialize>(
        &self,
        kind: &str,
        id: &str,
        item: &T,
        now: Millis,
    ) -> Result<(), ApiError> {
        let body = serde_json::to_string(item).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                e.to_string(),
            )
        })?;
        self.store
            .put_definition(kind, id, &body, now)
            .await
            .map_err(store_unavailable)
    }

    async fn unpersist_definition(&self, kind: &str, id: &str) -> Result<(), ApiError> {
        self.store
            .delete_definition(kind, id)
            .await
            .map_err(store_unavailable)
    }

    fn detach(&mut self, conn: ConnId, who: Participant, now: Millis, out: &mut Vec<Effect>) {
        self.conns.remove(&conn);
        self.agent_of.remove(&conn);
        let Some(list) = self.by_participant.get_mut(&who) else {
            return;
        };
        list.retain(|c| *c != conn);
        if list.is_empty() {
            self.by_participant.remove(&who);
            if let Participant::Agent(agent_id) = who {
                self.switchboard
                    .handle(Input::AgentDisconnected { agent_id }, now, out);
            }
        }
    }

    /// Sorts the effects of applied commands into `next`: records to commit, and what
    /// waits for that commit. Offers go out at once (ARCHITECTURE.md, "Durable before
    /// acknowledged": an offer acknowledges nothing) unless something earlier for the
    /// same agent is still waiting; with nothing to commit and nothing waiting, the
    /// rest goes out too.
    fn stage(&mut self, effects: &mut Vec<Effect>, next: &mut Batch, committing: bool) {
        if effects.is_empty() {
            return;
        }
        let nothing_waits = !committing && next.is_empty();
        if nothing_waits {
            self.waiting_agents.clear();
        }
        for effect in effects.drain(..) {
            match effect {
                Effect::Persist(record) => next.records.push(record),
                Effect::Notify {
                    to: Participant::Agent(agent_id),
                    notice: Notice::Offer(offer),
                } if !self.waiting_agents.contains(&agent_id) => {
                    self.dispatch(Effect::Notify {
                        to: Participant::Agent(agent_id),
                        notice: Notice::Offer(offer),
                    });
                }
                other => {
                    if let Some(agent_id) = addressed_agent(&self.agent_of, &other)
                        && !self.waiting_agents.contains(agent_id)
                    {
                        self.waiting_agents.insert(agent_id.clone());
                    }
                    next.rest.push(other);
                }
            }
        }
        if nothing_waits && next.records.is_empty() {
            // Nothing to make durable and nothing ahead of it: out now.
            for effect in std::mem::take(&mut next.rest) {
                self.dispatch(effect);
            }
            for done in next.done.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Hands `batch`'s records to the store; its other effects wait in the returned
    /// commit until it is done.
    fn begin_commit(&self, batch: Batch) -> InFlight {
        let store = self.store.clone();
        let Batch {
            records,
            rest,
            done,
        } = batch;
        InFlight {
            commit: Box::pin(async move {
                let result = if records.is_empty() {
                    Ok(())
                } else {
                    store.commit(&records).await
                };
                (records, result)
            }),
            rest,
            done,
            started: Instant::now(),
        }
    }

    /// A commit is done: its effects go out. If it failed, nothing of it or of the
    /// batch gathered behind it (built on it) is let out: requests get `unavailable`,
    /// and the core is rebuilt from the store (the truth), so it forgets what was
    /// never made durable.
    async fn committed(
        &mut self,
        batch: InFlight,
        records: Vec<Record>,
        result: Result<(), crate::store::StoreError>,
        next: &mut Batch,
    ) {
        let InFlight {
            rest,
            done,
            started,
            ..
        } = batch;
        if !records.is_empty() {
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batch_records.observe(records.len() as f64);
            self.durable_at = Instant::now();
        }
        // The agents whose offers must wait are now those of the batch behind.
        self.waiting_agents.clear();
        for effect in &next.rest {
            if let Some(agent_id) = addressed_agent(&self.agent_of, effect) {
                self.waiting_agents.insert(agent_id.clone());
            }
        }
        if let Err(e) = result {
            tracing::error!(error = %e, records = records.len(), "store commit failed");
            self.metrics
                .store_failures
                .with_label_values(&["commit"])
                .inc();
            self.set_failing(true);
            self.refuse_all(rest);
            let behind = std::mem::take(next);
            self.refuse_all(behind.rest);
            for done in done.into_iter().chain(behind.done) {
                let _ = done.send(());
            }
            self.waiting_agents.clear();
            if matches!(e, crate::store::StoreError::Fenced { .. }) {
                // Another node owns routing now: stop; the node steps down.
                self.deposed.cancel();
                return;
            }
            self.reload().await;
            return;
        }
        if !records.is_empty() {
            self.set_failing(false);
            let (written, counted) = (self.store.wal_bytes(), self.metrics.store_wal_bytes.get());
            if written > counted {
                self.metrics.store_wal_bytes.inc_by(written - counted);
            }
            for record in &records {
                self.metrics.experience.record(record);
                match record {
                    Record::Event(e) => {
                        if let EventBody::Message { author, .. } = &e.body {
                            let channel = self
                                .switchboard
                                .channel_of(&e.conversation_id)
                                .unwrap_or(Channel::Chat);
                            self.metrics.message(author.role, channel);
                        }
                    }
                    // A call's audio goes to the conversation's agent while it is
                    // active with them (every change of agent or state is recorded).
                    Record::Conversation(rec) => {
                        if let Some(call) = self.calls.by_conversation(&rec.id) {
                            let active = rec.state == ConversationState::Active;
                            call.set_agent(rec.agent_id.clone().filter(|_| active));
                        }
                    }
                    Record::OfferDeclined { queue, missed, .. } => {
                        let how = if *missed { "missed" } else { "rejected" };
                        self.metrics
                            .offers_declined
                            .with_label_values(&[queue, how])
                            .inc();
                        self.metrics.offers.with_label_values(&[how]).inc();
                    }
                    _ => {}
                }
            }
        }
        for effect in rest {
            self.dispatch(effect);
        }
        for done in done {
            let _ = done.send(());
        }
    }

    fn refuse_all(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            if let Effect::Reply { conn, req, .. } = effect {
                let frame = encode::error(
                    req.as_deref(),
                    ErrorCode::Unavailable,
                    "the gateway could not store this just now; nothing was saved, try again",
                );
                self.metrics.error(ErrorCode::Unavailable);
                self.send(conn, Outbound::Frame(frame.into()));
            }
        }
    }

    fn set_failing(&mut self, failing: bool) {
        if self.failing != failing {
            self.failing = failing;
            if failing {
                tracing::warn!("the store refuses commits: unready until it takes one again");
            } else {
                tracing::info!("the store takes commits again: ready");
            }
        }
        self.metrics.store_commit_failing.set(i64::from(failing));
    }

    /// While commits fail, once a second: a small write tells whether the store
    /// takes commits again (space came back), so readiness returns without waiting
    /// for a client to try. A stale core is rebuilt first.
    async fn probe(&mut self) {
        if !self.failing {
            return;
        }
        if self.stale {
            self.reload().await;
            if self.stale {
                return;
            }
        }
        match self.store.writable().await {
            Ok(()) => self.set_failing(false),
            Err(e) => tracing::debug!(error = %e, "the store still refuses writes"),
        }
    }

    /// After a failed commit: the core is rebuilt from the store (the truth), so it
    /// forgets what was never made durable. If what the rebuild itself makes (offers
    /// again, say) cannot be committed either, the core stays `stale` and is rebuilt
    /// again before the next batch.
    async fn reload(&mut self) {
        self.stale = true;
        match self.store.load_open().await {
            Ok(restored) => {
                let mut effects = Vec::new();
                self.switchboard = Switchboard::restore(
                    self.definitions.config().core_settings(),
                    now_ms(),
                    restored,
                    now_ms(),
                    &mut effects,
                );
                // Agents still connected are online again.
                let agents: Vec<(Id, ConnId)> = self
                    .by_participant
                    .iter()
                    .filter_map(|(who, conns)| match who {
                        Participant::Agent(a) => conns.first().map(|c| (a.clone(), *c)),
                        Participant::Customer(_) => None,
                    })
                    .collect();
                for (agent_id, conn) in agents {
                    self.switchboard.handle(
                        Input::AgentConnected { conn, agent_id },
                        now_ms(),
                        &mut effects,
                    );
                }
                // Welcome replies from the reconnection above are not needed; the
                // offers and notices are, once what made them is stored.
                effects.retain(|e| !matches!(e, Effect::Reply { .. }));
                match self.store.commit(&persisted(&effects)).await {
                    Ok(()) => {
                        self.stale = false;
                        for effect in effects {
                            self.dispatch(effect);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "store still failing after reload"),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reloading from the store failed");
                self.metrics
                    .store_failures
                    .with_label_values(&["read"])
                    .inc();
            }
        }
    }

    fn dispatch(&mut self, effect: Effect) {
        match effect {
            Effect::Persist(_) => {}
            Effect::Reply { conn, req, reply } => {
                let item = match reply {
                    Reply::Ack {
                        conversation_id,
                        seq: Some(seq),
                    } => {
                        let conversation_id = conversation_id.unwrap_or_else(|| "".into());
                        let frame = encode::ack(req.as_deref(), Some(&conversation_id), Some(seq));
                        self.last_ack = Some((conn, conversation_id.clone(), seq));
                        Outbound::Acked(Box::new(AckFrame {
                            req,
                            conversation_id,
                            seq,
                            frame: frame.into(),
                        }))
                    }
                    Reply::Ack {
                        conversation_id,
                        seq: None,
                    } => {
                        let frame = encode::ack(req.as_deref(), conversation_id.as_deref(), None);
                        Outbound::Frame(frame.into())
                    }
                    Reply::Started { conversation_id } => {
                        let frame = encode::ack(req.as_deref(), Some(&conversation_id), None);
                        Outbound::Follow(Arc::new(ScopedFrame {
                            conversation_id,
                            frame: frame.into(),
                        }))
                    }
                    Reply::Refused(refusal) => {
                        let code = match refusal.kind {
                            RefusalKind::NotFound => ErrorCode::NotFound,
                            RefusalKind::Forbidden => ErrorCode::Forbidden,
                            RefusalKind::Conflict => ErrorCode::Conflict,
                        };
                        if refusal.kind == RefusalKind::Forbidden {
                            // Rare: a search of the connections is affordable here.
                            let who = self
                                .by_participant
                                .iter()
                                .find(|(_, conns)| conns.contains(&conn))
                                .map(|(who, _)| who);
                            let (role, who) = match who {
                                Some(Participant::Agent(id)) => ("agent", id.to_string()),
                                Some(Participant::Customer(id)) => ("customer", id.to_string()),
                                None => ("customer", "unknown".to_owned()),
                            };
                            audit::denied(
                                &self.metrics,
                                role,
                                &who,
                                "frame",
                                Denial::Forbidden,
                                &refusal.message,
                            );
                        }
                        self.metrics.error(code);
                        let frame = encode::error(req.as_deref(), code, &refusal.message);
                        Outbound::Frame(frame.into())
                    }
                    Reply::CustomerWelcome { open } => Outbound::CustomerWelcome(open),
                    Reply::AgentWelcome(snapshot) => Outbound::AgentWelcome(snapshot),
                };
                self.send(conn, item);
            }
            Effect::Denied { by, message } => {
                let (role, who) = match &by {
                    Participant::Agent(id) => ("agent", id),
                    Participant::Customer(id) => ("customer", id),
                };
                audit::denied(
                    &self.metrics,
                    role,
                    who,
                    "frame",
                    Denial::Forbidden,
                    &message,
                );
            }
            Effect::Notify { to, notice } => {
                if let Notice::Event(e) = &notice {
                    self.tell_event(&to, e);
                    return;
                }
                let Some(conns) = self.by_participant.get(&to) else {
                    return;
                };
                let conns = conns.clone();
                match &notice {
                    Notice::Offer(offer) => {
                        self.metrics
                            .routing_decisions
                            .with_label_values(&[offer.reason.as_str()])
                            .inc();
                    }
                    Notice::OfferRevoked {
                        reason: RevokeReason::Withdrawn,
                        ..
                    } => {
                        self.metrics.offers.with_label_values(&["withdrawn"]).inc();
                    }
                    // Sent to the agent only when they accept an offer.
                    Notice::Joined(_) => {
                        self.metrics.offers.with_label_values(&["accepted"]).inc();
                    }
                    _ => {}
                }
                if let Notice::Joined(view) = notice {
                    for conn in conns {
                        self.send(conn, Outbound::Joined(view.clone()));
                    }
                    return;
                }
                let frame: Utf8Bytes = match &notice {
                    // An agent whose conversation became a call learns its handle.
                    Notice::Switched {
                        conversation_id,
                        channel,
                        agent_kept,
                    } if matches!(to, Participant::Agent(_)) => {
                        let media = self
                            .calls
                            .by_conversation(conversation_id)
                            .map(|call| MediaInfo::pcmu(call.handle));
                        encode::switched(conversation_id, *channel, *agent_kept, media).into()
                    }
                    _ => encode::notice(&notice).into(),
                };
                // One item for every connection of the participant.
                let item = match &notice {
                    // A conversation opened for the customer: follow it from seq 1.
                    Notice::FollowUp {
                        conversation_id, ..
                    } => Outbound::Follow(Arc::new(ScopedFrame {
                        conversation_id: conversation_id.clone(),
                        frame,
                    })),
                    n => match n.conversation_id() {
                        Some(c) => Outbound::Scoped(Arc::new(ScopedFrame {
                            conversation_id: c.clone(),
                            frame,
                        })),
                        None => Outbound::Frame(frame),
                    },
                };
                for conn in conns {
                    let copy = match &item {
                        Outbound::Follow(f) => Outbound::Follow(f.clone()),
                        Outbound::Scoped(f) => Outbound::Scoped(f.clone()),
                        Outbound::Frame(f) => Outbound::Frame(f.clone()),
                        _ => continue,
                    };
                    self.send(conn, copy);
                }
            }
        }
    }

    /// A transcript event to a participant's connections: encoded once for everyone
    /// it goes to, and not to the connection that sent it (its ack moved it past).
    fn tell_event(&mut self, to: &Participant, event: &Arc<crate::core::Event>) {
        let Some(conns) = self.by_participant.get(to) else {
            return;
        };
        let shared = match &self.last_event {
            Some((last, shared)) if Arc::ptr_eq(last, event) => shared.clone(),
            _ => {
                let shared = Arc::new(EventFrame {
                    conversation_id: event.conversation_id.clone(),
                    seq: event.seq,
                    frame: encode::event(event).into(),
                    durable_at: self.durable_at,
                });
                self.last_event = Some((event.clone(), shared.clone()));
                shared
            }
        };
        let sender = match &self.last_ack {
            Some((conn, conversation_id, seq))
                if *seq == event.seq && *conversation_id == event.conversation_id =>
            {
                Some(*conn)
            }
            _ => None,
        };
        for &conn in conns {
            if Some(conn) != sender {
                self.send(conn, Outbound::Event(shared.clone()));
            }
        }
    }

    fn send(&self, conn: ConnId, item: Outbound) {
        let Some(handle) = self.conns.get(&conn) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = handle.tx.try_send(item) {
            handle.slow.cancel();
        }
    }

    fn refresh_gauges(&mut self) {
        if self
            .gauges_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.gauges_at = Some(Instant::now());
        let by_state = self.switchboard.agents_by_state();
        for (state, n) in ["available", "away", "wrap_up", "offline"]
            .iter()
            .zip(by_state)
        {
            self.metrics
                .agents
                .with_label_values(&[state])
                .set(i64::from(n));
        }
        let now = now_ms();
        self.metrics
            .waiting_lines(&self.switchboard.waiting_by_queue(now));
        self.metrics
            .open_conversations
            .set(i64::try_from(self.switchboard.open_conversations()).unwrap_or(i64::MAX));
    }
}

pub fn refusal_to_api(refusal: crate::core::Refusal) -> ApiError {
    let (status, code) = match refusal.kind {
        RefusalKind::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        RefusalKind::Forbidden => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
        RefusalKind::Conflict => (StatusCode::CONFLICT, ErrorCode::Conflict),
    };
    ApiError::new(status, code, refusal.message)
}

fn store_unavailable(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "storing a definition failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "the store could not keep the change; nothing was changed, try again",
    )
}

pub fn persisted(effects: &[Effect]) -> Vec<Record> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// The agent an effect is for, if any (their later offers wait behind it).
fn addressed_agent<'a>(agent_of: &'a HashMap<ConnId, Id>, effect: &'a Effect) -> Option<&'a Id> {
    match effect {
        Effect::Notify {
            to: Participant::Agent(agent_id),
            ..
        } => Some(agent_id),
        Effect::Reply { conn, .. } => agent_of.get(conn),
        _ => None,
    }
}

/// Effects gathered while a commit is in flight, with the records they wait on.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    rest: Vec<Effect>,
    /// Answered once the batch is committed (or has failed).
    done: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.rest.is_empty() && self.done.is_empty()
    }
}

type CommitFuture = std::pin::Pin<
    Box<dyn Future<Output = (Vec<Record>, Result<(), crate::store::StoreError>)> + Send>,
>;

/// The batch the store is committing, and what waits for it.
struct InFlight {
    commit: CommitFuture,
    rest: Vec<Effect>,
    done: Vec<oneshot::Sender<()>>,
    started: Instant,
}

/// The commit in flight (polled only while there is one).
async fn in_flight(
    committing: &mut Option<InFlight>,
) -> (Vec<Record>, Result<(), crate::store::StoreError>) {
    match committing {
        Some(batch) => batch.commit.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

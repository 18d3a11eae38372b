//! The switchboard: conversations, queues, agents and offers, as one deterministic
//! state machine. `handle(input, now, out)` applies one input and appends effects.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

mod agents;
mod definitions;
mod line;
mod offers;
mod places;
mod switch;
mod transfer;

pub use definitions::QueueState;

use super::conversation::{Conversations, ack, not_open, reply};
use super::io::{
    ConversationView, CoreSettings, Effect, FollowUpDue, Input, Notice, OpenConversation,
    QueueSettings, Refusal, Reply, ReqId, RestoredConversation, RevokeReason, StartRequest,
};
use super::model::{
    AgentState, Author, Channel, ConnId, ConversationRecord, ConversationState, CustomerHistory,
    EventBody, Id, Millis, Participant, Record, Resolution, Role, Skills, Text,
};
use super::pools::Pools;
use super::routing::{self, AgentSlot, Need, channel_index};
use super::signals::conversation::Tracker;
use line::{Lane, Line, WaitKey};
use transfer::{Handoff, PendingTransfer};

/// Average handle time assumed for a queue before any conversation closed in it.
const INITIAL_HANDLE_MS: u64 = 240_000;

struct Conversation {
    rec: ConversationRecord,
    customer_name: Id,
    history: CustomerHistory,
    /// Requirements before any routing step: the queue's and the conversation's own.
    base: Skills,
    /// Routing steps of the queue in force (0: none yet).
    step: usize,
    /// Requirements now, after `step` steps relaxed `base`.
    need: Skills,
    offer: Option<Id>,
    /// Agents who declined or missed this conversation, skipped until the time given.
    declined: Vec<(Id, Millis)>,
    /// Last `queued` update sent: (position, when).
    queued_sent: Option<(u32, Millis)>,
    /// A warm transfer under way: the agent stays until the target accepts.
    transfer: Option<PendingTransfer>,
    /// A cold transfer waiting for its next agent: the offer says why, with the note.
    handoff: Option<Handoff>,
    /// When its current agent took it (handle time runs from here).
    assigned_at: Option<Millis>,
    /// Its candidate pool while waiting (cleared when its requirements change).
    class: Option<usize>,
}

struct Agent {
    slot: AgentSlot,
    display_name: Id,
    /// Open conversations held, in the order taken.
    conversations: Vec<Id>,
    offers: Vec<Id>,
    missed_in_row: u32,
    /// Bumped to cancel a pending grace timer (on every connect and disconnect).
    generation: u64,
    /// Bumped to cancel a pending wrap-up timer. Kept apart from `generation` so a
    /// dropped connection does not cancel the end of wrap-up, nor a close (while
    /// disconnected) the end of the grace period.
    wrap_up_generation: u64,
}

struct Offer {
    conversation_id: Id,
    agent_id: Id,
    channel: Channel,
    /// Part of a warm transfer: the conversation stays with its agent meanwhile.
    warm: bool,
}

struct Queue {
    settings: QueueSettings,
    /// Moving average of handle time, for the `queued` estimate.
    avg_handle_ms: u64,
    /// The agent offered a conversation of this queue last (round robin).
    last_offered: Option<Id>,
    /// The opening (business hours) a routing pass is already set for.
    opening_armed: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    OfferExpiry(Id),
    Grace(Id, u64),
    WrapUp(Id, u64),
    /// A declined agent may be offered the conversation again, a throttled `queued`
    /// update is due, or the wait for the customer's last agent is over: route again.
    Reroute(Id),
    /// A routing step may apply (conversation, the `entered_at` it was set for).
    Step(Id, Millis),
    /// The conversation has waited the queue's `max_wait_ms` (same key).
    Overflow(Id, Millis),
    /// A queue with business hours opens: what waits in it can be offered again.
    Opening(Id),
    /// Places in line moved since the last sweep, which was less than
    /// `queued_update_interval_ms` ago: sweep again.
    Positions,
}

pub struct Switchboard {
    settings: CoreSettings,
    queues: HashMap<Id, Queue>,
    agents: BTreeMap<Id, Agent>,
    conversations: HashMap<Id, Conversation>,
    /// The conversation plane: each open conversation's transcript, who may speak in
    /// it, its signals. Told of routing's decisions through `seat` and friends.
    threads: Conversations,
    waiting: Line,
    offers: HashMap<Id, Offer>,
    /// Open conversations of each customer.
    by_customer: HashMap<Id, Vec<Id>>,
    timers: BinaryHeap<Reverse<(Millis, Timer)>>,
    next_ticket: u64,
    next_offer: u64,
    offer_prefix: String,
    routing_dirty: bool,
    /// Candidate pools: the routing index.
    pools: Pools,
    /// A sweep of places in line is due (its timer fired).
    positions_due: bool,
    /// Whether a sweep is already set for later.
    sweep_armed: bool,
    /// When places were last swept.
    last_sweep: Millis,
}

/// A queue's waiting line on one channel, for the gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitingLine<'a> {
    pub queue: &'a Id,
    pub channel: Channel,
    pub waiting: u32,
    pub longest_wait_ms: u64,
}

impl Switchboard {
    /// A switchboard with nothing open. `epoch` (any number unique per start, such as the
    /// start time) keeps offer ids unique across restarts.
    pub fn new(settings: CoreSettings, epoch: u64) -> Self {
        let (queues, agents) = (settings.queues.clone(), settings.agents.clone());
        let threads = Conversations::new(settings.coaching.clone(), settings.dedupe_window);
        let mut sb = Switchboard {
            settings,
            queues: HashMap::new(),
            agents: BTreeMap::new(),
            conversations: HashMap::new(),
            threads,
            waiting: Line::default(),
            offers: HashMap::new(),
            by_customer: HashMap::new(),
            timers: BinaryHeap::new(),
            next_ticket: 1,
            next_offer: 1,
            offer_prefix: format!("of{epoch:x}"),
            routing_dirty: false,
            pools: Pools::default(),
            positions_due: false,
            sweep_armed: false,
            last_sweep: 0,
        };
        // The same path as queues and agents defined while running.
        for queue in queues {
            sb.define_queue(queue, 0);
        }
        for agent in agents {
            sb.define_agent(agent);
        }
        sb.routing_dirty = false;
        sb
    }

    /// Rebuilds the state the store kept: queued conversations in their order, active
    /// ones with their agents (who get the grace period to reconnect from `now`).
    /// Offers in flight at the crash are not kept: those conversations queue again.
    pub fn restore(
        settings: CoreSettings,
        epoch: u64,
        restored: Vec<RestoredConversation>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Self {
        let mut sb = Switchboard::new(settings, epoch);
        // Sized once: growing these maps one rehash at a time moved every conversation
        // restored so far again at each doubling.
        sb.conversations.reserve(restored.len());
        sb.threads.reserve(restored.len());
        sb.by_customer.reserve(restored.len());
        let mut graced = Vec::new();
        for r in restored {
            let mut rec = r.record;
            if rec.state == ConversationState::Closed {
                continue;
            }
            sb.next_ticket = sb.next_ticket.max(rec.ticket + 1);
            let id = rec.id.clone();
            // An agent keeps a restored conversation if they still exist and still have
            // room for it (capacity may have been lowered in the config meanwhile).
            let i = channel_index(rec.channel);
            let held_by = rec.agent_id.clone().filter(|a| {
                rec.state == ConversationState::Active
                    && sb
                        .agents
                        .get(a)
                        .is_some_and(|agent| agent.slot.load[i] < agent.slot.capacity[i])
            });
            let mut changed = false;
            match &held_by {
                Some(agent_id) => {
                    let agent = sb.agents.get_mut(agent_id).expect("checked above");
                    agent.conversations.push(id.clone());
                    agent.slot.load[i] += 1;
                    if !graced.contains(agent_id) {
                        graced.push(agent_id.clone());
                    }
                }
                None => {
                    changed = rec.state != ConversationState::Queued || rec.agent_id.is_some();
                    if let Some(agent_id) = rec.agent_id.take() {
                        out.push(Effect::Persist(Record::AssignmentEnded {
                            conversation_id: id.clone(),
                            agent_id,
                            at: now,
                        }));
                    }
                    rec.state = ConversationState::Queued;
                    rec.agent_id = None;
                }
            }
            if changed {
                out.push(Effect::Persist(Record::Conversation(Arc::new(rec.clone()))));
            }
            sb.by_customer
                .entry(rec.customer_id.clone())
                .or_default()
                .push(id.clone());
            let queued = held_by.is_none();
            let tracker = Tracker::new(rec.created_at, &[]);
            sb.threads.open(
                id.clone(),
                rec.customer_id.clone(),
                r.customer_name.clone(),
                tracker,
            );
            sb.threads.resume(&id, r.last_seq, r.recent_client_ids);
            let conv = sb.conversation(rec, r.customer_name, r.history);
            sb.conversations.insert(id.clone(), conv);
            sb.seat(&id);
            if queued {
                sb.wait(&id, now);
            }
        }
        for agent_id in graced {
            let agent = sb.agents.get_mut(&agent_id).expect("known agent");
            agent.generation += 1;
            let timer = Timer::Grace(agent_id, agent.generation);
            sb.timers
                .push(Reverse((now + sb.settings.agent_grace_ms, timer)));
        }
        sb.routing_dirty = true;
        sb.route(now, out);
        sb
    }

    fn conversation(
        &self,
        rec: ConversationRecord,
        customer_name: Id,
        history: CustomerHistory,
    ) -> Conversation {
        let base = self.queues.get(&rec.queue).map_or_else(
            || rec.skills.clone(),
            |q| routing::merge(&q.settings.skills, &rec.skills),
        );
        Conversation {
            rec,
            customer_name,
            history,
            need: base.clone(),
            base,
            step: 0,
            offer: None,
            declined: Vec::new(),
            queued_sent: None,
            transfer: None,
            handoff: None,
            assigned_at: None,
            class: None,
        }
    }

    /// Puts a conversation in the waiting line (at its ticket's place) with the
    /// requirements its wait since `entered_at` has earned, and arms its timers:
    /// the next routing steps, the end of the wait for its last agent, overflow.
    fn wait(&mut self, id: &Id, now: Millis) {
        self.queue_up(id, now);
        // Waiting, nobody holds it (its last agent may still be named, as before).
        self.seat(id);
    }

    fn queue_up(&mut self, id: &Id, now: Millis) {
        let Some(conv) = self.conversations.get_mut(id) else {
            return;
        };
        let Some(queue) = self.queues.get(&conv.rec.queue) else {
            return;
        };
        conv.rec.state = ConversationState::Queued;
        // A closed queue: the wait (steps, affinity, overflow) counts from the opening.
        if let Some(opens) = closed_until(&queue.settings, now) {
            conv.rec.entered_at = conv.rec.entered_at.max(opens);
            self.timers
                .push(Reverse((opens, Timer::Reroute(id.clone()))));
        }
        let entered = conv.rec.entered_at;
        apply_steps(conv, &queue.settings, now);
        for step in &queue.settings.steps {
            if entered + step.after_ms > now {
                self.timers.push(Reverse((
                    entered + step.after_ms,
                    Timer::Step(id.clone(), entered),
                )));
            }
        }
        let affinity_ends = entered + queue.settings.affinity_wait_ms;
        if conv.history.last_agent.is_some() && affinity_ends > now {
            self.timers
                .push(Reverse((affinity_ends, Timer::Reroute(id.clone()))));
        }
        if let (Some(max_wait), Some(_)) = (queue.settings.max_wait_ms, &queue.settings.overflow_to)
        {
            self.timers.push(Reverse((
                (entered + max_wait).max(now),
                Timer::Overflow(id.clone(), entered),
            )));
        }
        let key = wait_key(conv);
        let lane = self.lane(id);
        self.waiting.insert(key, id.clone(), lane);
        self.routing_dirty = true;
    }

    /// The lane a waiting conversation belongs in (its class is found or made here).
    fn lane(&mut self, id: &Id) -> Lane {
        let conv = &self.conversations[id];
        let queue = conv.rec.queue.clone();
        if conv.handoff.as_ref().is_some_and(|h| h.agent.is_some()) {
            return Lane { queue, class: None };
        }
        let class = match conv.class {
            Some(class) => class,
            None => {
                let key = self.class_key(id);
                let vxc = self.settings.voice_excludes_chat;
                let class = self.pools.class(key, vxc);
                if let Some(conv) = self.conversations.get_mut(id) {
                    conv.class = Some(class);
                }
                class
            }
        };
        Lane {
            queue,
            class: Some(class),
        }
    }

    /// After a waiting conversation's requirements changed: index it in its new lane.
    fn relane(&mut self, id: &Id) {
        let Some(conv) = self.conversations.get(id) else {
            return;
        };
        let key = wait_key(conv);
        if self.waiting.get(&key) == Some(id) {
            let lane = self.lane(id);
            self.waiting.relane(&key, lane);
        }
    }

    /// `wait`, then makes the record durable as `wait` left it (a closed queue moves
    /// `entered_at` to the opening, so after a restart the wait still counts from there).
    fn wait_persisted(&mut self, id: &Id, now: Millis, out: &mut Vec<Effect>) {
        self.wait(id, now);
        if let Some(conv) = self.conversations.get(id) {
            out.push(Effect::Persist(Record::Conversation(Arc::new(
                conv.rec.clone(),
            ))));
        }
    }

    /// Moves a conversation that waited too long to the queue's overflow queue.
    fn overflow(&mut self, conversation_id: &Id, now: Millis, out: &mut Vec<Effect>) {
        let Some(conv) = self.conversations.get(conversation_id) else {
            return;
        };
        let Some(target) = self.queues[&conv.rec.queue].settings.overflow_to.clone() else {
            return;
        };
        let Some(target_queue) = self.queues.get(&target) else {
            return;
        };
        let priority = conv.rec.priority.max(target_queue.settings.priority);
        self.waiting.remove(&wait_key(conv));
        let history = conv.history.clone();
        let old = self.conversations.remove(conversation_id).expect("checked");
        let mut rec = old.rec;
        rec.queue = target;
        rec.priority = priority;
        rec.entered_at = now;
        let mut conv = self.conversation(rec, old.customer_name, history);
        conv.declined = old.declined;
        // A cold transfer lasts until an agent accepts: not back to the agent who
        // passed it on, the named agent first, the note and reason kept.
        conv.handoff = old.handoff;
        self.conversations.insert(conversation_id.clone(), conv);
        self.wait_persisted(conversation_id, now, out);
    }

    /// The earliest time a timer is due, for the shell to sleep until.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Number of conversations waiting for an agent (not counting those on offer).
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Waiting conversations per queue and channel, with how long the one waiting
    /// longest has waited (every queue and channel, zeros included). O(waiting): for
    /// gauges refreshed about once a second, not for each event.
    pub fn waiting_by_queue(&self, now: Millis) -> Vec<WaitingLine<'_>> {
        let mut lines: HashMap<&Id, [WaitingLine<'_>; 2]> = self
            .queues
            .keys()
            .map(|queue| {
                let line = |channel| WaitingLine {
                    queue,
                    channel,
                    waiting: 0,
                    longest_wait_ms: 0,
                };
                (queue, [line(Channel::Chat), line(Channel::Voice)])
            })
            .collect();
        for id in self.waiting.ids() {
            let Some(conv) = self.conversations.get(id) else {
                continue;
            };
            if let Some(pair) = lines.get_mut(&conv.rec.queue) {
                let line = &mut pair[channel_index(conv.rec.channel)];
                line.waiting += 1;
                line.longest_wait_ms = line
                    .longest_wait_ms
                    .max(now.saturating_sub(conv.rec.entered_at));
            }
        }
        lines.into_values().flatten().collect()
    }

    /// The channel of an open conversation.
    pub fn channel_of(&self, conversation_id: &Id) -> Option<Channel> {
        self.conversations
            .get(conversation_id)
            .map(|c| c.rec.channel)
    }

    pub fn open_conversations(&self) -> usize {
        self.conversations.len()
    }

    pub fn handle(&mut self, input: Input, now: Millis, out: &mut Vec<Effect>) {
        match input {
            Input::CustomerHello { conn, customer_id } => {
                let open = self
                    .by_customer
                    .get(&customer_id)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| self.conversations.get(id))
                    .map(|c| OpenConversation {
                        conversation_id: c.rec.id.clone(),
                        state: c.rec.state,
                        channel: c.rec.channel,
                        queue: c.rec.queue.clone(),
                        last_seq: self.threads.get(&c.rec.id).map_or(0, |t| t.last_seq),
                        position: self.position(c),
                    })
                    .collect();
                reply(out, conn, None, Reply::CustomerWelcome { open });
            }
            Input::Start(start) => self.start(*start, now, out),
            Input::Post {
                conn,
                req,
                from,
                conversation_id,
                text,
                client_msg_id,
            } => self.threads.post(
                conn,
                req,
                from,
                conversation_id,
                text,
                client_msg_id,
                now,
                out,
            ),
            Input::Typing {
                from,
                conversation_id,
                on,
            } => self.threads.typing(from, conversation_id, on, out),
            Input::End {
                conn,
                req,
                customer_id,
                conversation_id,
            } => match self.owned_by_customer(&conversation_id, &customer_id) {
                Ok(()) => {
                    self.finish(&conversation_id, Role::Customer, None, None, now, out);
                    reply(out, conn, req, ack(Some(conversation_id), None));
                }
                Err(refusal) => reply(out, conn, req, Reply::Refused(refusal)),
            },
            Input::AgentConnected { conn, agent_id } => self.agent_connected(conn, agent_id, out),
            Input::AgentDisconnected { agent_id } => self.agent_disconnected(agent_id, now, out),
            Input::SetStatus {
                conn,
                req,
                agent_id,
                available,
            } => self.set_status(conn, req, agent_id, available, now, out),
            Input::Accept {
                conn,
                req,
                agent_id,
                offer_id,
            } => self.accept(conn, req, agent_id, offer_id, now, out),
            Input::Reject {
                conn,
                req,
                agent_id,
                offer_id,
                reason,
            } => match self.offers.get(&offer_id) {
                Some(offer) if offer.agent_id == agent_id => {
                    if let Some(agent) = self.agents.get_mut(&agent_id) {
                        agent.missed_in_row = 0;
                    }
                    self.record_decline(&offer_id, false, reason, now, out);
                    self.withdraw_offer(&offer_id, None, now, true, out);
                    reply(out, conn, req, ack(None, None));
                }
                _ => reply(out, conn, req, Reply::Refused(offer_gone(&offer_id))),
            },
            Input::Close {
                conn,
                req,
                agent_id,
                conversation_id,
                resolution,
                note,
                follow_up_at,
            } => match self.held_by_agent(&conversation_id, &agent_id) {
                Ok(()) => {
                    if let (Resolution::FollowUp, Some(due_at)) = (resolution, follow_up_at) {
                        let conv = &self.conversations[&conversation_id];
                        out.push(Effect::Persist(Record::FollowUpScheduled {
                            follow_up_id: format!("fu-{conversation_id}").into(),
                            conversation_id: conversation_id.clone(),
                            customer_id: conv.rec.customer_id.clone(),
                            queue: conv.rec.queue.clone(),
                            agent_id: agent_id.clone(),
                            due_at,
                            note: note.clone(),
                            at: now,
                        }));
                    }
                    self.finish(
                        &conversation_id,
                        Role::Agent,
                        Some(resolution),
                        note,
                        now,
                        out,
                    );
                    reply(out, conn, req, ack(Some(conversation_id), None));
                }
                Err(refusal) => reply(out, conn, req, Reply::Refused(refusal)),
            },
            Input::Transfer {
                conn,
                req,
                agent_id,
                conversation_id,
                to,
                warm,
                note,
            } => self.transfer(
                conn,
                req,
                agent_id,
                conversation_id,
                to,
                warm,
                note,
                now,
                out,
            ),
            Input::Tick => self.fire_timers(now, out),
            Input::Switch {
                conn,
                req,
                customer,
                conversation_id,
                channel,
            } => self.switch(conn, req, customer, conversation_id, channel, now, out),
            Input::Rtc {
                conn,
                req,
                from,
                conversation_id,
                payload,
            } => self.rtc(conn, req, from, conversation_id, payload, out),
            Input::AgentRatings(ratings) => {
                for agent in self.agents.values_mut() {
                    agent.slot.ratings = ratings
                        .iter()
                        .filter(|(a, _, _)| *a == agent.slot.id)
                        .map(|(_, q, r)| (q.clone(), *r))
                        .collect();
                }
                self.routing_dirty = true;
            }
            Input::MergeCustomer { from, into, name } => {
                self.merge_customer(from, into.clone(), now, out);
                if let Some(name) = name {
                    out.push(Effect::Persist(Record::CustomerName { id: into, name }));
                }
            }
            Input::OpenFollowUp(due) => self.open_follow_up(*due, now, out),
            Input::CustomerSeen { customer_id, name } => {
                out.push(Effect::Persist(Record::Customer {
                    id: customer_id.clone(),
                    seen_at: now,
                }));
                if let Some(name) = name {
                    out.push(Effect::Persist(Record::CustomerName {
                        id: customer_id,
                        name,
                    }));
                }
            }
            Input::Dtmf {
                conversation_id,
                digit,
            } => {
                if self.conversations.contains_key(&conversation_id) {
                    let text = format!("The caller pressed {digit}.");
                    self.threads.system_line(&conversation_id, text, now, out);
                }
            }
            Input::VoiceSignals {
                conversation_id,
                signals,
                ended,
            } => {
                let agent_id = self
                    .conversations
                    .get(&conversation_id)
                    .and_then(|c| c.rec.agent_id.clone());
                if let Some(agent) = &agent_id {
                    out.push(Effect::Notify {
                        to: Participant::Agent(agent.clone()),
                        notice: Notice::VoiceSignals {
                            conversation_id: conversation_id.clone(),
                            signals,
                        },
                    });
                }
                if ended {
                    out.push(Effect::Persist(Record::VoiceSignals {
                        conversation_id,
                        agent_id,
                        signals,
                        at: now,
                    }));
                }
            }
        }
        self.route(now, out);
    }

    fn start(&mut self, s: StartRequest, now: Millis, out: &mut Vec<Effect>) {
        if !self.queues.contains_key(&s.queue) {
            let mut names: Vec<&str> = self.queues.keys().map(|q| &**q).collect();
            names.sort_unstable();
            let refusal = Refusal::not_found(format!(
                "there is no queue named `{}`; queues: {}",
                s.queue,
                names.join(", ")
            ));
            return reply(out, s.conn, s.req, Reply::Refused(refusal));
        }
        if self.conversations.contains_key(&s.conversation_id) {
            let refusal = Refusal::conflict("that conversation id is taken");
            return reply(out, s.conn, s.req, Reply::Refused(refusal));
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        // The queue's rules on trusted attributes: more priority, more skills.
        let queue = &self.queues[&s.queue].settings;
        let mut priority = queue.priority;
        let mut skills = s.skills.clone();
        for rule in &queue.rules {
            let matched = s
                .context
                .iter()
                .any(|(k, v)| *k == rule.attribute && *v == rule.equals);
            if matched {
                priority = priority.saturating_add(rule.priority);
                skills = routing::merge(&skills, &rule.skills);
            }
        }
        let rec = ConversationRecord {
            id: s.conversation_id.clone(),
            customer_id: s.customer_id.clone(),
            queue: s.queue,
            channel: s.channel,
            state: ConversationState::Queued,
            agent_id: None,
            priority,
            ticket,
            skills,
            language: s.language,
            attributes: s.attributes,
            created_at: now,
            entered_at: now,
            transfers: 0,
            closed_at: None,
            closed_by: None,
            resolution: None,
            repeat_of: s.repeat_of,
        };
        out.push(Effect::Persist(Record::Customer {
            id: s.customer_id.clone(),
            seen_at: now,
        }));
        let id = s.conversation_id;
        self.by_customer
            .entry(s.customer_id.clone())
            .or_default()
            .push(id.clone());
        self.threads.open(
            id.clone(),
            s.customer_id.clone(),
            s.customer_name.clone(),
            Tracker::new(now, &s.context),
        );
        let conv = self.conversation(rec, s.customer_name.clone(), s.history);
        self.conversations.insert(id.clone(), conv);
        self.wait_persisted(&id, now, out);
        reply(
            out,
            s.conn,
            s.req,
            Reply::Started {
                conversation_id: id.clone(),
            },
        );
        // Always tell the customer their place first, even if an agent is free now.
        // At the back of the line (most arrivals), their place is the count of their
        // queue: no walk over a long line.
        let position = self.position(&self.conversations[&id]).unwrap_or(1);
        self.tell_place(&id, position, now, None, out);
        if let Some(text) = s.text {
            let author = Author {
                role: Role::Customer,
                id: s.customer_id,
                display_name: s.customer_name,
            };
            // The opening message has a mood like any other: kept for the agent who
            // accepts (nobody holds the conversation yet).
            let thread = self.threads.get_mut(&id).expect("opened");
            let mood = Some(thread.tracker.mood(&text)).filter(|m| !m.is_quiet());
            let seq = self.threads.append(
                &id,
                EventBody::Message {
                    author,
                    text,
                    client_msg_id: None,
                },
                now,
                out,
            );
            if let Some(mood) = mood {
                self.threads.get_mut(&id).expect("opened").mood = Some((seq, mood));
            }
        }
        let queue = &self.queues[&self.conversations[&id].rec.queue].settings;
        if let (Some(opens), Some(hours)) = (closed_until(queue, now), queue.hours.as_ref()) {
            let text = format!(
                "We are closed right now and open {}. Leave a message: an agent will pick it up when we open, with everything you write here.",
                hours.describe(opens)
            );
            self.threads.system_line(&id, text, now, out);
        }
        self.routing_dirty = true;
    }

    fn accept(
        &mut self,
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        offer_id: Id,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        match self.offers.get(&offer_id) {
            Some(offer) if offer.agent_id == agent_id => {}
            _ => return reply(out, conn, req, Reply::Refused(offer_gone(&offer_id))),
        }
        let offer = self.offers.remove(&offer_id).expect("checked");
        let agent = self
            .agents
            .get_mut(&agent_id)
            .expect("offers name known agents");
        agent.offers.retain(|o| *o != offer_id);
        agent.conversations.push(offer.conversation_id.clone());
        agent.missed_in_row = 0;
        agent.slot.idle_since = now;
        let display_name = agent.display_name.clone();
        if offer.warm {
            self.hand_over(&offer.conversation_id, now, out);
        }
        let conv = self
            .conversations
            .get_mut(&offer.conversation_id)
            .expect("offers name open conversations");
        conv.offer = None;
        conv.declined.clear();
        conv.handoff = None;
        conv.rec.state = ConversationState::Active;
        conv.assigned_at = Some(now);
        conv.rec.agent_id = Some(agent_id.clone());
        out.push(Effect::Persist(Record::Conversation(Arc::new(
            conv.rec.clone(),
        ))));
        if let Some(thread) = self.threads.get_mut(&offer.conversation_id) {
            thread.tracker.accepted(now);
        }
        self.seat(&offer.conversation_id);
        out.push(Effect::Persist(Record::AssignmentStarted {
            conversation_id: offer.conversation_id.clone(),
            agent_id: agent_id.clone(),
            at: now,
        }));
        self.threads.append(
            &offer.conversation_id,
            EventBody::Assigned {
                agent_id: agent_id.clone(),
                display_name,
            },
            now,
            out,
        );
        reply(
            out,
            conn,
            req,
            ack(Some(offer.conversation_id.clone()), None),
        );
        let conv = &self.conversations[&offer.conversation_id];
        let thread = self.threads.get(&offer.conversation_id);
        out.push(Effect::Notify {
            to: Participant::Agent(agent_id.clone()),
            notice: Notice::Joined(Arc::new(view(conv, thread.map_or(0, |t| t.last_seq)))),
        });
        // What the customer said while waiting had no agent to tell: the latest mood
        // follows the conversation (the agent's connection follows it by then).
        if let Some((seq, mood)) = thread.and_then(|t| t.mood.as_ref()) {
            out.push(Effect::Notify {
                to: Participant::Agent(agent_id),
                notice: Notice::Mood {
                    conversation_id: offer.conversation_id.clone(),
                    seq: *seq,
                    mood: mood.clone(),
                },
            });
        }
    }

    /// A follow-up fell due: an outbound conversation for the customer, in the queue of
    /// the one it follows up on, offered first to the agent who scheduled it (as the
    /// customer's last agent, for the queue's affinity wait), opened by a system line
    /// that says why. The customer's connections start following it; a customer who
    /// is away finds it open at their next `hello`.
    fn open_follow_up(&mut self, due: FollowUpDue, now: Millis, out: &mut Vec<Effect>) {
        let exists = self.queues.contains_key(&due.queue);
        out.push(Effect::Persist(Record::FollowUpOpened {
            follow_up_id: due.follow_up_id.clone(),
            conversation_id: due.conversation_id.clone(),
            at: now,
        }));
        if !exists || self.conversations.contains_key(&due.conversation_id) {
            return;
        }
        let mut history = due.history;
        if due.agent_id.is_some() {
            history.last_agent = due.agent_id.clone();
        }
        let request = StartRequest {
            conn: ConnId(0),
            req: None,
            customer_id: due.customer_id.clone(),
            customer_name: due.customer_name,
            history,
            conversation_id: due.conversation_id.clone(),
            queue: due.queue,
            channel: Channel::Chat,
            language: None,
            skills: Skills::new(),
            attributes: due.attributes,
            context: due.context,
            repeat_of: Some(due.about.clone()),
            text: None,
        };
        // The start's reply goes to no connection (ConnId 0 is never one).
        self.start(request, now, out);
        out.retain(|e| {
            !matches!(
                e,
                Effect::Reply {
                    conn: ConnId(0),
                    ..
                }
            )
        });
        // First the notice (the customer's connections follow the conversation from
        // here), then the line that opens it.
        out.push(Effect::Notify {
            to: Participant::Customer(due.customer_id),
            notice: Notice::FollowUp {
                conversation_id: due.conversation_id.clone(),
                about: due.about,
                note: due.note.clone(),
            },
        });
        let text = match &due.note {
            Some(note) => format!("We are getting back to you as promised: {note}"),
            None => "We are getting back to you as promised.".to_owned(),
        };
        self.threads
            .system_line(&due.conversation_id, text, now, out);
    }

    /// The visitor's open conversations become the customer's (the store moves the
    /// closed ones with `CustomerMerged`). Idempotent: a second merge moves nothing.
    fn merge_customer(&mut self, from: Id, into: Id, now: Millis, out: &mut Vec<Effect>) {
        if from == into {
            return;
        }
        out.push(Effect::Persist(Record::Customer {
            id: into.clone(),
            seen_at: now,
        }));
        out.push(Effect::Persist(Record::CustomerMerged {
            from: from.clone(),
            into: into.clone(),
            at: now,
        }));
        let moved = self.by_customer.remove(&from).unwrap_or_default();
        for id in &moved {
            if let Some(conv) = self.conversations.get_mut(id) {
                conv.rec.customer_id = into.clone();
                self.threads.merge(id, &into);
                out.push(Effect::Persist(Record::Conversation(Arc::new(
                    conv.rec.clone(),
                ))));
            }
        }
        self.by_customer.entry(into).or_default().extend(moved);
    }

    /// Closes a conversation: `closed` event, offer withdrawn, agent to wrap-up.
    fn finish(
        &mut self,
        conversation_id: &Id,
        by: Role,
        resolution: Option<Resolution>,
        note: Option<Text>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        if let Some(conv) = self.conversations.get_mut(conversation_id) {
            conv.transfer = None;
            // Withdrawing its offer below must not put it back in line (nor overflow it).
            conv.rec.state = ConversationState::Closed;
        }
        if let Some(offer_id) = self.conversations[conversation_id].offer.clone() {
            self.withdraw_offer(&offer_id, Some(RevokeReason::Withdrawn), now, false, out);
        }
        self.threads.append(
            conversation_id,
            EventBody::Closed {
                by,
                resolution,
                note,
            },
            now,
            out,
        );
        let mut conv = self
            .conversations
            .remove(conversation_id)
            .expect("callers check the conversation is open");
        out.push(Effect::Notify {
            to: Participant::Customer(conv.rec.customer_id.clone()),
            notice: Notice::SurveyRequest {
                conversation_id: conversation_id.clone(),
            },
        });
        self.waiting.remove(&wait_key(&conv));
        if let Some(list) = self.by_customer.get_mut(&conv.rec.customer_id) {
            list.retain(|c| c != conversation_id);
            if list.is_empty() {
                self.by_customer.remove(&conv.rec.customer_id);
            }
        }
        conv.rec.state = ConversationState::Closed;
        conv.rec.closed_at = Some(now);
        conv.rec.closed_by = Some(by);
        conv.rec.resolution = resolution;
        let summary = self
            .threads
            .close(conversation_id, now)
            .unwrap_or_else(|| Tracker::new(conv.rec.created_at, &[]).summary(now));
        let service_level_ms = self
            .queues
            .get(&conv.rec.queue)
            .map_or(u64::MAX, |q| q.settings.service_level_ms);
        let within_service_level = summary
            .handle_ms
            .map(|_| summary.wait_ms <= service_level_ms);
        out.push(Effect::Persist(Record::ConversationSummary {
            conversation_id: conversation_id.clone(),
            customer_id: conv.rec.customer_id.clone(),
            queue: conv.rec.queue.clone(),
            agent_id: conv.rec.agent_id.clone(),
            resolution,
            summary,
            closed_at: now,
            channel: conv.rec.channel,
            repeat: conv.rec.repeat_of.is_some(),
            within_service_level,
        }));
        if let Some(agent_id) = conv.rec.agent_id.clone() {
            out.push(Effect::Persist(Record::AssignmentEnded {
                conversation_id: conversation_id.clone(),
                agent_id: agent_id.clone(),
                at: now,
            }));
            let queue = self.queues.get_mut(&conv.rec.queue);
            let wrap_up_ms = queue.as_ref().map_or(0, |q| q.settings.wrap_up_ms);
            // Handle time: from the agent taking it to the close (not the wait).
            if let (Some(queue), Some(assigned_at)) = (queue, conv.assigned_at) {
                let handled = now.saturating_sub(assigned_at);
                queue.avg_handle_ms = (queue.avg_handle_ms * 7 + handled) / 8;
            }
            if let Some(agent) = self.agents.get_mut(&agent_id) {
                agent.conversations.retain(|c| c != conversation_id);
                let i = channel_index(conv.rec.channel);
                agent.slot.load[i] = agent.slot.load[i].saturating_sub(1);
                if agent.slot.state == AgentState::Available && wrap_up_ms > 0 {
                    agent.slot.state = AgentState::WrapUp;
                    agent.wrap_up_generation += 1;
                    self.timers.push(Reverse((
                        now + wrap_up_ms,
                        Timer::WrapUp(agent_id.clone(), agent.wrap_up_generation),
                    )));
                    out.push(Effect::Notify {
                        to: Participant::Agent(agent_id),
                        notice: Notice::Status {
                            state: AgentState::WrapUp,
                            reason: Some("wrap_up"),
                        },
                    });
                }
            }
        }
        out.push(Effect::Persist(Record::Conversation(Arc::new(conv.rec))));
        self.routing_dirty = true;
    }

    fn fire_timers(&mut self, now: Millis, out: &mut Vec<Effect>) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, timer)) = self.timers.pop().expect("peeked");
            match timer {
                Timer::OfferExpiry(offer_id) => {
                    let Some(offer) = self.offers.get(&offer_id) else {
                        continue;
                    };
                    let agent_id = offer.agent_id.clone();
                    self.record_decline(&offer_id, true, None, now, out);
                    self.withdraw_offer(&offer_id, Some(RevokeReason::Timeout), now, true, out);
                    let max = self.settings.max_missed_offers;
                    if let Some(agent) = self.agents.get_mut(&agent_id) {
                        agent.missed_in_row += 1;
                        if max > 0
                            && agent.missed_in_row >= max
                            && agent.slot.state == AgentState::Available
                        {
                            agent.slot.state = AgentState::Away;
                            agent.missed_in_row = 0;
                            let offers = agent.offers.clone();
                            out.push(Effect::Notify {
                                to: Participant::Agent(agent_id),
                                notice: Notice::Status {
                                    state: AgentState::Away,
                                    reason: Some("missed_offers"),
                                },
                            });
                            for o in offers {
                                self.withdraw_offer(
                                    &o,
                                    Some(RevokeReason::Withdrawn),
                                    now,
                                    false,
                                    out,
                                );
                            }
                        }
                    }
                }
                Timer::Grace(agent_id, generation) => {
                    let Some(agent) = self.agents.get_mut(&agent_id) else {
                        continue;
                    };
                    if agent.generation != generation || agent.slot.online {
                        continue;
                    }
                    agent.slot.state = AgentState::Offline;
                    let held = std::mem::take(&mut agent.conversations);
                    agent.slot.load = [0, 0];
                    for conversation_id in held {
                        self.requeue_from_agent(&conversation_id, &agent_id, now, out);
                    }
                }
                Timer::WrapUp(agent_id, generation) => {
                    let Some(agent) = self.agents.get_mut(&agent_id) else {
                        continue;
                    };
                    if agent.wrap_up_generation != generation
                        || agent.slot.state != AgentState::WrapUp
                    {
                        continue;
                    }
                    agent.slot.state = AgentState::Available;
                    agent.slot.idle_since = now;
                    out.push(Effect::Notify {
                        to: Participant::Agent(agent_id),
                        notice: Notice::Status {
                            state: AgentState::Available,
                            reason: Some("wrap_up_ended"),
                        },
                    });
                    self.routing_dirty = true;
                }
                Timer::Step(conversation_id, entered_at) => {
                    if let Some(conv) = self.conversations.get_mut(&conversation_id)
                        && conv.rec.entered_at == entered_at
                        && let Some(queue) = self.queues.get(&conv.rec.queue)
                    {
                        apply_steps(conv, &queue.settings, now);
                        self.relane(&conversation_id);
                        self.routing_dirty = true;
                    }
                }
                Timer::Overflow(conversation_id, entered_at) => {
                    let due = self.conversations.get(&conversation_id).is_some_and(|c| {
                        c.rec.entered_at == entered_at && c.rec.state == ConversationState::Queued
                    });
                    if due {
                        self.overflow(&conversation_id, now, out);
                    }
                }
                Timer::Reroute(conversation_id) => {
                    if let Some(conv) = self.conversations.get_mut(&conversation_id) {
                        conv.declined.retain(|(_, until)| *until > now);
                        self.routing_dirty = true;
                    }
                }
                Timer::Opening(_) => self.routing_dirty = true,
                Timer::Positions => {
                    self.sweep_armed = false;
                    self.positions_due = true;
                }
            }
        }
    }

    /// The agent left for good (grace over): the conversation queues again at its old
    /// place, with a system line in the transcript so both sides know why.
    fn requeue_from_agent(
        &mut self,
        conversation_id: &Id,
        agent_id: &Id,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        // A warm transfer the agent started is called off: nobody would stay.
        let pending = self
            .conversations
            .get_mut(conversation_id)
            .and_then(|c| c.transfer.take().and(c.offer.clone()));
        if let Some(offer_id) = pending {
            self.withdraw_offer(&offer_id, Some(RevokeReason::Withdrawn), now, false, out);
        }
        let Some(conv) = self.conversations.get_mut(conversation_id) else {
            return;
        };
        conv.rec.state = ConversationState::Queued;
        conv.rec.agent_id = None;
        conv.rec.entered_at = now;
        conv.queued_sent = None;
        out.push(Effect::Persist(Record::AssignmentEnded {
            conversation_id: conversation_id.clone(),
            agent_id: agent_id.clone(),
            at: now,
        }));
        self.wait_persisted(conversation_id, now, out);
        self.threads.system_line(
            conversation_id,
            "Your agent lost their connection. You keep your place: the next available agent will see everything said so far.".to_owned(),
            now,
            out,
        );
        self.routing_dirty = true;
    }

    /// Tells the conversation plane who the conversation is with now: its agent (and
    /// the name they write under) and whether they hold it. Called wherever routing
    /// changes a conversation's agent or state.
    fn seat(&mut self, conversation_id: &Id) {
        let Some(conv) = self.conversations.get(conversation_id) else {
            return;
        };
        let agent = conv.rec.agent_id.as_ref().map(|a| {
            let name = self
                .agents
                .get(a)
                .map_or_else(|| a.clone(), |agent| agent.display_name.clone());
            (a.clone(), name)
        });
        let active = conv.rec.state == ConversationState::Active;
        self.threads.seat(conversation_id, agent, active);
    }

    fn owned_by_customer(&self, conversation_id: &Id, customer_id: &Id) -> Result<(), Refusal> {
        match self.conversations.get(conversation_id) {
            Some(c) if c.rec.customer_id == *customer_id => Ok(()),
            Some(_) => Err(Refusal::forbidden(format!(
                "conversation `{conversation_id}` is not yours"
            ))),
            None => Err(not_open(conversation_id)),
        }
    }

    fn held_by_agent(&self, conversation_id: &Id, agent_id: &Id) -> Result<(), Refusal> {
        match self.conversations.get(conversation_id) {
            Some(c)
                if c.rec.agent_id.as_ref() == Some(agent_id)
                    && c.rec.state == ConversationState::Active =>
            {
                Ok(())
            }
            Some(_) => Err(Refusal::forbidden(format!(
                "conversation `{conversation_id}` is not assigned to you"
            ))),
            None => Err(not_open(conversation_id)),
        }
    }

    /// Checks the invariants; used by tests after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        // The two planes agree: every open conversation has its thread and no other
        // does, and each thread knows the agent routing gave it, holding it exactly
        // when routing says it is active.
        if self.threads.len() != self.conversations.len() {
            return Err(format!(
                "{} threads for {} open conversations",
                self.threads.len(),
                self.conversations.len()
            ));
        }
        for id in self.threads.ids() {
            let (Some(conv), Some(thread)) = (self.conversations.get(id), self.threads.get(id))
            else {
                return Err(format!("thread {id} has no open conversation"));
            };
            let agent = thread.agent.as_ref().map(|(a, _)| a);
            let active = conv.rec.state == ConversationState::Active;
            if agent != conv.rec.agent_id.as_ref() || thread.active != active {
                return Err(format!(
                    "thread {id}: agent {agent:?} active {} but routing has {:?} {:?}",
                    thread.active, conv.rec.agent_id, conv.rec.state
                ));
            }
            if thread.customer_id != conv.rec.customer_id {
                return Err(format!("thread {id}: customer differs from routing's"));
            }
        }
        for agent in self.agents.values() {
            for ch in [Channel::Chat, Channel::Voice] {
                let i = channel_index(ch);
                let held = agent
                    .conversations
                    .iter()
                    .filter(|c| {
                        self.conversations
                            .get(*c)
                            .is_some_and(|c| c.rec.channel == ch)
                    })
                    .count();
                let offered = agent
                    .offers
                    .iter()
                    .filter(|o| self.offers.get(*o).is_some_and(|o| o.channel == ch))
                    .count();
                let load = (held + offered) as u32;
                if load != agent.slot.load[i] {
                    return Err(format!(
                        "agent {} load {} != {}",
                        agent.slot.id, agent.slot.load[i], load
                    ));
                }
                if agent.slot.load[i] > agent.slot.capacity[i] {
                    return Err(format!("agent {} over capacity", agent.slot.id));
                }
            }
        }
        for (id, offer) in &self.offers {
            let conv = self
                .conversations
                .get(&offer.conversation_id)
                .ok_or("offer for closed conversation")?;
            let expected_state = if offer.warm {
                ConversationState::Active
            } else {
                ConversationState::Offered
            };
            if conv.offer.as_ref() != Some(id)
                || conv.rec.state != expected_state
                || offer.warm != conv.transfer.is_some()
            {
                return Err(format!("offer {id} and conversation disagree"));
            }
            // Queue offers go to agents qualified at the conversation's current step
            // (transfers and the customer's last agent are chosen by people or history).
            let chosen_by_name = offer.warm
                || conv
                    .handoff
                    .as_ref()
                    .is_some_and(|h| h.agent.as_ref() == Some(&offer.agent_id))
                || conv.history.last_agent.as_ref() == Some(&offer.agent_id);
            if !chosen_by_name {
                let key = self.class_key(&offer.conversation_id);
                let (need, widened) = key.need();
                let need = Need {
                    widened: &widened,
                    ..need
                };
                if self.agents[&offer.agent_id].slot.qualifies(&need).is_none() {
                    return Err(format!("offer {id} to an unqualified agent"));
                }
            }
        }
        let mut counts: HashMap<&Id, u32> = HashMap::new();
        for id in self.waiting.ids() {
            let conv = self
                .conversations
                .get(id)
                .ok_or("waiting conversation not open")?;
            *counts.entry(&conv.rec.queue).or_default() += 1;
            let lane = self
                .waiting
                .lane_of(&wait_key(conv))
                .ok_or_else(|| format!("{id} is not at its place in line"))?;
            let named = conv.handoff.as_ref().is_some_and(|h| h.agent.is_some());
            if lane.queue != conv.rec.queue || (!named && lane.class != conv.class) {
                return Err(format!(
                    "{id} is in lane {lane:?}, its class is {:?}",
                    conv.class
                ));
            }
            if let Some(class) = conv.class
                && self.pools.key(class) != &self.class_key(id)
            {
                return Err(format!("{id} has a stale class"));
            }
        }
        for queue in self.queues.keys() {
            let n = counts.get(queue).copied().unwrap_or(0);
            if self.waiting.in_queue(queue) != n {
                return Err(format!(
                    "the line counts {} waiting in {queue}, there are {n}",
                    self.waiting.in_queue(queue)
                ));
            }
        }
        for id in self.waiting.ids() {
            let conv = self
                .conversations
                .get(id)
                .ok_or("waiting conversation not open")?;
            if conv.rec.state != ConversationState::Queued {
                return Err(format!("waiting conversation {id} is {:?}", conv.rec.state));
            }
        }
        Ok(())
    }
}

fn wait_key(conv: &Conversation) -> WaitKey {
    (Reverse(conv.rec.priority), conv.rec.ticket)
}

/// Agents not to offer this conversation to: those who declined it lately, the one
/// who just transferred it away, and (when `avoid_poorly_rated`) those the customer
/// rated 2 or lower.
fn ruled_out(conv: &Conversation, agent: &Id, now: Millis, avoid_poorly_rated: bool) -> bool {
    conv.declined
        .iter()
        .any(|(a, until)| a == agent && *until > now)
        || conv.handoff.as_ref().is_some_and(|h| h.from == *agent)
        || (avoid_poorly_rated && conv.history.poorly_rated.contains(agent))
}

/// Brings a conversation's requirements up to the routing steps its wait has earned.
fn apply_steps(conv: &mut Conversation, queue: &QueueSettings, now: Millis) {
    let waited = now.saturating_sub(conv.rec.entered_at);
    let step = queue
        .steps
        .iter()
        .take_while(|s| s.after_ms <= waited)
        .count();
    if step == conv.step {
        return;
    }
    conv.step = step;
    conv.class = None;
    conv.need = routing::relaxed(&conv.base, &queue.steps[..step]);
}

/// Capacity that could take a conversation, by queue, channel and language: computed
/// once per sweep for each.
type Staffing = HashMap<(Id, Channel, Option<Id>), u32>;

/// `queued` for a waiting customer, with a rough estimate: the queue's average
/// handle time times the place in line, shared by the capacity of the agents online
/// for it. No agent online: no estimate.
/// Capacity on the conversation's channel of the online agents qualified for its
/// queue and speaking its language: the divisor of the wait estimate (none such: no
/// estimate, rather than a promise nobody can keep).
fn staffed_for(
    queues: &HashMap<Id, Queue>,
    agents: &BTreeMap<Id, Agent>,
    conv: &Conversation,
) -> u32 {
    let Some(queue) = queues.get(&conv.rec.queue) else {
        return 0;
    };
    let language = conv
        .rec
        .language
        .as_deref()
        .or(queue.settings.language.as_deref());
    agents
        .values()
        .filter(|a| a.slot.online && routing::qualified(&a.slot.skills, &queue.settings.skills))
        .filter(|a| a.slot.speaks(language))
        .map(|a| a.slot.capacity[channel_index(conv.rec.channel)])
        .sum()
}

fn queued_notice(
    queues: &HashMap<Id, Queue>,
    conv: &Conversation,
    position: u32,
    staffed: u32,
    now: Millis,
) -> Effect {
    let queue = &queues[&conv.rec.queue];
    let opens_at = closed_until(&queue.settings, now);
    let eta_seconds = match opens_at {
        // Closed: the earliest an agent can answer is the opening.
        Some(at) => u32::try_from((at - now).div_ceil(1000)).ok(),
        None => (staffed > 0).then(|| {
            let ms = queue.avg_handle_ms * u64::from(position) / u64::from(staffed);
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        }),
    };
    Effect::Notify {
        to: Participant::Customer(conv.rec.customer_id.clone()),
        notice: Notice::Queued {
            conversation_id: conv.rec.id.clone(),
            position,
            eta_seconds,
            opens_at,
        },
    }
}

/// When a queue with opening hours is closed at `now`: when it opens next.
fn closed_until(queue: &QueueSettings, now: Millis) -> Option<Millis> {
    let hours = queue.hours.as_ref()?;
    if hours.is_open(now) {
        return None;
    }
    hours.next_open(now)
}

fn view(conv: &Conversation, last_seq: u64) -> ConversationView {
    ConversationView {
        conversation_id: conv.rec.id.clone(),
        channel: conv.rec.channel,
        queue: conv.rec.queue.clone(),
        state: conv.rec.state,
        customer_id: conv.rec.customer_id.clone(),
        customer_name: conv.customer_name.clone(),
        previous_conversations: conv.history.previous_conversations,
        attributes: conv.rec.attributes.clone(),
        last_seq,
        created_at: conv.rec.created_at,
        repeat_of: conv.rec.repeat_of.clone(),
    }
}

fn offer_gone(offer_id: &Id) -> Refusal {
    Refusal::not_found(format!(
        "offer `{offer_id}` is no longer open to you (it expired, was withdrawn or was never yours)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::io::{AgentSettings, QueueSettings};

    fn settings(capacity_chat: u32) -> CoreSettings {
        CoreSettings {
            queues: vec![QueueSettings::named("q")],
            agents: vec![AgentSettings {
                id: "a".into(),
                display_name: "A".into(),
                skills: Default::default(),
                languages: Vec::new(),
                capacity_chat,
                capacity_voice: 0,
            }],
            agent_grace_ms: 1000,
            max_missed_offers: 3,
            reoffer_delay_ms: 1000,
            queued_update_interval_ms: 1000,
            dedupe_window: 8,
            voice_excludes_chat: true,
            coaching: Default::default(),
            prefer_satisfied: false,
        }
    }

    fn active(id: &str, ticket: u64) -> RestoredConversation {
        RestoredConversation {
            record: ConversationRecord {
                id: id.into(),
                customer_id: format!("c-{id}").into(),
                queue: "q".into(),
                channel: Channel::Chat,
                state: ConversationState::Active,
                agent_id: Some("a".into()),
                priority: 0,
                ticket,
                skills: Default::default(),
                language: None,
                attributes: "{}".into(),
                created_at: 0,
                entered_at: 0,
                transfers: 0,
                closed_at: None,
                closed_by: None,
                resolution: None,
                repeat_of: None,
            },
            customer_name: "C".into(),
            history: Default::default(),
            last_seq: 3,
            recent_client_ids: Vec::new(),
        }
    }

    #[test]
    fn restore_requeues_what_no_longer_fits_a_lowered_capacity() {
        let mut out = Vec::new();
        let sb = Switchboard::restore(
            settings(1),
            1,
            vec![active("x", 1), active("y", 2)],
            10,
            &mut out,
        );
        sb.check_invariants().unwrap();
        assert_eq!(sb.waiting_len(), 1, "the second no longer fits");
        let ended = out.iter().any(|e| {
            matches!(e, Effect::Persist(Record::AssignmentEnded { conversation_id, .. }) if &**conversation_id == "y")
        });
        assert!(
            ended,
            "the assignment that did not fit is ended in the store"
        );
    }

    /// With `prefer_satisfied`, the better-rated agent gets the offer though the other
    /// idled longer; without it, the longest idle does. (Every decision is also checked
    /// against a scan of every agent.)
    #[test]
    fn satisfaction_records_break_ties_only_when_asked() {
        for (prefer, expected) in [(false, "a"), (true, "b")] {
            let mut settings = settings(1);
            settings.prefer_satisfied = prefer;
            let mut b = settings.agents[0].clone();
            b.id = "b".into();
            settings.agents.push(b);
            let mut sb = Switchboard::new(settings, 1);
            let mut out = Vec::new();
            for (n, (id, at)) in [("a", 1), ("b", 2)].into_iter().enumerate() {
                sb.handle(
                    Input::AgentConnected {
                        conn: ConnId(10 + n as u64),
                        agent_id: id.into(),
                    },
                    at,
                    &mut out,
                );
                sb.handle(
                    Input::SetStatus {
                        conn: ConnId(10 + n as u64),
                        req: None,
                        agent_id: id.into(),
                        available: true,
                    },
                    at,
                    &mut out,
                );
            }
            sb.handle(
                Input::AgentRatings(vec![
                    ("a".into(), "q".into(), 250),
                    ("b".into(), "q".into(), 460),
                ]),
                3,
                &mut out,
            );
            out.clear();
            sb.handle(
                Input::Start(Box::new(StartRequest {
                    conn: ConnId(1),
                    req: None,
                    customer_id: "c".into(),
                    customer_name: "C".into(),
                    history: CustomerHistory::default(),
                    conversation_id: "x".into(),
                    queue: "q".into(),
                    channel: Channel::Chat,
                    language: None,
                    skills: Skills::new(),
                    attributes: "{}".into(),
                    context: Vec::new(),
                    repeat_of: None,
                    text: None,
                })),
                4,
                &mut out,
            );
            sb.check_invariants().unwrap();
            let offered_to = out.iter().find_map(|e| match e {
                Effect::Notify {
                    to: Participant::Agent(a),
                    notice: Notice::Offer(_),
                } => Some(a.to_string()),
                _ => None,
            });
            assert_eq!(offered_to.as_deref(), Some(expected), "prefer = {prefer}");
        }
    }
}

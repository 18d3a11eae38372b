//! What goes into the switchboard (`Input`) and what comes out (`Effect`).
//!
//! The shell applies effects in order, with one rule: every `Effect::Persist` of a
//! batch is made durable before any other effect of that batch is let out. That is
//! how "acknowledged only once durable" holds.

use super::signals::voice::VoiceSignals;
use std::sync::Arc;

pub use super::hours::Hours;
use super::model::{
    AgentState, Channel, ConnId, ConversationState, CustomerHistory, Event, Id, Millis,
    Participant, Record, Resolution, Role, Skills, Text,
};
pub use super::routing::{Reason, Strategy};

/// A request id from the client (`id`), handed back in the reply.
pub type ReqId = Option<Id>;

#[derive(Clone, Debug)]
pub enum Input {
    /// A customer connection said `hello` and was recognised (or newly named) by the shell.
    CustomerHello {
        conn: ConnId,
        customer_id: Id,
    },
    Start(Box<StartRequest>),
    Post {
        conn: ConnId,
        req: ReqId,
        from: Participant,
        conversation_id: Id,
        text: Text,
        client_msg_id: Option<Id>,
    },
    Typing {
        from: Participant,
        conversation_id: Id,
        on: bool,
    },
    /// The customer ends the conversation.
    End {
        conn: ConnId,
        req: ReqId,
        customer_id: Id,
        conversation_id: Id,
    },
    /// An agent's first connection opened (the shell counts connections).
    AgentConnected {
        conn: ConnId,
        agent_id: Id,
    },
    /// An agent's last connection closed.
    AgentDisconnected {
        agent_id: Id,
    },
    SetStatus {
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        available: bool,
    },
    Accept {
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        offer_id: Id,
    },
    Reject {
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        offer_id: Id,
        /// Why, in the agent's words (kept with the decline).
        reason: Option<Text>,
    },
    /// The agent closes the conversation with a resolution.
    Close {
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        conversation_id: Id,
        resolution: Resolution,
        note: Option<Text>,
        /// With `FollowUp`: when to get back to the customer.
        follow_up_at: Option<Millis>,
    },
    /// The agent hands the conversation to a queue or a named agent.
    Transfer {
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        conversation_id: Id,
        to: TransferTarget,
        /// Warm: the agent stays until the target accepts. Cold: the agent leaves now.
        warm: bool,
        /// For the target agent, in the offer.
        note: Option<Text>,
    },
    /// Time passed: fire due timers (offer expiry, grace, wrap-up, queue updates).
    Tick,
    /// The conversation moves to another channel (chat to a call, or back).
    /// `customer`: who asks (`None`: the shell, for a phone call attaching or leaving).
    Switch {
        conn: ConnId,
        req: ReqId,
        customer: Option<Id>,
        conversation_id: Id,
        channel: Channel,
    },
    /// Browser-call signalling (WebRTC offer, answer, candidates), relayed opaque to
    /// the other party of the conversation.
    Rtc {
        conn: ConnId,
        req: ReqId,
        from: Participant,
        conversation_id: Id,
        payload: Text,
    },
    /// A follow-up fell due (the shell found it in the store): an outbound conversation
    /// opens for the customer, offered to the agent who scheduled it first.
    OpenFollowUp(Box<FollowUpDue>),
    /// A verified customer said hello: the store knows them from now on (so context
    /// can be attached before their first conversation).
    CustomerSeen {
        customer_id: Id,
        name: Option<Id>,
    },
    /// An anonymous visitor (`from`) proved to be the identified customer `into` (the
    /// shell checked both tokens): the visitor's conversations become the customer's.
    MergeCustomer {
        from: Id,
        into: Id,
        name: Option<Id>,
    },
    /// Agents' satisfaction records: (agent, queue, rating 1-5 in hundredths), all of
    /// them (agents not listed have none).
    AgentRatings(Vec<(Id, Id, u32)>),
    /// The caller pressed a key during the call (DTMF): kept in the transcript.
    Dtmf {
        conversation_id: Id,
        digit: char,
    },
    /// A call leg's voice signals so far, measured by the shell's meter: shown to the
    /// conversation's agent; kept when `ended` (the leg is over).
    VoiceSignals {
        conversation_id: Id,
        signals: VoiceSignals,
        ended: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferTarget {
    Queue(Id),
    Agent(Id),
}

/// A follow-up that fell due, as the store keeps it.
#[derive(Clone, Debug)]
pub struct FollowUpDue {
    pub follow_up_id: Id,
    /// The conversation it follows up on.
    pub about: Id,
    /// Named by the shell for the new conversation.
    pub conversation_id: Id,
    pub customer_id: Id,
    pub customer_name: Id,
    pub queue: Id,
    pub agent_id: Option<Id>,
    pub note: Option<Text>,
    pub due_at: Millis,
    pub history: CustomerHistory,
    /// The customer's trusted context now (routing rules, shown to the agent).
    pub context: Vec<(Id, Text)>,
    /// Attributes as JSON (the context and `follow_up_of`), made by the shell.
    pub attributes: Text,
}

#[derive(Clone, Debug)]
pub struct StartRequest {
    pub conn: ConnId,
    pub req: ReqId,
    pub customer_id: Id,
    pub customer_name: Id,
    /// The customer's past contacts (read by the shell from the store).
    pub history: CustomerHistory,
    /// Named by the shell (unique, unguessable).
    pub conversation_id: Id,
    pub queue: Id,
    pub channel: Channel,
    pub language: Option<Id>,
    pub skills: Skills,
    pub attributes: Text,
    /// Attributes from trusted sources (the operator API's customer context, the
    /// telephony provider's parameters): the queue's rules route on these, never on
    /// what the customer's own client claims.
    pub context: Vec<(Id, Text)>,
    /// The earlier conversation this one repeats (found by the shell in the store).
    pub repeat_of: Option<Id>,
    pub text: Option<Text>,
}

#[derive(Clone, Debug)]
pub enum Effect {
    /// Make this durable before letting out the batch's other effects.
    Persist(Record),
    /// Tell every connection of a participant (conversation-scoped notices only reach
    /// connections that follow that conversation).
    Notify { to: Participant, notice: Notice },
    /// Answer one request on one connection.
    Reply {
        conn: ConnId,
        req: ReqId,
        reply: Reply,
    },
    /// Something refused that has no answer to carry the refusal (a `typing` about a
    /// conversation that is not the sender's): the shell audits it.
    Denied { by: Participant, message: String },
}

#[derive(Clone, Debug)]
pub enum Notice {
    /// A transcript event (has a `seq`).
    Event(Arc<Event>),
    Queued {
        conversation_id: Id,
        position: u32,
        eta_seconds: Option<u32>,
        /// When the queue is closed: when it opens.
        opens_at: Option<Millis>,
    },
    Typing {
        conversation_id: Id,
        role: Role,
        on: bool,
    },
    Offer(Arc<OfferView>),
    OfferRevoked {
        offer_id: Id,
        conversation_id: Id,
        reason: RevokeReason,
    },
    /// The agent's state changed without them asking (or on another connection).
    Status {
        state: AgentState,
        reason: Option<&'static str>,
    },
    /// The agent accepted: the shell sends the whole conversation (transcript from the store).
    Joined(Arc<ConversationView>),
    /// After `closed`: the customer is asked how it went.
    SurveyRequest {
        conversation_id: Id,
    },
    /// To the agent who transferred: the conversation is no longer theirs.
    Transferred {
        conversation_id: Id,
        to: TransferTarget,
        warm: bool,
    },
    /// To the agent who asked for a warm transfer: nobody took it; it stays theirs.
    TransferFailed {
        conversation_id: Id,
        reason: &'static str,
    },
    /// The conversation changed channel; `agent_kept`: its agent stays on it (else it
    /// waits for an agent with room on the new channel).
    Switched {
        conversation_id: Id,
        channel: Channel,
        agent_kept: bool,
    },
    /// WebRTC signalling from the other party.
    Rtc {
        conversation_id: Id,
        from: Role,
        payload: Text,
    },
    /// To the customer: the business opened a conversation to follow up on an earlier
    /// one (their connections start following it).
    FollowUp {
        conversation_id: Id,
        about: Id,
        note: Option<Text>,
    },
    /// To the agent: the customer's mood after their message `seq`.
    Mood {
        conversation_id: Id,
        seq: u64,
        mood: super::signals::conversation::Mood,
    },
    /// To the agent: coaching flags their message `seq` raised.
    Coaching {
        conversation_id: Id,
        seq: u64,
        flags: Vec<super::signals::coaching::Flag>,
    },
    /// To the conversation's agent: the call's voice signals so far.
    VoiceSignals {
        conversation_id: Id,
        signals: VoiceSignals,
    },
}

impl Notice {
    /// The conversation a notice belongs to, if it is conversation-scoped.
    pub fn conversation_id(&self) -> Option<&Id> {
        match self {
            Notice::Event(e) => Some(&e.conversation_id),
            Notice::SurveyRequest { conversation_id } => Some(conversation_id),
            Notice::Queued {
                conversation_id, ..
            }
            | Notice::Typing {
                conversation_id, ..
            }
            | Notice::VoiceSignals {
                conversation_id, ..
            }
            | Notice::Switched {
                conversation_id, ..
            }
            | Notice::Rtc {
                conversation_id, ..
            }
            | Notice::FollowUp {
                conversation_id, ..
            }
            | Notice::Coaching {
                conversation_id, ..
            }
            | Notice::Mood {
                conversation_id, ..
            } => Some(conversation_id),
            Notice::Offer(_)
            | Notice::Transferred { .. }
            | Notice::TransferFailed { .. }
            | Notice::OfferRevoked { .. }
            | Notice::Status { .. }
            | Notice::Joined(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeReason {
    /// Not answered in time.
    Timeout,
    /// The customer left, or the agent went away or offline.
    Withdrawn,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Timeout => "timeout",
            RevokeReason::Withdrawn => "withdrawn",
        }
    }
}

#[derive(Clone, Debug)]
pub struct OfferView {
    pub offer_id: Id,
    pub conversation_id: Id,
    pub channel: Channel,
    pub queue: Id,
    pub expires_in_ms: u64,
    pub reason: Reason,
    pub customer_id: Id,
    pub customer_name: Id,
    pub previous_conversations: u32,
    /// From the agent who transferred it.
    pub note: Option<Text>,
    /// The customer's first message, whole (the shell shortens it for the wire).
    pub first_words: Option<Text>,
}

/// An open conversation as its agent sees it.
#[derive(Clone, Debug)]
pub struct ConversationView {
    pub conversation_id: Id,
    pub channel: Channel,
    pub queue: Id,
    pub state: ConversationState,
    pub customer_id: Id,
    pub customer_name: Id,
    pub previous_conversations: u32,
    pub attributes: Text,
    pub last_seq: u64,
    pub created_at: Millis,
    pub repeat_of: Option<Id>,
}

#[derive(Clone, Debug)]
pub enum Reply {
    Ack {
        conversation_id: Option<Id>,
        seq: Option<u64>,
    },
    /// `start` accepted: the connection now follows the conversation.
    Started {
        conversation_id: Id,
    },
    Refused(Refusal),
    CustomerWelcome {
        open: Vec<OpenConversation>,
    },
    AgentWelcome(Box<AgentSnapshot>),
}

#[derive(Clone, Debug)]
pub struct OpenConversation {
    pub conversation_id: Id,
    pub state: ConversationState,
    pub channel: Channel,
    pub queue: Id,
    pub last_seq: u64,
    /// Place in the queue while waiting (1 = next).
    pub position: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct AgentSnapshot {
    pub agent_id: Id,
    pub display_name: Id,
    pub skills: Skills,
    pub capacity_chat: u32,
    pub capacity_voice: u32,
    pub state: AgentState,
    pub conversations: Vec<ConversationView>,
}

/// Why the core refused a request. The shell maps the kind to a wire error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    NotFound,
    Forbidden,
    Conflict,
}

impl Refusal {
    pub fn not_found(message: impl Into<String>) -> Self {
        Refusal {
            kind: RefusalKind::NotFound,
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Refusal {
            kind: RefusalKind::Forbidden,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Refusal {
            kind: RefusalKind::Conflict,
            message: message.into(),
        }
    }
}

/// Routing settings for one queue.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    pub name: Id,
    /// Skills (minimum levels) every agent of the queue must have.
    pub skills: Skills,
    /// A language every agent of the queue must speak, unless the conversation names one.
    pub language: Option<Id>,
    /// Higher goes first, across queues.
    pub priority: i32,
    pub strategy: Strategy,
    /// Relaxations over time, in order of `after_ms`.
    pub steps: Vec<StepSettings>,
    /// Opening hours; none: always open.
    pub hours: Option<Hours>,
    pub offer_timeout_ms: u64,
    pub wrap_up_ms: u64,
    /// How long the agent who last resolved the customer's contact is waited for.
    pub affinity_wait_ms: u64,
    /// After waiting this long, the conversation moves to `overflow_to`.
    pub max_wait_ms: Option<u64>,
    pub overflow_to: Option<Id>,
    /// Conversations answered within this long count as within the service level.
    pub service_level_ms: u64,
    /// Rules on trusted attributes (priority, required skills), applied at start.
    pub rules: Vec<AttributeRule>,
}

impl QueueSettings {
    /// A queue with no requirements, longest-idle, no steps, no wrap-up, no affinity,
    /// no overflow, and a 20 s offer timeout.
    pub fn named(name: &str) -> QueueSettings {
        QueueSettings {
            name: name.into(),
            skills: Skills::new(),
            language: None,
            priority: 0,
            strategy: Strategy::LongestIdle,
            steps: Vec::new(),
            hours: None,
            offer_timeout_ms: 20_000,
            wrap_up_ms: 0,
            affinity_wait_ms: 0,
            max_wait_ms: None,
            overflow_to: None,
            service_level_ms: 20_000,
            rules: Vec::new(),
        }
    }
}

/// A queue rule on trusted attributes: a conversation whose `attribute` equals
/// `equals` gets `priority` added and must be served with `skills`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributeRule {
    pub attribute: Id,
    pub equals: Text,
    pub priority: i32,
    pub skills: Skills,
}

/// A routing step: once a conversation has waited `after_ms`, its requirements relax.
#[derive(Clone, Debug, Default)]
pub struct StepSettings {
    pub after_ms: u64,
    /// Lower minimum levels (a skill not required is not added).
    pub min_levels: Skills,
    /// Skills no longer required.
    pub drop_skills: Vec<String>,
    /// Agents qualified for these queues may take it too (bullseye).
    pub widen_to: Vec<Id>,
}

#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub id: Id,
    pub display_name: Id,
    pub skills: Skills,
    pub languages: Vec<Id>,
    pub capacity_chat: u32,
    pub capacity_voice: u32,
}

#[derive(Clone, Debug)]
pub struct CoreSettings {
    pub queues: Vec<QueueSettings>,
    pub agents: Vec<AgentSettings>,
    /// How long a disconnected agent keeps their conversations.
    pub agent_grace_ms: u64,
    /// Offers missed in a row before the agent is set `away`.
    pub max_missed_offers: u32,
    /// How long an agent who declined (or missed) an offer is skipped for that conversation.
    pub reoffer_delay_ms: u64,
    /// Least time between two `queued` updates to one conversation.
    pub queued_update_interval_ms: u64,
    /// How many recent `client_msg_id`s per conversation are remembered for de-duplication.
    pub dedupe_window: usize,
    /// An agent on a voice call (or offered one) takes no chats.
    pub voice_excludes_chat: bool,
    /// Coaching flags raised by agents' messages.
    pub coaching: std::sync::Arc<super::signals::coaching::Coaching>,
    /// Among candidates, prefer the agent with the better satisfaction record for the
    /// queue (after the strategy's own key). Off by default: it concentrates work.
    pub prefer_satisfied: bool,
}

/// A conversation as the store hands it back at start-up.
#[derive(Clone, Debug)]
pub struct RestoredConversation {
    pub record: super::model::ConversationRecord,
    pub customer_name: Id,
    pub history: CustomerHistory,
    pub last_seq: u64,
    /// The most recent (author id, client_msg_id, seq), oldest first.
    pub recent_client_ids: Vec<(Id, Id, u64)>,
}

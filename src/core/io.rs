//! What goes into the switchboard (`Input`) and what comes out (`Effect`).
//!
//! The shell applies effects in order, with one rule: every `Effect::Persist` of a
//! batch is made durable before any other effect of that batch is let out. That is
//! how "acknowledged only once durable" holds.

use std::sync::Arc;

use super::model::{
    AgentState, Channel, ConnId, ConversationState, Event, Id, Millis, Participant, Record,
    Resolution, Role, Skills, Text,
};

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
    },
    /// The agent closes the conversation with a resolution.
    Close {
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        conversation_id: Id,
        resolution: Resolution,
        note: Option<Text>,
    },
    /// Time passed: fire due timers (offer expiry, grace, wrap-up, queue updates).
    Tick,
}

#[derive(Clone, Debug)]
pub struct StartRequest {
    pub conn: ConnId,
    pub req: ReqId,
    pub customer_id: Id,
    pub customer_name: Id,
    /// Closed conversations this customer had before (read by the shell from the store).
    pub previous_conversations: u32,
    /// Named by the shell (unique, unguessable).
    pub conversation_id: Id,
    pub queue: Id,
    pub channel: Channel,
    pub language: Option<Id>,
    pub skills: Skills,
    pub attributes: Text,
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
}

#[derive(Clone, Debug)]
pub enum Notice {
    /// A transcript event (has a `seq`).
    Event(Arc<Event>),
    Queued {
        conversation_id: Id,
        position: u32,
        eta_seconds: Option<u32>,
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
}

impl Notice {
    /// The conversation a notice belongs to, if it is conversation-scoped.
    pub fn conversation_id(&self) -> Option<&Id> {
        match self {
            Notice::Event(e) => Some(&e.conversation_id),
            Notice::Queued {
                conversation_id, ..
            }
            | Notice::Typing {
                conversation_id, ..
            } => Some(conversation_id),
            Notice::Offer(_)
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferReason {
    Skill,
}

impl OfferReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferReason::Skill => "skill",
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
    pub reason: OfferReason,
    pub customer_id: Id,
    pub customer_name: Id,
    pub previous_conversations: u32,
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
    pub offer_timeout_ms: u64,
    pub wrap_up_ms: u64,
}

#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub id: Id,
    pub display_name: Id,
    pub skills: Skills,
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
}

/// A conversation as the store hands it back at start-up.
#[derive(Clone, Debug)]
pub struct RestoredConversation {
    pub record: super::model::ConversationRecord,
    pub customer_name: Id,
    pub previous_conversations: u32,
    pub last_seq: u64,
    /// The most recent (author id, client_msg_id, seq), oldest first.
    pub recent_client_ids: Vec<(Id, Id, u64)>,
}

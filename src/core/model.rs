//! The nouns of the core: ids, channels, roles, transcript events and the records the
//! store must make durable. Plain data; no serde (a serializable type is a boundary).

use std::collections::BTreeMap;
use std::sync::Arc;

/// Milliseconds since the UNIX epoch, always given by the shell.
pub type Millis = u64;

/// Cheaply cloned ids and text.
pub type Id = Arc<str>;
pub type Text = Arc<str>;

/// A connection, named by the shell. The core only hands it back in replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Chat,
    Voice,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Chat => "chat",
            Channel::Voice => "voice",
        }
    }
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "chat" => Some(Channel::Chat),
            "voice" => Some(Channel::Voice),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Customer,
    Agent,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
            Role::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "customer" => Some(Role::Customer),
            "agent" => Some(Role::Agent),
            "system" => Some(Role::System),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    Resolved,
    Unresolved,
    FollowUp,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Resolved => "resolved",
            Resolution::Unresolved => "unresolved",
            Resolution::FollowUp => "follow_up",
        }
    }
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "resolved" => Some(Resolution::Resolved),
            "unresolved" => Some(Resolution::Unresolved),
            "follow_up" => Some(Resolution::FollowUp),
            _ => None,
        }
    }
}

/// Where a conversation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConversationState {
    Queued,
    Offered,
    Active,
    Closed,
}

impl ConversationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationState::Queued => "queued",
            ConversationState::Offered => "offered",
            ConversationState::Active => "active",
            ConversationState::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<ConversationState> {
        match s {
            "queued" => Some(ConversationState::Queued),
            "offered" => Some(ConversationState::Offered),
            "active" => Some(ConversationState::Active),
            "closed" => Some(ConversationState::Closed),
            _ => None,
        }
    }
}

/// What an agent is doing, as routing sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// No connection (after the grace period, or never connected).
    Offline,
    Available,
    Away,
    /// After closing a conversation, until the queue's wrap-up time ends or the agent
    /// says `available`.
    WrapUp,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Offline => "offline",
            AgentState::Available => "available",
            AgentState::Away => "away",
            AgentState::WrapUp => "wrap_up",
        }
    }
}

/// One side of a conversation, as the shell addresses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Participant {
    Customer(Id),
    Agent(Id),
}

/// Who wrote a transcript entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub role: Role,
    pub id: Id,
    pub display_name: Id,
}

/// An entry of a conversation's transcript. Every one has a `seq`: per conversation,
/// from 1, without gaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub conversation_id: Id,
    pub seq: u64,
    pub ts: Millis,
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventBody {
    Message {
        author: Author,
        text: Text,
        client_msg_id: Option<Id>,
    },
    /// An agent joined the conversation.
    Assigned { agent_id: Id, display_name: Id },
    /// The conversation ended.
    Closed {
        by: Role,
        resolution: Option<Resolution>,
        note: Option<Text>,
    },
}

/// Skills as name -> proficiency (1..=10).
pub type Skills = BTreeMap<String, u8>;

/// What the store knows of a customer's past contacts, for routing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerHistory {
    /// Closed conversations before this one.
    pub previous_conversations: u32,
    /// The agent who resolved the customer's latest resolved contact, unless the
    /// customer rated that contact 2 or lower.
    pub last_agent: Option<Id>,
    /// Agents this customer rated 2 or lower.
    pub poorly_rated: Vec<Id>,
}

/// Everything the store keeps of a conversation, written whole on every change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRecord {
    pub id: Id,
    pub customer_id: Id,
    pub queue: Id,
    pub channel: Channel,
    pub state: ConversationState,
    pub agent_id: Option<Id>,
    pub priority: i32,
    /// Order of arrival in the queue; FIFO within a priority.
    pub ticket: u64,
    pub skills: Skills,
    pub language: Option<Id>,
    /// Opaque to the core: the JSON object the customer sent at `start`.
    pub attributes: Text,
    pub created_at: Millis,
    /// When it last joined a queue (start, overflow, transfer, requeue): routing
    /// steps, affinity and overflow count from here.
    pub entered_at: Millis,
    /// Completed transfers (warm or cold).
    pub transfers: u32,
    pub closed_at: Option<Millis>,
    pub closed_by: Option<Role>,
    pub resolution: Option<Resolution>,
    /// The earlier conversation on the same queue this one repeats (came back within
    /// the repeat window of it).
    pub repeat_of: Option<Id>,
}

/// What must be durable before the effects that follow it are let out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Insert the customer if unknown.
    Customer {
        id: Id,
        seen_at: Millis,
    },
    Conversation(Arc<ConversationRecord>),
    Event(Arc<Event>),
    AssignmentStarted {
        conversation_id: Id,
        agent_id: Id,
        at: Millis,
    },
    AssignmentEnded {
        conversation_id: Id,
        agent_id: Id,
        at: Millis,
    },
    /// An agent let an offer go: rejected it (`missed: false`, with the reason they
    /// gave) or did not answer in time (`missed: true`). Kept for coaching and for the
    /// queue's health: offers that keep bouncing are a routing or staffing problem.
    /// What a conversation was like, measured as it went, kept at its close.
    ConversationSummary {
        conversation_id: Id,
        customer_id: Id,
        queue: Id,
        /// The agent who had it last, if any.
        agent_id: Option<Id>,
        resolution: Option<Resolution>,
        summary: super::signals::conversation::Summary,
        closed_at: Millis,
        /// Its channel at the close.
        channel: Channel,
        /// A repeat contact (it names the customer's previous conversation).
        repeat: bool,
        /// Whether an agent took it within the queue's service level (none: no agent
        /// ever did).
        within_service_level: Option<bool>,
    },
    /// Coaching flags an agent's message raised (for reports).
    CoachingFlags {
        conversation_id: Id,
        agent_id: Id,
        seq: u64,
        codes: Vec<Id>,
        at: Millis,
    },
    /// An agent closed with `follow_up`: get back to the customer at `due_at`.
    FollowUpScheduled {
        follow_up_id: Id,
        conversation_id: Id,
        customer_id: Id,
        queue: Id,
        agent_id: Id,
        due_at: Millis,
        note: Option<Text>,
        at: Millis,
    },
    /// A follow-up fell due and opened as `conversation_id`.
    FollowUpOpened {
        follow_up_id: Id,
        conversation_id: Id,
        at: Millis,
    },
    /// A verified customer's name, from their identity token.
    CustomerName {
        id: Id,
        name: Id,
    },
    /// An anonymous visitor identified as a customer: everything of the visitor's is
    /// the customer's from now on.
    CustomerMerged {
        from: Id,
        into: Id,
        at: Millis,
    },
    /// A call leg's voice signals, kept when the leg ends.
    VoiceSignals {
        conversation_id: Id,
        /// The agent on the call when it ended, if any.
        agent_id: Option<Id>,
        signals: super::signals::voice::VoiceSignals,
        at: Millis,
    },
    OfferDeclined {
        offer_id: Id,
        conversation_id: Id,
        agent_id: Id,
        queue: Id,
        missed: bool,
        reason: Option<Text>,
        at: Millis,
    },
}

/// The name shown for a customer who has not told us theirs: "Visitor" and the last
/// four characters of their id, so an agent can tell two visitors apart.
pub fn default_customer_name(customer_id: &str) -> Id {
    // The last four characters (all of a shorter id).
    let tail = customer_id
        .char_indices()
        .rev()
        .nth(3)
        .map_or(customer_id, |(at, _)| &customer_id[at..]);
    format!("Visitor {tail}").into()
}

#[cfg(test)]
mod tests {
    use super::default_customer_name;

    #[test]
    fn a_visitor_is_named_by_the_last_four_characters_of_their_id() {
        assert_eq!(
            &*default_customer_name("019ab2c4e2aa7c01b2c3d4e5f6071829"),
            "Visitor 1829"
        );
        assert_eq!(&*default_customer_name("cu1"), "Visitor cu1");
        assert_eq!(&*default_customer_name(""), "Visitor ");
        assert_eq!(&*default_customer_name("naïveté€"), "Visitor eté€");
    }
}

//! Frames the gateway sends. Borrowed fields: a frame is built, encoded once and dropped.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    #[serde(rename = "welcome")]
    CustomerWelcome {
        customer_id: &'a str,
        visitor_token: &'a str,
        open_conversations: Vec<OpenConversation<'a>>,
    },
    #[serde(rename = "welcome")]
    AgentWelcome {
        agent: AgentView<'a>,
        state: &'a str,
        conversations: Vec<AgentConversationSummary<'a>>,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        code: &'a str,
        message: &'a str,
        /// With `rate_limited`: when the same request would be accepted.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Queued {
        conversation_id: &'a str,
        position: u32,
        eta_seconds: Option<u32>,
        /// While the queue is closed: when it opens (RFC 3339).
        #[serde(skip_serializing_if = "Option::is_none")]
        opens_at: Option<&'a str>,
    },
    Assigned {
        conversation_id: &'a str,
        seq: u64,
        ts: &'a str,
        agent: Person<'a>,
    },
    Message {
        conversation_id: &'a str,
        seq: u64,
        sender: Sender<'a>,
        text: &'a str,
        ts: &'a str,
    },
    Closed {
        conversation_id: &'a str,
        seq: u64,
        ts: &'a str,
        by: &'a str,
        resolution: Option<&'a str>,
    },
    Typing {
        conversation_id: &'a str,
        role: &'a str,
        on: bool,
    },
    Switched {
        conversation_id: &'a str,
        channel: &'a str,
        /// The agent stays on the conversation (else it waits for one with room).
        agent_kept: bool,
        /// To the agent, when the conversation has a live phone call now.
        #[serde(skip_serializing_if = "Option::is_none")]
        media: Option<MediaInfo>,
    },
    Rtc {
        conversation_id: &'a str,
        /// Who sent it: `customer` or `agent`.
        from: &'a str,
        payload: &'a serde_json::value::RawValue,
    },
    Resumed {
        conversation_id: &'a str,
        last_seq: u64,
    },
    SurveyRequest {
        conversation_id: &'a str,
    },
    /// To the conversation's agent: the customer answered its survey.
    Survey {
        conversation_id: &'a str,
        csat: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        effort: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        resolved: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<&'a str>,
    },
    /// To the customer: the business opened a conversation to follow up on `about`.
    FollowUp {
        conversation_id: &'a str,
        about: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'a str>,
    },
    /// The customer's own conversations, newest first (reply to `history`).
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        conversations: Vec<HistoryEntry<'a>>,
    },
    /// Live signals of a conversation, to its agent.
    Signals {
        conversation_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        voice: Option<VoiceSignals>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        flags: Vec<FlagView<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sentiment: Option<SentimentView<'a>>,
    },
    Status {
        state: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
    Offer {
        offer_id: &'a str,
        conversation_id: &'a str,
        channel: &'a str,
        queue: &'a str,
        expires_in_ms: u64,
        reason: &'a str,
        customer: CustomerView<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'a str>,
        /// The start of the customer's first message, when there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        preview: Option<String>,
    },
    OfferRevoked {
        offer_id: &'a str,
        conversation_id: &'a str,
        reason: &'a str,
    },
    /// To the agent who transferred: the conversation is no longer theirs.
    Transferred {
        conversation_id: &'a str,
        to: TransferTo<'a>,
        mode: &'a str,
    },
    /// A warm transfer nobody took: the conversation stays with the agent.
    TransferFailed {
        conversation_id: &'a str,
        reason: &'a str,
    },
    Conversation {
        conversation_id: &'a str,
        channel: &'a str,
        queue: &'a str,
        state: &'a str,
        customer: CustomerView<'a>,
        /// The attributes given at `start`, as raw JSON (an object).
        attributes: &'a serde_json::value::RawValue,
        history: Vec<HistoryEntry<'a>>,
        /// Transcript events, each an encoded frame (message, assigned, closed).
        transcript: Vec<&'a serde_json::value::RawValue>,
        signals: BTreeMap<&'a str, f64>,
        last_seq: u64,
        /// A live call on this conversation: its audio comes in binary frames.
        #[serde(skip_serializing_if = "Option::is_none")]
        media: Option<MediaInfo>,
        /// The customer came back within the repeat window of this conversation: what
        /// it was, and what was said.
        #[serde(skip_serializing_if = "Option::is_none")]
        repeat_of: Option<Box<RepeatOf<'a>>>,
    },
}

#[derive(Serialize, Debug)]
pub struct RepeatOf<'a> {
    #[serde(flatten)]
    pub summary: HistoryEntry<'a>,
    pub transcript: Vec<&'a serde_json::value::RawValue>,
}

/// How an agent recognises a call's binary audio frames (and sends theirs back).
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaInfo {
    /// The u16 in bytes 2-3 of each binary frame's header.
    pub handle: u16,
    /// `pcmu`: G.711 mu-law, 8000 Hz, mono.
    pub codec: &'static str,
    pub sample_rate: u32,
}

impl MediaInfo {
    pub fn pcmu(handle: u16) -> MediaInfo {
        MediaInfo {
            handle,
            codec: "pcmu",
            sample_rate: 8000,
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum TransferTo<'a> {
    Queue(&'a str),
    Agent(&'a str),
}

#[derive(Serialize, Debug)]
pub struct OpenConversation<'a> {
    pub conversation_id: &'a str,
    pub state: &'a str,
    pub channel: &'a str,
    pub queue: &'a str,
    pub last_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
}

#[derive(Serialize, Debug)]
pub struct AgentView<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
    pub skills: &'a BTreeMap<String, u8>,
    pub capacity: Capacity,
}

#[derive(Serialize, Debug, Clone, Copy)]
pub struct Capacity {
    pub chat: u32,
    pub voice: u32,
}

#[derive(Serialize, Debug)]
pub struct AgentConversationSummary<'a> {
    pub conversation_id: &'a str,
    pub channel: &'a str,
    pub queue: &'a str,
    pub state: &'a str,
    pub last_seq: u64,
    pub customer: CustomerView<'a>,
    /// A live call on this conversation (see `conversation.media`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaInfo>,
    /// As in `conversation`: the context, the customer's other conversations and the
    /// conversation this one repeats, so a console that reloads loses none of them.
    pub attributes: &'a serde_json::value::RawValue,
    pub history: Vec<HistoryEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_of: Option<Box<RepeatOf<'a>>>,
}

#[derive(Serialize, Debug)]
pub struct Person<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
}

#[derive(Serialize, Debug)]
pub struct Sender<'a> {
    pub role: &'a str,
    pub id: &'a str,
    pub display_name: &'a str,
}

#[derive(Serialize, Debug)]
pub struct CustomerView<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
    pub returning: bool,
    pub previous_conversations: u32,
}

/// One of the customer's conversations, summed up: for the agent (`conversation`),
/// the customer (`history`) and operators (`/api/v1/customers/{id}`).
#[derive(Serialize, Debug)]
pub struct HistoryEntry<'a> {
    pub conversation_id: &'a str,
    pub channel: &'a str,
    pub queue: &'a str,
    pub state: &'a str,
    pub agent_id: Option<&'a str>,
    pub created_at: String,
    pub closed_at: Option<String>,
    pub resolution: Option<&'a str>,
    pub transfers: u32,
    pub csat: Option<u8>,
    pub effort: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub talk_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_air_ms: Option<u64>,
    /// The earlier conversation this one repeated (came back within the window).
    pub repeat_of: Option<&'a str>,
}

impl ServerFrame<'_> {
    /// Encodes the frame. Serializing these types cannot fail (string keys, no maps
    /// with non-string keys, no floats that are NaN), so a failure is a bug; it is
    /// reported as an `internal` error frame rather than a panic.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "encoding a server frame failed");
            r#"{"type":"error","code":"internal","message":"the gateway could not encode a frame"}"#
                .to_owned()
        })
    }
}

/// A call's voice signals (milliseconds), as the agent and the API see them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct VoiceSignals {
    pub duration_ms: u64,
    pub caller_talk_ms: u64,
    pub agent_talk_ms: u64,
    pub crosstalk_ms: u64,
    /// Dead air: stretches of nobody talking (not on hold) long enough to count.
    pub silence_ms: u64,
    pub silences: u32,
    pub longest_silence_ms: u64,
    pub hold_ms: u64,
}

/// A coaching flag on one of the agent's messages.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FlagView<'a> {
    pub code: &'a str,
    pub seq: u64,
    pub hint: &'a str,
    /// A good sign (apology, next step) rather than a habit to lose.
    pub positive: bool,
}

/// The customer's mood after one of their messages.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SentimentView<'a> {
    /// The customer message it is about.
    pub seq: u64,
    /// How that message sounds: `negative`, `neutral` or `positive` (the label's rule
    /// is in docs/protocol.md).
    pub label: &'static str,
    /// Sentiment of that message (VADER compound, -1..1).
    pub last: f32,
    /// `estimate` minus `before`, in rating points (0 for the first message).
    pub trend: f32,
    /// `improving`, `steady` or `worsening`: `trend` beyond ±0.25.
    pub direction: &'static str,
    /// Satisfaction estimate of that message, 1-5 (below 2.5: dissatisfied).
    pub estimate: f32,
    /// The mean estimate of the customer's earlier messages that said something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<f32>,
    /// Of the conversation so far, 1-5.
    pub overall: f32,
    /// What moved the estimate (docs/satisfaction.md).
    pub cues: &'a [&'static str],
}

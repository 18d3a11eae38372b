//! Core values to wire frames. Each frame is encoded once and shared by every
//! connection that receives it.

use crate::protocol::server::MediaInfo;
use crate::protocol::server::VoiceSignals as WireVoiceSignals;
use crate::protocol::server::{FlagView, HistoryEntry, RepeatOf, SentimentView};
use crate::store::PastConversation;
use std::time::{Duration, UNIX_EPOCH};

use crate::core::{
    AgentSnapshot, ConversationView, Event, EventBody, Millis, Notice, OpenConversation,
    TransferTarget,
};
use crate::protocol::ErrorCode;
use crate::protocol::server::{
    AgentConversationSummary, AgentView, Capacity, CustomerView, OpenConversation as WireOpen,
    Person, Sender, ServerFrame, TransferTo,
};

/// Characters of the customer's first message an offer shows.
pub const PREVIEW_CHARS: usize = 160;

/// The start of a message, on one line: at most `PREVIEW_CHARS` characters, with `…`
/// when it was cut.
pub fn preview(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= PREVIEW_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(PREVIEW_CHARS - 1).collect();
    // Cut at a word's end when one is not too far back.
    if let Some(space) = cut.rfind(' ')
        && cut[..space].chars().count() > PREVIEW_CHARS / 2
    {
        cut.truncate(space);
    }
    cut.push('…');
    cut
}

pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub fn event(e: &Event) -> String {
    let ts = rfc3339(e.ts);
    match &e.body {
        EventBody::Message { author, text, .. } => ServerFrame::Message {
            conversation_id: &e.conversation_id,
            seq: e.seq,
            sender: Sender {
                role: author.role.as_str(),
                id: &author.id,
                display_name: &author.display_name,
            },
            text,
            ts: &ts,
        },
        EventBody::Assigned {
            agent_id,
            display_name,
        } => ServerFrame::Assigned {
            conversation_id: &e.conversation_id,
            seq: e.seq,
            ts: &ts,
            agent: Person {
                id: agent_id,
                display_name,
            },
        },
        EventBody::Closed { by, resolution, .. } => ServerFrame::Closed {
            conversation_id: &e.conversation_id,
            seq: e.seq,
            ts: &ts,
            by: by.as_str(),
            resolution: resolution.map(|r| r.as_str()),
        },
    }
    .encode()
}

/// Encodes a notice that is not a transcript event and not `Joined`.
pub fn notice(n: &Notice) -> String {
    match n {
        Notice::Event(e) => event(e),
        Notice::Queued {
            conversation_id,
            position,
            eta_seconds,
            opens_at,
        } => ServerFrame::Queued {
            conversation_id,
            position: *position,
            eta_seconds: *eta_seconds,
            opens_at: opens_at.map(rfc3339).as_deref(),
        }
        .encode(),
        Notice::Typing {
            conversation_id,
            role,
            on,
        } => ServerFrame::Typing {
            conversation_id,
            role: role.as_str(),
            on: *on,
        }
        .encode(),
        Notice::Offer(o) => ServerFrame::Offer {
            offer_id: &o.offer_id,
            conversation_id: &o.conversation_id,
            channel: o.channel.as_str(),
            queue: &o.queue,
            expires_in_ms: o.expires_in_ms,
            reason: o.reason.as_str(),
            customer: CustomerView {
                id: &o.customer_id,
                display_name: &o.customer_name,
                returning: o.previous_conversations > 0,
                previous_conversations: o.previous_conversations,
            },
            note: o.note.as_deref(),
            preview: o.first_words.as_deref().map(preview),
        }
        .encode(),
        Notice::OfferRevoked {
            offer_id,
            conversation_id,
            reason,
        } => ServerFrame::OfferRevoked {
            offer_id,
            conversation_id,
            reason: reason.as_str(),
        }
        .encode(),
        Notice::Status { state, reason } => ServerFrame::Status {
            state: state.as_str(),
            reason: *reason,
        }
        .encode(),
        Notice::Joined(view) => conversation(
            view,
            Vec::new(),
            view.last_seq,
            None,
            &Context::new(view, Vec::new(), None),
        ),
        Notice::Transferred {
            conversation_id,
            to,
            warm,
        } => ServerFrame::Transferred {
            conversation_id,
            to: match to {
                TransferTarget::Queue(q) => TransferTo::Queue(q),
                TransferTarget::Agent(a) => TransferTo::Agent(a),
            },
            mode: if *warm { "warm" } else { "cold" },
        }
        .encode(),
        Notice::TransferFailed {
            conversation_id,
            reason,
        } => ServerFrame::TransferFailed {
            conversation_id,
            reason,
        }
        .encode(),
        Notice::SurveyRequest { conversation_id } => {
            ServerFrame::SurveyRequest { conversation_id }.encode()
        }
        Notice::Switched {
            conversation_id,
            channel,
            agent_kept,
        } => switched(conversation_id, *channel, *agent_kept, None),
        Notice::FollowUp {
            conversation_id,
            about,
            note,
        } => ServerFrame::FollowUp {
            conversation_id,
            about,
            note: note.as_deref(),
        }
        .encode(),
        Notice::Rtc {
            conversation_id,
            from,
            payload,
        } => match serde_json::value::RawValue::from_string(payload.to_string()) {
            Ok(payload) => ServerFrame::Rtc {
                conversation_id,
                from: from.as_str(),
                payload: &payload,
            }
            .encode(),
            Err(_) => error(None, ErrorCode::Internal, "could not relay the rtc payload"),
        },
        Notice::VoiceSignals {
            conversation_id,
            signals,
        } => ServerFrame::Signals {
            conversation_id,
            voice: Some(voice_signals(signals)),
            flags: Vec::new(),
            sentiment: None,
        }
        .encode(),
        Notice::Mood {
            conversation_id,
            seq,
            mood,
        } => ServerFrame::Signals {
            conversation_id,
            voice: None,
            flags: Vec::new(),
            sentiment: Some(SentimentView {
                seq: *seq,
                label: mood.label(),
                last: round3(mood.sentiment),
                trend: round3(mood.trend),
                direction: mood.direction_name(),
                estimate: round3(mood.estimate),
                before: mood.before.map(round3),
                overall: round3(mood.overall),
                cues: &mood.cues,
            }),
        }
        .encode(),
        Notice::Coaching {
            conversation_id,
            seq,
            flags,
        } => ServerFrame::Signals {
            conversation_id,
            voice: None,
            sentiment: None,
            flags: flags
                .iter()
                .map(|f| FlagView {
                    code: &f.code,
                    seq: *seq,
                    hint: &f.hint,
                    positive: f.positive,
                })
                .collect(),
        }
        .encode(),
    }
}

pub fn switched(
    conversation_id: &str,
    channel: crate::core::Channel,
    agent_kept: bool,
    media: Option<MediaInfo>,
) -> String {
    ServerFrame::Switched {
        conversation_id,
        channel: channel.as_str(),
        agent_kept,
        media,
    }
    .encode()
}

pub fn voice_signals(s: &crate::core::signals::voice::VoiceSignals) -> WireVoiceSignals {
    WireVoiceSignals {
        duration_ms: s.duration_ms,
        caller_talk_ms: s.caller_talk_ms,
        agent_talk_ms: s.agent_talk_ms,
        crosstalk_ms: s.crosstalk_ms,
        silence_ms: s.silence_ms,
        silences: s.silences,
        longest_silence_ms: s.longest_silence_ms,
        hold_ms: s.hold_ms,
    }
}

pub fn error(id: Option<&str>, code: ErrorCode, message: &str) -> String {
    ServerFrame::Error {
        id,
        code: code.as_str(),
        message,
        retry_after_ms: None,
    }
    .encode()
}

/// `error rate_limited` with the time after which the request would be accepted.
pub fn rate_limited(id: Option<&str>, message: &str, retry_after_ms: u64) -> String {
    ServerFrame::Error {
        id,
        code: ErrorCode::RateLimited.as_str(),
        message,
        retry_after_ms: Some(retry_after_ms),
    }
    .encode()
}

pub fn ack(id: Option<&str>, conversation_id: Option<&str>, seq: Option<u64>) -> String {
    ServerFrame::Ack {
        id,
        conversation_id,
        seq,
    }
    .encode()
}

fn customer_view(v: &ConversationView) -> CustomerView<'_> {
    CustomerView {
        id: &v.customer_id,
        display_name: &v.customer_name,
        returning: v.previous_conversations > 0,
        previous_conversations: v.previous_conversations,
    }
}

/// A past conversation as the wire shows it.
pub fn history_entry(p: &PastConversation) -> HistoryEntry<'_> {
    HistoryEntry {
        conversation_id: &p.id,
        channel: &p.channel,
        queue: &p.queue,
        state: &p.state,
        agent_id: p.agent_id.as_deref(),
        created_at: rfc3339(p.created_at),
        closed_at: p.closed_at.map(rfc3339),
        resolution: p.resolution.as_deref(),
        transfers: p.transfers,
        csat: p.csat,
        effort: p.effort,
        talk_ms: p.talk_ms,
        dead_air_ms: p.dead_air_ms,
        repeat_of: p.repeat_of.as_deref(),
    }
}

pub fn history(id: Option<&str>, past: &[PastConversation]) -> String {
    ServerFrame::History {
        id,
        conversations: past.iter().map(history_entry).collect(),
    }
    .encode()
}

/// What an agent is told about a conversation besides its transcript: its attributes
/// (the context), the customer's other conversations and, for a repeat contact, the
/// conversation it repeats with what was said. Read from the store by the connection,
/// built the same way for `conversation` (accept) and for each of the agent's
/// conversations in `welcome` (so a console that reloads shows what it showed before).
pub struct Context {
    attributes: Box<serde_json::value::RawValue>,
    history: Vec<PastConversation>,
    /// An index into `history` and that conversation's encoded events.
    repeated: Option<(usize, Vec<Box<serde_json::value::RawValue>>)>,
}

impl Context {
    /// `earlier`: the events of the conversation `v` repeats, when it is one and they
    /// could be read.
    pub fn new(
        v: &ConversationView,
        history: Vec<PastConversation>,
        earlier: Option<&[Event]>,
    ) -> Context {
        use serde_json::value::RawValue;
        // The attributes were re-serialized from a JSON object at `start`.
        let attributes = RawValue::from_string(v.attributes.to_string())
            .or_else(|_| RawValue::from_string("{}".to_owned()))
            .unwrap_or_default();
        let repeated = v.repeat_of.as_ref().and_then(|id| {
            let at = history.iter().position(|p| *p.id == **id)?;
            // Each event was encoded by this module, so it is valid JSON.
            let events = earlier?
                .iter()
                .filter_map(|e| RawValue::from_string(event(e)).ok())
                .collect();
            Some((at, events))
        });
        Context {
            attributes,
            history,
            repeated,
        }
    }

    fn history_entries(&self, v: &ConversationView) -> Vec<HistoryEntry<'_>> {
        self.history
            .iter()
            .filter(|p| *p.id != *v.conversation_id)
            .map(history_entry)
            .collect()
    }

    fn repeat_of(&self) -> Option<Box<RepeatOf<'_>>> {
        self.repeated.as_ref().map(|(at, events)| {
            Box::new(RepeatOf {
                summary: history_entry(&self.history[*at]),
                transcript: events.iter().map(|r| &**r).collect(),
            })
        })
    }
}

/// The `conversation` frame an agent gets on accept: everything so far.
pub fn conversation(
    v: &ConversationView,
    transcript: Vec<String>,
    last_seq: u64,
    media: Option<MediaInfo>,
    context: &Context,
) -> String {
    use serde_json::value::RawValue;
    // Each event was encoded by this module, so it is valid JSON.
    let raw: Vec<Box<RawValue>> = transcript
        .into_iter()
        .filter_map(|t| RawValue::from_string(t).ok())
        .collect();
    ServerFrame::Conversation {
        conversation_id: &v.conversation_id,
        channel: v.channel.as_str(),
        queue: &v.queue,
        state: v.state.as_str(),
        customer: customer_view(v),
        attributes: &context.attributes,
        history: context.history_entries(v),
        transcript: raw.iter().map(|r| &**r).collect(),
        signals: Default::default(),
        last_seq,
        media,
        repeat_of: context.repeat_of(),
    }
    .encode()
}

/// The customer's survey answer, for the conversation's agent.
pub fn survey(s: &crate::store::Survey) -> String {
    ServerFrame::Survey {
        conversation_id: &s.conversation_id,
        csat: s.csat,
        effort: s.effort,
        resolved: s.resolved,
        comment: s.comment.as_deref(),
    }
    .encode()
}

pub fn customer_welcome(customer_id: &str, token: &str, open: &[OpenConversation]) -> String {
    ServerFrame::CustomerWelcome {
        customer_id,
        visitor_token: token,
        open_conversations: open
            .iter()
            .map(|c| WireOpen {
                conversation_id: &c.conversation_id,
                state: c.state.as_str(),
                channel: c.channel.as_str(),
                queue: &c.queue,
                last_seq: c.last_seq,
                position: c.position,
            })
            .collect(),
    }
    .encode()
}

/// The agent's welcome; `contexts` goes with `s.conversations`, one for one.
pub fn agent_welcome(
    s: &AgentSnapshot,
    contexts: &[Context],
    media: impl Fn(&str) -> Option<MediaInfo>,
) -> String {
    ServerFrame::AgentWelcome {
        agent: AgentView {
            id: &s.agent_id,
            display_name: &s.display_name,
            skills: &s.skills,
            capacity: Capacity {
                chat: s.capacity_chat,
                voice: s.capacity_voice,
            },
        },
        state: s.state.as_str(),
        conversations: s
            .conversations
            .iter()
            .zip(contexts)
            .map(|(v, context)| AgentConversationSummary {
                conversation_id: &v.conversation_id,
                channel: v.channel.as_str(),
                queue: &v.queue,
                state: v.state.as_str(),
                last_seq: v.last_seq,
                customer: customer_view(v),
                media: media(&v.conversation_id),
                attributes: &context.attributes,
                history: context.history_entries(v),
                repeat_of: context.repeat_of(),
            })
            .collect(),
    }
    .encode()
}

pub fn resumed(conversation_id: &str, last_seq: u64) -> String {
    ServerFrame::Resumed {
        conversation_id,
        last_seq,
    }
    .encode()
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::{PREVIEW_CHARS, preview};

    #[test]
    fn a_preview_is_one_line_and_short() {
        assert_eq!(preview("  Hi,\n my order\t4411 "), "Hi, my order 4411");
        let long = "word ".repeat(100);
        let p = preview(&long);
        assert!(p.chars().count() <= PREVIEW_CHARS, "{p}");
        assert!(p.ends_with("word…"), "{p}");
        let unbroken = "é".repeat(500);
        assert_eq!(preview(&unbroken).chars().count(), PREVIEW_CHARS);
    }
}

//! Frames clients send. Decoding is two passes over the text: an envelope (`type`, `id`)
//! that tells a syntax error from an unknown type, then the typed frame, whose serde
//! error names the missing or invalid field. Then length caps are checked.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::codes::ErrorCode;

/// Longest `id`, `conversation_id`, `offer_id`, `client_msg_id`, queue and skill names.
pub const MAX_ID_CHARS: usize = 64;
/// Most skills a `start` may require.
pub const MAX_SKILLS: usize = 16;
/// Longest resolution note.
pub const MAX_NOTE_CHARS: usize = 2000;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    #[default]
    Chat,
    Voice,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Resolved,
    Unresolved,
    FollowUp,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    Warm,
    Cold,
}

/// `{"queue":"q"}` or `{"agent":"id"}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TransferTo {
    Queue(String),
    Agent(String),
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Available,
    Away,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CustomerFrame {
    Hello {
        id: Option<String>,
        visitor_token: Option<String>,
        identity: Option<String>,
    },
    Start {
        id: Option<String>,
        queue: String,
        #[serde(default)]
        channel: Channel,
        language: Option<String>,
        skills: Option<BTreeMap<String, u8>>,
        attributes: Option<serde_json::Map<String, serde_json::Value>>,
        text: Option<String>,
    },
    Message {
        id: Option<String>,
        conversation_id: String,
        text: String,
        client_msg_id: Option<String>,
    },
    Typing {
        id: Option<String>,
        conversation_id: String,
        on: bool,
    },
    Resume {
        id: Option<String>,
        conversation_id: String,
        last_seq: u64,
    },
    End {
        id: Option<String>,
        conversation_id: String,
    },
    /// Lists the customer's own conversations, newest first.
    History { id: Option<String> },
    /// Moves the conversation to another channel (chat to a call, or back).
    Switch {
        id: Option<String>,
        conversation_id: String,
        channel: Channel,
    },
    /// Browser-call signalling for the agent, relayed as is.
    Rtc {
        id: Option<String>,
        conversation_id: String,
        payload: serde_json::Map<String, serde_json::Value>,
    },
    Survey {
        id: Option<String>,
        conversation_id: String,
        csat: u8,
        effort: Option<u8>,
        resolved: Option<bool>,
        comment: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentFrame {
    Status {
        id: Option<String>,
        state: AgentState,
    },
    Accept {
        id: Option<String>,
        offer_id: String,
    },
    Reject {
        id: Option<String>,
        offer_id: String,
        reason: Option<String>,
    },
    Message {
        id: Option<String>,
        conversation_id: String,
        text: String,
        client_msg_id: Option<String>,
    },
    Typing {
        id: Option<String>,
        conversation_id: String,
        on: bool,
    },
    Resume {
        id: Option<String>,
        conversation_id: String,
        last_seq: u64,
    },
    Close {
        id: Option<String>,
        conversation_id: String,
        resolution: Resolution,
        note: Option<String>,
        follow_up_at: Option<String>,
    },
    Transfer {
        id: Option<String>,
        conversation_id: String,
        to: TransferTo,
        mode: TransferMode,
        note: Option<String>,
    },
    /// Browser-call signalling for the customer, relayed as is.
    Rtc {
        id: Option<String>,
        conversation_id: String,
        payload: serde_json::Map<String, serde_json::Value>,
    },
    /// Puts the call on hold (`on: true`) or takes it off: the caller's audio stops
    /// reaching the agent, and the time counts as hold, not dead air.
    Hold {
        id: Option<String>,
        conversation_id: String,
        on: bool,
    },
    /// Drops the agent audio the provider has buffered but not played (barge-in).
    Clear {
        id: Option<String>,
        conversation_id: String,
    },
    /// Asks the provider to report when playback reaches this point of the agent's
    /// audio: the agent gets `mark {"conversation_id","name"}` then.
    Mark {
        id: Option<String>,
        conversation_id: String,
        name: String,
    },
}

const CUSTOMER_TYPES: &[&str] = &[
    "hello", "start", "message", "typing", "resume", "end", "survey", "switch", "rtc", "history",
];
const AGENT_TYPES: &[&str] = &[
    "status", "accept", "reject", "message", "typing", "resume", "close", "transfer", "hold",
    "clear", "mark", "rtc",
];

/// Why a frame was refused: the code, a sentence for a person, and the request `id`
/// when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

pub type Decoded<T> = Result<T, Rejected>;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

/// The request `id` of a frame that will not be decoded (it was over a rate limit),
/// so its refusal can still name it. `None` when the frame has no readable `id`.
pub fn peek_id(text: &str) -> Option<String> {
    let envelope: Envelope = serde_json::from_str(text).ok()?;
    let id = envelope.id?;
    (id.chars().count() <= MAX_ID_CHARS).then(|| id.into_owned())
}

pub fn decode_customer(text: &str, max_text_bytes: usize) -> Decoded<CustomerFrame> {
    let (frame, id) = decode::<CustomerFrame>(text, CUSTOMER_TYPES, "customer")?;
    validate_customer(&frame, max_text_bytes).map_err(|message| Rejected {
        id,
        code: ErrorCode::InvalidField,
        message,
    })?;
    Ok(frame)
}

pub fn decode_agent(text: &str, max_text_bytes: usize) -> Decoded<AgentFrame> {
    let (frame, id) = decode::<AgentFrame>(text, AGENT_TYPES, "agent")?;
    validate_agent(&frame, max_text_bytes).map_err(|message| Rejected {
        id,
        code: ErrorCode::InvalidField,
        message,
    })?;
    Ok(frame)
}

fn decode<'de, T: Deserialize<'de>>(
    text: &'de str,
    known: &[&str],
    role: &str,
) -> Result<(T, Option<String>), Rejected> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| Rejected {
        id: None,
        code: ErrorCode::BadJson,
        message: if e.is_data() {
            "a frame must be one JSON object whose `type` and `id` are strings".to_owned()
        } else {
            format!("the frame is not valid JSON: {e}")
        },
    })?;
    let id = envelope.id.as_deref().map(str::to_owned);
    if let Some(id) = &id
        && id.chars().count() > MAX_ID_CHARS
    {
        return Err(Rejected {
            id: None,
            code: ErrorCode::InvalidField,
            message: format!("`id` is longer than {MAX_ID_CHARS} characters"),
        });
    }
    let Some(kind) = envelope.kind else {
        return Err(Rejected {
            id,
            code: ErrorCode::InvalidField,
            message: "every frame needs a string field `type`".to_owned(),
        });
    };
    if !known.contains(&kind.as_ref()) {
        let shown: String = kind.chars().take(MAX_ID_CHARS).collect();
        return Err(Rejected {
            id,
            code: ErrorCode::UnknownType,
            message: format!(
                "`{shown}` is not a {role} frame type; expected one of: {}",
                known.join(", ")
            ),
        });
    }
    if has_nul(text) {
        return Err(Rejected {
            id,
            code: ErrorCode::InvalidField,
            message: format!("`{kind}` frame: a string holds U+0000 (NUL), which is not allowed"),
        });
    }
    let frame = serde_json::from_str::<T>(text).map_err(|e| Rejected {
        id: id.clone(),
        code: ErrorCode::InvalidField,
        message: format!("`{kind}` frame: {}", strip_position(&e.to_string())),
    })?;
    Ok((frame, id))
}

/// Whether a JSON text has a string holding U+0000 (only the escape `\u0000` can put
/// it there). No store keeps it as text everywhere (PostgreSQL refuses it, failing
/// the whole group commit), and no client needs it.
fn has_nul(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("u0000") {
        let at = from + at;
        // An escape when preceded by an odd run of backslashes (`\\u0000` is a
        // backslash and the text "u0000").
        let slashes = bytes[..at]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if slashes % 2 == 1 {
            return true;
        }
        from = at + 5;
    }
    false
}

/// serde_json appends " at line L column C"; a one-line frame makes that noise.
fn strip_position(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    if value.chars().count() > MAX_ID_CHARS {
        return Err(format!(
            "`{field}` is longer than {MAX_ID_CHARS} characters"
        ));
    }
    Ok(())
}

fn check_text(text: &str, max_bytes: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("`text` must not be empty".to_owned());
    }
    if text.len() > max_bytes {
        return Err(format!("`text` is longer than {max_bytes} bytes"));
    }
    Ok(())
}

fn check_opt_id(field: &str, value: &Option<String>) -> Result<(), String> {
    value.as_deref().map_or(Ok(()), |v| check_id(field, v))
}

fn validate_customer(frame: &CustomerFrame, max_text: usize) -> Result<(), String> {
    match frame {
        CustomerFrame::Hello { .. } => Ok(()),
        CustomerFrame::Start {
            queue,
            language,
            skills,
            text,
            ..
        } => {
            check_id("queue", queue)?;
            check_opt_id("language", language)?;
            if let Some(skills) = skills {
                if skills.len() > MAX_SKILLS {
                    return Err(format!("at most {MAX_SKILLS} `skills` may be required"));
                }
                for (name, level) in skills {
                    check_id("skills", name)?;
                    if !(1..=10).contains(level) {
                        return Err(format!("skill `{name}`: level must be 1 to 10"));
                    }
                }
            }
            text.as_deref().map_or(Ok(()), |t| check_text(t, max_text))
        }
        CustomerFrame::Message {
            conversation_id,
            text,
            client_msg_id,
            ..
        } => {
            check_id("conversation_id", conversation_id)?;
            check_opt_id("client_msg_id", client_msg_id)?;
            check_text(text, max_text)
        }
        CustomerFrame::Survey {
            conversation_id,
            csat,
            effort,
            comment,
            ..
        } => {
            check_id("conversation_id", conversation_id)?;
            if !(1..=5).contains(csat) {
                return Err("`csat` is 1 to 5".to_owned());
            }
            if effort.is_some_and(|e| !(1..=7).contains(&e)) {
                return Err("`effort` is 1 to 7".to_owned());
            }
            match comment {
                Some(c) if c.len() > MAX_NOTE_CHARS => {
                    Err(format!("`comment` is longer than {MAX_NOTE_CHARS} bytes"))
                }
                _ => Ok(()),
            }
        }
        CustomerFrame::Typing {
            conversation_id, ..
        }
        | CustomerFrame::Resume {
            conversation_id, ..
        }
        | CustomerFrame::End {
            conversation_id, ..
        }
        | CustomerFrame::Switch {
            conversation_id, ..
        } => check_id("conversation_id", conversation_id),
        CustomerFrame::Rtc {
            conversation_id, ..
        } => check_id("conversation_id", conversation_id),
        CustomerFrame::History { .. } => Ok(()),
    }
}

fn validate_agent(frame: &AgentFrame, max_text: usize) -> Result<(), String> {
    match frame {
        AgentFrame::Status { .. } => Ok(()),
        AgentFrame::Accept { offer_id, .. } => check_id("offer_id", offer_id),
        AgentFrame::Reject {
            offer_id, reason, ..
        } => {
            check_id("offer_id", offer_id)?;
            match reason {
                Some(r) if r.len() > MAX_NOTE_CHARS => {
                    Err(format!("`reason` is longer than {MAX_NOTE_CHARS} bytes"))
                }
                _ => Ok(()),
            }
        }
        AgentFrame::Message {
            conversation_id,
            text,
            client_msg_id,
            ..
        } => {
            check_id("conversation_id", conversation_id)?;
            check_opt_id("client_msg_id", client_msg_id)?;
            check_text(text, max_text)
        }
        AgentFrame::Typing {
            conversation_id, ..
        }
        | AgentFrame::Resume {
            conversation_id, ..
        }
        | AgentFrame::Hold {
            conversation_id, ..
        }
        | AgentFrame::Clear {
            conversation_id, ..
        }
        | AgentFrame::Rtc {
            conversation_id, ..
        } => check_id("conversation_id", conversation_id),
        AgentFrame::Mark {
            conversation_id,
            name,
            ..
        } => {
            check_id("conversation_id", conversation_id)?;
            check_id("name", name)
        }
        AgentFrame::Transfer {
            conversation_id,
            to,
            note,
            ..
        } => {
            check_id("conversation_id", conversation_id)?;
            match to {
                TransferTo::Queue(q) => check_id("to.queue", q)?,
                TransferTo::Agent(a) => check_id("to.agent", a)?,
            }
            match note {
                Some(n) if n.len() > MAX_NOTE_CHARS => {
                    Err(format!("`note` is longer than {MAX_NOTE_CHARS} bytes"))
                }
                _ => Ok(()),
            }
        }
        AgentFrame::Close {
            conversation_id,
            note,
            ..
        } => {
            check_id("conversation_id", conversation_id)?;
            match note {
                Some(n) if n.len() > MAX_NOTE_CHARS => {
                    Err(format!("`note` is longer than {MAX_NOTE_CHARS} bytes"))
                }
                _ => Ok(()),
            }
        }
    }
}

impl CustomerFrame {
    pub fn id(&self) -> Option<&str> {
        match self {
            CustomerFrame::Hello { id, .. }
            | CustomerFrame::Start { id, .. }
            | CustomerFrame::Message { id, .. }
            | CustomerFrame::Typing { id, .. }
            | CustomerFrame::Resume { id, .. }
            | CustomerFrame::End { id, .. }
            | CustomerFrame::Switch { id, .. }
            | CustomerFrame::History { id }
            | CustomerFrame::Rtc { id, .. }
            | CustomerFrame::Survey { id, .. } => id.as_deref(),
        }
    }
}

impl AgentFrame {
    pub fn id(&self) -> Option<&str> {
        match self {
            AgentFrame::Status { id, .. }
            | AgentFrame::Accept { id, .. }
            | AgentFrame::Reject { id, .. }
            | AgentFrame::Message { id, .. }
            | AgentFrame::Typing { id, .. }
            | AgentFrame::Resume { id, .. }
            | AgentFrame::Close { id, .. }
            | AgentFrame::Transfer { id, .. }
            | AgentFrame::Hold { id, .. }
            | AgentFrame::Clear { id, .. }
            | AgentFrame::Mark { id, .. }
            | AgentFrame::Rtc { id, .. } => id.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(text: &str) -> Result<CustomerFrame, (ErrorCode, String)> {
        decode_customer(text, 1000).map_err(|r| (r.code, r.message))
    }

    #[test]
    fn classifies_bad_input() {
        let check = |text: &str, code: ErrorCode, needle: &str| {
            let (got, message) = customer(text).expect_err(text);
            assert_eq!(got, code, "{text}: {message}");
            assert!(message.contains(needle), "{text}: {message}");
        };
        check("{not json", ErrorCode::BadJson, "not valid JSON");
        check("[1,2]", ErrorCode::BadJson, "one JSON object");
        check(r#"{"id":"1"}"#, ErrorCode::InvalidField, "`type`");
        check(r#"{"type":"dance"}"#, ErrorCode::UnknownType, "dance");
        check(
            r#"{"type":"accept","offer_id":"x"}"#,
            ErrorCode::UnknownType,
            "accept",
        );
        check(
            r#"{"type":"message","id":"1","text":"hi"}"#,
            ErrorCode::InvalidField,
            "conversation_id",
        );
        check(
            r#"{"type":"message","conversation_id":"c","text":"  "}"#,
            ErrorCode::InvalidField,
            "empty",
        );
        check(
            &format!(
                r#"{{"type":"message","conversation_id":"c","text":"{}"}}"#,
                "x".repeat(1001)
            ),
            ErrorCode::InvalidField,
            "1000 bytes",
        );
        check(
            r#"{"type":"start","queue":"q","skills":{"x":11}}"#,
            ErrorCode::InvalidField,
            "1 to 10",
        );
        check(
            r#"{"type":"message","conversation_id":"c","text":"a\u0000b"}"#,
            ErrorCode::InvalidField,
            "U+0000",
        );
        check(
            r#"{"type":"start","queue":"q","attributes":{"k":"\\\u0000"}}"#,
            ErrorCode::InvalidField,
            "U+0000",
        );
    }

    #[test]
    fn a_backslash_before_u0000_is_text_not_nul() {
        let text = r#"{"type":"message","conversation_id":"c","text":"path \\u0000 ok"}"#;
        assert!(customer(text).is_ok(), "{text}");
    }

    #[test]
    fn keeps_the_request_id_on_errors() {
        let err = decode_customer(r#"{"type":"message","id":"r1"}"#, 100).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("r1"));
    }

    #[test]
    fn decodes_a_start() {
        let frame = customer(r#"{"type":"start","id":"1","queue":"demo","text":"hello"}"#).unwrap();
        match frame {
            CustomerFrame::Start {
                queue,
                channel,
                text,
                ..
            } => {
                assert_eq!(queue, "demo");
                assert_eq!(channel, Channel::Chat);
                assert_eq!(text.as_deref(), Some("hello"));
            }
            other => panic!("{other:?}"),
        }
    }
}

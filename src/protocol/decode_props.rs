//! Hostile input at every decoder a client (or a provider, or another node) can reach:
//! `decode_customer`, `decode_agent`, `media::decode`, `media::decode_payload`,
//! `media::parse_audio_frame` and the backplane's `envelope::decode`. Any panic
//! reachable from a client frame fails these tests (proptest turns a panic into a
//! failing case). Each refusal must be a value with a code from the decoders' closed
//! set (`bad_json`, `unknown_type`, `invalid_field`); what is accepted keeps its caps.
//!
//! Inputs: arbitrary strings and bytes, and near-valid JSON: the right `type` or
//! `event`, with known fields missing, mistyped, huge, empty, out of range, holding
//! U+0000, or nested deeper than any parser should follow. The fuzz targets
//! (`fuzz/`, docs/fuzzing.md) do the same for much longer.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Map, Value};

use super::client::{
    AgentFrame, CustomerFrame, MAX_ID_CHARS, MAX_NOTE_CHARS, Rejected, decode_agent,
    decode_customer,
};
use super::codes::ErrorCode;
use super::media::{self, Inbound, MAX_AUDIO_PAYLOAD_BYTES, MAX_SID_CHARS, Refused};
use crate::backplane::envelope;

const MAX_TEXT: usize = 65_536;

const CUSTOMER_TYPES: &[&str] = &[
    "hello", "start", "message", "typing", "resume", "end", "survey", "switch", "rtc", "history",
];
const AGENT_TYPES: &[&str] = &[
    "status", "accept", "reject", "message", "typing", "resume", "close", "transfer", "hold",
    "clear", "mark", "rtc",
];
/// Every field name either role's frames have.
const CLIENT_FIELDS: &[&str] = &[
    "id",
    "visitor_token",
    "identity",
    "queue",
    "channel",
    "language",
    "skills",
    "attributes",
    "text",
    "conversation_id",
    "client_msg_id",
    "on",
    "last_seq",
    "payload",
    "csat",
    "effort",
    "resolved",
    "comment",
    "state",
    "offer_id",
    "reason",
    "resolution",
    "note",
    "follow_up_at",
    "to",
    "mode",
    "name",
];
/// Field names of the Media Streams messages, top level and nested.
const MEDIA_FIELDS: &[&str] = &[
    "sequenceNumber",
    "streamSid",
    "start",
    "media",
    "dtmf",
    "mark",
    "stop",
    "accountSid",
    "callSid",
    "tracks",
    "customParameters",
    "mediaFormat",
    "encoding",
    "sampleRate",
    "channels",
    "track",
    "chunk",
    "timestamp",
    "payload",
    "digit",
    "name",
];
/// Good values for the enum-like fields, so that deeper checks are reached.
const WORDS: &[&str] = &[
    "chat",
    "voice",
    "available",
    "away",
    "resolved",
    "unresolved",
    "follow_up",
    "warm",
    "cold",
    "inbound",
    "outbound",
    "inbound_track",
    "audio/x-mulaw",
    "q",
    "c1",
    "MZ1",
    "1",
    "#",
    "aGVsbG8=",
];

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Deterministic: the same cases on every run, and no regression files written.
        rng_seed: RngSeed::Fixed(0xf0_2211),
        failure_persistence: None,
        ..Config::default()
    }
}

fn decoding_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::BadJson | ErrorCode::UnknownType | ErrorCode::InvalidField
    )
}

fn check_rejected(r: &Rejected) -> Result<(), TestCaseError> {
    prop_assert!(decoding_code(r.code), "code {:?}: {}", r.code, r.message);
    prop_assert!(!r.message.is_empty());
    if let Some(id) = &r.id {
        prop_assert!(id.chars().count() <= MAX_ID_CHARS, "echoed id too long");
    }
    Ok(())
}

fn check_refused(r: &Refused) -> Result<(), TestCaseError> {
    prop_assert!(decoding_code(r.code), "code {:?}: {}", r.code, r.message);
    prop_assert!(!r.message.is_empty() && r.message.len() <= 303, "{r}");
    Ok(())
}

fn id_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= MAX_ID_CHARS && !s.contains('\0')
}

fn text_ok(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_TEXT && !s.contains('\0')
}

/// The caps of an accepted customer frame (the fuzz target checks every field; here
/// the ones with a documented cap).
fn customer_ok(frame: &CustomerFrame) -> bool {
    frame
        .id()
        .is_none_or(|id| id.chars().count() <= MAX_ID_CHARS)
        && match frame {
            CustomerFrame::Start { queue, text, .. } => {
                id_ok(queue) && text.as_deref().is_none_or(text_ok)
            }
            CustomerFrame::Message {
                conversation_id,
                text,
                ..
            } => id_ok(conversation_id) && text_ok(text),
            CustomerFrame::Survey {
                conversation_id,
                csat,
                comment,
                ..
            } => {
                id_ok(conversation_id)
                    && (1..=5).contains(csat)
                    && comment.as_ref().is_none_or(|c| c.len() <= MAX_NOTE_CHARS)
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
            }
            | CustomerFrame::Rtc {
                conversation_id, ..
            } => id_ok(conversation_id),
            CustomerFrame::Hello { .. } | CustomerFrame::History { .. } => true,
        }
}

fn agent_ok(frame: &AgentFrame) -> bool {
    frame
        .id()
        .is_none_or(|id| id.chars().count() <= MAX_ID_CHARS)
        && match frame {
            AgentFrame::Accept { offer_id, .. } | AgentFrame::Reject { offer_id, .. } => {
                id_ok(offer_id)
            }
            AgentFrame::Message {
                conversation_id,
                text,
                ..
            } => id_ok(conversation_id) && text_ok(text),
            AgentFrame::Close {
                conversation_id,
                note,
                ..
            }
            | AgentFrame::Transfer {
                conversation_id,
                note,
                ..
            } => id_ok(conversation_id) && note.as_ref().is_none_or(|n| n.len() <= MAX_NOTE_CHARS),
            AgentFrame::Mark {
                conversation_id,
                name,
                ..
            } => id_ok(conversation_id) && id_ok(name),
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
            } => id_ok(conversation_id),
            AgentFrame::Status { .. } => true,
        }
}

/// Both client decoders, on any text.
fn check_client(text: &str) -> Result<(), TestCaseError> {
    match decode_customer(text, MAX_TEXT) {
        Ok(frame) => prop_assert!(customer_ok(&frame), "accepted {frame:?}"),
        Err(r) => check_rejected(&r)?,
    }
    match decode_agent(text, MAX_TEXT) {
        Ok(frame) => prop_assert!(agent_ok(&frame), "accepted {frame:?}"),
        Err(r) => check_rejected(&r)?,
    }
    Ok(())
}

/// The media decoders, on any text.
fn check_media(text: &str) -> Result<(), TestCaseError> {
    match media::decode(text) {
        Ok(Inbound::Media(m)) => {
            prop_assert!(!m.stream_sid.is_empty() && m.stream_sid.chars().count() <= MAX_SID_CHARS);
            let mut audio = Vec::new();
            if let Err(r) = media::decode_payload(m.payload, &mut audio) {
                check_refused(&r)?;
            }
        }
        Ok(Inbound::Start(s)) => {
            prop_assert!((1..=2).contains(&s.tracks.len()));
            prop_assert!(!s.stream_sid.is_empty());
        }
        Ok(Inbound::Mark(m)) => prop_assert!(!m.name.is_empty()),
        Ok(_) => {}
        Err(r) => check_refused(&r)?,
    }
    let mut audio = Vec::new();
    if let Err(r) = media::decode_payload(text, &mut audio) {
        check_refused(&r)?;
        prop_assert!(audio.is_empty());
    }
    Ok(())
}

// ---- strategies ----

/// Strings that stress caps and escaping: empty, blank, at and over 64 characters
/// (multi-byte too), long, with U+0000 and other controls, quotes, backslashes.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => Just("   \t\n".to_owned()),
        1 => Just("x".repeat(MAX_ID_CHARS)),
        1 => Just("x".repeat(MAX_ID_CHARS + 1)),
        1 => Just("é".repeat(MAX_ID_CHARS)),
        1 => Just("é".repeat(MAX_ID_CHARS + 1)),
        1 => Just("n".repeat(MAX_NOTE_CHARS + 1)),
        1 => Just("t".repeat(MAX_TEXT + 1)),
        1 => Just("a\u{0}b".to_owned()),
        1 => Just("\\u0000 \" \\ \u{1} \u{7f} \u{fffd} \u{10ffff}".to_owned()),
        2 => "\\PC{0,80}",
        1 => any::<String>(),
    ]
}

fn odd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::from(0)),
        Just(Value::from(1)),
        Just(Value::from(-1)),
        Just(Value::from(255)),
        Just(Value::from(256)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(0.5)),
        Just(Value::from(1e308)),
        (0u64..12).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        3 => odd_number(),
        5 => odd_string().prop_map(Value::from),
    ]
}

/// Any JSON value whose object keys are mostly field names the decoders know.
fn value(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(fields), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key(fields: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(fields).prop_map(str::to_owned),
        1 => odd_string(),
    ]
}

/// A frame with a known (or unknown, or mistyped) `type` and some known fields with
/// odd values.
fn client_frame() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        8 => prop::sample::select(CUSTOMER_TYPES).prop_map(Value::from),
        8 => prop::sample::select(AGENT_TYPES).prop_map(Value::from),
        1 => leaf(),
    ];
    let fields = prop::collection::vec((key(CLIENT_FIELDS), value(CLIENT_FIELDS)), 0..8);
    (kind, fields, any::<bool>(), any::<u16>()).prop_map(|(kind, fields, good, cut)| {
        let mut object: Map<String, Value> = fields.into_iter().collect();
        if good {
            // Plausible values where the validator looks hardest.
            object.entry("conversation_id").or_insert("c1".into());
            object.entry("queue").or_insert("q".into());
            object.entry("text").or_insert("hi".into());
        }
        object.insert("type".to_owned(), kind);
        let text = Value::Object(object).to_string();
        cut_sometimes(text, cut)
    })
}

fn media_message() -> impl Strategy<Value = String> {
    let event = prop_oneof![
        8 => prop::sample::select(media::EVENTS).prop_map(Value::from),
        1 => leaf(),
    ];
    let fields = prop::collection::vec((key(MEDIA_FIELDS), value(MEDIA_FIELDS)), 0..8);
    (event, fields, any::<u16>()).prop_map(|(event, fields, cut)| {
        let mut object: Map<String, Value> = fields.into_iter().collect();
        object.insert("event".to_owned(), event);
        cut_sometimes(Value::Object(object).to_string(), cut)
    })
}

/// One case in eight, the text cut short (on a char boundary): truncated frames.
fn cut_sometimes(mut text: String, cut: u16) -> String {
    if cut.is_multiple_of(8) {
        let mut at = usize::from(cut / 8) % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
    text
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_text_is_decoded_or_refused_with_a_decoding_code(text in any::<String>()) {
        check_client(&text)?;
        check_media(&text)?;
    }

    #[test]
    fn near_valid_client_frames_are_decoded_or_refused(text in client_frame()) {
        check_client(&text)?;
    }

    #[test]
    fn near_valid_media_messages_are_decoded_or_refused(text in media_message()) {
        check_media(&text)?;
    }

    #[test]
    fn any_bytes_are_an_audio_frame_or_refused(
        head in prop_oneof![
            Just(vec![1u8, 0, 0, 7]),
            prop::collection::vec(prop_oneof![Just(0u8), Just(1u8)], 4),
            prop::collection::vec(any::<u8>(), 0..=4),
        ],
        len in prop_oneof![0usize..8, Just(MAX_AUDIO_PAYLOAD_BYTES), Just(MAX_AUDIO_PAYLOAD_BYTES + 1)],
    ) {
        let mut frame = head;
        frame.resize(frame.len() + len, 0x7f);
        let well_formed = frame.len() > 4
            && frame.len() <= 4 + MAX_AUDIO_PAYLOAD_BYTES
            && frame[..2] == [1, 0];
        match media::parse_audio_frame(&frame) {
            Ok((handle, payload)) => {
                prop_assert!(well_formed);
                prop_assert_eq!(handle, u16::from_be_bytes([frame[2], frame[3]]));
                prop_assert_eq!(payload, &frame[4..]);
            }
            Err(r) => {
                prop_assert!(!well_formed, "refused a good frame: {}", r);
                check_refused(&r)?;
            }
        }
    }

    #[test]
    fn any_bytes_are_a_batch_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        // Errors are `&'static str`: "no panic", and what decodes is what a node
        // writes: the same bytes again (a close reason is read lossily, so one that
        // was not UTF-8 is the exception).
        if let Ok((sender, frames)) = envelope::decode(&Bytes::from(bytes.clone())) {
            let mut batch = envelope::Batch::new(&sender);
            for (conn, f) in &frames {
                batch.push(*conn, f);
            }
            let lossy = frames.iter().any(|(_, f)| {
                matches!(f, envelope::Frame::Close { reason, .. } if reason.contains('\u{fffd}'))
            });
            if !lossy {
                prop_assert_eq!(batch.bytes(), &bytes[..]);
            }
            let again = envelope::decode(&Bytes::copy_from_slice(batch.bytes()));
            prop_assert_eq!(again, Ok((sender, frames)));
        }
    }
}

/// Deep nesting in a field the decoders skip or keep as JSON: refused at serde_json's
/// depth limit, never followed down the stack (a stack overflow would abort the whole
/// process, not only fail the frame).
#[test]
fn deep_nesting_is_refused_not_followed() {
    for depth in [200, 100_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let deep = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            let frames = [
                format!(r#"{{"type":"start","queue":"q","attributes":{{"x":{deep}}}}}"#),
                format!(r#"{{"type":"rtc","conversation_id":"c","payload":{{"x":{deep}}}}}"#),
                format!(r#"{{"type":"message","unknown":{deep}}}"#),
                format!(r#"{{"event":"start","x":{deep}}}"#),
                format!(r#"{{"event":"media","streamSid":"MZ1","media":{deep}}}"#),
                deep.clone(),
            ];
            for text in &frames {
                if let Err(r) = decode_customer(text, MAX_TEXT) {
                    assert!(decoding_code(r.code), "{:?}", r.code);
                }
                if let Err(r) = decode_agent(text, MAX_TEXT) {
                    assert!(decoding_code(r.code), "{:?}", r.code);
                }
                if let Err(r) = media::decode(text) {
                    assert!(decoding_code(r.code), "{:?}", r.code);
                }
            }
        }
    }
    // At the limit's depth it is refused, not accepted half-read.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let text = format!(r#"{{"type":"start","queue":"q","attributes":{{"x":{deep}}}}}"#);
    let refused = decode_customer(&text, MAX_TEXT).expect_err("too deep");
    assert_eq!(refused.code, ErrorCode::InvalidField);
}

/// Numbers out of every integer type's range are refused as fields, not wrapped.
#[test]
fn numbers_out_of_range_are_invalid_fields() {
    for n in ["-1", "256", "18446744073709551616", "1.5"] {
        let survey = format!(r#"{{"type":"survey","conversation_id":"c","csat":{n}}}"#);
        let r = decode_customer(&survey, MAX_TEXT).expect_err(&survey);
        assert_eq!(r.code, ErrorCode::InvalidField, "{survey}: {}", r.message);
        let resume = format!(r#"{{"type":"resume","conversation_id":"c","last_seq":{n}}}"#);
        if n != "256" {
            let r = decode_agent(&resume, MAX_TEXT).expect_err(&resume);
            assert_eq!(r.code, ErrorCode::InvalidField, "{resume}: {}", r.message);
        }
    }
}

/// The near-valid strategies reach past the parser: some frames are accepted and some
/// refused field by field, so the checks on accepted frames are not vacuous. (With
/// the fixed seed: about 6% of client decodings accepted, 45% `invalid_field`; about
/// 14% of media messages accepted.)
#[test]
fn near_valid_frames_reach_the_validators() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(config(1));
    let (mut accepted, mut invalid) = (0, 0);
    let frames = client_frame();
    for _ in 0..1_000 {
        let text = frames.new_tree(&mut runner).expect("a frame").current();
        for result in [
            decode_customer(&text, MAX_TEXT).map(|_| ()),
            decode_agent(&text, MAX_TEXT).map(|_| ()),
        ] {
            match result {
                Ok(()) => accepted += 1,
                Err(r) if r.code == ErrorCode::InvalidField => invalid += 1,
                Err(_) => {}
            }
        }
    }
    assert!(
        accepted >= 50,
        "only {accepted} of 2,000 decodings accepted"
    );
    assert!(
        invalid >= 500,
        "only {invalid} of 2,000 refused field by field"
    );
    let (mut accepted, messages) = (0, media_message());
    for _ in 0..1_000 {
        let text = messages.new_tree(&mut runner).expect("a message").current();
        accepted += usize::from(media::decode(&text).is_ok());
    }
    assert!(
        accepted >= 50,
        "only {accepted} of 1,000 media messages accepted"
    );
}

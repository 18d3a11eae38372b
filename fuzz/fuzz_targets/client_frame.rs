//! Client frames: any text a customer or agent socket can send, through
//! `decode_customer` and `decode_agent`. Never a panic; an accepted frame keeps every
//! documented cap and holds no U+0000; a refused one has a code from the closed set
//! of decoding codes and echoes at most a capped request id.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warmline::protocol::client::{
    AgentFrame, CustomerFrame, MAX_ID_CHARS, MAX_NOTE_CHARS, MAX_SKILLS, Rejected, TransferTo,
};
use warmline::protocol::{ErrorCode, decode_agent, decode_customer};

/// The gateway's default `limits.max_message_bytes`, and a small one to reach the
/// "too long" branches with short inputs.
const LIMITS: [usize; 2] = [65_536, 32];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for max in LIMITS {
        match decode_customer(text, max) {
            Ok(frame) => check_customer(&frame, max),
            Err(r) => check_rejected(&r),
        }
        match decode_agent(text, max) {
            Ok(frame) => check_agent(&frame, max),
            Err(r) => check_rejected(&r),
        }
    }
    // A frame the large limit refuses is not accepted under the small one.
    if decode_customer(text, LIMITS[0]).is_err() {
        assert!(decode_customer(text, LIMITS[1]).is_err());
    }
    if decode_agent(text, LIMITS[0]).is_err() {
        assert!(decode_agent(text, LIMITS[1]).is_err());
    }
});

fn check_rejected(r: &Rejected) {
    assert!(
        matches!(
            r.code,
            ErrorCode::BadJson | ErrorCode::UnknownType | ErrorCode::InvalidField
        ),
        "decoding refused with {:?}",
        r.code
    );
    assert!(!r.message.is_empty());
    // The request id is echoed as sent (even one holding U+0000: the error frame
    // escapes it, and the client can match it), but never longer than the cap.
    if let Some(id) = &r.id {
        assert!(id.chars().count() <= MAX_ID_CHARS, "echoed id too long");
    }
}

fn id_ok(s: &str) {
    assert!(!s.is_empty(), "empty id accepted");
    assert!(s.chars().count() <= MAX_ID_CHARS, "id over the cap: {s:?}");
    no_nul(s);
}

fn opt_id_ok(s: &Option<String>) {
    if let Some(s) = s {
        id_ok(s);
    }
}

fn request_id_ok(s: Option<&str>) {
    if let Some(s) = s {
        assert!(s.chars().count() <= MAX_ID_CHARS);
        no_nul(s);
    }
}

fn text_ok(s: &str, max: usize) {
    assert!(!s.trim().is_empty(), "blank text accepted");
    assert!(s.len() <= max, "text of {} bytes over {max}", s.len());
    no_nul(s);
}

fn note_ok(s: &Option<String>) {
    if let Some(s) = s {
        assert!(s.len() <= MAX_NOTE_CHARS, "note over the cap");
        no_nul(s);
    }
}

fn no_nul(s: &str) {
    assert!(!s.contains('\0'), "U+0000 accepted: {s:?}");
}

fn no_nul_value(v: &Value) {
    match v {
        Value::String(s) => no_nul(s),
        Value::Array(a) => a.iter().for_each(no_nul_value),
        Value::Object(m) => {
            for (k, v) in m {
                no_nul(k);
                no_nul_value(v);
            }
        }
        _ => {}
    }
}

fn no_nul_map(m: &serde_json::Map<String, Value>) {
    for (k, v) in m {
        no_nul(k);
        no_nul_value(v);
    }
}

fn check_customer(frame: &CustomerFrame, max: usize) {
    request_id_ok(frame.id());
    match frame {
        CustomerFrame::Hello {
            visitor_token,
            identity,
            ..
        } => {
            for s in [visitor_token, identity].into_iter().flatten() {
                no_nul(s);
            }
        }
        CustomerFrame::Start {
            queue,
            language,
            skills,
            attributes,
            text,
            ..
        } => {
            id_ok(queue);
            opt_id_ok(language);
            if let Some(skills) = skills {
                assert!(skills.len() <= MAX_SKILLS);
                for (name, level) in skills {
                    id_ok(name);
                    assert!((1..=10).contains(level));
                }
            }
            if let Some(a) = attributes {
                no_nul_map(a);
            }
            if let Some(t) = text {
                text_ok(t, max);
            }
        }
        CustomerFrame::Message {
            conversation_id,
            text,
            client_msg_id,
            ..
        } => {
            id_ok(conversation_id);
            opt_id_ok(client_msg_id);
            text_ok(text, max);
        }
        CustomerFrame::Survey {
            conversation_id,
            csat,
            effort,
            comment,
            ..
        } => {
            id_ok(conversation_id);
            assert!((1..=5).contains(csat));
            assert!(effort.is_none_or(|e| (1..=7).contains(&e)));
            note_ok(comment);
        }
        CustomerFrame::Rtc {
            conversation_id,
            payload,
            ..
        } => {
            id_ok(conversation_id);
            no_nul_map(payload);
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
        } => id_ok(conversation_id),
        CustomerFrame::History { .. } => {}
    }
}

fn check_agent(frame: &AgentFrame, max: usize) {
    request_id_ok(frame.id());
    match frame {
        AgentFrame::Status { .. } => {}
        AgentFrame::Accept { offer_id, .. } => id_ok(offer_id),
        AgentFrame::Reject {
            offer_id, reason, ..
        } => {
            id_ok(offer_id);
            note_ok(reason);
        }
        AgentFrame::Message {
            conversation_id,
            text,
            client_msg_id,
            ..
        } => {
            id_ok(conversation_id);
            opt_id_ok(client_msg_id);
            text_ok(text, max);
        }
        AgentFrame::Close {
            conversation_id,
            note,
            follow_up_at,
            ..
        } => {
            id_ok(conversation_id);
            note_ok(note);
            if let Some(at) = follow_up_at {
                no_nul(at);
            }
        }
        AgentFrame::Transfer {
            conversation_id,
            to,
            note,
            ..
        } => {
            id_ok(conversation_id);
            match to {
                TransferTo::Queue(s) | TransferTo::Agent(s) => id_ok(s),
            }
            note_ok(note);
        }
        AgentFrame::Rtc {
            conversation_id,
            payload,
            ..
        } => {
            id_ok(conversation_id);
            no_nul_map(payload);
        }
        AgentFrame::Mark {
            conversation_id,
            name,
            ..
        } => {
            id_ok(conversation_id);
            id_ok(name);
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
        } => id_ok(conversation_id),
    }
}

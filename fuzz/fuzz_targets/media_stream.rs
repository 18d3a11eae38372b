//! What a telephony provider, an agent's audio socket or another node can send:
//! `/ws/media` text messages (`media::decode`, `decode_payload`), agent audio frames
//! (`parse_audio_frame`) and backplane batches (`envelope::decode`). Never a panic;
//! what decodes keeps its caps and survives the round trip through the encoder.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warmline::backplane::envelope::{self, Batch, Endpoint, Frame, Opening};
use warmline::protocol::ErrorCode;
use warmline::protocol::media::{
    self, AUDIO_FRAME_VERSION, CODEC_PCMU, Inbound, MAX_AUDIO_PAYLOAD_BYTES,
    MAX_CUSTOM_PARAMETER_BYTES, MAX_CUSTOM_PARAMETERS, MAX_MARK_NAME_BYTES,
    MAX_PAYLOAD_BASE64_BYTES, MAX_SID_CHARS, Refused,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        provider_message(text);
        payload(text);
    }
    audio_frame(data);
    batch(data);
    batch_round_trip(data);
});

fn refused_ok(r: &Refused) {
    assert!(
        matches!(
            r.code,
            ErrorCode::BadJson | ErrorCode::UnknownType | ErrorCode::InvalidField
        ),
        "media refused with {:?}",
        r.code
    );
    assert!(!r.message.is_empty());
    // Messages are clipped to 300 bytes plus an ellipsis: providers log them.
    assert!(
        r.message.len() <= 300 + '…'.len_utf8(),
        "{} bytes",
        r.message.len()
    );
}

fn sid_ok(s: &str) {
    assert!(
        !s.is_empty() && s.chars().count() <= MAX_SID_CHARS,
        "sid {s:?}"
    );
}

/// The string at `path` of the JSON `text`, which must parse.
fn field<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v}"))
}

fn provider_message(text: &str) {
    let decoded = match media::decode(text) {
        Ok(m) => m,
        Err(r) => return refused_ok(&r),
    };
    let mut out = String::new();
    match decoded {
        Inbound::Connected => {}
        Inbound::Start(s) => {
            sid_ok(&s.stream_sid);
            sid_ok(&s.account_sid);
            sid_ok(&s.call_sid);
            assert!((1..=2).contains(&s.tracks.len()));
            assert!(s.custom_parameters.len() <= MAX_CUSTOM_PARAMETERS);
            for (k, v) in &s.custom_parameters {
                assert!(k.len() <= MAX_CUSTOM_PARAMETER_BYTES);
                assert!(v.len() <= MAX_CUSTOM_PARAMETER_BYTES);
            }
        }
        Inbound::Media(m) => {
            sid_ok(m.stream_sid);
            assert!(m.payload.len() <= MAX_PAYLOAD_BASE64_BYTES);
            let mut audio = Vec::new();
            if media::decode_payload(m.payload, &mut audio).is_ok() {
                // Played back to the provider: the same stream, the same audio.
                media::write_media(m.stream_sid, &audio, &mut out);
                let v: Value = serde_json::from_str(&out).expect("write_media writes JSON");
                assert_eq!(field(&v, &["event"]), "media");
                assert_eq!(field(&v, &["streamSid"]), m.stream_sid);
                let mut again = Vec::new();
                media::decode_payload(field(&v, &["media", "payload"]), &mut again)
                    .expect("our own base64 decodes");
                assert_eq!(again, audio);
            }
        }
        Inbound::Dtmf(d) => {
            sid_ok(&d.stream_sid);
            assert!(matches!(d.digit, '0'..='9' | '*' | '#' | 'A'..='D'));
        }
        Inbound::Mark(m) => {
            sid_ok(&m.stream_sid);
            assert!(!m.name.is_empty() && m.name.len() <= MAX_MARK_NAME_BYTES);
            // Marks are echoed back with any characters: the escaping must hold.
            media::write_mark(&m.stream_sid, &m.name, &mut out);
            let v: Value = serde_json::from_str(&out).expect("write_mark writes JSON");
            assert_eq!(field(&v, &["event"]), "mark");
            assert_eq!(field(&v, &["streamSid"]), m.stream_sid);
            assert_eq!(field(&v, &["mark", "name"]), m.name);
            media::write_clear(&m.stream_sid, &mut out);
            let v: Value = serde_json::from_str(&out).expect("write_clear writes JSON");
            assert_eq!(field(&v, &["streamSid"]), m.stream_sid);
        }
        Inbound::Stop(s) => {
            sid_ok(&s.stream_sid);
            sid_ok(&s.account_sid);
            sid_ok(&s.call_sid);
        }
    }
}

/// Any text as `media.payload`: refused as a value, or audio that re-encodes to
/// base64 which decodes to the same audio.
fn payload(text: &str) {
    let mut audio = vec![1, 2, 3];
    match media::decode_payload(text, &mut audio) {
        Err(r) => {
            refused_ok(&r);
            assert!(audio.is_empty(), "left bytes behind on error");
        }
        Ok(()) => {
            assert!(text.len() <= MAX_PAYLOAD_BASE64_BYTES);
            assert!(audio.len() <= MAX_PAYLOAD_BASE64_BYTES / 4 * 3);
            let mut out = String::new();
            media::write_media("MZ", &audio, &mut out);
            let v: Value = serde_json::from_str(&out).expect("JSON");
            let mut again = Vec::new();
            media::decode_payload(field(&v, &["media", "payload"]), &mut again).expect("ours");
            assert_eq!(again, audio);
        }
    }
}

fn audio_frame(data: &[u8]) {
    let should = data.len() > 4
        && data.len() <= 4 + MAX_AUDIO_PAYLOAD_BYTES
        && data[0] == AUDIO_FRAME_VERSION
        && data[1] == CODEC_PCMU;
    match media::parse_audio_frame(data) {
        Ok((handle, payload)) => {
            assert!(should, "accepted a frame outside the format");
            let mut out = Vec::new();
            media::write_audio_frame(handle, payload, &mut out);
            assert_eq!(out, data, "audio frame round trip");
        }
        Err(r) => {
            assert!(!should, "refused a well-formed frame: {r}");
            refused_ok(&r);
        }
    }
}

fn encode(sender: &str, frames: &[(u64, Frame)]) -> Bytes {
    let mut b = Batch::new(sender);
    for (conn, f) in frames {
        b.push(*conn, f);
    }
    Bytes::copy_from_slice(b.bytes())
}

/// Any bytes as a batch from another node: refused, or frames that encode back to
/// the same bytes (unless a close reason was not UTF-8: it is read lossily).
fn batch(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let Ok((sender, frames)) = envelope::decode(&bytes) else {
        return;
    };
    let again = encode(&sender, &frames);
    let lossy = frames
        .iter()
        .any(|(_, f)| matches!(f, Frame::Close { reason, .. } if reason.contains('\u{fffd}')));
    if !lossy {
        assert_eq!(again, bytes, "batch re-encodes to other bytes");
    }
    let (sender2, frames2) = envelope::decode(&again).expect("our own batch decodes");
    assert_eq!((sender2, frames2), (sender, frames));
}

/// Frames built from the bytes: what a node writes, the other reads the same.
fn batch_round_trip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(mut sender) = String::arbitrary(&mut u) else {
        return;
    };
    // A sender id is at most 255 bytes (node ids are short; `Batch::new` cuts longer).
    while sender.len() > 255 {
        sender.pop();
    }
    let mut frames = Vec::new();
    while frames.len() < 16 {
        match arbitrary_frame(&mut u) {
            Ok(f) => frames.push(f),
            Err(_) => break,
        }
    }
    let bytes = encode(&sender, &frames);
    let (got_sender, got) = envelope::decode(&bytes).expect("a batch we wrote decodes");
    assert_eq!(got_sender, sender);
    assert_eq!(got, frames);
}

fn arbitrary_frame(u: &mut Unstructured<'_>) -> arbitrary::Result<(u64, Frame)> {
    let conn = u64::arbitrary(u)?;
    let frame = match u.int_in_range(0u8..=8)? {
        0 => Frame::Open(Opening {
            endpoint: *u.choose(&[Endpoint::Customer, Endpoint::Agent, Endpoint::Media])?,
            query: String::arbitrary(u)?,
            headers: Vec::<(String, String)>::arbitrary(u)?,
        }),
        1 => Frame::Accept,
        2 => Frame::Reject {
            status: u16::arbitrary(u)?,
            body: Bytes::from(Vec::<u8>::arbitrary(u)?),
        },
        3 => Frame::Text(Bytes::from(String::arbitrary(u)?.into_bytes())),
        4 => Frame::Binary(Bytes::from(Vec::<u8>::arbitrary(u)?)),
        5 => Frame::Ping,
        6 => Frame::Pong,
        7 => Frame::Close {
            code: u16::arbitrary(u)?,
            reason: String::arbitrary(u)?,
        },
        _ => Frame::Gone,
    };
    Ok((conn, frame))
}

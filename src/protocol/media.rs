//! Wire format of `/ws/media`: the Twilio Media Streams WebSocket messages, and the
//! small binary frame that carries audio between the gateway and agent clients.
//!
//! Twilio (and providers that copied its format) streams a phone call as JSON text
//! messages, each with an `event`: `connected`, `start`, `media`, `dtmf`, `mark`,
//! `stop`. On a bidirectional stream the gateway answers with `media`, `mark` and
//! `clear`. Reference: <https://www.twilio.com/docs/voice/media-streams/websocket-messages>
//!
//! Decoding is two passes over the text: an envelope that tells a syntax error from a
//! missing or unknown `event`, then the typed message, whose serde error is turned
//! into a field path (`media.payload`, `start.tracks[1]`). Limits are checked after.
//! `media` is the hot path: it borrows `streamSid` and `payload` from the text and
//! allocates nothing; [`decode_payload`] and the `write_*` functions reuse buffers.
//!
//! Only PCMU (G.711 mu-law), 8000 Hz, mono is accepted, which is what Twilio sends.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};

use super::codes::ErrorCode;

/// Longest `streamSid`, `accountSid` or `callSid`, in characters (Twilio's are 34).
pub const MAX_SID_CHARS: usize = 64;
/// Most entries in `start.customParameters`.
pub const MAX_CUSTOM_PARAMETERS: usize = 64;
/// Longest custom parameter name, and longest value, in bytes.
pub const MAX_CUSTOM_PARAMETER_BYTES: usize = 1024;
/// Longest `mark.name`, in bytes.
pub const MAX_MARK_NAME_BYTES: usize = 256;
/// Longest `media.payload`, in bytes of base64 (6 KiB of audio; Twilio sends 20 ms,
/// 160 bytes, as 216 characters).
pub const MAX_PAYLOAD_BASE64_BYTES: usize = 8 * 1024;
/// Length of the agent audio frame header: version, codec, stream handle (u16 BE).
pub const AUDIO_HEADER_LEN: usize = 4;
/// The only agent audio frame version.
pub const AUDIO_FRAME_VERSION: u8 = 1;
/// Codec byte for PCMU (G.711 mu-law, 8000 Hz, mono), the only codec.
pub const CODEC_PCMU: u8 = 0;
/// Largest agent audio frame payload, in bytes (one second of PCMU).
pub const MAX_AUDIO_PAYLOAD_BYTES: usize = 8000;

/// The `event` values a provider may send, in the order a stream uses them.
pub const EVENTS: &[&str] = &["connected", "start", "media", "dtmf", "mark", "stop"];

/// Longest `Refused::message`, in bytes: serde errors can quote input back.
const MAX_MESSAGE_BYTES: usize = 300;
/// How much of an unknown `event` value is quoted back.
const MAX_QUOTED_BYTES: usize = 64;

/// Standard alphabet; padding written, and accepted with or without on input
/// (Twilio pads, some look-alike providers do not).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a message or frame was refused: the code for the `error` frame and metrics,
/// and a sentence for a person that names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Refused {}

/// A decoded message from the provider. `media` borrows from the frame text so the
/// 50-per-second path does not allocate; the rest are rare and owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// The socket is up; Twilio's `protocol` and `version` are not needed and not kept.
    Connected,
    Start(Start),
    Media(Media<'a>),
    Dtmf(Dtmf),
    Mark(Mark),
    Stop(Stop),
}

/// Which leg of the call audio belongs to. Twilio says `inbound`/`outbound` in
/// `start.tracks` and `media.track`, and `inbound_track` in `dtmf.track`; both
/// spellings are accepted everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Track {
    /// The caller's audio.
    #[serde(rename = "inbound", alias = "inbound_track")]
    Inbound,
    /// Audio played to the caller.
    #[serde(rename = "outbound", alias = "outbound_track")]
    Outbound,
}

/// `start`: sent once, before any media; names the call and the stream. Its media
/// format has been checked to be PCMU 8000 Hz mono, so it is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub sequence_number: u64,
    pub stream_sid: String,
    pub account_sid: String,
    pub call_sid: String,
    /// The tracks media will arrive on (one or two).
    pub tracks: Vec<Track>,
    /// `<Parameter>` values from the TwiML that opened the stream.
    pub custom_parameters: BTreeMap<String, String>,
}

/// `media`: one chunk of base64 PCMU audio (20 ms from Twilio). Borrowed from the
/// frame text; decode the audio with [`decode_payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media<'a> {
    pub stream_sid: &'a str,
    pub sequence_number: u64,
    pub track: Track,
    /// Chunk counter, from 1.
    pub chunk: u64,
    /// Milliseconds since the stream started.
    pub timestamp: u64,
    /// Base64 audio, at most [`MAX_PAYLOAD_BASE64_BYTES`]; not yet checked as base64.
    pub payload: &'a str,
}

/// `dtmf`: the caller pressed a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf {
    pub stream_sid: String,
    pub sequence_number: u64,
    pub track: Track,
    /// One of `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
}

/// `mark`: the audio sent before a mark of ours has finished playing (or was cleared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub stream_sid: String,
    pub sequence_number: u64,
    pub name: String,
}

/// `stop`: the stream ended (hang-up, or the stream was stopped). The last message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub stream_sid: String,
    pub sequence_number: u64,
    pub account_sid: String,
    pub call_sid: String,
}

// ---- inbound wire shapes (private: the public types above are the checked form) ----

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<EventName<'a>>,
}

/// The `event` value, borrowed unless it contains escapes. (`Option<Cow<str>>` with
/// `#[serde(borrow)]` would still copy: serde borrows only a bare `Cow` field.)
struct EventName<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for EventName<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> Visitor<'de> for Name {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
        }
        deserializer.deserialize_str(Name).map(EventName)
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a start message object")]
#[serde(rename_all = "camelCase")]
struct StartMsg {
    #[serde(deserialize_with = "number")]
    sequence_number: u64,
    /// Twilio repeats the id at the top level; optional, must match when present.
    #[serde(default)]
    stream_sid: Option<String>,
    start: StartBody,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with accountSid, streamSid, callSid, tracks and mediaFormat")]
#[serde(rename_all = "camelCase")]
struct StartBody {
    account_sid: String,
    stream_sid: String,
    call_sid: String,
    tracks: Vec<Track>,
    #[serde(default)]
    custom_parameters: BTreeMap<String, String>,
    media_format: MediaFormat,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with encoding, sampleRate and channels")]
#[serde(rename_all = "camelCase")]
struct MediaFormat {
    encoding: String,
    #[serde(deserialize_with = "number")]
    sample_rate: u64,
    #[serde(deserialize_with = "number")]
    channels: u64,
}

#[derive(Deserialize)]
#[serde(expecting = "a media message object")]
#[serde(rename_all = "camelCase")]
struct MediaMsg<'a> {
    #[serde(deserialize_with = "plain_str")]
    stream_sid: &'a str,
    #[serde(deserialize_with = "number")]
    sequence_number: u64,
    #[serde(borrow)]
    media: MediaBody<'a>,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with track, chunk, timestamp and payload")]
struct MediaBody<'a> {
    track: Track,
    #[serde(deserialize_with = "number")]
    chunk: u64,
    #[serde(deserialize_with = "number")]
    timestamp: u64,
    #[serde(deserialize_with = "plain_str")]
    payload: &'a str,
}

#[derive(Deserialize)]
#[serde(expecting = "a dtmf message object")]
#[serde(rename_all = "camelCase")]
struct DtmfMsg {
    stream_sid: String,
    #[serde(deserialize_with = "number")]
    sequence_number: u64,
    dtmf: DtmfBody,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with track and digit")]
struct DtmfBody {
    track: Track,
    digit: String,
}

#[derive(Deserialize)]
#[serde(expecting = "a mark message object")]
#[serde(rename_all = "camelCase")]
struct MarkMsg {
    stream_sid: String,
    #[serde(deserialize_with = "number")]
    sequence_number: u64,
    mark: MarkBody,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with name")]
struct MarkBody {
    name: String,
}

#[derive(Deserialize)]
#[serde(expecting = "a stop message object")]
#[serde(rename_all = "camelCase")]
struct StopMsg {
    stream_sid: String,
    #[serde(deserialize_with = "number")]
    sequence_number: u64,
    stop: StopBody,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with accountSid and callSid")]
#[serde(rename_all = "camelCase")]
struct StopBody {
    account_sid: String,
    call_sid: String,
}

/// A counter Twilio sends as a string of digits (`"2"`); a JSON number is accepted too.
fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct Number;
    impl Visitor<'_> for Number {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer or a string of digits")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::invalid_value(Unexpected::Str(v), &self));
            }
            v.parse()
                .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
        }
    }
    deserializer.deserialize_any(Number)
}

/// A string borrowed from the frame text. JSON escapes would need a copy; ids and
/// base64 never contain them, so they are refused rather than allocated for.
fn plain_str<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'de str, D::Error> {
    struct Plain;
    impl<'de> Visitor<'de> for Plain {
        type Value = &'de str;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string without escape sequences")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<&'de str, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<&'de str, E> {
            Err(E::invalid_value(
                Unexpected::Other("a string with escape sequences"),
                &self,
            ))
        }
    }
    deserializer.deserialize_str(Plain)
}

// ---- decoding ----

/// Decodes one text message from the provider and checks its limits.
///
/// Errors: `BadJson` (not JSON, or not an object), `UnknownType` (no `event`, or one
/// not in [`EVENTS`]), `InvalidField` (a known event with a missing, mistyped or
/// out-of-bounds field; the message names the field path).
pub fn decode(text: &str) -> Result<Inbound<'_>, Refused> {
    let envelope: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| envelope_error(text, &e))?;
    let Some(event) = envelope.event else {
        return Err(refused(
            ErrorCode::UnknownType,
            format!(
                "the message has no event; expected one of: {}",
                EVENTS.join(", ")
            ),
        ));
    };
    match event.0.as_ref() {
        "connected" => Ok(Inbound::Connected),
        "start" => typed::<StartMsg>(text, "start").and_then(check_start),
        "media" => typed::<MediaMsg<'_>>(text, "media").and_then(check_media),
        "dtmf" => typed::<DtmfMsg>(text, "dtmf").and_then(check_dtmf),
        "mark" => typed::<MarkMsg>(text, "mark").and_then(check_mark),
        "stop" => typed::<StopMsg>(text, "stop").and_then(check_stop),
        other => Err(refused(
            ErrorCode::UnknownType,
            format!(
                "`{}` is not a Media Streams event; expected one of: {}",
                clip(other, MAX_QUOTED_BYTES),
                EVENTS.join(", ")
            ),
        )),
    }
}

/// Decodes `media.payload` into `out`, replacing its contents. Once `out` has grown
/// to a chunk's size it is reused without allocating. On error `out` is left empty.
pub fn decode_payload(b64: &str, out: &mut Vec<u8>) -> Result<(), Refused> {
    out.clear();
    if b64.len() > MAX_PAYLOAD_BASE64_BYTES {
        return Err(invalid(format!(
            "media.payload is longer than {MAX_PAYLOAD_BASE64_BYTES} bytes of base64"
        )));
    }
    BASE64.decode_vec(b64, out).map_err(|e| {
        out.clear();
        invalid(format!("media.payload is not valid base64: {e}"))
    })
}

fn envelope_error(text: &str, e: &serde_json::Error) -> Refused {
    if !e.is_data() {
        return refused(
            ErrorCode::BadJson,
            format!("the message is not valid JSON: {}", serde_message(e)),
        );
    }
    let is_object = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{');
    if is_object {
        refused(
            ErrorCode::UnknownType,
            format!(
                "event must be a string, one of: {} ({})",
                EVENTS.join(", "),
                serde_message(e)
            ),
        )
    } else {
        refused(
            ErrorCode::BadJson,
            "a Media Streams message must be a JSON object with a string event".to_owned(),
        )
    }
}

fn typed<'a, T: Deserialize<'a>>(text: &'a str, event: &str) -> Result<T, Refused> {
    serde_json::from_str(text).map_err(|e| field_error(text, event, &e))
}

/// Turns a serde error on a known event into `InvalidField` naming the field path.
fn field_error(text: &str, event: &str, e: &serde_json::Error) -> Refused {
    let detail = serde_message(e);
    let path = error_path(text, e);
    let missing = detail
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    let message = match (missing, path.as_deref()) {
        (Some(field), Some("") | None) => format!("{event} message: missing field {field}"),
        (Some(field), Some(parent)) => {
            format!("{event} message: missing field {parent}.{field}")
        }
        (None, Some("") | None) => format!("{event} message: {detail}"),
        (None, Some(path)) => format!("{event} message: {path}: {detail}"),
    };
    invalid(message)
}

/// serde_json's message without the " at line L column C" it appends.
fn serde_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    if e.line() == 0 {
        return full;
    }
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(bare) => bare.to_owned(),
        None => full,
    }
}

/// The field path (`media.payload`, `start.tracks[1]`) at the position serde_json
/// reported, found by re-reading the text up to there. For a missing field serde has
/// just closed the object, so this is the path of that object.
fn error_path(text: &str, e: &serde_json::Error) -> Option<String> {
    if e.line() == 0 {
        return None;
    }
    let bytes = text.as_bytes();
    let mut line_start = 0usize;
    for _ in 1..e.line() {
        let rest = bytes.get(line_start..)?;
        line_start += rest.iter().position(|&b| b == b'\n')? + 1;
    }
    let end = line_start.checked_add(e.column())?;
    let before = bytes.get(..end)?;
    Some(path_at_end(before))
}

enum Level<'t> {
    Object {
        key: Option<&'t [u8]>,
        want_key: bool,
    },
    Array {
        index: usize,
    },
}

/// Walks (already validated) JSON and returns the path of the value it ends in.
fn path_at_end(json: &[u8]) -> String {
    let mut stack: Vec<Level<'_>> = Vec::new();
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        match b {
            b'{' => stack.push(Level::Object {
                key: None,
                want_key: true,
            }),
            b'[' => stack.push(Level::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Level::Object { want_key, .. }) => *want_key = true,
                Some(Level::Array { index }) => *index += 1,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while let Some(&c) = json.get(j) {
                    match c {
                        b'"' => break,
                        b'\\' => j += 2,
                        _ => j += 1,
                    }
                }
                if let Some(Level::Object { key, want_key }) = stack.last_mut()
                    && *want_key
                {
                    *key = json.get(start..j);
                    *want_key = false;
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for level in &stack {
        match level {
            Level::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(std::str::from_utf8(key).unwrap_or("?"));
            }
            Level::Object { key: None, .. } => {}
            Level::Array { index } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

fn check_sid(path: &str, value: &str) -> Result<(), Refused> {
    if value.is_empty() {
        return Err(invalid(format!("{path} must not be empty")));
    }
    if value.chars().count() > MAX_SID_CHARS {
        return Err(invalid(format!(
            "{path} is longer than {MAX_SID_CHARS} characters"
        )));
    }
    Ok(())
}

fn check_start(msg: StartMsg) -> Result<Inbound<'static>, Refused> {
    let body = msg.start;
    check_sid("start.streamSid", &body.stream_sid)?;
    if let Some(top) = &msg.stream_sid
        && *top != body.stream_sid
    {
        return Err(invalid(
            "streamSid does not match start.streamSid".to_owned(),
        ));
    }
    check_sid("start.accountSid", &body.account_sid)?;
    check_sid("start.callSid", &body.call_sid)?;
    if body.tracks.is_empty() || body.tracks.len() > 2 {
        return Err(invalid(
            "start.tracks must list one or two tracks (inbound, outbound)".to_owned(),
        ));
    }
    if body.custom_parameters.len() > MAX_CUSTOM_PARAMETERS {
        return Err(invalid(format!(
            "start.customParameters has more than {MAX_CUSTOM_PARAMETERS} entries"
        )));
    }
    for (key, value) in &body.custom_parameters {
        if key.len() > MAX_CUSTOM_PARAMETER_BYTES {
            return Err(invalid(format!(
                "start.customParameters: a name is longer than {MAX_CUSTOM_PARAMETER_BYTES} bytes"
            )));
        }
        if value.len() > MAX_CUSTOM_PARAMETER_BYTES {
            return Err(invalid(format!(
                "start.customParameters.{}: value is longer than {MAX_CUSTOM_PARAMETER_BYTES} bytes",
                clip(key, MAX_QUOTED_BYTES)
            )));
        }
    }
    let format = &body.media_format;
    if format.encoding != "audio/x-mulaw" || format.sample_rate != 8000 || format.channels != 1 {
        return Err(invalid(format!(
            "start.mediaFormat is `{}` at {} Hz with {} channel(s); only audio/x-mulaw at 8000 Hz with 1 channel is supported",
            clip(&format.encoding, MAX_QUOTED_BYTES),
            format.sample_rate,
            format.channels
        )));
    }
    Ok(Inbound::Start(Start {
        sequence_number: msg.sequence_number,
        stream_sid: body.stream_sid,
        account_sid: body.account_sid,
        call_sid: body.call_sid,
        tracks: body.tracks,
        custom_parameters: body.custom_parameters,
    }))
}

fn check_media(msg: MediaMsg<'_>) -> Result<Inbound<'_>, Refused> {
    check_sid("streamSid", msg.stream_sid)?;
    if msg.media.payload.len() > MAX_PAYLOAD_BASE64_BYTES {
        return Err(invalid(format!(
            "media.payload is longer than {MAX_PAYLOAD_BASE64_BYTES} bytes of base64"
        )));
    }
    Ok(Inbound::Media(Media {
        stream_sid: msg.stream_sid,
        sequence_number: msg.sequence_number,
        track: msg.media.track,
        chunk: msg.media.chunk,
        timestamp: msg.media.timestamp,
        payload: msg.media.payload,
    }))
}

fn check_dtmf(msg: DtmfMsg) -> Result<Inbound<'static>, Refused> {
    check_sid("streamSid", &msg.stream_sid)?;
    let mut chars = msg.dtmf.digit.chars();
    let digit = match (chars.next(), chars.next()) {
        (Some(c), None) if matches!(c, '0'..='9' | '*' | '#' | 'A'..='D') => c,
        _ => {
            return Err(invalid(format!(
                "dtmf.digit `{}` is not one of 0-9, *, #, A-D",
                clip(&msg.dtmf.digit, MAX_QUOTED_BYTES)
            )));
        }
    };
    Ok(Inbound::Dtmf(Dtmf {
        stream_sid: msg.stream_sid,
        sequence_number: msg.sequence_number,
        track: msg.dtmf.track,
        digit,
    }))
}

fn check_mark(msg: MarkMsg) -> Result<Inbound<'static>, Refused> {
    check_sid("streamSid", &msg.stream_sid)?;
    if msg.mark.name.is_empty() {
        return Err(invalid("mark.name must not be empty".to_owned()));
    }
    if msg.mark.name.len() > MAX_MARK_NAME_BYTES {
        return Err(invalid(format!(
            "mark.name is longer than {MAX_MARK_NAME_BYTES} bytes"
        )));
    }
    Ok(Inbound::Mark(Mark {
        stream_sid: msg.stream_sid,
        sequence_number: msg.sequence_number,
        name: msg.mark.name,
    }))
}

fn check_stop(msg: StopMsg) -> Result<Inbound<'static>, Refused> {
    check_sid("streamSid", &msg.stream_sid)?;
    check_sid("stop.accountSid", &msg.stop.account_sid)?;
    check_sid("stop.callSid", &msg.stop.call_sid)?;
    Ok(Inbound::Stop(Stop {
        stream_sid: msg.stream_sid,
        sequence_number: msg.sequence_number,
        account_sid: msg.stop.account_sid,
        call_sid: msg.stop.call_sid,
    }))
}

fn refused(code: ErrorCode, mut message: String) -> Refused {
    if message.len() > MAX_MESSAGE_BYTES {
        let keep = clip(&message, MAX_MESSAGE_BYTES).len();
        message.truncate(keep);
        message.push('…');
    }
    Refused { code, message }
}

fn invalid(message: String) -> Refused {
    refused(ErrorCode::InvalidField, message)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

// ---- outbound (to the provider) ----

/// Writes `{"event":"media","streamSid":..,"media":{"payload":<base64 audio>}}` into
/// `out`, replacing its contents: PCMU audio to play to the caller.
pub fn write_media(stream_sid: &str, audio: &[u8], out: &mut String) {
    out.clear();
    out.push_str(r#"{"event":"media","streamSid":""#);
    escape_into(stream_sid, out);
    out.push_str(r#"","media":{"payload":""#);
    BASE64.encode_string(audio, out);
    out.push_str(r#""}}"#);
}

/// Writes `{"event":"mark","streamSid":..,"mark":{"name":..}}` into `out`, replacing
/// its contents. The provider echoes the mark once the audio before it has played.
pub fn write_mark(stream_sid: &str, name: &str, out: &mut String) {
    out.clear();
    out.push_str(r#"{"event":"mark","streamSid":""#);
    escape_into(stream_sid, out);
    out.push_str(r#"","mark":{"name":""#);
    escape_into(name, out);
    out.push_str(r#""}}"#);
}

/// Writes `{"event":"clear","streamSid":..}` into `out`, replacing its contents: drop
/// the audio the provider has buffered (barge-in), echoing pending marks.
pub fn write_clear(stream_sid: &str, out: &mut String) {
    out.clear();
    out.push_str(r#"{"event":"clear","streamSid":""#);
    escape_into(stream_sid, out);
    out.push_str(r#""}"#);
}

/// Appends `s` as the inside of a JSON string: quote, backslash and control
/// characters escaped, everything else copied in runs.
fn escape_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `run_start..i` is on char boundaries.
        out.push_str(s.get(run_start..i).unwrap_or(""));
        if escaped.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push_str(escaped);
        }
        run_start = i + 1;
    }
    out.push_str(s.get(run_start..).unwrap_or(""));
}

// ---- agent audio frames (binary WebSocket messages) ----

/// Reads an agent audio frame: `[version=1, codec=0 (PCMU), handle (u16 BE), payload..]`.
/// Returns the stream handle and the PCMU payload (1 to [`MAX_AUDIO_PAYLOAD_BYTES`]).
pub fn parse_audio_frame(frame: &[u8]) -> Result<(u16, &[u8]), Refused> {
    let Some((&[version, codec, hi, lo], payload)) = frame.split_first_chunk::<AUDIO_HEADER_LEN>()
    else {
        return Err(invalid(format!(
            "audio frame is {} bytes, shorter than its {AUDIO_HEADER_LEN}-byte header",
            frame.len()
        )));
    };
    if version != AUDIO_FRAME_VERSION {
        return Err(invalid(format!(
            "audio frame version {version} is unknown; expected {AUDIO_FRAME_VERSION}"
        )));
    }
    if codec != CODEC_PCMU {
        return Err(invalid(format!(
            "audio frame codec {codec} is not supported; expected {CODEC_PCMU} (PCMU, 8000 Hz)"
        )));
    }
    if payload.is_empty() {
        return Err(invalid("audio frame has no payload".to_owned()));
    }
    if payload.len() > MAX_AUDIO_PAYLOAD_BYTES {
        return Err(invalid(format!(
            "audio frame payload is {} bytes; at most {MAX_AUDIO_PAYLOAD_BYTES} are allowed",
            payload.len()
        )));
    }
    Ok((u16::from_be_bytes([hi, lo]), payload))
}

/// Writes an agent audio frame (PCMU, version 1) into `out`, replacing its contents.
/// The caller keeps `payload` within 1..=[`MAX_AUDIO_PAYLOAD_BYTES`] bytes, which is
/// what [`parse_audio_frame`] accepts.
pub fn write_audio_frame(handle: u16, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(AUDIO_HEADER_LEN + payload.len());
    out.push(AUDIO_FRAME_VERSION);
    out.push(CODEC_PCMU);
    out.extend_from_slice(&handle.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped after the examples on the Twilio page (sequence numbers, chunk and
    // timestamp are strings there, and the text is pretty-printed).
    const CONNECTED: &str = r#"{
  "event": "connected",
  "protocol": "Call",
  "version": "1.0.0"
}"#;

    const START: &str = r#"{
  "event": "start",
  "sequenceNumber": "1",
  "start": {
    "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "tracks": [ "inbound" ],
    "mediaFormat": {
      "encoding": "audio/x-mulaw",
      "sampleRate": 8000,
      "channels": 1
    },
    "customParameters": {
      "FirstName": "Jane",
      "LastName": "Doe",
      "RemoteParty": "Bob"
    }
  },
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}"#;

    const MEDIA: &str = r#"{
  "event": "media",
  "sequenceNumber": "3",
  "media": {
    "track": "outbound",
    "chunk": "1",
    "timestamp": "5",
    "payload": "no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhILBQYIDRg1qZSLh4aIjJevLBUMBgYHDBUsr5eMiIaHi5SpNRgNCAYFCxImu5mNiIaHipGiRBsOCQYGChAf0pyOiYaGiY6p"
  },
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}"#;

    const DTMF: &str = r#"{
  "event": "dtmf",
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
  "sequenceNumber": "5",
  "dtmf": {
    "track": "inbound_track",
    "digit": "1"
  }
}"#;

    const MARK: &str = r#"{
  "event": "mark",
  "sequenceNumber": "4",
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
  "mark": {
    "name": "my label"
  }
}"#;

    const STOP: &str = r#"{
  "event": "stop",
  "sequenceNumber": "5",
  "stop": {
    "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
  },
  "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}"#;

    const SID: &str = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";

    fn refused_with(text: &str) -> Refused {
        match decode(text) {
            Err(r) => r,
            Ok(ok) => panic!("expected a refusal, got {ok:?}"),
        }
    }

    fn assert_invalid(text: &str, message: &str) {
        assert_eq!(
            refused_with(text),
            Refused {
                code: ErrorCode::InvalidField,
                message: message.to_owned()
            }
        );
    }

    fn start_with(body: &str) -> String {
        format!(
            r#"{{"event":"start","sequenceNumber":"1","start":{{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1",{body}}}}}"#
        )
    }

    const MULAW: &str =
        r#""mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}"#;

    fn media_with(stream_sid: &str, payload: &str) -> String {
        format!(
            r#"{{"event":"media","streamSid":"{stream_sid}","sequenceNumber":"2","media":{{"track":"inbound","chunk":"1","timestamp":"20","payload":"{payload}"}}}}"#
        )
    }

    fn dtmf_with(digit: &str) -> String {
        format!(
            r#"{{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{{"track":"inbound_track","digit":"{digit}"}}}}"#
        )
    }

    #[test]
    fn decodes_the_twilio_examples() {
        assert_eq!(decode(CONNECTED), Ok(Inbound::Connected));

        let params: BTreeMap<String, String> = [
            ("FirstName", "Jane"),
            ("LastName", "Doe"),
            ("RemoteParty", "Bob"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            decode(START),
            Ok(Inbound::Start(Start {
                sequence_number: 1,
                stream_sid: SID.to_owned(),
                account_sid: "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".to_owned(),
                call_sid: "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".to_owned(),
                tracks: vec![Track::Inbound],
                custom_parameters: params,
            }))
        );

        let Ok(Inbound::Media(media)) = decode(MEDIA) else {
            panic!("media example refused: {:?}", decode(MEDIA));
        };
        assert_eq!(media.stream_sid, SID);
        assert_eq!(media.sequence_number, 3);
        assert_eq!(media.track, Track::Outbound);
        assert_eq!(media.chunk, 1);
        assert_eq!(media.timestamp, 5);
        assert_eq!(media.payload.len(), 132);
        assert!(media.payload.starts_with("no+Jhoa"));
        let mut audio = Vec::new();
        assert_eq!(decode_payload(media.payload, &mut audio), Ok(()));
        assert_eq!(audio.len(), 99);
        assert_eq!(audio[..3], [0x9e, 0x8f, 0x89]);

        assert_eq!(
            decode(DTMF),
            Ok(Inbound::Dtmf(Dtmf {
                stream_sid: SID.to_owned(),
                sequence_number: 5,
                track: Track::Inbound,
                digit: '1',
            }))
        );
        assert_eq!(
            decode(MARK),
            Ok(Inbound::Mark(Mark {
                stream_sid: SID.to_owned(),
                sequence_number: 4,
                name: "my label".to_owned(),
            }))
        );
        assert_eq!(
            decode(STOP),
            Ok(Inbound::Stop(Stop {
                stream_sid: SID.to_owned(),
                sequence_number: 5,
                account_sid: "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".to_owned(),
                call_sid: "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".to_owned(),
            }))
        );
    }

    #[test]
    fn counters_may_be_numbers_or_digit_strings() {
        let text = r#"{"event":"media","streamSid":"MZ1","sequenceNumber":7,"media":{"track":"inbound_track","chunk":6,"timestamp":"18446744073709551615","payload":""}}"#;
        assert_eq!(
            decode(text),
            Ok(Inbound::Media(Media {
                stream_sid: "MZ1",
                sequence_number: 7,
                track: Track::Inbound,
                chunk: 6,
                timestamp: u64::MAX,
                payload: "",
            }))
        );
        assert_invalid(
            &text.replace("18446744073709551615", "18446744073709551616"),
            "media message: media.timestamp: invalid value: string \"18446744073709551616\", expected a non-negative integer or a string of digits",
        );
        assert_invalid(
            &text.replace(r#""sequenceNumber":7"#, r#""sequenceNumber":"+7""#),
            "media message: sequenceNumber: invalid value: string \"+7\", expected a non-negative integer or a string of digits",
        );
        assert_invalid(
            &text.replace(r#""sequenceNumber":7"#, r#""sequenceNumber":-7"#),
            "media message: sequenceNumber: invalid type: integer `-7`, expected a non-negative integer or a string of digits",
        );
        assert_invalid(
            &text.replace(r#""chunk":6"#, r#""chunk":1.5"#),
            "media message: media.chunk: invalid type: floating point `1.5`, expected a non-negative integer or a string of digits",
        );
        assert_invalid(
            &text.replace(r#""chunk":6"#, r#""chunk":"""#),
            "media message: media.chunk: invalid value: string \"\", expected a non-negative integer or a string of digits",
        );
    }

    #[test]
    fn not_json_is_bad_json() {
        for text in [
            "",
            "not json",
            r#"{"event":"media""#,
            r#"{"event":"media",}"#,
        ] {
            let refused = refused_with(text);
            assert_eq!(refused.code, ErrorCode::BadJson, "{text}");
            assert!(
                refused
                    .message
                    .starts_with("the message is not valid JSON: "),
                "{refused:?}"
            );
        }
        assert_eq!(
            refused_with("not json").message,
            "the message is not valid JSON: expected ident"
        );
        for text in ["[1, 2]", "\"media\"", "42", "null"] {
            assert_eq!(
                refused_with(text),
                Refused {
                    code: ErrorCode::BadJson,
                    message: "a Media Streams message must be a JSON object with a string event"
                        .to_owned()
                },
                "{text}"
            );
        }
    }

    #[test]
    fn missing_or_unknown_event_is_unknown_type() {
        let known = "connected, start, media, dtmf, mark, stop";
        assert_eq!(
            refused_with(r#"{"streamSid":"MZ1"}"#),
            Refused {
                code: ErrorCode::UnknownType,
                message: format!("the message has no event; expected one of: {known}")
            }
        );
        assert_eq!(
            refused_with(r#"{"event":null}"#).code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            refused_with(r#"{"event":"clear","streamSid":"MZ1"}"#),
            Refused {
                code: ErrorCode::UnknownType,
                message: format!("`clear` is not a Media Streams event; expected one of: {known}")
            }
        );
        assert_eq!(
            refused_with(r#" {"event": 5}"#),
            Refused {
                code: ErrorCode::UnknownType,
                message: format!(
                    "event must be a string, one of: {known} (invalid type: integer `5`, expected a string)"
                )
            }
        );
        // An escaped event name is read (and still unknown).
        assert_eq!(
            refused_with(r#"{"event":"me\"dia"}"#).message,
            format!("`me\"dia` is not a Media Streams event; expected one of: {known}")
        );
        // A long event name is quoted only in part.
        let long = format!(r#"{{"event":"{}"}}"#, "x".repeat(5000));
        let message = refused_with(&long).message;
        assert!(message.starts_with(&format!("`{}` is not", "x".repeat(64))));
        assert!(message.len() < 200, "{}", message.len());
    }

    #[test]
    fn missing_fields_are_named_by_path() {
        let cases = [
            (
                r#"{"event":"media","streamSid":"MZ1","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"5"}}"#,
                "media message: missing field media.payload",
            ),
            (
                r#"{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":""}}"#,
                "media message: missing field streamSid",
            ),
            (
                r#"{"event":"media","streamSid":"MZ1","sequenceNumber":"2"}"#,
                "media message: missing field media",
            ),
            (
                r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC","callSid":"CA","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
                "start message: missing field start.streamSid",
            ),
            (
                r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC","streamSid":"MZ","callSid":"CA","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","channels":1}}}"#,
                "start message: missing field start.mediaFormat.sampleRate",
            ),
            (
                r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track"}}"#,
                "dtmf message: missing field dtmf.digit",
            ),
            (
                "{\n \"event\": \"mark\",\n \"sequenceNumber\": \"4\",\n \"streamSid\": \"MZ1\",\n \"mark\": {\n }\n}",
                "mark message: missing field mark.name",
            ),
            (
                r#"{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC","callSid":"CA"}}"#,
                "stop message: missing field sequenceNumber",
            ),
            (
                r#"{"event":"stop","streamSid":"MZ1","sequenceNumber":"9","stop":{"accountSid":"AC"}}"#,
                "stop message: missing field stop.callSid",
            ),
        ];
        for (text, message) in cases {
            assert_invalid(text, message);
        }
    }

    #[test]
    fn wrong_types_are_named_by_path() {
        let cases = [
            (
                r#"{"event":"media","streamSid":"MZ1","sequenceNumber":"2","media":"x"}"#,
                "media message: media: invalid type: string \"x\", expected an object with track, chunk, timestamp and payload",
            ),
            (
                r#"{"event":"media","streamSid":"MZ1","sequenceNumber":"2","media":{"track":"sideways","chunk":"1","timestamp":"5","payload":""}}"#,
                "media message: media.track: unknown variant `sideways`, expected one of `inbound`, `inbound_track`, `outbound`, `outbound_track`",
            ),
            (
                r#"{"event":"media","streamSid":"MZ1","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":42}}"#,
                "media message: media.payload: invalid type: integer `42`, expected a string without escape sequences",
            ),
            (
                r#"{"event":"media","streamSid":"MZ1","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"AA\/A"}}"#,
                "media message: media.payload: invalid value: a string with escape sequences, expected a string without escape sequences",
            ),
            (
                r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC","streamSid":"MZ","callSid":"CA","tracks":["inbound","both"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
                "start message: start.tracks[1]: unknown variant `both`, expected one of `inbound`, `inbound_track`, `outbound`, `outbound_track`",
            ),
            (
                r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC","streamSid":"MZ","callSid":"CA","tracks":["inbound"],"customParameters":{"a,]}":"b","n":3},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
                "start message: start.customParameters.n: invalid type: integer `3`, expected a string",
            ),
            (
                "{\n \"event\": \"mark\",\n \"sequenceNumber\": \"4\",\n \"streamSid\": \"MZ1\",\n \"mark\": {\n  \"name\": 7\n }\n}",
                "mark message: mark.name: invalid type: integer `7`, expected a string",
            ),
            (
                r#"{"event":"stop","streamSid":"MZ1","sequenceNumber":"5","stop":{"accountSid":"AC","callSid":"CA","callSid":"CB"}}"#,
                "stop message: stop.callSid: duplicate field `callSid`",
            ),
        ];
        for (text, message) in cases {
            assert_invalid(text, message);
        }
    }

    #[test]
    fn start_media_format_must_be_mulaw_8k_mono() {
        assert!(matches!(
            decode(&start_with(&format!(r#""tracks":["inbound"],{MULAW}"#))),
            Ok(Inbound::Start(_))
        ));
        let cases = [
            (
                r#""mediaFormat":{"encoding":"audio/L16","sampleRate":16000,"channels":1}"#,
                "start.mediaFormat is `audio/L16` at 16000 Hz with 1 channel(s); only audio/x-mulaw at 8000 Hz with 1 channel is supported",
            ),
            (
                r#""mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":"16000","channels":1}"#,
                "start.mediaFormat is `audio/x-mulaw` at 16000 Hz with 1 channel(s); only audio/x-mulaw at 8000 Hz with 1 channel is supported",
            ),
            (
                r#""mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":2}"#,
                "start.mediaFormat is `audio/x-mulaw` at 8000 Hz with 2 channel(s); only audio/x-mulaw at 8000 Hz with 1 channel is supported",
            ),
        ];
        for (format, message) in cases {
            assert_invalid(
                &start_with(&format!(r#""tracks":["inbound"],{format}"#)),
                message,
            );
        }
    }

    #[test]
    fn start_limits() {
        assert_invalid(
            &start_with(&format!(r#""tracks":[],{MULAW}"#)),
            "start.tracks must list one or two tracks (inbound, outbound)",
        );
        assert_invalid(
            &start_with(&format!(
                r#""tracks":["inbound","outbound","inbound"],{MULAW}"#
            )),
            "start.tracks must list one or two tracks (inbound, outbound)",
        );
        let Ok(Inbound::Start(both)) = decode(&start_with(&format!(
            r#""tracks":["inbound","outbound"],{MULAW}"#
        ))) else {
            panic!("two tracks refused");
        };
        assert_eq!(both.tracks, [Track::Inbound, Track::Outbound]);
        assert!(both.custom_parameters.is_empty());

        let params = |n: usize| {
            let entries: Vec<String> = (0..n).map(|i| format!(r#""k{i}":"v""#)).collect();
            start_with(&format!(
                r#""tracks":["inbound"],"customParameters":{{{}}},{MULAW}"#,
                entries.join(",")
            ))
        };
        let Ok(Inbound::Start(full)) = decode(&params(64)) else {
            panic!("64 parameters refused");
        };
        assert_eq!(full.custom_parameters.len(), 64);
        assert_invalid(
            &params(65),
            "start.customParameters has more than 64 entries",
        );
        let one = |key: &str, value: &str| {
            start_with(&format!(
                r#""tracks":["inbound"],"customParameters":{{"{key}":"{value}"}},{MULAW}"#
            ))
        };
        assert!(decode(&one(&"k".repeat(1024), &"v".repeat(1024))).is_ok());
        assert_invalid(
            &one("k", &"v".repeat(1025)),
            "start.customParameters.k: value is longer than 1024 bytes",
        );
        assert_invalid(
            &one(&"k".repeat(1025), "v"),
            "start.customParameters: a name is longer than 1024 bytes",
        );
    }

    #[test]
    fn stream_sids_are_bounded_and_consistent() {
        let ok = "M".repeat(64);
        assert!(matches!(
            decode(&media_with(&ok, "")),
            Ok(Inbound::Media(m)) if m.stream_sid == ok
        ));
        assert_invalid(
            &media_with(&"M".repeat(65), ""),
            "streamSid is longer than 64 characters",
        );
        assert_invalid(&media_with("", ""), "streamSid must not be empty");
        // 64 characters of two bytes each is still 64 characters.
        assert!(decode(&media_with(&"é".repeat(64), "")).is_ok());
        assert_invalid(
            r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ2","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            "streamSid does not match start.streamSid",
        );
        assert_invalid(
            r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            "start.callSid must not be empty",
        );
        assert_invalid(
            r#"{"event":"stop","streamSid":"MZ1","sequenceNumber":"9","stop":{"accountSid":"","callSid":"CA"}}"#,
            "stop.accountSid must not be empty",
        );
    }

    #[test]
    fn media_payload_is_bounded() {
        let at_limit = "A".repeat(MAX_PAYLOAD_BASE64_BYTES);
        assert!(matches!(
            decode(&media_with("MZ1", &at_limit)),
            Ok(Inbound::Media(m)) if m.payload.len() == 8192
        ));
        assert_invalid(
            &media_with("MZ1", &"A".repeat(MAX_PAYLOAD_BASE64_BYTES + 4)),
            "media.payload is longer than 8192 bytes of base64",
        );
    }

    #[test]
    fn dtmf_digits() {
        for digit in "0123456789*#ABCD".chars() {
            assert!(
                matches!(decode(&dtmf_with(&digit.to_string())), Ok(Inbound::Dtmf(d)) if d.digit == digit),
                "{digit}"
            );
        }
        for (digit, shown) in [
            ("12", "12"),
            ("E", "E"),
            ("a", "a"),
            ("", ""),
            ("\\u0031", "1"),
        ] {
            // `\u0031` is an escaped "1": it decodes to "1" and is accepted.
            if digit == "\\u0031" {
                assert!(
                    matches!(decode(&dtmf_with(digit)), Ok(Inbound::Dtmf(d)) if d.digit == '1')
                );
                continue;
            }
            assert_invalid(
                &dtmf_with(digit),
                &format!("dtmf.digit `{shown}` is not one of 0-9, *, #, A-D"),
            );
        }
    }

    #[test]
    fn mark_names() {
        let mark = |name: &str| {
            format!(
                r#"{{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{{"name":"{name}"}}}}"#
            )
        };
        assert!(
            matches!(decode(&mark(&"n".repeat(256))), Ok(Inbound::Mark(m)) if m.name.len() == 256)
        );
        assert!(
            matches!(decode(&mark(r#"a \"quoted\" name"#)), Ok(Inbound::Mark(m)) if m.name == r#"a "quoted" name"#)
        );
        assert_invalid(&mark(""), "mark.name must not be empty");
        assert_invalid(
            &mark(&"n".repeat(257)),
            "mark.name is longer than 256 bytes",
        );
    }

    #[test]
    fn messages_quoting_input_are_clipped() {
        let huge = "9".repeat(10_000);
        let text = format!(
            r#"{{"event":"media","streamSid":"MZ1","sequenceNumber":"x{huge}","media":{{"track":"inbound","chunk":"1","timestamp":"5","payload":""}}}}"#
        );
        let refused = refused_with(&text);
        assert_eq!(refused.code, ErrorCode::InvalidField);
        assert!(
            refused
                .message
                .starts_with("media message: sequenceNumber: invalid value: string \"x999")
        );
        assert!(refused.message.ends_with('…'));
        assert_eq!(refused.message.len(), MAX_MESSAGE_BYTES + '…'.len_utf8());
    }

    #[test]
    fn no_prefix_of_a_message_panics() {
        for text in [CONNECTED, START, MEDIA, DTMF, MARK, STOP] {
            for end in 0..text.len() {
                let prefix = &text[..end];
                assert!(decode(prefix).is_err(), "{prefix}");
            }
        }
        let odd = r#"{"event":"dtmf","streamSid":"MZé","sequenceNumber":"5","dtmf":{"track":"inbound","digit":"é"}}"#;
        assert_eq!(
            refused_with(odd).message,
            "dtmf.digit `é` is not one of 0-9, *, #, A-D"
        );
    }

    #[test]
    fn decode_payload_edge_cases() {
        let mut out = vec![9, 9, 9];
        assert_eq!(decode_payload("", &mut out), Ok(()));
        assert_eq!(out, [] as [u8; 0]);
        assert_eq!(decode_payload("AA==", &mut out), Ok(()));
        assert_eq!(out, [0]);
        assert_eq!(decode_payload("AA", &mut out), Ok(()));
        assert_eq!(out, [0], "padding is optional");
        assert_eq!(decode_payload("AA=", &mut out), Ok(()));
        assert_eq!(out, [0], "partial padding is tolerated too");
        assert_eq!(decode_payload("AAE=", &mut out), Ok(()));
        assert_eq!(out, [0, 1]);
        assert_eq!(decode_payload("/+8A", &mut out), Ok(()));
        assert_eq!(out, [0xff, 0xef, 0x00]);

        let bad = [
            (
                "A*==",
                "media.payload is not valid base64: Invalid symbol 42, offset 1.",
            ),
            (
                "AA ==",
                "media.payload is not valid base64: Invalid symbol 32, offset 2.",
            ),
            (
                "AA==\n",
                "media.payload is not valid base64: Invalid symbol 10, offset 4.",
            ),
            (
                "A",
                "media.payload is not valid base64: Invalid input length: 1",
            ),
            (
                "AA=A",
                "media.payload is not valid base64: Invalid symbol 61, offset 2.",
            ),
            (
                "AB==",
                "media.payload is not valid base64: Invalid last symbol 66, offset 1.",
            ),
            (
                "AA-_",
                "media.payload is not valid base64: Invalid symbol 45, offset 2.",
            ),
        ];
        for (input, message) in bad {
            out.extend_from_slice(&[1, 2, 3]);
            assert_eq!(
                decode_payload(input, &mut out),
                Err(Refused {
                    code: ErrorCode::InvalidField,
                    message: message.to_owned()
                }),
                "{input:?}"
            );
            assert!(out.is_empty(), "{input:?} left {out:?}");
        }
        assert_eq!(
            decode_payload(&"A".repeat(MAX_PAYLOAD_BASE64_BYTES + 4), &mut out),
            Err(Refused {
                code: ErrorCode::InvalidField,
                message: "media.payload is longer than 8192 bytes of base64".to_owned()
            })
        );
    }

    #[test]
    fn decode_payload_reuses_the_buffer() {
        let mut out = Vec::with_capacity(512);
        let before = out.as_ptr();
        let chunk = "/".repeat(216); // 20 ms of PCMU: 160 bytes
        for _ in 0..3 {
            assert_eq!(decode_payload(&chunk, &mut out), Ok(()));
            assert_eq!(out.len(), 162);
            assert!(out.iter().all(|&b| b == 0xff));
        }
        assert_eq!(out.as_ptr(), before);
        assert_eq!(out.capacity(), 512);
    }

    #[test]
    fn write_media_round_trips() {
        let mut out = String::new();
        write_media("MZ1", &[0, 1, 2], &mut out);
        assert_eq!(
            out,
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"AAEC"}}"#
        );

        let audio: Vec<u8> = (0..=255).cycle().take(160 * 3).collect();
        out.reserve(1024);
        let capacity = out.capacity();
        for _ in 0..2 {
            write_media(SID, &audio, &mut out);
            assert_eq!(out.capacity(), capacity);
            let value: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
            assert_eq!(value["event"], "media");
            assert_eq!(value["streamSid"], SID);
            let payload = value["media"]["payload"].as_str().expect("payload string");
            let mut decoded = Vec::new();
            assert_eq!(decode_payload(payload, &mut decoded), Ok(()));
            assert_eq!(decoded, audio);
        }

        write_media(SID, &[], &mut out);
        assert_eq!(
            out,
            format!(r#"{{"event":"media","streamSid":"{SID}","media":{{"payload":""}}}}"#)
        );
    }

    #[test]
    fn write_mark_and_clear() {
        let mut out = String::from("left over");
        write_mark("MZ1", "greeting-done", &mut out);
        assert_eq!(
            out,
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"greeting-done"}}"#
        );
        write_clear("MZ1", &mut out);
        assert_eq!(out, r#"{"event":"clear","streamSid":"MZ1"}"#);
    }

    #[test]
    fn escaping() {
        let mut out = String::new();
        write_clear("a\"b\\c/d\ne\r\tf\u{8}\u{c}\u{0}\u{1f}\u{7f}é€😀", &mut out);
        assert_eq!(
            out,
            r#"{"event":"clear","streamSid":"a\"b\\c/d\ne\r\tf\b\f\u0000\u001f"#.to_owned()
                + "\u{7f}é€😀\"}"
        );

        let nasty = "\"\\\u{1}x\u{1b}[0m\"}], \u{2028}ü";
        write_mark(nasty, nasty, &mut out);
        let value: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(value["streamSid"], nasty);
        assert_eq!(value["mark"]["name"], nasty);

        for s in ["", "plain", "\\", "\"", "\u{0}", "end\\"] {
            let mut escaped = String::new();
            escape_into(s, &mut escaped);
            let back: String =
                serde_json::from_str(&format!("\"{escaped}\"")).expect("valid JSON string");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn audio_frames_round_trip() {
        let mut frame = vec![7; 3];
        write_audio_frame(0x1234, &[0xff, 0x7f, 0x00], &mut frame);
        assert_eq!(frame, [1, 0, 0x12, 0x34, 0xff, 0x7f, 0x00]);
        assert_eq!(
            parse_audio_frame(&frame),
            Ok((0x1234, &[0xff, 0x7f, 0x00][..]))
        );

        let payload = vec![0x55; MAX_AUDIO_PAYLOAD_BYTES];
        write_audio_frame(u16::MAX, &payload, &mut frame);
        assert_eq!(frame.len(), AUDIO_HEADER_LEN + MAX_AUDIO_PAYLOAD_BYTES);
        assert_eq!(parse_audio_frame(&frame), Ok((u16::MAX, &payload[..])));
    }

    #[test]
    fn audio_frame_errors() {
        let cases: [(Vec<u8>, &str); 7] = [
            (
                vec![],
                "audio frame is 0 bytes, shorter than its 4-byte header",
            ),
            (
                vec![1, 0, 0],
                "audio frame is 3 bytes, shorter than its 4-byte header",
            ),
            (
                vec![2, 0, 0, 1, 9],
                "audio frame version 2 is unknown; expected 1",
            ),
            (
                vec![0, 0, 0, 1, 9],
                "audio frame version 0 is unknown; expected 1",
            ),
            (
                vec![1, 1, 0, 1, 9],
                "audio frame codec 1 is not supported; expected 0 (PCMU, 8000 Hz)",
            ),
            (vec![1, 0, 0, 1], "audio frame has no payload"),
            (
                [&[1u8, 0, 0, 1][..], &[0u8; MAX_AUDIO_PAYLOAD_BYTES + 1][..]].concat(),
                "audio frame payload is 8001 bytes; at most 8000 are allowed",
            ),
        ];
        for (frame, message) in cases {
            assert_eq!(
                parse_audio_frame(&frame),
                Err(Refused {
                    code: ErrorCode::InvalidField,
                    message: message.to_owned()
                })
            );
        }
    }
}

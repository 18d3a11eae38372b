//! `/ws/media`: phone calls streamed by a telephony provider in the Twilio Media
//! Streams format. A `start` makes a voice conversation (routed like any other); the
//! caller's audio goes straight to the agent's connection (see `calls`), the agent's
//! audio comes back as outbound `media` events; `stop` (or the socket closing) ends
//! the call leg and keeps its voice signals.
//!
//! Authentication: a media token (`warmline token media NAME`) in the URL
//! (`?token=`, checked at the handshake: 401 if bad) or in
//! `start.customParameters.token` (checked at `start`: `unauthorized`, then 1008).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::audit::{self, Denial};
use super::calls::{Call, ToProvider};
use super::connection::{Flow, Link, Received};
use super::hub::{Command, ConnHandle, Outbound};
use super::{App, http_error};
use crate::core::signals::voice::Party;
use crate::core::{Channel, Id, Input, Participant, StartRequest, default_customer_name};
use crate::protocol::media::{
    Inbound, Start, decode, decode_payload, write_audio_frame, write_clear, write_mark, write_media,
};
use crate::protocol::{CloseCode, ErrorCode};

/// Custom parameters Warmline reads itself; the others become the conversation's
/// attributes (what the IVR collected).
const RESERVED: &[&str] = &["token", "identity", "queue", "conversation_id"];

/// Admission of a media stream (before the upgrade): a token in the query, when
/// given, must be valid (else it may come in the `start` event). The provider.
#[allow(clippy::result_large_err)] // the refusal is the HTTP response itself, once per upgrade
pub fn admit(app: &App, query: &HashMap<String, String>) -> Result<Option<String>, Response> {
    match query.get("token") {
        None => Ok(None),
        Some(token) => match app.keys.verify_media(token) {
            Ok(provider) => Ok(Some(provider)),
            Err(e) => {
                app.metrics.error(ErrorCode::Unauthorized);
                let message = format!("media stream token refused: {e}");
                audit::denied(
                    &app.metrics,
                    "media",
                    "unknown",
                    "connect",
                    Denial::Unauthorized,
                    &message,
                );
                Err(http_error(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    &message,
                ))
            }
        },
    }
}

pub async fn serve(mut link: Box<Link>, provider: Option<String>) {
    // Boxed: they run once; inline their state would stay part of the stream's
    // future for its whole life.
    let Some(start) = Box::pin(wait_for_start(&mut link, provider)).await else {
        return;
    };
    let Some(leg) = Box::pin(Leg::open(link, start)).await else {
        return;
    };
    leg.run().await;
}

/// Reads until a valid, authenticated `start` (within the handshake timeout).
async fn wait_for_start(link: &mut Link, provider: Option<String>) -> Option<Start> {
    let timeout = Duration::from_millis(link.app.config.limits.handshake_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let text = link.text_before(deadline, "no start in time").await?;
        let flow = match decode(&text) {
            Ok(Inbound::Connected) => Flow::Continue,
            Ok(Inbound::Start(start)) => {
                let token = start.custom_parameters.get("token");
                let known = provider
                    .clone()
                    .or_else(|| token.and_then(|t| link.app.keys.verify_media(t).ok()));
                match known {
                    Some(provider) => {
                        tracing::info!(%provider, stream = %start.stream_sid, "call stream started");
                        return Some(start);
                    }
                    None => {
                        let message = if token.is_some() {
                            "the media token in customParameters.token is not valid here"
                        } else {
                            "a media token is required: in the stream URL (?token=) or in customParameters.token"
                        };
                        let _ = link.error(None, ErrorCode::Unauthorized, message).await;
                        link.close(CloseCode::Policy, "unauthorized").await;
                        return None;
                    }
                }
            }
            Ok(_) => {
                let message = "send `start` before `media`, `dtmf`, `mark` or `stop`";
                link.error(None, ErrorCode::HelloRequired, message).await
            }
            Err(refused) => link.error(None, refused.code, &refused.message).await,
        };
        if let Flow::Close(code, reason) = flow {
            if code != CloseCode::Normal {
                link.close(code, reason).await;
            }
            return None;
        }
    }
}

/// One call leg: the stream, its conversation, and where its audio goes.
struct Leg {
    link: Box<Link>,
    conn: crate::core::ConnId,
    customer_id: Id,
    stream_sid: String,
    call: Arc<Call>,
    rx: mpsc::Receiver<Outbound>,
    from_agent: mpsc::Receiver<ToProvider>,
    slow: CancellationToken,
    /// The call joined a conversation that already existed (the customer was
    /// chatting, then phoned): when it ends the conversation goes back to chat.
    attached: bool,
    /// Reused buffers: the decoded payload, the outbound event.
    audio: Vec<u8>,
    text: String,
}

impl Leg {
    /// Registers the call and the connection, and asks the core for the conversation.
    async fn open(mut link: Box<Link>, start: Start) -> Option<Leg> {
        let app = link.app.clone();
        let params = &start.custom_parameters;
        let queue = params
            .get("queue")
            .cloned()
            .or_else(|| app.config.media.default_queue.clone())
            .or_else(|| app.config.queues.first().map(|q| q.name.clone()))
            .unwrap_or_else(|| "demo".to_owned());
        // A call for an open conversation joins it; otherwise it starts one.
        let existing = match params.get("conversation_id") {
            None => None,
            Some(id) => match app.store.conversation(id).await {
                Ok(Some(stored))
                    if stored.record.state != crate::core::ConversationState::Closed =>
                {
                    Some(stored.record)
                }
                Ok(_) => {
                    let shown: String = id.chars().take(64).collect();
                    let message = format!(
                        "customParameters.conversation_id `{shown}` names no open conversation"
                    );
                    let _ = link.error(None, ErrorCode::NotFound, &message).await;
                    link.close(CloseCode::Policy, "no such conversation").await;
                    return None;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading a conversation failed");
                    let message = "the store could not be read; call again";
                    let _ = link.error(None, ErrorCode::Unavailable, message).await;
                    link.close(CloseCode::Internal, "store unavailable").await;
                    return None;
                }
            },
        };
        // An IVR that verified the caller passes their identity token.
        let verified: Option<Id> = match params.get("identity") {
            None => None,
            Some(token) => match app.keys.verify_identity(token) {
                Ok(claims) => Some(claims.sub.trim().into()),
                Err(e) => {
                    let message = format!("customParameters.identity refused: {e}");
                    let _ = link.error(None, ErrorCode::Unauthorized, &message).await;
                    link.close(CloseCode::Policy, "unauthorized").await;
                    return None;
                }
            },
        };
        if let (Some(rec), Some(who)) = (&existing, &verified)
            && rec.customer_id != *who
        {
            let message = "that conversation belongs to another customer";
            let _ = link.error(None, ErrorCode::Forbidden, message).await;
            link.close(CloseCode::Policy, "forbidden").await;
            return None;
        }
        let customer_id: Id = match (&existing, params.get("from"), &verified) {
            (Some(rec), _, _) => rec.customer_id.clone(),
            (None, _, Some(who)) => who.clone(),
            (None, Some(from), None)
                if app.config.media.caller_id_is_customer && caller_number(from) =>
            {
                format!("tel:{from}").into()
            }
            _ => uuid::Uuid::now_v7().simple().to_string().into(),
        };
        // Trusted attributes: the customer's stored context, then what the provider
        // (the IVR) passed on this call.
        let mut context: Vec<(String, String)> = if existing.is_some() {
            Vec::new()
        } else {
            app.store
                .context(&customer_id, super::hub::now_ms())
                .await
                .unwrap_or_default()
        };
        for (key, value) in params {
            if !RESERVED.contains(&key.as_str()) && crate::config::valid_attribute(key) {
                context.retain(|(k, _)| k != key);
                context.push((key.clone(), value.clone()));
            }
        }
        // Shown to the agent: the context, every custom parameter but the reserved
        // ones (later wins), and the call's ids.
        let attributes: serde_json::Map<String, serde_json::Value> = context
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .chain(
                params
                    .iter()
                    .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))),
            )
            .chain([
                ("call_sid".to_owned(), start.call_sid.clone().into()),
                ("stream_sid".to_owned(), start.stream_sid.clone().into()),
            ])
            .collect();
        let conversation_id: Id = match &existing {
            Some(rec) => rec.id.clone(),
            None => uuid::Uuid::now_v7().simple().to_string().into(),
        };
        let frames = app.config.media.audio_queue_frames;
        let (to_provider, from_agent) = mpsc::channel(frames);
        let Some(call) = app
            .calls
            .open(conversation_id.clone(), to_provider, &app.voice)
        else {
            let message = "the gateway has no room for another call";
            let _ = link.error(None, ErrorCode::Unavailable, message).await;
            link.close(CloseCode::Internal, "no room for another call")
                .await;
            return None;
        };
        app.metrics.calls.inc();
        let history = match app.store.history(&customer_id).await {
            Ok(history) => history,
            Err(e) => {
                tracing::error!(error = %e, "reading customer history failed");
                Default::default()
            }
        };
        let conn = app.next_conn();
        let (tx, rx) = mpsc::channel(app.config.limits.outbound_queue);
        let slow = CancellationToken::new();
        let handle = ConnHandle {
            tx,
            slow: slow.clone(),
        };
        let who = Participant::Customer(customer_id.clone());
        let attached = existing.is_some();
        let window = app.config.routing.repeat_window_ms;
        let repeat_of = if attached {
            None
        } else {
            app.store
                .repeat_candidate(
                    &customer_id,
                    &queue,
                    super::hub::now_ms().saturating_sub(window),
                )
                .await
                .ok()
                .flatten()
                .map(|id| Id::from(id.as_str()))
        };
        let start_input = if attached {
            Input::Switch {
                conn,
                req: Some("start".into()),
                customer: None,
                conversation_id,
                channel: Channel::Voice,
            }
        } else {
            Input::Start(Box::new(StartRequest {
                conn,
                req: Some("start".into()),
                customer_name: default_customer_name(&customer_id),
                customer_id: customer_id.clone(),
                history,
                conversation_id,
                queue: queue.into(),
                channel: Channel::Voice,
                language: params.get("language").map(|l| Id::from(l.as_str())),
                skills: Default::default(),
                attributes: serde_json::Value::Object(attributes).to_string().into(),
                context: context
                    .iter()
                    .map(|(k, v)| (Id::from(k.as_str()), Id::from(v.as_str())))
                    .collect(),
                repeat_of,
                text: None,
            }))
        };
        let leg = Leg {
            link,
            conn,
            customer_id,
            stream_sid: start.stream_sid,
            call,
            rx,
            from_agent,
            slow,
            attached,
            audio: Vec::with_capacity(320),
            text: String::with_capacity(512),
        };
        let attached = app
            .hub
            .send(Command::Attach { conn, who, handle })
            .await
            .is_ok()
            && app.hub.send(Command::Core(start_input)).await.is_ok();
        if !attached {
            let farewell = leg.link.app.farewell();
            leg.end(Some(farewell)).await;
            return None;
        }
        Some(leg)
    }

    async fn run(mut self) {
        let shutdown = self.link.app.epoch.clone();
        let every = Duration::from_millis(self.link.app.config.media.signals_interval_ms);
        let mut signals = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let closing = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break Some(self.link.app.farewell()),
                () = self.slow.cancelled() => break Some((CloseCode::SlowConsumer, "the media stream did not keep up")),
                Some(item) = self.from_agent.recv() => {
                    if !self.write_to_provider(item).await {
                        break None;
                    }
                }
                item = self.rx.recv() => match item {
                    Some(item) => match self.on_hub(item) {
                        Flow::Continue => {}
                        Flow::Close(code, reason) => break Some((code, reason)),
                    },
                    None => break Some(self.link.app.farewell()),
                },
                received = self.link.recv() => match received {
                    Received::Text(text) => match self.on_text(&text).await {
                        Flow::Continue => {}
                        Flow::Close(CloseCode::Normal, "stop") => break Some((CloseCode::Normal, "call ended")),
                        Flow::Close(code, reason) => break Some((code, reason)),
                    },
                    Received::Nothing | Received::Binary(_) => {}
                    Received::Gone => break None,
                    Received::Close(code, reason) => break Some((code, reason)),
                },
                _ = signals.tick() => {
                    let input = Input::VoiceSignals {
                        conversation_id: self.call.conversation_id.clone(),
                        signals: self.call.signals(),
                        ended: false,
                    };
                    let _ = self.link.app.hub.try_send(Command::Core(input));
                }
            }
        };
        self.end(closing).await;
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let event = match decode(text) {
            Ok(event) => event,
            Err(refused) => return self.link.error(None, refused.code, &refused.message).await,
        };
        match event {
            Inbound::Media(media) => {
                if media.stream_sid != self.stream_sid {
                    return self.unknown_stream(media.stream_sid).await;
                }
                if let Err(refused) = decode_payload(media.payload, &mut self.audio) {
                    return self.link.error(None, refused.code, &refused.message).await;
                }
                let call = &self.call;
                call.measure(Party::Caller, media.timestamp, &self.audio);
                let app = &self.link.app;
                if let Some(agent) = call.agent() {
                    let mut frame = Vec::with_capacity(4 + self.audio.len());
                    write_audio_frame(call.handle, &self.audio, &mut frame);
                    let frame = Bytes::from(frame);
                    let dropped = app.agent_audio.send(&agent, &frame);
                    app.metrics.audio.to_agent.inc();
                    if dropped > 0 {
                        app.metrics.audio.to_agent_dropped.inc_by(dropped);
                    }
                }
                Flow::Continue
            }
            Inbound::Dtmf(dtmf) => {
                if dtmf.stream_sid != self.stream_sid {
                    return self.unknown_stream(&dtmf.stream_sid).await;
                }
                let input = Input::Dtmf {
                    conversation_id: self.call.conversation_id.clone(),
                    digit: dtmf.digit,
                };
                self.submit(input).await
            }
            Inbound::Mark(mark) => {
                if mark.stream_sid != self.stream_sid {
                    return self.unknown_stream(&mark.stream_sid).await;
                }
                // Playback reached the agent's mark: tell the agent.
                if let Some(agent) = self.call.agent() {
                    let frame = serde_json::json!({
                        "type": "mark",
                        "conversation_id": &*self.call.conversation_id,
                        "name": mark.name,
                    })
                    .to_string();
                    let command = Command::Relay {
                        to: Participant::Agent(agent),
                        conversation_id: self.call.conversation_id.clone(),
                        frame: frame.into(),
                    };
                    let _ = self.link.app.hub.send(command).await;
                }
                Flow::Continue
            }
            Inbound::Stop(stop) => {
                if stop.stream_sid != self.stream_sid {
                    return self.unknown_stream(&stop.stream_sid).await;
                }
                Flow::Close(CloseCode::Normal, "stop")
            }
            Inbound::Connected => Flow::Continue,
            Inbound::Start(_) => {
                let message = "this stream already started; one `start` per connection";
                self.link.error(None, ErrorCode::Conflict, message).await
            }
        }
    }

    async fn unknown_stream(&mut self, sid: &str) -> Flow {
        let shown: String = sid.chars().take(64).collect();
        let message = format!(
            "unknown streamSid `{shown}`: this connection carries stream `{}`",
            self.stream_sid
        );
        self.link.error(None, ErrorCode::NotFound, &message).await
    }

    async fn submit(&mut self, input: Input) -> Flow {
        if self.link.app.hub.send(Command::Core(input)).await.is_ok() {
            Flow::Continue
        } else {
            let (code, reason) = self.link.app.farewell();
            Flow::Close(code, reason)
        }
    }

    /// What the core says to the caller's side: only an error to `start` and the end of
    /// the conversation matter to a phone stream; the rest is for screens.
    fn on_hub(&mut self, item: Outbound) -> Flow {
        let frame = match &item {
            Outbound::Frame(frame) => frame,
            Outbound::Event(event) => &event.frame,
            _ => return Flow::Continue,
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(frame.as_str()) else {
            return Flow::Continue;
        };
        let conversation = value.get("conversation_id").and_then(|c| c.as_str());
        match value.get("type").and_then(|t| t.as_str()) {
            Some("error") if value.get("id").and_then(|i| i.as_str()) == Some("start") => {
                let message = value
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("the call could not start");
                tracing::warn!(%message, "call refused");
                Flow::Close(CloseCode::Policy, "the call could not start")
            }
            Some("closed") if conversation == Some(&*self.call.conversation_id) => {
                Flow::Close(CloseCode::Normal, "the conversation was closed")
            }
            _ => Flow::Continue,
        }
    }

    /// Writes what the agent side sent to the provider. `false`: the provider is gone.
    async fn write_to_provider(&mut self, item: ToProvider) -> bool {
        self.text.clear();
        match item {
            ToProvider::Audio(audio) => write_media(&self.stream_sid, &audio, &mut self.text),
            ToProvider::Mark(name) => write_mark(&self.stream_sid, &name, &mut self.text),
            ToProvider::Clear => write_clear(&self.stream_sid, &mut self.text),
        }
        let frame = std::mem::take(&mut self.text);
        let sent = self.link.send(frame.into()).await;
        self.text = String::with_capacity(512);
        sent
    }

    /// Ends the leg: keeps its voice signals, ends a conversation that began with this
    /// call, and lets go of the call and the connection.
    async fn end(mut self, closing: Option<(CloseCode, &'static str)>) {
        let app = self.link.app.clone();
        let signals = self.call.finish();
        let conversation_id = self.call.conversation_id.clone();
        let kept = Input::VoiceSignals {
            conversation_id: conversation_id.clone(),
            signals,
            ended: true,
        };
        let _ = app.hub.send(Command::Core(kept)).await;
        // A call that joined a chat hands it back to chat; a call that started the
        // conversation ends it (the caller hung up).
        let after = if self.attached {
            Input::Switch {
                conn: self.conn,
                req: None,
                customer: None,
                conversation_id,
                channel: Channel::Chat,
            }
        } else {
            Input::End {
                conn: self.conn,
                req: None,
                customer_id: self.customer_id.clone(),
                conversation_id,
            }
        };
        let _ = app.hub.send(Command::Core(after)).await;
        app.calls.close(&self.call);
        app.metrics.calls.dec();
        if let Some((code, reason)) = closing {
            self.link.close(code, reason).await;
        }
        let _ = app
            .hub
            .send(Command::Detach {
                conn: self.conn,
                who: Participant::Customer(self.customer_id.clone()),
            })
            .await;
    }
}

/// A caller number worth treating as a customer id: E.164-like digits.
fn caller_number(from: &str) -> bool {
    let digits = from.strip_prefix('+').unwrap_or(from);
    (4..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

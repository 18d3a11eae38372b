//! `/ws/agent`: JWT at the handshake (401 before the upgrade on a bad or expired
//! token), then agent frames translated into core inputs.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::audit::{self, Denial};
use super::auth::{TokenError, unix_now};
use super::calls::{Call, ToProvider};
use super::connection::{Flow, Link, Session, Side};
use super::limits::{Place, Principal};
use super::{App, encode, http_error};
use crate::core::TransferTarget;
use crate::core::signals::voice::Party;
use crate::core::{Id, Input, Participant, Resolution};
use crate::protocol::client::{
    AgentState as WireState, Resolution as WireResolution, TransferMode, TransferTo as WireTo,
};
use crate::protocol::media::{AUDIO_HEADER_LEN, parse_audio_frame};
use crate::protocol::{AgentFrame, CloseCode, ErrorCode, decode_agent};

/// Admission of an agent connection (before the upgrade): a valid, unrevoked token
/// naming a known agent, who has a connection place left. The agent, when the token
/// expires, and the place.
#[allow(clippy::result_large_err)] // the refusal is the HTTP response itself, once per upgrade
pub fn admit(
    app: &App,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(Id, tokio::time::Instant, Place), Response> {
    let refuse = |who: &str, why: Denial, message: &str| {
        audit::denied(&app.metrics, "agent", who, "connect", why, message);
        let (status, code) = match why {
            Denial::TooManyConnections => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            _ => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
        };
        app.metrics.error(code);
        http_error(status, code, message)
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = query.get("token").map(String::as_str).or(bearer) else {
        return Err(refuse(
            "unknown",
            Denial::Unauthorized,
            "an agent token is required: ?token=JWT or Authorization: Bearer JWT",
        ));
    };
    let claims = match app.keys.verify_agent(token) {
        Ok(claims) => claims,
        Err(e) => {
            let message = match e {
                TokenError::Expired => e.to_string(),
                TokenError::Invalid(_) => {
                    "the agent token is not valid (wrong signature, algorithm, audience, issuer or format)"
                        .to_owned()
                }
            };
            return Err(refuse("unknown", Denial::Unauthorized, &message));
        }
    };
    let known = app
        .known_agents
        .read()
        .is_ok_and(|agents| agents.contains(&claims.sub));
    if !known {
        return Err(refuse(
            &claims.sub,
            Denial::Unauthorized,
            "the token names an agent this gateway does not know",
        ));
    }
    if app.limits.is_revoked(&claims.sub, claims.iat) {
        return Err(refuse(
            &claims.sub,
            Denial::Revoked,
            "this agent's access was revoked after the token was issued; sign in again for a new token",
        ));
    }
    let agent_id: Id = claims.sub.into();
    if let Err(retry) = app.limits.cooling(&Principal::Agent(agent_id.clone())) {
        let message = format!(
            "this agent's last connection was closed for abuse (over the frame rate or too many bad frames); connect again in {} ms",
            retry.ms()
        );
        audit::denied(
            &app.metrics,
            "agent",
            &agent_id,
            "connect",
            Denial::RateLimited,
            "cooling off after an abuse close",
        );
        app.metrics.error(ErrorCode::RateLimited);
        return Err(super::rate_limited_response(retry, &message));
    }
    let place = match app.limits.open(Principal::Agent(agent_id.clone())) {
        Ok(place) => place,
        Err(limit) => {
            let message = format!(
                "this agent already has {limit} connections open (the most allowed); close one first"
            );
            return Err(refuse(&agent_id, Denial::TooManyConnections, &message));
        }
    };
    let expires_at =
        tokio::time::Instant::now() + Duration::from_secs(claims.exp.saturating_sub(unix_now()));
    Ok((agent_id, expires_at, place))
}

pub async fn serve(
    mut link: Box<Link>,
    agent_id: Id,
    expires_at: tokio::time::Instant,
    place: Place,
) {
    link.who = agent_id.clone();
    link.hold(place, 0);
    let side = Side::Agent {
        agent_id,
        expires_at,
    };
    // Boxed: it runs once (the welcome with every conversation's context); inline
    // it would stay part of the connection's future for its whole life.
    if let Some(session) = Box::pin(Session::start(link, side)).await {
        session.run().await;
    }
}

pub async fn on_text(session: &mut Session, text: &str) -> Flow {
    let max_text = session.link.app.config.limits.max_message_bytes;
    let frame = match decode_agent(text, max_text) {
        Ok(frame) => frame,
        Err(r) => {
            return session
                .link
                .error(r.id.as_deref(), r.code, &r.message)
                .await;
        }
    };
    let Side::Agent { agent_id, .. } = &session.side else {
        return Flow::Close(CloseCode::Internal, "internal error");
    };
    let agent_id = agent_id.clone();
    let conn = session.conn;
    let input = match frame {
        AgentFrame::Status { id, state } => Input::SetStatus {
            conn,
            req: id.map(Id::from),
            agent_id,
            available: state == WireState::Available,
        },
        AgentFrame::Accept { id, offer_id } => Input::Accept {
            conn,
            req: id.map(Id::from),
            agent_id,
            offer_id: offer_id.into(),
        },
        AgentFrame::Reject {
            id,
            offer_id,
            reason,
        } => Input::Reject {
            conn,
            req: id.map(Id::from),
            agent_id,
            offer_id: offer_id.into(),
            reason: reason.map(Into::into),
        },
        AgentFrame::Message {
            id,
            conversation_id,
            text,
            client_msg_id,
        } => session.post(id, conversation_id, text, client_msg_id),
        AgentFrame::Typing {
            conversation_id,
            on,
            ..
        } => Input::Typing {
            from: Participant::Agent(agent_id),
            conversation_id: conversation_id.into(),
            on,
        },
        AgentFrame::Resume {
            id,
            conversation_id,
            last_seq,
        } => {
            return session
                .resume(id.as_deref(), &conversation_id, last_seq)
                .await;
        }
        AgentFrame::Transfer {
            id,
            conversation_id,
            to,
            mode,
            note,
        } => Input::Transfer {
            conn,
            req: id.map(Id::from),
            agent_id,
            conversation_id: conversation_id.into(),
            to: match to {
                WireTo::Queue(q) => TransferTarget::Queue(q.into()),
                WireTo::Agent(a) => TransferTarget::Agent(a.into()),
            },
            warm: mode == TransferMode::Warm,
            note: note.map(Into::into),
        },
        AgentFrame::Rtc {
            id,
            conversation_id,
            payload,
        } => Input::Rtc {
            conn,
            req: id.map(Id::from),
            from: Participant::Agent(agent_id),
            conversation_id: conversation_id.into(),
            payload: serde_json::Value::Object(payload).to_string().into(),
        },
        AgentFrame::Hold {
            id,
            conversation_id,
            on,
        } => {
            return call_control(session, id.as_deref(), &conversation_id, |call| {
                call.hold(on);
            })
            .await;
        }
        AgentFrame::Clear {
            id,
            conversation_id,
        } => {
            return call_control(session, id.as_deref(), &conversation_id, |call| {
                call.to_provider(ToProvider::Clear);
            })
            .await;
        }
        AgentFrame::Mark {
            id,
            conversation_id,
            name,
        } => {
            return call_control(session, id.as_deref(), &conversation_id, move |call| {
                call.to_provider(ToProvider::Mark(name));
            })
            .await;
        }
        AgentFrame::Close {
            id,
            conversation_id,
            resolution,
            note,
            follow_up_at,
        } => {
            let follow_up_at = match follow_up_time(resolution, follow_up_at.as_deref()) {
                Ok(at) => at,
                Err(message) => {
                    return session
                        .link
                        .error(id.as_deref(), ErrorCode::InvalidField, &message)
                        .await;
                }
            };
            Input::Close {
                conn,
                req: id.map(Id::from),
                agent_id,
                conversation_id: conversation_id.into(),
                resolution: match resolution {
                    WireResolution::Resolved => Resolution::Resolved,
                    WireResolution::Unresolved => Resolution::Unresolved,
                    WireResolution::FollowUp => Resolution::FollowUp,
                },
                note: note.map(Into::into),
                follow_up_at,
            }
        }
    };
    if session.submit(input).await {
        Flow::Continue
    } else {
        let (code, reason) = session.link.app.farewell();
        Flow::Close(code, reason)
    }
}

/// `hold`, `clear`, `mark`: applied to the live call on a conversation this agent
/// holds, then acked.
async fn call_control(
    session: &mut Session,
    id: Option<&str>,
    conversation_id: &str,
    apply: impl FnOnce(&Call),
) -> Flow {
    let Side::Agent { agent_id, .. } = &session.side else {
        return Flow::Close(CloseCode::Internal, "internal error");
    };
    let call = session.link.app.calls.by_conversation(conversation_id);
    match call {
        Some(call) if call.agent().as_ref() == Some(agent_id) => {
            apply(&call);
            let frame = encode::ack(id, Some(conversation_id), None);
            if session.link.send(frame.into()).await {
                Flow::Continue
            } else {
                Flow::Close(CloseCode::Normal, "")
            }
        }
        Some(_) => {
            let message = "that call is not yours";
            session.link.error(id, ErrorCode::Forbidden, message).await
        }
        None => {
            let message = "there is no live call on that conversation";
            session.link.error(id, ErrorCode::NotFound, message).await
        }
    }
}

/// A binary frame from the agent: audio for a call they hold (see PROTOCOL.md, Voice).
/// It is measured (agent talk time, crosstalk) and queued for the provider; audio the
/// provider's queue cannot take is dropped and counted, never buffered without bound.
pub async fn on_audio(session: &mut Session, frame: Bytes) -> Flow {
    let (handle, len) = match parse_audio_frame(&frame) {
        Ok((handle, payload)) => (handle, payload.len()),
        Err(refused) => {
            return session
                .link
                .error(None, refused.code, &refused.message)
                .await;
        }
    };
    let Side::Agent { agent_id, .. } = &session.side else {
        return Flow::Close(CloseCode::Internal, "internal error");
    };
    let app = session.link.app.clone();
    match app.calls.by_handle(handle) {
        Some(call) if call.agent().as_ref() == Some(agent_id) => {
            let payload = frame.slice(AUDIO_HEADER_LEN..AUDIO_HEADER_LEN + len);
            call.measure(Party::Agent, call.elapsed_ms(), &payload);
            let audio = &app.metrics.audio;
            if call.to_provider(ToProvider::Audio(payload)) {
                audio.to_provider.inc();
            } else {
                audio.to_provider_dropped.inc();
            }
            Flow::Continue
        }
        Some(_) => {
            let message = format!("call handle {handle} is not one of your calls");
            session
                .link
                .error(None, ErrorCode::Forbidden, &message)
                .await
        }
        None => {
            let message = format!("there is no live call with handle {handle}");
            session
                .link
                .error(None, ErrorCode::NotFound, &message)
                .await
        }
    }
}

/// Longest a follow-up may be scheduled ahead.
const MAX_FOLLOW_UP_AHEAD_MS: u64 = 90 * 24 * 3600 * 1000;

/// `follow_up_at` of a `close`: required with `follow_up` (RFC 3339, in the future,
/// within 90 days), refused with any other resolution.
fn follow_up_time(
    resolution: WireResolution,
    at: Option<&str>,
) -> Result<Option<crate::core::Millis>, String> {
    match (resolution, at) {
        (WireResolution::FollowUp, None) => {
            Err("`follow_up` needs `follow_up_at` (RFC 3339, e.g. 2026-11-24T09:00:00Z)".into())
        }
        (WireResolution::FollowUp, Some(at)) => {
            let when = humantime::parse_rfc3339_weak(at)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_millis()).ok())
                .ok_or_else(|| {
                    format!(
                        "`follow_up_at` `{at}` is not an RFC 3339 time, e.g. 2026-11-24T09:00:00Z"
                    )
                })?;
            let now = super::hub::now_ms();
            if when <= now {
                return Err("`follow_up_at` must be in the future".into());
            }
            if when > now + MAX_FOLLOW_UP_AHEAD_MS {
                return Err("`follow_up_at` is at most 90 days ahead".into());
            }
            Ok(Some(when))
        }
        (_, Some(_)) => Err("`follow_up_at` goes with `resolution: \"follow_up\"` only".into()),
        (_, None) => Ok(None),
    }
}

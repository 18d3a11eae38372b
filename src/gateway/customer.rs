//! `/ws/customer`: the Origin check before the upgrade, the `hello` exchange, and
//! customer frames translated into core inputs.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::audit::{self, Denial};
use super::connection::{Flow, HISTORY_LIMIT, Link, Session, Side};
use super::hub::Command;
use super::hub::now_ms;
use super::limits::{Principal, RetryAfter};
use super::{App, encode, http_error};
use crate::core::{Channel, Id, Input, Participant, StartRequest, default_customer_name};
use crate::protocol::client::Channel as WireChannel;
use crate::protocol::{CloseCode, CustomerFrame, ErrorCode, decode_customer};
use crate::store::{StartFacts, Survey, SurveyOutcome};

/// Admission of a customer connection (before the upgrade): the Origin check.
#[allow(clippy::result_large_err)] // the refusal is the HTTP response itself, once per upgrade
pub fn admit(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    origin_allowed(app, headers).map_err(|message| {
        audit::denied(
            &app.metrics,
            "customer",
            "unknown",
            "connect",
            Denial::Forbidden,
            &message,
        );
        app.metrics.error(ErrorCode::Forbidden);
        http_error(StatusCode::FORBIDDEN, ErrorCode::Forbidden, &message)
    })
}

fn origin_allowed(app: &App, headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return if app.config.customer.allow_missing_origin {
            Ok(())
        } else {
            Err("an Origin header is required on /ws/customer".to_owned())
        };
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let allowed = app
        .config
        .customer
        .allowed_origins
        .iter()
        .any(|a| match a.as_str() {
            "*" => true,
            "self" => {
                !host.is_empty()
                    && (origin == format!("http://{host}") || origin == format!("https://{host}"))
            }
            exact => origin.eq_ignore_ascii_case(exact),
        });
    if allowed {
        Ok(())
    } else {
        let shown: String = origin.chars().take(100).collect();
        Err(format!(
            "origin `{shown}` is not allowed to open a customer connection"
        ))
    }
}

pub async fn serve(mut link: Box<Link>) {
    // The handshake and the session's start are boxed: they run once, and inline
    // their state would stay part of the connection's future for its whole life.
    let Some((side, merge_from)) = Box::pin(hello(&mut link)).await else {
        return;
    };
    let Side::Customer { customer_id, .. } = &side else {
        return;
    };
    let principal = Principal::Customer(customer_id.clone());
    if let Err(retry) = link.app.limits.cooling(&principal) {
        cooling_off(&mut link, customer_id, retry).await;
        return;
    }
    match link
        .app
        .limits
        .open(Principal::Customer(customer_id.clone()))
    {
        Ok(place) => link.hold(place, 1), // the hello
        Err(limit) => {
            let message = format!(
                "this customer already has {limit} connections open (the most allowed); close one and connect again"
            );
            audit::denied(
                &link.app.metrics,
                "customer",
                customer_id,
                "hello",
                Denial::TooManyConnections,
                &message,
            );
            link.app.metrics.error(ErrorCode::RateLimited);
            let frame = encode::error(None, ErrorCode::RateLimited, &message);
            if link.send(frame.into()).await {
                link.close(CloseCode::Policy, "too many connections for this customer")
                    .await;
            }
            return;
        }
    }
    link.who = customer_id.clone();
    // A verified customer is known from now on; an anonymous visitor who identified
    // brings their conversations (applied by the hub before the welcome, which then
    // lists them).
    let first = match (merge_from, &side) {
        (
            Identified::Merging(from),
            Side::Customer {
                customer_id,
                display_name,
                ..
            },
        ) => Some(Input::MergeCustomer {
            from,
            into: customer_id.clone(),
            name: display_name.clone(),
        }),
        (
            Identified::Yes,
            Side::Customer {
                customer_id,
                display_name,
                ..
            },
        ) => Some(Input::CustomerSeen {
            customer_id: customer_id.clone(),
            name: display_name.clone(),
        }),
        _ => None,
    };
    if let Some(input) = first
        && link.app.hub.send(Command::Core(input)).await.is_err()
    {
        let (code, reason) = link.app.farewell();
        link.close(code, reason).await;
        return;
    }
    if let Some(session) = Box::pin(Session::start(link, side)).await {
        session.run().await;
    }
}

/// A customer closed for abuse came back before the cooldown ended: told when to try
/// again, then closed (which counts against their address too).
async fn cooling_off(link: &mut Link, customer_id: &Id, retry: RetryAfter) {
    let message = format!(
        "this customer's last connection was closed for abuse; connect again in {} ms",
        retry.ms()
    );
    audit::denied(
        &link.app.metrics,
        "customer",
        customer_id,
        "hello",
        Denial::RateLimited,
        "cooling off after an abuse close",
    );
    link.app.metrics.error(ErrorCode::RateLimited);
    link.app.limits.abused(None, link.ip);
    let frame = encode::rate_limited(None, &message, retry.ms());
    if link.send(frame.into()).await {
        link.close(CloseCode::Policy, "cooling off after abuse")
            .await;
    }
}

/// How a `hello` named the customer.
enum Identified {
    /// An anonymous visitor.
    No,
    /// A verified customer.
    Yes,
    /// A verified customer who was this anonymous visitor until now.
    Merging(Id),
}

/// Waits for `hello` (within the handshake timeout) and names the customer: verified
/// by an identity token, or an anonymous visitor (known by their visitor token, or
/// new). With both a valid visitor token and an identity, the visitor is merged into
/// the customer (the second value).
async fn hello(link: &mut Link) -> Option<(Side, Identified)> {
    let limits = &link.app.config.limits;
    let deadline = Instant::now() + Duration::from_millis(limits.handshake_timeout_ms);
    let max_text = limits.max_message_bytes;
    loop {
        let text = link
            .text_before(deadline.into(), "no hello in time")
            .await?;
        let flow = match decode_customer(&text, max_text) {
            Ok(CustomerFrame::Hello {
                id,
                visitor_token,
                identity,
            }) => {
                let keys = &link.app.keys;
                let visitor = visitor_token.as_deref().map(|t| keys.verify_visitor(t));
                match (identity, visitor) {
                    (Some(_), _) if !keys.identity_enabled() => {
                        let message = "identity tokens are not enabled on this gateway (auth.identity_secret); send hello without identity";
                        link.error(id.as_deref(), ErrorCode::InvalidField, message)
                            .await
                    }
                    (_, Some(Err(_))) => {
                        let message = "the visitor token is not valid here; send hello without it to start as a new visitor";
                        link.error(id.as_deref(), ErrorCode::Unauthorized, message)
                            .await
                    }
                    (Some(identity), visitor) => match keys.verify_identity(&identity) {
                        Ok(claims) => {
                            let customer_id: Id = claims.sub.trim().into();
                            let (visitor_token, merge_from) = match visitor {
                                Some(Ok(visitor_id)) => (
                                    keys.mint_visitor(&visitor_id),
                                    Identified::Merging(visitor_id.as_str().into()),
                                ),
                                _ => {
                                    let fresh = uuid::Uuid::now_v7().simple().to_string();
                                    (keys.mint_visitor(&fresh), Identified::Yes)
                                }
                            };
                            return Some((
                                Side::Customer {
                                    customer_id,
                                    visitor_token,
                                    display_name: claims.name.map(|n| Id::from(n.as_str())),
                                },
                                merge_from,
                            ));
                        }
                        Err(e) => {
                            let message = format!("identity token refused: {e}");
                            link.error(id.as_deref(), ErrorCode::Unauthorized, &message)
                                .await
                        }
                    },
                    (None, Some(Ok(customer_id))) => {
                        // A fresh token (a fresh expiry) at every welcome.
                        let token = keys.mint_visitor(&customer_id);
                        return Some((
                            Side::Customer {
                                customer_id: customer_id.into(),
                                visitor_token: token,
                                display_name: None,
                            },
                            Identified::No,
                        ));
                    }
                    (None, None) => {
                        let customer_id = uuid::Uuid::now_v7().simple().to_string();
                        let token = keys.mint_visitor(&customer_id);
                        return Some((
                            Side::Customer {
                                customer_id: customer_id.into(),
                                visitor_token: token,
                                display_name: None,
                            },
                            Identified::No,
                        ));
                    }
                }
            }
            Ok(frame) => {
                let message = "say hello first: {\"type\":\"hello\"}";
                link.error(frame.id(), ErrorCode::HelloRequired, message)
                    .await
            }
            Err(rejected) => {
                link.error(rejected.id.as_deref(), rejected.code, &rejected.message)
                    .await
            }
        };
        if let Flow::Close(code, reason) = flow {
            if code != CloseCode::Normal {
                link.close(code, reason).await;
            }
            return None;
        }
    }
}

/// `history`: the customer's own conversations, newest first (read a transcript with
/// `resume`), then the `ack`.
async fn own_history(session: &mut Session, customer_id: &str, id: Option<&str>) -> Flow {
    let store = session.link.app.store.clone();
    match store.past_conversations(customer_id, HISTORY_LIMIT).await {
        Ok(past) => {
            let sent = session.link.send(encode::history(id, &past).into()).await
                && (id.is_none() || session.link.send(encode::ack(id, None, None).into()).await);
            if sent {
                Flow::Continue
            } else {
                Flow::Close(CloseCode::Normal, "")
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a customer's history failed");
            let message = "the store could not be read; try again";
            session
                .link
                .error(id, ErrorCode::Unavailable, message)
                .await
        }
    }
}

/// Keeps a survey answer (durable before the ack); the store checks that the
/// conversation is the customer's and closed.
async fn survey_answer(session: &mut Session, id: Option<&str>, survey: &Survey) -> Flow {
    let (code, message) = match session.link.app.store.record_survey(survey).await {
        Ok(SurveyOutcome::Recorded) => {
            session
                .link
                .app
                .metrics
                .experience
                .survey(survey.csat, survey.effort);
            let frame = encode::ack(id, Some(&survey.conversation_id), None);
            if !session.link.send(frame.into()).await {
                return Flow::Close(CloseCode::Normal, "");
            }
            tell_agent(&session.link.app, survey).await;
            return Flow::Continue;
        }
        Ok(SurveyOutcome::AlreadyAnswered) => (
            ErrorCode::Conflict,
            "this conversation's survey was already answered",
        ),
        Ok(SurveyOutcome::NotFound) => (ErrorCode::NotFound, "there is no such conversation"),
        Ok(SurveyOutcome::NotYours) => (ErrorCode::Forbidden, "that conversation is not yours"),
        Ok(SurveyOutcome::NotClosed) => (
            ErrorCode::Conflict,
            "a survey is answered after the conversation closes",
        ),
        Err(e) => {
            tracing::error!(error = %e, "storing a survey failed");
            (
                ErrorCode::Unavailable,
                "the store could not keep the answer; try again",
            )
        }
    };
    session.link.error(id, code, message).await
}

/// The agent who had the conversation sees the customer's own answer (instead of the
/// estimate) on the connections that still follow it. Best effort: the answer is
/// stored, and reports read it from there.
async fn tell_agent(app: &App, survey: &Survey) {
    let agent = match app.store.conversation(&survey.conversation_id).await {
        Ok(Some(stored)) => stored.record.agent_id,
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading a surveyed conversation failed");
            None
        }
    };
    if let Some(agent) = agent {
        let command = Command::Relay {
            to: Participant::Agent(agent),
            conversation_id: survey.conversation_id.as_str().into(),
            frame: encode::survey(survey).into(),
        };
        let _ = app.hub.send(command).await;
    }
}

/// A `start` over the customer's hourly allowance: refused with the time to wait.
async fn starts_over_rate(
    session: &mut Session,
    customer_id: &str,
    id: Option<&str>,
    retry: RetryAfter,
) -> Flow {
    let app = session.link.app.clone();
    let per_hour = app.limits.config().starts_per_customer_per_hour;
    audit::denied(
        &app.metrics,
        "customer",
        customer_id,
        "start",
        Denial::RateLimited,
        "conversations started per hour",
    );
    app.metrics.error(ErrorCode::RateLimited);
    let message = format!(
        "at most {per_hour} conversations can be started in an hour; the next can start in {} s (messages in your open conversations still go through)",
        retry.secs()
    );
    let frame = encode::rate_limited(id, &message, retry.ms());
    if session.link.send(frame.into()).await {
        Flow::Continue
    } else {
        Flow::Close(CloseCode::Normal, "")
    }
}

pub async fn on_text(session: &mut Session, text: &str) -> Flow {
    let max_text = session.link.app.config.limits.max_message_bytes;
    let frame = match decode_customer(text, max_text) {
        Ok(frame) => frame,
        Err(r) => {
            return session
                .link
                .error(r.id.as_deref(), r.code, &r.message)
                .await;
        }
    };
    let Side::Customer {
        customer_id,
        display_name,
        ..
    } = &session.side
    else {
        return Flow::Close(CloseCode::Internal, "internal error");
    };
    let customer_id = customer_id.clone();
    let display_name = display_name.clone();
    let conn = session.conn;
    let input = match frame {
        CustomerFrame::Hello { id, .. } => {
            let message = "hello was already said on this connection";
            return session
                .link
                .error(id.as_deref(), ErrorCode::Conflict, message)
                .await;
        }
        CustomerFrame::Start {
            id,
            queue,
            channel,
            language,
            skills,
            attributes,
            text,
        } => {
            if let Err(retry) = session.link.app.limits.start_by(&customer_id) {
                return starts_over_rate(session, &customer_id, id.as_deref(), retry).await;
            }
            // Who this customer is to us (routing by history), the context an IVR or
            // bot attached (trusted: shown with the customer's own attributes, winning
            // on a clash, and the only input of the queue's rules), and whether this is
            // a repeat of a conversation on this queue within the window: one read.
            let now = now_ms();
            let since = now.saturating_sub(session.link.app.config.routing.repeat_window_ms);
            let facts = match session
                .link
                .app
                .store
                .start_facts(&customer_id, &queue, since, now)
                .await
            {
                Ok(facts) => facts,
                Err(e) => {
                    tracing::error!(error = %e, "reading what a start needs failed");
                    let message = "the store could not be read; try again";
                    return session
                        .link
                        .error(id.as_deref(), ErrorCode::Unavailable, message)
                        .await;
                }
            };
            let StartFacts {
                history,
                context,
                repeat_of,
            } = facts;
            let repeat_of = repeat_of.map(|id| Id::from(id.as_str()));
            let mut attributes = attributes.unwrap_or_default();
            // The name a customer gave (the widget's pre-chat form) names them to the
            // agent when no verified identity does; it stays in the attributes too.
            let display_name = display_name.or_else(|| {
                attributes
                    .get("name")
                    .and_then(|v| v.as_str())
                    .map(|n| {
                        n.chars()
                            .filter(|c| !c.is_control())
                            .take(64)
                            .collect::<String>()
                    })
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .map(Id::from)
            });
            for (key, value) in &context {
                attributes.insert(key.clone(), serde_json::Value::String(value.clone()));
            }
            let attributes = serde_json::Value::Object(attributes).to_string();
            Input::Start(Box::new(StartRequest {
                conn,
                req: id.map(Id::from),
                customer_name: display_name.unwrap_or_else(|| default_customer_name(&customer_id)),
                customer_id,
                history,
                conversation_id: uuid::Uuid::now_v7().simple().to_string().into(),
                queue: queue.into(),
                channel: match channel {
                    WireChannel::Chat => Channel::Chat,
                    WireChannel::Voice => Channel::Voice,
                },
                language: language.map(Id::from),
                skills: skills.unwrap_or_default(),
                attributes: attributes.into(),
                context: context
                    .into_iter()
                    .map(|(k, v)| (Id::from(k.as_str()), Id::from(v.as_str())))
                    .collect(),
                repeat_of,
                text: text.map(Into::into),
            }))
        }
        CustomerFrame::Message {
            id,
            conversation_id,
            text,
            client_msg_id,
        } => session.post(id, conversation_id, text, client_msg_id),
        CustomerFrame::Typing {
            conversation_id,
            on,
            ..
        } => Input::Typing {
            from: Participant::Customer(customer_id),
            conversation_id: conversation_id.into(),
            on,
        },
        CustomerFrame::Resume {
            id,
            conversation_id,
            last_seq,
        } => {
            return session
                .resume(id.as_deref(), &conversation_id, last_seq)
                .await;
        }
        CustomerFrame::Survey {
            id,
            conversation_id,
            csat,
            effort,
            resolved,
            comment,
        } => {
            let survey = Survey {
                conversation_id,
                customer_id: customer_id.to_string(),
                csat,
                effort,
                resolved,
                comment,
                at: now_ms(),
            };
            return survey_answer(session, id.as_deref(), &survey).await;
        }
        CustomerFrame::History { id } => {
            return own_history(session, &customer_id, id.as_deref()).await;
        }
        CustomerFrame::Switch {
            id,
            conversation_id,
            channel,
        } => Input::Switch {
            conn,
            req: id.map(Id::from),
            customer: Some(customer_id),
            conversation_id: conversation_id.into(),
            channel: match channel {
                WireChannel::Chat => Channel::Chat,
                WireChannel::Voice => Channel::Voice,
            },
        },
        CustomerFrame::Rtc {
            id,
            conversation_id,
            payload,
        } => Input::Rtc {
            conn,
            req: id.map(Id::from),
            from: Participant::Customer(customer_id),
            conversation_id: conversation_id.into(),
            payload: serde_json::Value::Object(payload).to_string().into(),
        },
        CustomerFrame::End {
            id,
            conversation_id,
        } => Input::End {
            conn,
            req: id.map(Id::from),
            customer_id,
            conversation_id: conversation_id.into(),
        },
    };
    if session.submit(input).await {
        Flow::Continue
    } else {
        let (code, reason) = session.link.app.farewell();
        Flow::Close(code, reason)
    }
}

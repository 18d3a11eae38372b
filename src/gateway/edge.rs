//! A node that does not own routing (several nodes, docs/scaling.md): it holds
//! WebSockets and relays their frames to the owner and back through the backplane.
//! The owner admits each socket (the upgrade waits for its answer) and serves it
//! exactly as one of its own; here a socket is only a pump.
//!
//! When the owner changes, this node loses the backplane, or the owner no longer
//! knows a socket, the socket is closed with 1012: the client reconnects (to any
//! node) and resumes from its last `seq`, resending what was not acked. Frames on
//! the backplane are at-most-once; resuming from the store is what makes delivery
//! whole again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::Socket;
use super::metrics::Metrics;
use super::remote::ToNode;
use super::{encode, http_error, limit_upgrade, not_an_upgrade};
use crate::backplane::envelope::{Endpoint, Frame, Opening};
use crate::config::Config;
use crate::protocol::{CloseCode, ErrorCode};

const RESTART: (CloseCode, &str) = (
    CloseCode::ServiceRestart,
    "the gateway cluster changed; reconnect and resume",
);

enum Answer {
    Accept,
    Reject(u16, Bytes),
}

struct Slot {
    answer: Option<oneshot::Sender<Answer>>,
    out: mpsc::Sender<Frame>,
    /// Cancelled when the client did not read fast enough.
    slow: CancellationToken,
}

pub struct Edge {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub tracker: TaskTracker,
    /// The process is stopping (close with 1001).
    pub shutdown: CancellationToken,
    /// This edge's time under one owner ended (close with 1012).
    pub epoch: CancellationToken,
    /// The owner's node id.
    pub owner: String,
    to_owner: ToNode,
    conns: Mutex<HashMap<u64, Slot>>,
    next_conn: AtomicU64,
    /// New connections per client address are limited where the socket is held.
    limits: super::limits::Limits,
}

impl Edge {
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        owner: String,
        to_owner: ToNode,
    ) -> Edge {
        Edge {
            metrics,
            tracker,
            epoch: shutdown.child_token(),
            shutdown,
            owner,
            to_owner,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            limits: super::limits::Limits::new(&config.rate_limits),
            config,
        }
    }

    /// Frames the owner sent for this node's sockets.
    pub fn receive(&self, frames: Vec<(u64, Frame)>) {
        let Ok(mut conns) = self.conns.lock() else {
            return;
        };
        for (conn, frame) in frames {
            let Some(slot) = conns.get_mut(&conn) else {
                continue;
            };
            match frame {
                Frame::Accept => {
                    if let Some(answer) = slot.answer.take() {
                        let _ = answer.send(Answer::Accept);
                    }
                }
                Frame::Reject { status, body } => {
                    if let Some(answer) = slot.answer.take() {
                        let _ = answer.send(Answer::Reject(status, body));
                    }
                }
                frame @ (Frame::Text(_) | Frame::Binary(_) | Frame::Ping | Frame::Close { .. }) => {
                    if let Err(mpsc::error::TrySendError::Full(_)) = slot.out.try_send(frame) {
                        slot.slow.cancel();
                    }
                }
                Frame::Open(_) | Frame::Pong | Frame::Gone => {}
            }
        }
    }

    fn forget(&self, conn: u64) {
        if let Ok(mut conns) = self.conns.lock() {
            conns.remove(&conn);
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.lock().map_or(0, |c| c.len())
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/ws/customer", get(customer))
            .route("/ws/agent", get(agent))
            .route("/ws/media", get(media))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/healthz", get(super::healthz))
            .fallback(super::assets::serve)
            .with_state(self)
    }
}

async fn readyz(State(edge): State<Arc<Edge>>) -> Response {
    if edge.shutdown.is_cancelled() || edge.epoch.is_cancelled() {
        return http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "this node is leaving the cluster",
        );
    }
    axum::Json(serde_json::json!({ "status": "ready", "role": "edge", "owner": edge.owner }))
        .into_response()
}

async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    super::metrics_response(&edge.metrics)
}

macro_rules! relay_handler {
    ($name:ident, $endpoint:expr) => {
        async fn $name(
            State(edge): State<Arc<Edge>>,
            RawQuery(query): RawQuery,
            headers: HeaderMap,
            peer: Option<axum::Extension<super::Peer>>,
            ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
        ) -> Response {
            let peer = peer.map(|p| p.0);
            if let Err(refused) =
                super::check_address(&edge.limits, &edge.metrics, $endpoint, peer, &headers)
            {
                return refused;
            }
            relay($endpoint, edge, query.unwrap_or_default(), &headers, ws).await
        }
    };
}

relay_handler!(customer, Endpoint::Customer);
relay_handler!(agent, Endpoint::Agent);
relay_handler!(media, Endpoint::Media);

/// Asks the owner to admit the socket, then (if it does) completes the upgrade and
/// pumps frames until either side ends.
async fn relay(
    endpoint: Endpoint,
    edge: Arc<Edge>,
    query: String,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return not_an_upgrade(&rejection),
    };
    let conn = edge.next_conn.fetch_add(1, Ordering::Relaxed);
    let (answer_tx, answer_rx) = oneshot::channel();
    let (out_tx, out_rx) = mpsc::channel(edge.config.limits.outbound_queue);
    let slow = CancellationToken::new();
    if let Ok(mut conns) = edge.conns.lock() {
        conns.insert(
            conn,
            Slot {
                answer: Some(answer_tx),
                out: out_tx,
                slow: slow.clone(),
            },
        );
    }
    let kept = [header::ORIGIN, header::HOST, header::AUTHORIZATION];
    let opening = Opening {
        endpoint,
        query,
        headers: kept
            .iter()
            .filter_map(|name| {
                let value = headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), value.to_owned()))
            })
            .collect(),
    };
    let unavailable = |edge: &Edge| {
        edge.forget(conn);
        http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the gateway cluster is changing owner; retry in a moment",
        )
    };
    if edge
        .to_owner
        .send((conn, Frame::Open(opening)))
        .await
        .is_err()
    {
        return unavailable(&edge);
    }
    let wait = Duration::from_millis(edge.config.limits.handshake_timeout_ms);
    let answer = tokio::select! {
        answer = tokio::time::timeout(wait, answer_rx) => answer,
        () = edge.epoch.cancelled() => return unavailable(&edge),
    };
    match answer {
        Ok(Ok(Answer::Accept)) => {}
        Ok(Ok(Answer::Reject(status, body))) => {
            edge.forget(conn);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        _ => {
            let _ = edge.to_owner.try_send((conn, Frame::Gone));
            return unavailable(&edge);
        }
    }
    let guard = edge.tracker.token();
    limit_upgrade(ws, &edge.config.limits)
        .on_upgrade(move |socket| async move {
            let _guard = guard;
            // Sessions (and their metrics) are the owner's; this is only a pump.
            pump(&edge, conn, socket, out_rx, slow).await;
            edge.forget(conn);
            let _ = edge.to_owner.send((conn, Frame::Gone)).await;
        })
        .into_response()
}

/// Relays frames both ways until either side ends.
async fn pump(
    edge: &Edge,
    conn: u64,
    socket: WebSocket,
    mut out: mpsc::Receiver<Frame>,
    slow: CancellationToken,
) {
    let mut socket = Socket::Local(socket);
    let write_timeout = Duration::from_millis(edge.config.limits.write_timeout_ms);
    let closing = loop {
        tokio::select! {
            biased;
            () = edge.shutdown.cancelled() => {
                break (CloseCode::GoingAway, "the gateway is shutting down; reconnect and resume");
            }
            () = edge.epoch.cancelled() => break RESTART,
            () = slow.cancelled() => {
                break (CloseCode::SlowConsumer, "slow consumer: reconnect and resume from your last seq");
            }
            frame = out.recv() => {
                let msg = match frame {
                    Some(Frame::Text(bytes)) => match bytes.try_into() {
                        Ok(text) => Message::Text(text),
                        Err(_) => continue,
                    },
                    Some(Frame::Binary(bytes)) => Message::Binary(bytes),
                    Some(Frame::Ping) => Message::Ping(Bytes::new()),
                    Some(Frame::Close { code, reason }) => {
                        socket.close(code, &reason, write_timeout, true).await;
                        return;
                    }
                    Some(_) => continue,
                    None => break RESTART,
                };
                match tokio::time::timeout(write_timeout, socket.send(msg)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return,
                }
            }
            received = socket.recv() => {
                let frame = match received {
                    Some(Ok(Message::Text(text))) => Frame::Text(text.into()),
                    Some(Ok(Message::Binary(bytes))) => Frame::Binary(bytes),
                    Some(Ok(Message::Pong(_))) => Frame::Pong,
                    Some(Ok(Message::Ping(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(e)) => {
                        let too_large = e
                            .into_inner()
                            .downcast_ref::<tungstenite::Error>()
                            .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)));
                        if !too_large {
                            return;
                        }
                        let limit = edge.config.limits.max_message_bytes;
                        let message = format!("frames and messages are limited to {limit} bytes");
                        edge.metrics.error(ErrorCode::TooLarge);
                        let error = encode::error(None, ErrorCode::TooLarge, &message);
                        let _ = tokio::time::timeout(
                            write_timeout,
                            socket.send(Message::Text(error.into())),
                        )
                        .await;
                        break (CloseCode::TooLarge, "message too large");
                    }
                };
                if edge.to_owner.send((conn, frame)).await.is_err() {
                    break RESTART;
                }
            }
        }
    };
    let (code, reason) = closing;
    socket.close(code.code(), reason, write_timeout, true).await;
}

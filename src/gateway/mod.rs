//! The shell: HTTP and WebSocket on axum/hyper. It owns the sockets, translates wire
//! frames into core inputs (`customer`, `agent`), runs the hub task that owns the
//! core (`hub`), and serves health, metrics and the embedded pages.

/// `(method, path, handler)`, the method said once: it tags the route for the
/// document's test and filters the requests the handler gets.
macro_rules! route {
    ($method:ident, $path:literal, $handler:expr) => {
        (
            axum::http::Method::$method,
            $path,
            axum::routing::on(axum::routing::MethodFilter::$method, $handler),
        )
    };
}

mod agent;
pub(crate) mod api;
pub(crate) mod assets;
mod audit;
pub mod auth;
pub mod calls;
mod connection;
mod customer;
pub mod definitions;
pub mod edge;
mod encode;
pub mod follow_ups;
pub mod hub;
pub mod limits;
mod media;
pub mod metrics;
pub mod ratings;
pub mod remote;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::backplane::envelope::Endpoint;
use crate::config::{Config, LimitsConfig};
use crate::core::ConnId;
use crate::core::signals::voice::VoiceSettings;
use crate::protocol::{CloseCode, ErrorCode};
use crate::store::Store;

pub use auth::Keys;
use connection::Link;
use hub::Command;
use metrics::Metrics;

/// What every handler shares.
pub struct App {
    pub config: Arc<Config>,
    pub hub: mpsc::Sender<Command>,
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM / Ctrl-C: connections close with 1001.
    pub shutdown: CancellationToken,
    /// Several nodes: cancelled when this node stops owning routing (connections
    /// close with 1012). One node: a child of `shutdown`.
    pub epoch: CancellationToken,
    /// Every WebSocket session, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Agent ids the handshake accepts (the hub keeps it in step with definitions).
    pub known_agents: hub::KnownAgents,
    /// Bearer token of the operator API.
    pub admin_token: String,
    /// Live calls, and each agent connection's audio queue.
    pub calls: Arc<calls::Calls>,
    pub agent_audio: calls::AgentAudio,
    /// Voice activity settings of every call's meter.
    pub voice: VoiceSettings,
    /// Abuse limits and agent revocations.
    pub limits: Arc<limits::Limits>,
    next_conn: AtomicU64,
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        hub: mpsc::Sender<Command>,
        store: Arc<dyn Store>,
        keys: Keys,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        known_agents: hub::KnownAgents,
        admin_token: String,
        calls: Arc<calls::Calls>,
        tracker: TaskTracker,
    ) -> App {
        let limits = Arc::new(limits::Limits::new(&config.rate_limits));
        let voice = VoiceSettings {
            threshold_dbov: config.media.vad_threshold_dbov,
            hangover_ms: config.media.vad_hangover_ms,
            dead_air_ms: config.media.dead_air_ms,
            ..VoiceSettings::default()
        };
        App {
            config,
            hub,
            store,
            keys,
            metrics,
            epoch: shutdown.child_token(),
            shutdown,
            tracker,
            known_agents,
            admin_token,
            calls,
            agent_audio: calls::AgentAudio::default(),
            voice,
            limits,
            next_conn: AtomicU64::new(1),
        }
    }

    /// The close a session sends when the gateway (or its time as owner) ends.
    pub fn farewell(&self) -> (CloseCode, &'static str) {
        if self.shutdown.is_cancelled() {
            (
                CloseCode::GoingAway,
                "the gateway is shutting down; reconnect and resume",
            )
        } else {
            (
                CloseCode::ServiceRestart,
                "the gateway cluster changed; reconnect and resume",
            )
        }
    }

    fn next_conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }
}

/// What admission decided about a WebSocket before its upgrade.
pub enum Admission {
    Customer,
    Agent {
        agent_id: crate::core::Id,
        expires_at: tokio::time::Instant,
        place: limits::Place,
    },
    Media {
        provider: Option<String>,
    },
}

/// Admits (or refuses, with the HTTP response to give) a WebSocket to `endpoint`.
/// The same checks for a socket held here and for one another node holds.
#[allow(clippy::result_large_err)] // the refusal is the HTTP response itself, once per upgrade
pub fn admit(
    app: &App,
    endpoint: Endpoint,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Admission, Response> {
    match endpoint {
        Endpoint::Customer => customer::admit(app, headers).map(|()| Admission::Customer),
        Endpoint::Agent => {
            agent::admit(app, query, headers).map(|(agent_id, expires_at, place)| {
                Admission::Agent {
                    agent_id,
                    expires_at,
                    place,
                }
            })
        }
        Endpoint::Media => media::admit(app, query).map(|provider| Admission::Media { provider }),
    }
}

pub fn role_of(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Customer => "customer",
        Endpoint::Agent => "agent",
        Endpoint::Media => "media",
    }
}

/// Serves an admitted connection until it ends.
///
/// Each role's future is boxed: unboxed, this future (and so every connection's
/// task) would be as large as the largest of the three state machines, whatever
/// the role. Boxed, a connection holds exactly its own role's (issue 21). The
/// `Link` (the WebSocket and its limits) is boxed once, when the connection is
/// admitted, and handed on as a pointer: each future that takes it by value keeps
/// room for its parameters for as long as it runs, so passed inline it was held
/// several times over (this task, the role's future, the session's).
pub async fn run(link: Box<Link>, admission: Admission) {
    match admission {
        Admission::Customer => Box::pin(customer::serve(link)).await,
        Admission::Agent {
            agent_id,
            expires_at,
            place,
        } => Box::pin(agent::serve(link, agent_id, expires_at, place)).await,
        Admission::Media { provider } => Box::pin(media::serve(link, provider)).await,
    }
}

/// The TCP peer of a request (put in its extensions by the accept loop).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The per-address limit on new customer and agent connections: `Some(429)` when
/// over it. The telephony provider (`/ws/media`) is authenticated by its token and
/// may open many streams from one address.
#[allow(clippy::result_large_err)]
pub(crate) fn check_address(
    limits: &limits::Limits,
    metrics: &Metrics,
    endpoint: Endpoint,
    peer: Option<Peer>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if endpoint == Endpoint::Media {
        return Ok(());
    }
    let ip = limits.client_ip(peer.map(|p| p.0), headers);
    let refuse = |retry: limits::RetryAfter, message: String, detail: &str| {
        let role = role_of(endpoint);
        if limits.audit_address(ip) {
            let who = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            audit::denied(
                metrics,
                role,
                &who,
                "connect",
                audit::Denial::RateLimited,
                detail,
            );
        } else {
            metrics.denied(role, audit::Denial::RateLimited);
        }
        metrics.error(ErrorCode::RateLimited);
        rate_limited_response(retry, &message)
    };
    if endpoint == Endpoint::Customer
        && let Err(retry) = limits.address_cooling(ip)
    {
        let message = format!(
            "connections from this address were closed for abuse repeatedly; no new customer connection from it for {} ms",
            retry.ms()
        );
        return Err(refuse(
            retry,
            message,
            "address cooling off after abuse closes",
        ));
    }
    limits.connection_from(ip).map_err(|retry| {
        let message = format!(
            "too many new connections from this address; try again in {} ms",
            retry.ms()
        );
        refuse(retry, message, "new connections per address")
    })
}

/// HTTP 429 with `Retry-After` and a JSON body `{"code","message","retry_after_ms"}`.
pub(crate) fn rate_limited_response(retry: limits::RetryAfter, message: &str) -> Response {
    let body = serde_json::json!({
        "code": ErrorCode::RateLimited.as_str(),
        "message": message,
        "retry_after_ms": retry.ms(),
    });
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry.secs().to_string())],
        axum::Json(body),
    )
        .into_response()
}

async fn upgrade(
    endpoint: Endpoint,
    app: Arc<App>,
    query: HashMap<String, String>,
    headers: HeaderMap,
    peer: Option<Peer>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return not_an_upgrade(&rejection),
    };
    if let Err(refused) = check_address(&app.limits, &app.metrics, endpoint, peer, &headers) {
        return refused;
    }
    let admission = match admit(&app, endpoint, &query, &headers) {
        Ok(admission) => admission,
        Err(response) => return response,
    };
    let guard = app.tracker.token();
    let address = app.limits.client_ip(peer.map(|p| p.0), &headers);
    limit_upgrade(ws, &app.config.limits)
        .on_upgrade(move |socket| async move {
            let _guard = guard;
            let mut link = Box::new(Link::new(app, socket, role_of(endpoint)));
            if let Some(ip) = address {
                link.who = ip.to_string().into();
            }
            link.ip = address;
            run(link, admission).await;
        })
        .into_response()
}

macro_rules! upgrade_handler {
    ($name:ident, $endpoint:expr) => {
        async fn $name(
            State(app): State<Arc<App>>,
            Query(query): Query<HashMap<String, String>>,
            headers: HeaderMap,
            peer: Option<axum::Extension<Peer>>,
            ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
        ) -> Response {
            upgrade($endpoint, app, query, headers, peer.map(|p| p.0), ws).await
        }
    };
}

upgrade_handler!(customer_upgrade, Endpoint::Customer);
upgrade_handler!(agent_upgrade, Endpoint::Agent);
upgrade_handler!(media_upgrade, Endpoint::Media);

/// Every plain HTTP route (not WebSocket, not the embedded pages): health, metrics
/// and the operator API. The router takes them from here only, and a test compares
/// this table with the OpenAPI document (`api::OPENAPI`) both ways.
pub(crate) fn http_table() -> Vec<(axum::http::Method, &'static str, MethodRouter<Arc<App>>)> {
    let mut table = vec![
        route!(GET, "/healthz", healthz),
        route!(GET, "/readyz", readyz),
        route!(GET, "/metrics", metrics_text),
    ];
    table.extend(api::table());
    table
}

pub fn router(app: Arc<App>) -> Router {
    let router = Router::new()
        .route("/ws/customer", get(customer_upgrade))
        .route("/ws/agent", get(agent_upgrade))
        .route("/ws/media", get(media_upgrade));
    http_table()
        .into_iter()
        .fold(router, |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(assets::serve)
        .with_state(app)
}

/// `/api/v1/cluster` on a node that runs alone: nothing to describe (404), told only
/// to those who bear the admin token, like the rest of the operator API. (A node of
/// several serves the real one, `cluster.rs`.)
async fn alone(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !api::bears_admin_token(&headers, &app.admin_token) {
        return http_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            api::NEEDS_ADMIN_TOKEN,
        );
    }
    http_error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "this node runs alone (cluster.redis_url is not set): there is no cluster to describe",
    )
}

/// A known path asked with a method it does not serve: 405 (with `Allow`, which the
/// router adds) and a JSON body like every other error.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path: String = uri.path().chars().take(200).collect();
    let method: String = method.as_str().chars().take(16).collect();
    http_error(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidField,
        &format!("{path} does not take {method}; the Allow header says what it takes"),
    )
}

/// What the listener serves: the router in force for each request (it changes when
/// a node of several becomes the owner or an edge), and what to wait for at the end.
pub struct Front {
    pub router: Box<dyn Fn() -> Router + Send + Sync>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub handshake: Duration,
    /// TLS in the process (`server.tls_cert`); `None`: plain TCP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Front {
    /// One node: one router for the process's life.
    pub fn single(app: &Arc<App>, tls: Option<tokio_rustls::TlsAcceptor>) -> Front {
        let alone = get(alone).fallback(method_not_allowed);
        let router = router(app.clone()).route("/api/v1/cluster", alone.with_state(app.clone()));
        Front {
            router: Box::new(move || router.clone()),
            shutdown: app.shutdown.clone(),
            tracker: app.tracker.clone(),
            handshake: Duration::from_millis(app.config.limits.handshake_timeout_ms),
            tls,
        }
    }
}

/// Serves until `shutdown` is cancelled, then stops accepting, closes every
/// WebSocket with 1001 and waits (at most `grace`) for sessions to end.
pub async fn serve(listener: TcpListener, front: Front, grace: Duration) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(front.handshake);
    let builder = builder.http1_only();
    let shutdown = front.shutdown.clone();
    let current = Arc::new(front.router);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let current = current.clone();
        let service = tower::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
            let router = current();
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(Peer(peer));
            router.oneshot(req)
        });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let handshake = front.handshake;
        let tls = front.tls.clone();
        tokio::spawn(async move {
            // hyper's header timeout starts at the first byte: a client that sends
            // nothing at all is dropped here instead (slowloris).
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(handshake, stream.peek(&mut first)).await,
                Ok(Ok(1))
            ) {
                return;
            }
            match tls {
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                }
                Some(tls) => {
                    // The TLS handshake within the same timeout as the upgrade.
                    let Ok(Ok(stream)) = tokio::time::timeout(handshake, tls.accept(stream)).await
                    else {
                        return;
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    front.tracker.close();
    let drained = tokio::time::timeout(grace, async {
        graceful.shutdown().await;
        front.tracker.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some connections did not close within the grace period");
    }
}

pub(crate) fn limit_upgrade(ws: WebSocketUpgrade, limits: &LimitsConfig) -> WebSocketUpgrade {
    ws.read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        .max_write_buffer_size(limits.max_write_buffer_bytes)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
}

/// A plain HTTP request to a WebSocket endpoint.
pub(crate) fn not_an_upgrade(
    rejection: &axum::extract::ws::rejection::WebSocketUpgradeRejection,
) -> Response {
    let status = rejection.status();
    let message = format!(
        "this endpoint takes a WebSocket upgrade: {}",
        rejection.body_text()
    );
    http_error(status, ErrorCode::InvalidField, &message)
}

/// An HTTP error with a JSON body `{"code","message"}`.
pub(crate) fn http_error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = serde_json::json!({ "code": code.as_str(), "message": message });
    (status, axum::Json(body)).into_response()
}

pub(crate) async fn healthz() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.shutdown.is_cancelled() {
        return http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "shutting down",
        );
    }
    if app.metrics.store_commit_failing.get() > 0 {
        return http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the store refuses commits (disk full, read-only or failing): nothing can be acknowledged until it takes one again",
        );
    }
    match app.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            &format!("the store is not usable: {e}"),
        ),
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    metrics_response(&app.metrics)
}

/// The Prometheus scrape, whatever role the node plays.
pub(crate) fn metrics_response(metrics: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

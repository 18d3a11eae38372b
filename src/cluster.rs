//! One node of several (feature `redis`; docs/scaling.md, ARCHITECTURE.md).
//!
//! Every node holds WebSockets; one node at a time, the **owner**, routes: it holds
//! the lease in Redis, and the fencing token that came with it is taken in the store,
//! which from then on refuses every write of an older owner. The owner runs the hub
//! exactly as a single node does (restored from the store) and serves the sockets
//! other nodes hold through the backplane (`gateway::remote`); the other nodes are
//! **edges** that relay their sockets' frames (`gateway::edge`).
//!
//! A node's life is a loop of heartbeats. At each one it registers, renews or tries
//! to take the lease, and learns which owner is ready. It changes role when the
//! lease says so; when it loses Redis, or its registration expired, or the store
//! fenced it off, it drops its role (its sockets close with 1012, clients resume
//! elsewhere from the store) and joins again.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backplane::envelope::{self, Batch, Frame};
use crate::backplane::redis::{Backplane, Lease, Publisher};
use crate::gateway::api::{NEEDS_ADMIN_TOKEN, bears_admin_token};
use crate::gateway::edge::Edge;
use crate::gateway::metrics::Metrics;
use crate::gateway::remote::{Publishers, Remotes, ToNode};
use crate::gateway::{self, Front, http_error};
use crate::protocol::ErrorCode;
use crate::store::StoreError;
use crate::{Gateway, Running};

/// Frames waiting for one node's channel before their senders wait.
const PUBLISH_QUEUE: usize = 4096;
/// Most frames in one published batch.
const BATCH_FRAMES: usize = 128;

/// What `/api/v1/cluster` shows.
struct Status {
    node: String,
    listen: String,
    admin_token: String,
    view: RwLock<View>,
}

#[derive(Default)]
struct View {
    role: &'static str,
    owner: Option<Lease>,
    nodes: Vec<(String, String)>,
}

/// What the node shares across its roles.
struct Node<'a> {
    gw: &'a Gateway,
    me: String,
    listen: String,
    tracker: TaskTracker,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    /// The router the listener serves now.
    mode: Arc<RwLock<Router>>,
    status: Arc<Status>,
    heartbeat: Duration,
    expiry: Duration,
    grace: Duration,
    /// Fencing tokens handed out must be above this (the store's).
    floor: u64,
}

enum Role {
    Joining,
    Owner {
        lease: Lease,
        running: Running,
        remotes: Remotes,
    },
    Edge {
        owner: Lease,
        edge: Arc<Edge>,
    },
}

pub(crate) async fn serve(
    gw: Gateway,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let cluster = gw.config.cluster.clone();
    let Some(url) = cluster.redis_url.clone() else {
        return Ok(());
    };
    let me = cluster
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff));
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let status = Arc::new(Status {
        node: me.clone(),
        listen: listen.clone(),
        admin_token: gw.admin_token.clone(),
        view: RwLock::new(View {
            role: "joining",
            ..View::default()
        }),
    });
    let metrics = gw.new_metrics();
    let mode = Arc::new(RwLock::new(joining_router(&status, &metrics)));
    let tracker = TaskTracker::new();
    let grace = Duration::from_millis(gw.config.server.shutdown_grace_ms);
    let current = mode.clone();
    let front = Front {
        router: Box::new(move || current.read().map(|r| r.clone()).unwrap_or_default()),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        handshake: Duration::from_millis(gw.config.limits.handshake_timeout_ms),
        tls: gw.tls.clone(),
    };
    let server = tokio::spawn(gateway::serve(listener, front, grace));
    let mut node = Node {
        gw: &gw,
        me,
        listen,
        tracker,
        metrics,
        shutdown: shutdown.clone(),
        mode,
        status,
        heartbeat: Duration::from_millis(cluster.heartbeat_ms),
        expiry: Duration::from_millis(cluster.expiry_ms),
        grace,
        floor: gw.store.fence().await?,
    };
    tracing::info!(node = %node.me, "joining the cluster");
    while !shutdown.is_cancelled() {
        match Backplane::connect(&url, &cluster.prefix, &node.me, &node.listen, node.expiry).await {
            Ok((backplane, inbox)) => node.connected(backplane, inbox).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach Redis; retrying");
                tokio::select! {
                    () = tokio::time::sleep(node.heartbeat) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }
    let _ = server.await;
    gw.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

impl Node<'_> {
    /// One connection to Redis: beats, changes role, relays, until Redis is lost,
    /// this node is fenced off or expired, or the process stops.
    async fn connected(&mut self, mut backplane: Backplane, mut inbox: mpsc::Receiver<Bytes>) {
        let failed = CancellationToken::new();
        let mut role = Role::Joining;
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut registered = false;
        let mut deposed = CancellationToken::new();
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = failed.cancelled() => {
                    tracing::warn!("publishing on the backplane failed; joining again");
                    break;
                }
                () = deposed.cancelled() => {
                    tracing::warn!("the store fenced this node off: another node owns routing");
                    break;
                }
                batch = inbox.recv() => {
                    let Some(batch) = batch else {
                        tracing::warn!("lost the Redis subscription; joining again");
                        break;
                    };
                    let (sender, frames) = match envelope::decode(&batch) {
                        Ok(decoded) => decoded,
                        Err(e) => {
                            tracing::warn!(error = e, "dropped a malformed backplane batch");
                            continue;
                        }
                    };
                    match &mut role {
                        Role::Owner { remotes, .. } => remotes.receive(&sender, frames).await,
                        Role::Edge { edge, owner } if owner.node == sender => edge.receive(frames),
                        _ => {}
                    }
                }
                _ = beat.tick() => {
                    let candidate = !matches!(role, Role::Edge { .. });
                    let beat = match backplane.beat(candidate, self.floor).await {
                        Ok(beat) => beat,
                        Err(e) => {
                            tracing::warn!(error = %e, "heartbeat failed; joining again");
                            break;
                        }
                    };
                    if registered && !beat.was_registered {
                        tracing::warn!("this node's registration expired (it was away too long); joining again");
                        break;
                    }
                    registered = true;
                    let nodes = backplane.nodes().await.unwrap_or_default();
                    if let Ok(mut view) = self.status.view.write() {
                        view.owner.clone_from(&beat.ready);
                        view.nodes = nodes;
                    }
                    match &mut role {
                        Role::Owner { lease, remotes, .. } => {
                            if beat.lease.as_ref() != Some(&*lease) {
                                tracing::warn!("this node lost the routing lease");
                                break;
                            }
                            let held = remotes.nodes();
                            if let Ok(alive) = backplane.alive(&held).await {
                                for (node, alive) in held.iter().zip(alive) {
                                    if !alive {
                                        tracing::warn!(node = %node, "a node expired; its connections are gone");
                                        remotes.forget(node);
                                    }
                                }
                            }
                        }
                        _ => {
                            let mine = beat.lease.as_ref().filter(|l| l.node == self.me).cloned();
                            if let Some(lease) = mine {
                                self.drop_role(std::mem::replace(&mut role, Role::Joining), &mut backplane).await;
                                match self.own(&lease, &mut backplane, &failed).await {
                                    Some((running, remotes)) => {
                                        deposed = running.deposed.clone();
                                        role = Role::Owner { lease, running, remotes };
                                    }
                                    None => {
                                        let _ = backplane.release(&lease).await;
                                    }
                                }
                                continue;
                            }
                            let same = match (&role, &beat.ready) {
                                (Role::Edge { owner, .. }, Some(ready)) => owner == ready,
                                _ => false,
                            };
                            if same {
                                continue;
                            }
                            self.drop_role(std::mem::replace(&mut role, Role::Joining), &mut backplane).await;
                            if let Some(ready) = beat.ready.filter(|r| r.node != self.me) {
                                role = self.edge(ready, &backplane, &failed);
                            }
                        }
                    }
                }
            }
        }
        self.drop_role(role, &mut backplane).await;
        if self.shutdown.is_cancelled() {
            let _ = backplane.leave().await;
        }
    }

    /// Takes the fence in the store, restores and starts the hub, and says it is
    /// ready. `None`: the store holds a newer fence, or restoring failed.
    async fn own(
        &mut self,
        lease: &Lease,
        backplane: &mut Backplane,
        failed: &CancellationToken,
    ) -> Option<(Running, Remotes)> {
        match self.gw.store.take_fence(lease.fence).await {
            Ok(()) => {}
            Err(StoreError::Fenced { held }) => {
                tracing::warn!(
                    fence = lease.fence,
                    held,
                    "the store holds a newer fence; not taking the lease"
                );
                self.floor = held;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot take the fence in the store");
                return None;
            }
        }
        self.floor = lease.fence;
        let running = match self
            .gw
            .start(&self.shutdown, self.tracker.clone(), self.metrics.clone())
            .await
        {
            Ok(running) => running,
            Err(e) => {
                tracing::error!(error = %e, "restoring state as the owner failed");
                return None;
            }
        };
        let publishers: Publishers = {
            let publisher = backplane.publisher();
            let me = self.me.clone();
            let failed = failed.clone();
            Arc::new(move |node: &str| {
                spawn_publisher(publisher.clone(), &me, node, false, failed.clone())
            })
        };
        let remotes = Remotes::new(running.app.clone(), publishers);
        let router = gateway::router(running.app.clone()).merge(status_router(&self.status));
        self.set_mode(router, "owner");
        match backplane.mark_ready(lease).await {
            Ok(true) => {
                tracing::info!(fence = lease.fence, "this node owns routing");
                Some((running, remotes))
            }
            _ => {
                tracing::warn!("lost the lease while restoring");
                self.set_mode(joining_router(&self.status, &self.metrics), "joining");
                running.stop(self.grace).await;
                None
            }
        }
    }

    fn edge(&self, owner: Lease, backplane: &Backplane, failed: &CancellationToken) -> Role {
        let to_owner = spawn_publisher(
            backplane.publisher(),
            &self.me,
            &owner.node,
            true,
            failed.clone(),
        );
        let edge = Arc::new(Edge::new(
            self.gw.config.clone(),
            self.metrics.clone(),
            self.tracker.clone(),
            self.shutdown.clone(),
            owner.node.clone(),
            to_owner,
        ));
        let router = edge
            .clone()
            .router()
            .merge(status_router(&self.status))
            .merge(edge_api_router(&owner, &self.status));
        self.set_mode(router, "edge");
        tracing::info!(owner = %owner.node, fence = owner.fence, "relaying to the owner");
        Role::Edge { owner, edge }
    }

    /// Leaves a role: its sockets close (1012, or 1001 when the process stops).
    async fn drop_role(&self, role: Role, backplane: &mut Backplane) {
        match role {
            Role::Joining => {}
            Role::Owner {
                lease,
                running,
                remotes,
            } => {
                self.set_mode(joining_router(&self.status, &self.metrics), "joining");
                running.stop(self.grace).await;
                drop(remotes);
                let _ = backplane.release(&lease).await;
                tracing::info!("no longer the owner");
            }
            Role::Edge { edge, .. } => {
                self.set_mode(joining_router(&self.status, &self.metrics), "joining");
                edge.epoch.cancel();
            }
        }
    }

    fn set_mode(&self, router: Router, role: &'static str) {
        if let Ok(mut mode) = self.mode.write() {
            *mode = router;
        }
        if let Ok(mut view) = self.status.view.write() {
            view.role = role;
        }
    }
}

/// Frames for `to`, batched onto its channel. `strict`: a batch nobody received
/// (the node is gone) fails the connection, as a publishing error does.
fn spawn_publisher(
    mut publisher: Publisher,
    me: &str,
    to: &str,
    strict: bool,
    failed: CancellationToken,
) -> ToNode {
    let (tx, mut rx) = mpsc::channel::<(u64, Frame)>(PUBLISH_QUEUE);
    let mut batch = Batch::new(me);
    let to = to.to_owned();
    tokio::spawn(async move {
        let mut items = Vec::with_capacity(BATCH_FRAMES);
        while rx.recv_many(&mut items, BATCH_FRAMES).await > 0 {
            for (conn, frame) in items.drain(..) {
                batch.push(conn, &frame);
            }
            match publisher.publish(&to, batch.bytes()).await {
                Ok(0) if strict => {
                    tracing::warn!(node = %to, "the owner is not listening");
                    failed.cancel();
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, node = %to, "publishing failed");
                    failed.cancel();
                    break;
                }
            }
            batch.clear();
        }
    });
    tx
}

fn status_router(status: &Arc<Status>) -> Router {
    Router::new()
        .route("/api/v1/cluster", get(cluster_status))
        .with_state(status.clone())
}

async fn cluster_status(State(status): State<Arc<Status>>, headers: HeaderMap) -> Response {
    if !bears_admin_token(&headers, &status.admin_token) {
        return http_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            NEEDS_ADMIN_TOKEN,
        );
    }
    let Ok(view) = status.view.read() else {
        return http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "status unavailable",
        );
    };
    let nodes: Vec<serde_json::Value> = view
        .nodes
        .iter()
        .map(|(id, listen)| serde_json::json!({ "node_id": id, "listen": listen }))
        .collect();
    axum::Json(serde_json::json!({
        "node_id": status.node,
        "listen": status.listen,
        "role": view.role,
        "owner": view.owner.as_ref().map(|l| l.node.clone()),
        "fence": view.owner.as_ref().map_or(0, |l| l.fence),
        "nodes": nodes,
    }))
    .into_response()
}

/// A node between roles: healthy, not ready, says so.
fn joining_router(status: &Arc<Status>, metrics: &Arc<Metrics>) -> Router {
    let metrics = metrics.clone();
    Router::new()
        .route("/healthz", get(gateway::healthz))
        .route(
            "/metrics",
            get(move || std::future::ready(gateway::metrics_response(&metrics))),
        )
        .merge(status_router(status))
        .fallback(|| async {
            http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "this node is joining the gateway cluster; retry in a moment",
            )
        })
}

/// On an edge, the operator API (other than `/api/v1/cluster`) points at the owner.
fn edge_api_router(owner: &Lease, status: &Arc<Status>) -> Router {
    let listen = status
        .view
        .read()
        .ok()
        .and_then(|v| {
            v.nodes
                .iter()
                .find(|(id, _)| *id == owner.node)
                .map(|(_, l)| l.clone())
        })
        .unwrap_or_default();
    let message = format!(
        "the operator API is served by the node that owns routing: {} at http://{listen}",
        owner.node
    );
    Router::new()
        .route("/api/v1/openapi.json", get(gateway::api::openapi))
        .route(
            "/api/v1/{*rest}",
            axum::routing::any(move || {
                let message = message.clone();
                async move {
                    http_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::Unavailable,
                        &message,
                    )
                }
            }),
        )
}

//! Warmline: a real-time gateway for customer contact.
//!
//! # Layout
//! - [`protocol`]: wire types of protocol v1 (serde), validation, error and close codes.
//! - [`core`]: the pure switchboard: conversations, `seq`, queues, offers, routing.
//!   No I/O, no clock, no tokio, no JSON.
//! - [`store`]: durable state behind the [`store::Store`] trait; SQLite embedded.
//! - [`gateway`]: the shell: axum/hyper, WebSocket sessions, the hub task that owns
//!   the core, metrics, embedded pages.
//! - [`config`]: one TOML file plus `WARMLINE_` environment overrides.
//!
//! `main.rs` only parses the command line and calls [`Gateway::open`] and
//! [`Gateway::serve`].
#![forbid(unsafe_code)]

pub mod backplane;
#[cfg(feature = "redis")]
mod cluster;
pub mod config;
pub mod core;
pub mod gateway;
pub mod protocol;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::core::{RestoredConversation, Switchboard};
use crate::gateway::auth::random_secret;
use crate::gateway::definitions::Definitions;
use crate::gateway::hub::{Hub, KnownAgents, now_ms, persisted};
use crate::gateway::metrics::Metrics;
use crate::gateway::{App, Keys};
#[cfg(feature = "postgres")]
use crate::store::PostgresStore;
use crate::store::{SqliteStore, Store, StoreError};

/// An opened gateway: the store is open and migrated, the secrets are known.
pub struct Gateway {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    agent_secret: String,
    visitor_secret: String,
    media_secret: String,
    admin_token: String,
    /// TLS in the process, when the config asks for it (`Gateway::with_tls`).
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Gateway {
    /// Opens (and migrates) the store and settles the secrets: configured ones, or
    /// ones generated on the first start and kept in the store.
    pub async fn open(config: Config) -> Result<Gateway, StoreError> {
        let dedupe_window = u32::try_from(config.routing.dedupe_window).unwrap_or(u32::MAX);
        let store: Arc<dyn Store> = match &config.store.url {
            #[cfg(feature = "postgres")]
            Some(url) => Arc::new(PostgresStore::open(url, dedupe_window).await?),
            #[cfg(not(feature = "postgres"))]
            Some(_) => {
                return Err(StoreError::Unsupported(
                    "PostgreSQL (build with `--features postgres`)",
                ));
            }
            None => Arc::new(
                SqliteStore::open(
                    &config.server.data_dir,
                    config.store.synchronous,
                    dedupe_window,
                )
                .await?,
            ),
        };
        let agent_secret = match &config.auth.agent_secret {
            Some(secret) => secret.clone(),
            None => store.meta_init("agent_secret", &random_secret()).await?,
        };
        let visitor_secret = match &config.auth.visitor_secret {
            Some(secret) => secret.clone(),
            None => store.meta_init("visitor_secret", &random_secret()).await?,
        };
        let media_secret = match &config.auth.media_secret {
            Some(secret) => secret.clone(),
            None => store.meta_init("media_secret", &random_secret()).await?,
        };
        let admin_token = match &config.auth.admin_token {
            Some(token) => token.clone(),
            None => store.meta_init("admin_token", &random_secret()).await?,
        };
        Ok(Gateway {
            config: Arc::new(config),
            store,
            agent_secret,
            visitor_secret,
            media_secret,
            admin_token,
            tls: None,
        })
    }

    /// Serves over TLS (the acceptor `gateway::tls::acceptor` made from the config).
    pub fn with_tls(mut self, tls: Option<tokio_rustls::TlsAcceptor>) -> Gateway {
        self.tls = tls;
        self
    }

    /// Whether connections are served over TLS.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn agent_secret(&self) -> &str {
        &self.agent_secret
    }

    pub fn media_secret(&self) -> &str {
        &self.media_secret
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Restores open conversations, then serves on `listener` until `shutdown` is
    /// cancelled; then closes clients with "going away", applies what is queued,
    /// and closes the store. With `cluster.redis_url`, joins the other nodes
    /// instead (docs/scaling.md).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if self.config.cluster.redis_url.is_some() {
            return cluster::serve(self, listener, shutdown).await;
        }
        let grace = Duration::from_millis(self.config.server.shutdown_grace_ms);
        let running = self
            .start(&shutdown, TaskTracker::new(), self.new_metrics())
            .await?;
        let front = gateway::Front::single(&running.app, self.tls.clone());
        gateway::serve(listener, front, grace).await;
        running.stop(grace).await;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// The process's metrics (one registry, whatever role a node plays).
    fn new_metrics(&self) -> Arc<Metrics> {
        let coaching: Vec<String> = self
            .config
            .signals
            .coaching()
            .rules()
            .iter()
            .map(|r| r.code.to_string())
            .collect();
        Arc::new(Metrics::new(&coaching))
    }

    /// Restores the open conversations from the store and starts the hub: from now
    /// on this process routes (alone, or as the owner of several nodes).
    async fn start(
        &self,
        shutdown: &CancellationToken,
        tracker: TaskTracker,
        metrics: Arc<Metrics>,
    ) -> Result<Running, StoreError> {
        let stored = self.store.definitions().await?;
        let (definitions, warnings) = Definitions::new(&self.config, &stored);
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let in_force = definitions.config();
        for problem in in_force.validate().into_iter().chain(in_force.advise()) {
            tracing::warn!(%problem, "the queues and agents in force have a problem");
        }
        let known_agents: KnownAgents = Arc::new(std::sync::RwLock::new(
            in_force.agents.iter().map(|a| a.id.clone()).collect(),
        ));
        let settings = in_force.core_settings();
        let restored: Vec<RestoredConversation> = self.store.load_open().await?;
        let restored_count = restored.len();
        let mut effects = Vec::new();
        let now = now_ms();
        let mut switchboard =
            Switchboard::restore(settings.clone(), now, restored, now, &mut effects);
        // Satisfaction records (when routing uses them) before the first decision;
        // `gateway::ratings` reads them again every few minutes.
        let routing = in_force.routing.clone();
        if routing.prefer_satisfied_agents {
            match gateway::ratings::read(&*self.store, &routing).await {
                Ok(input) => switchboard.handle(input, now, &mut effects),
                Err(e) => tracing::warn!(error = %e, "reading agents' satisfaction records failed"),
            }
        }
        self.store.commit(&persisted(&effects)).await?;
        tracing::info!(open_conversations = restored_count, "state restored");

        for q in &in_force.queues {
            let routing = &in_force.routing;
            let percent = q
                .service_level_percent
                .unwrap_or(routing.service_level_percent);
            metrics.define_queue(&q.name, q.settings(routing).service_level_ms, percent);
        }
        let (tx, rx) = mpsc::channel(self.config.limits.core_queue);
        let calls = Arc::new(gateway::calls::Calls::default());
        let hub = Hub::new(
            switchboard,
            definitions,
            known_agents.clone(),
            self.store.clone(),
            metrics.clone(),
            self.config.store.max_batch,
            calls.clone(),
        );
        let deposed = hub.deposed();
        let stop_hub = CancellationToken::new();
        let hub_task = tokio::spawn(hub.run(rx, stop_hub.clone()));
        // Store reads the hub used to wait for, in tasks of their own.
        tokio::spawn(gateway::follow_ups::run(
            self.store.clone(),
            tx.clone(),
            stop_hub.clone(),
        ));
        if routing.prefer_satisfied_agents {
            tokio::spawn(gateway::ratings::run(
                self.store.clone(),
                routing,
                tx.clone(),
                stop_hub.clone(),
            ));
        }
        let auth = &self.config.auth;
        let mut keys = Keys::new(&self.agent_secret, &self.visitor_secret, &self.media_secret)
            .with_agent_issuer(auth.agent_issuer.clone());
        if let Some(secret) = &auth.identity_secret {
            keys = keys.with_identity(
                secret,
                auth.identity_audience.clone(),
                auth.identity_issuer.clone(),
            );
        }
        let app = Arc::new(App::new(
            self.config.clone(),
            tx,
            self.store.clone(),
            keys,
            metrics,
            shutdown.clone(),
            known_agents,
            self.admin_token.clone(),
            calls,
            tracker,
        ));
        for (agent, at) in self.store.revoked_agents().await? {
            app.limits.remember_revocation(agent.into(), at);
        }
        let limits = app.limits.clone();
        let epoch = app.epoch.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => limits.prune(),
                    () = epoch.cancelled() => break,
                }
            }
        });
        Ok(Running {
            app,
            hub_task,
            stop_hub,
            deposed,
        })
    }
}

/// A started hub and what its connections share.
struct Running {
    app: Arc<App>,
    hub_task: tokio::task::JoinHandle<()>,
    stop_hub: CancellationToken,
    /// Cancelled when another node fenced this one off.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    deposed: CancellationToken,
}

impl Running {
    /// Closes this hub's connections (1001 at shutdown, else 1012), lets the hub
    /// apply what is queued, and waits for it (at most `grace`).
    async fn stop(self, grace: Duration) {
        self.app.epoch.cancel();
        drop(self.app);
        self.stop_hub.cancel();
        if tokio::time::timeout(grace, self.hub_task).await.is_err() {
            tracing::warn!("the hub did not finish within the grace period");
        }
    }
}

//! Agents' satisfaction records, for routing that prefers satisfied customers' agents
//! (`routing.prefer_satisfied_agents`): read from the store at start, then every few
//! minutes by a task of its own that hands them to the hub, which never waits on it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::hub::{Command, now_ms};
use crate::config::RoutingConfig;
use crate::core::{Id, Input};
use crate::store::{Store, StoreError};

/// How often the records are read again (they change slowly).
const EVERY: Duration = Duration::from_secs(300);

/// Conversations an agent needs in a queue before their record counts.
const AT_LEAST: u32 = 3;

/// The records as the core takes them, read now.
pub async fn read(store: &dyn Store, routing: &RoutingConfig) -> Result<Input, StoreError> {
    let since = now_ms().saturating_sub(u64::from(routing.satisfaction_window_days) * 86_400_000);
    let rows = store.agent_ratings(since, AT_LEAST).await?;
    Ok(Input::AgentRatings(
        rows.into_iter()
            .map(|(a, q, r)| (Id::from(a.as_str()), Id::from(q.as_str()), r))
            .collect(),
    ))
}

/// Reads them every few minutes (the first time after `EVERY`: the caller read them
/// before the first routing decision).
pub async fn run(
    store: Arc<dyn Store>,
    routing: RoutingConfig,
    hub: mpsc::Sender<Command>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match read(&*store, &routing).await {
            Ok(input) => {
                if hub.send(Command::Core(input)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading agents' satisfaction records failed"),
        }
    }
}

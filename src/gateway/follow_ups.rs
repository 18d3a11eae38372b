//! Follow-ups that fall due, found by a task of its own: once a second it reads the
//! store for those due and hands them to the hub as one command, so the hub (and
//! every message behind it) never waits on those reads.
//!
//! A follow-up opens once: the hub answers the command only after the batch that
//! opened them is committed (the store marks each opened in that same commit), and
//! the task reads again only after that answer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::hub::{Command, now_ms};
use crate::core::{FollowUpDue, Id, Millis, default_customer_name};
use crate::store::{FollowUpRow, Store};

/// Follow-ups read per pass (the rest wait for the next second).
const PER_PASS: u32 = 100;

pub async fn run(store: Arc<dyn Store>, hub: mpsc::Sender<Command>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        let due = match store.due_follow_ups(now_ms(), PER_PASS).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "reading due follow-ups failed");
                continue;
            }
        };
        if due.is_empty() {
            continue;
        }
        let mut opening = Vec::with_capacity(due.len());
        for row in due {
            opening.push(describe(&*store, row, now_ms()).await);
        }
        let (done, committed) = oneshot::channel();
        if hub
            .send(Command::FollowUpsDue { due: opening, done })
            .await
            .is_err()
        {
            return;
        }
        // Dropped unanswered when the hub stops: nothing more to do either way.
        let _ = committed.await;
    }
}

/// What the core needs to open a due follow-up: the customer's history, name and
/// context, read now.
async fn describe(store: &dyn Store, f: FollowUpRow, now: Millis) -> FollowUpDue {
    let history = store.history(&f.customer_id).await.unwrap_or_default();
    let context = store.context(&f.customer_id, now).await.unwrap_or_default();
    let mut attributes: serde_json::Map<String, Value> = context
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    attributes.insert(
        "follow_up_of".into(),
        Value::String(f.conversation_id.clone()),
    );
    let customer_name = match store.customer(&f.customer_id).await {
        Ok(Some(c)) => c
            .name
            .map_or_else(|| default_customer_name(&f.customer_id), |n| n.into()),
        _ => default_customer_name(&f.customer_id),
    };
    FollowUpDue {
        follow_up_id: f.id.as_str().into(),
        about: f.conversation_id.as_str().into(),
        conversation_id: uuid::Uuid::now_v7().simple().to_string().into(),
        customer_name,
        customer_id: f.customer_id.as_str().into(),
        queue: f.queue.as_str().into(),
        agent_id: Some(f.agent_id.as_str().into()),
        note: f.note.as_deref().map(Into::into),
        due_at: f.due_at,
        history,
        context: context
            .into_iter()
            .map(|(k, v)| (Id::from(k.as_str()), Id::from(v.as_str())))
            .collect(),
        attributes: Value::Object(attributes).to_string().into(),
    }
}

//! Durable state behind one trait: customers, conversations, the transcript,
//! assignments, and a few gateway secrets. SQLite (embedded) is the default backend;
//! PostgreSQL (feature `postgres`) keeps the same tables and answers the same way.
//! The store is the source of truth: what it has is what survives a crash.

#[cfg(feature = "postgres")]
mod postgres;
mod restore;
mod rows;
mod sqlite;

use async_trait::async_trait;

use crate::core::{
    ConversationRecord, CustomerHistory, Event, Millis, Record, RestoredConversation, Skills,
};

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use sqlite::{SqliteStore, Synchronous};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store writer: {0}")]
    Writer(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("this build does not support {0}")]
    Unsupported(&'static str),
    /// Another node took the routing ownership (a higher fencing token): this one
    /// may no longer write.
    #[error("fenced: the store belongs to the owner with fencing token {held} now")]
    Fenced { held: u64 },
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// A stored conversation with who may read it.
#[derive(Debug, Clone)]
pub struct StoredConversation {
    pub record: ConversationRecord,
    pub last_seq: u64,
}

/// A customer as the store knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    pub id: String,
    pub first_seen: Millis,
    pub last_seen: Millis,
    /// From a verified identity token, when it named them.
    pub name: Option<String>,
}

/// One of a customer's conversations, summed up for their history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastConversation {
    pub id: String,
    pub channel: String,
    pub queue: String,
    pub state: String,
    pub agent_id: Option<String>,
    pub created_at: Millis,
    pub closed_at: Option<Millis>,
    pub resolution: Option<String>,
    pub transfers: u32,
    pub csat: Option<u8>,
    pub effort: Option<u8>,
    /// From the call legs' voice signals, when it had any.
    pub talk_ms: Option<u64>,
    pub dead_air_ms: Option<u64>,
    /// The earlier conversation this one repeated.
    pub repeat_of: Option<String>,
}

/// A follow-up as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpRow {
    pub id: String,
    pub conversation_id: String,
    pub customer_id: String,
    pub queue: String,
    pub agent_id: String,
    pub due_at: Millis,
    pub note: Option<String>,
    pub created_at: Millis,
    /// The conversation it opened as, once due.
    pub opened_as: Option<String>,
    /// Whether that conversation is closed (the follow-up is done).
    pub done: bool,
}

/// One group (a queue or an agent) of the satisfaction report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportRow {
    /// The queue or agent (`None`: conversations no agent took).
    pub key: Option<String>,
    pub conversations: u64,
    pub surveyed: u64,
    pub csat_sum: u64,
    /// Answers rating 1, 2, 3, 4, 5.
    pub csat_counts: [u64; 5],
    pub effort_sum: u64,
    pub effort_answers: u64,
    pub resolved: u64,
    /// Resolved and not followed by a repeat contact.
    pub first_contact_resolved: u64,
    pub bounced: u64,
    pub transferred: u64,
    pub abandoned: u64,
    pub handle_ms_sum: u64,
    pub handled: u64,
    pub flags_negative: u64,
    pub flags_positive: u64,
    pub repeated_info: u64,
    /// Not resolved, and the customer's last message was negative.
    pub ended_on_bad_terms: u64,
    /// Satisfaction (1-5, hundredths): the survey's CSAT, else the estimate.
    pub satisfaction_centi_sum: u64,
    pub satisfaction_n: u64,
}

/// A customer's answer to `survey_request`.
#[derive(Debug, Clone)]
pub struct Survey {
    pub conversation_id: String,
    pub customer_id: String,
    pub csat: u8,
    pub effort: Option<u8>,
    pub resolved: Option<bool>,
    pub comment: Option<String>,
    pub at: Millis,
}

/// What a `start` reads about its customer before it is routed.
#[derive(Debug, Clone, Default)]
pub struct StartFacts {
    pub history: CustomerHistory,
    /// Context an IVR or bot attached that has not expired.
    pub context: Vec<(String, String)>,
    /// The conversation the new one repeats (`repeat_candidate`).
    pub repeat_of: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurveyOutcome {
    Recorded,
    AlreadyAnswered,
    NotFound,
    NotYours,
    NotClosed,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Makes every record durable in one transaction, in order.
    async fn commit(&self, records: &[Record]) -> Result<(), StoreError>;
    /// Every conversation that is not closed, queued ones in their order, with what
    /// the core needs to carry on.
    async fn load_open(&self) -> Result<Vec<RestoredConversation>, StoreError>;
    /// Transcript events with `seq` greater than `after`, in order, at most `limit`.
    async fn events_after(
        &self,
        conversation_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;
    async fn conversation(&self, id: &str) -> Result<Option<StoredConversation>, StoreError>;
    /// Whether the agent was ever assigned to the conversation.
    async fn was_assigned(&self, conversation_id: &str, agent_id: &str)
    -> Result<bool, StoreError>;
    /// The customer's past contacts, for routing: how many, their last resolving
    /// agent (unless rated 2 or lower), the agents they rated poorly.
    async fn history(&self, customer_id: &str) -> Result<CustomerHistory, StoreError>;
    async fn customer(&self, id: &str) -> Result<Option<CustomerRecord>, StoreError>;
    /// Conversations closed in `[from, to)`, grouped by queue or (`by_agent`) agent.
    async fn satisfaction_report(
        &self,
        by_agent: bool,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<ReportRow>, StoreError>;
    /// Each agent's satisfaction record per queue since `since`: (agent, queue, mean
    /// of CSAT or else the estimate, 1-5 in hundredths), with at least `min` conversations.
    async fn agent_ratings(
        &self,
        since: Millis,
        min: u32,
    ) -> Result<Vec<(String, String, u32)>, StoreError>;
    /// Follow-ups due at `now` that have not opened yet, oldest first.
    async fn due_follow_ups(&self, now: Millis, limit: u32)
    -> Result<Vec<FollowUpRow>, StoreError>;
    /// Every follow-up, by due time (the operator API filters them).
    async fn follow_ups(&self, limit: u32) -> Result<Vec<FollowUpRow>, StoreError>;
    /// `history`, `context` and `repeat_candidate` at once (a backend may answer them
    /// in one round).
    async fn start_facts(
        &self,
        customer_id: &str,
        queue: &str,
        repeat_since: Millis,
        now: Millis,
    ) -> Result<StartFacts, StoreError> {
        Ok(StartFacts {
            history: self.history(customer_id).await?,
            context: self.context(customer_id, now).await?,
            repeat_of: self
                .repeat_candidate(customer_id, queue, repeat_since)
                .await?,
        })
    }
    /// The customer's latest conversation on `queue` that closed at or after `since`
    /// (a new one repeats it).
    async fn repeat_candidate(
        &self,
        customer_id: &str,
        queue: &str,
        since: Millis,
    ) -> Result<Option<String>, StoreError>;
    /// Attaches trusted attributes to a known customer until `expires_at` (replacing
    /// those with the same keys). `false`: no such customer (nothing stored).
    async fn put_context(
        &self,
        customer_id: &str,
        attributes: &[(String, String)],
        expires_at: Millis,
        at: Millis,
    ) -> Result<bool, StoreError>;
    /// The customer's context that has not expired at `now`, by key.
    async fn context(
        &self,
        customer_id: &str,
        now: Millis,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// The customer's conversations, newest first, at most `limit`.
    async fn past_conversations(
        &self,
        customer_id: &str,
        limit: u32,
    ) -> Result<Vec<PastConversation>, StoreError>;
    /// Keeps a customer's survey answer, once per closed conversation of theirs.
    async fn record_survey(&self, survey: &Survey) -> Result<SurveyOutcome, StoreError>;
    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets `key` unless it is set; returns the value in force.
    async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError>;
    /// Remembers that `agent_id`'s tokens issued at or before `at_secs` are revoked
    /// (kept as `revoked_agent:<id>` in `meta`; a later revocation moves it on).
    async fn revoke_agent(&self, agent_id: &str, at_secs: u64) -> Result<(), StoreError>;
    /// Every revocation: (agent id, tokens issued at or before this second refused).
    async fn revoked_agents(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Queue and agent definitions made through the operator API: (kind, body JSON).
    async fn definitions(&self) -> Result<Vec<(String, String)>, StoreError>;
    async fn put_definition(
        &self,
        kind: &str,
        id: &str,
        body: &str,
        at: Millis,
    ) -> Result<(), StoreError>;
    async fn delete_definition(&self, kind: &str, id: &str) -> Result<(), StoreError>;
    /// Several nodes: makes `token` the store's fencing token, if it is above the
    /// one held (else `Fenced`); from then on every write of this store checks the
    /// token is still its own. One node (SQLite): nothing to fence.
    async fn take_fence(&self, _token: u64) -> Result<(), StoreError> {
        Ok(())
    }
    /// The fencing token held now (0: never taken).
    async fn fence(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// Cheap liveness probe for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether a commit would go through now: a small durable write where the
    /// backend can run out of room (the hub probes with it after a failed commit).
    async fn writable(&self) -> Result<(), StoreError> {
        self.ping().await
    }
    /// Bytes the store's commits appended to its write-ahead log so far (SQLite; 0
    /// where the backend does not say). Divided by the messages stored, it is the
    /// write amplification of the message path.
    fn wal_bytes(&self) -> u64 {
        0
    }
    /// Checkpoints and closes; later calls fail.
    async fn close(&self);
}

// How values are kept, the same in every backend.

/// The `meta` key prefix of agent revocations.
pub(crate) const REVOKED_AGENT: &str = "revoked_agent:";

/// Revocations read back from `meta` rows (a row that does not parse is skipped).
pub(crate) fn revocations(rows: Vec<(String, String)>) -> Vec<(String, u64)> {
    rows.into_iter()
        .filter_map(|(key, value)| {
            let agent = key.strip_prefix(REVOKED_AGENT)?;
            Some((agent.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A stored time or count back to the core's unsigned value (never negative).
fn millis(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// An unsigned value as the databases' signed 64-bit integer (clamped).
fn db_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} `{value}`"))
}

/// Skills as `name=level` joined by `,`.
fn skills_to_text(skills: &Skills) -> String {
    let mut out = String::new();
    for (i, (name, level)) in skills.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(&level.to_string());
    }
    out
}

fn skills_from_text(text: &str) -> Result<Skills, StoreError> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (name, level) = pair
                .split_once('=')
                .ok_or_else(|| StoreError::Corrupt(format!("skill `{pair}`")))?;
            let level = level
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("skill level `{pair}`")))?;
            Ok((name.to_owned(), level))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_round_trip() {
        let skills: Skills = [("billing".to_owned(), 3), ("es".to_owned(), 1)].into();
        assert_eq!(skills_from_text(&skills_to_text(&skills)).unwrap(), skills);
        assert_eq!(skills_from_text("").unwrap(), Skills::new());
        assert!(skills_from_text("x").is_err());
    }

    #[test]
    fn integers_clamp() {
        assert_eq!(db_int(u64::MAX), i64::MAX);
        assert_eq!(millis(-1), 0);
        assert_eq!(millis(db_int(42)), 42);
    }
}

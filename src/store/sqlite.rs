//! The embedded store: one SQLite file in WAL mode, `synchronous=FULL` unless told
//! otherwise. A batch of records is one transaction, so many messages share one fsync.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::rows::{conversation_from_row, event_columns, event_from_row};
use super::{
    CustomerRecord, FollowUpRow, PastConversation, REVOKED_AGENT, ReportRow, Store, StoreError,
    StoredConversation, Survey, SurveyOutcome, db_int, millis, revocations, skills_to_text,
};
use crate::core::{
    CustomerHistory, Event, Id, Millis, Record, Resolution, RestoredConversation, Role,
    default_customer_name,
};

/// `PRAGMA synchronous`: `full` survives power loss; `normal` survives a process
/// crash but may lose the last commits on power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    Full,
    Normal,
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection that only commits the hub's batches. In WAL mode a connection
    /// drops its whole page cache when another one has written, so commits taking
    /// turns over the pool's connections read their pages back from disk each time;
    /// the same connection keeps them.
    writer: SqlitePool,
    dedupe_window: u32,
    /// Checkpoints the WAL in the background (the writer never does, see `open`).
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies the WAL's committed pages into the database file every `every`, on a reader
/// connection (`PASSIVE`: it never waits for, nor blocks, the writer). SQLite's own
/// automatic checkpoint runs inside the commit that crosses 1,000 WAL pages, and that
/// commit (with every message waiting on it) then pays for writing ~4 MB and an fsync
/// of the database file: a stall of 100-250 ms on these disks every ten seconds or so
/// at 400 messages a second. Done here, often and small, no commit waits for it.
async fn checkpoint_every(pool: SqlitePool, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint failed; the next one retries");
        }
    }
}

impl SqliteStore {
    /// Follow-ups: `due_only`, those due at `now` and not opened; else all of them.
    async fn follow_up_rows(
        &self,
        due_only: bool,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<FollowUpRow>, StoreError> {
        macro_rules! select {
            ($filter:literal) => {
                concat!(
                    "SELECT f.id, f.conversation_id, f.customer_id, f.queue, f.agent_id,
                        f.due_at, f.note, f.created_at, f.opened_as,
                        (SELECT state FROM conversations c WHERE c.id = f.opened_as)
                            AS opened_state
                     FROM follow_ups f ",
                    $filter
                )
            };
        }
        let sql = if due_only {
            select!("WHERE f.opened_as IS NULL AND f.due_at <= ?1 ORDER BY f.due_at LIMIT ?2")
        } else {
            select!("WHERE ?1 >= 0 ORDER BY f.due_at LIMIT ?2")
        };
        let rows = sqlx::query(sql)
            .bind(db_int(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let opened_state: Option<String> = r.try_get("opened_state")?;
                Ok(FollowUpRow {
                    id: r.try_get("id")?,
                    conversation_id: r.try_get("conversation_id")?,
                    customer_id: r.try_get("customer_id")?,
                    queue: r.try_get("queue")?,
                    agent_id: r.try_get("agent_id")?,
                    due_at: millis(r.try_get("due_at")?),
                    note: r.try_get("note")?,
                    created_at: millis(r.try_get("created_at")?),
                    opened_as: r.try_get("opened_as")?,
                    done: opened_state.as_deref() == Some("closed"),
                })
            })
            .collect()
    }

    /// Opens (creating if needed) `DIR/warmline.db` and runs the migrations.
    pub async fn open(
        data_dir: &Path,
        synchronous: Synchronous,
        dedupe_window: u32,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join("warmline.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&pool)
            .await?;
        // The writer never checkpoints by itself (`checkpoint_every` does).
        let writer = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .connect_with(options.pragma("wal_autocheckpoint", "0"))
            .await?;
        let checkpointer = tokio::spawn(checkpoint_every(pool.clone(), CHECKPOINT_EVERY));
        Ok(SqliteStore {
            pool,
            writer,
            dedupe_window,
            checkpointer,
        })
    }
}

/// Rows per multi-row INSERT of events: a few fixed sizes, so the prepared statements
/// stay few and cached (10 parameters a row, well under SQLite's limit).
const EVENT_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// Inserts events with as few statements as the fixed chunk sizes allow: each
/// statement is one round trip to the database thread, which bounds a batch's cost.
async fn write_events(
    tx: &mut Transaction<'_, Sqlite>,
    events: &[&Event],
) -> Result<(), sqlx::Error> {
    let mut rest = events;
    while !rest.is_empty() {
        let size = EVENT_CHUNKS
            .into_iter()
            .find(|n| *n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut insert = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (conversation_id, seq, ts, kind, role, author_id,
                author_name, text, client_msg_id, resolution) ",
        );
        insert.push_values(chunk, |mut row, e| {
            let (kind, role, author_id, author_name, text, client_msg_id, resolution) =
                event_columns(e);
            row.push_bind(&*e.conversation_id)
                .push_bind(db_int(e.seq))
                .push_bind(db_int(e.ts))
                .push_bind(kind)
                .push_bind(role.as_str())
                .push_bind(author_id)
                .push_bind(author_name)
                .push_bind(text)
                .push_bind(client_msg_id)
                .push_bind(resolution);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn write(tx: &mut Transaction<'_, Sqlite>, record: &Record) -> Result<(), sqlx::Error> {
    match record {
        Record::Customer { id, seen_at } => {
            sqlx::query(
                "INSERT INTO customers (id, first_seen, last_seen) VALUES (?1, ?2, ?2)
                 ON CONFLICT(id) DO UPDATE SET last_seen = excluded.last_seen",
            )
            .bind(&**id)
            .bind(db_int(*seen_at))
            .execute(&mut **tx)
            .await?;
        }
        Record::Conversation(c) => {
            sqlx::query(
                "INSERT INTO conversations (id, customer_id, queue, channel, state, agent_id,
                    priority, ticket, skills, language, attributes, created_at, closed_at,
                    closed_by, resolution, entered_at, transfers, repeat_of)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state, queue = excluded.queue,
                    channel = excluded.channel,
                    agent_id = excluded.agent_id, priority = excluded.priority,
                    ticket = excluded.ticket, closed_at = excluded.closed_at,
                    closed_by = excluded.closed_by, resolution = excluded.resolution,
                    entered_at = excluded.entered_at, transfers = excluded.transfers",
            )
            .bind(&*c.id)
            .bind(&*c.customer_id)
            .bind(&*c.queue)
            .bind(c.channel.as_str())
            .bind(c.state.as_str())
            .bind(c.agent_id.as_deref())
            .bind(c.priority)
            .bind(db_int(c.ticket))
            .bind(skills_to_text(&c.skills))
            .bind(c.language.as_deref())
            .bind(&*c.attributes)
            .bind(db_int(c.created_at))
            .bind(c.closed_at.map(db_int))
            .bind(c.closed_by.map(Role::as_str))
            .bind(c.resolution.map(Resolution::as_str))
            .bind(db_int(c.entered_at))
            .bind(i64::from(c.transfers))
            .bind(c.repeat_of.as_deref())
            .execute(&mut **tx)
            .await?;
        }
        Record::Event(e) => write_events(tx, &[e]).await?,
        Record::AssignmentStarted {
            conversation_id,
            agent_id,
            at,
        } => {
            sqlx::query(
                "INSERT OR IGNORE INTO assignments (conversation_id, agent_id, started_at)
                 VALUES (?1, ?2, ?3)",
            )
            .bind(&**conversation_id)
            .bind(&**agent_id)
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
        }
        Record::AssignmentEnded {
            conversation_id,
            agent_id,
            at,
        } => {
            sqlx::query(
                "UPDATE assignments SET ended_at = ?3
                 WHERE conversation_id = ?1 AND agent_id = ?2 AND ended_at IS NULL",
            )
            .bind(&**conversation_id)
            .bind(&**agent_id)
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
        }
        Record::ConversationSummary {
            conversation_id,
            customer_id,
            queue,
            agent_id,
            resolution,
            summary: s,
            closed_at,
            // Kept elsewhere (the conversation's channel and `repeat_of`) or derived.
            ..
        } => {
            let opt = |v: Option<u64>| v.map(db_int);
            sqlx::query(
                "INSERT OR REPLACE INTO conversation_signals (conversation_id, customer_id,
                    queue, agent_id, resolution, wait_ms, first_response_ms, mean_response_ms,
                    max_response_ms, handle_ms, abandoned, transfers_cold, transfers_warm,
                    bounces, repeated_info, asked_known, customer_messages, agent_messages,
                    flags_negative, flags_positive, closed_at, sentiment_start, sentiment_end,
                    estimate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )
            .bind(&**conversation_id)
            .bind(&**customer_id)
            .bind(&**queue)
            .bind(agent_id.as_deref())
            .bind(resolution.map(Resolution::as_str))
            .bind(db_int(s.wait_ms))
            .bind(opt(s.first_response_ms))
            .bind(opt(s.mean_response_ms))
            .bind(opt(s.max_response_ms))
            .bind(opt(s.handle_ms))
            .bind(s.abandoned)
            .bind(i64::from(s.transfers_cold))
            .bind(i64::from(s.transfers_warm))
            .bind(i64::from(s.bounces))
            .bind(i64::from(s.repeated_info))
            .bind(i64::from(s.asked_known))
            .bind(i64::from(s.customer_messages))
            .bind(i64::from(s.agent_messages))
            .bind(i64::from(s.flags_negative))
            .bind(i64::from(s.flags_positive))
            .bind(db_int(*closed_at))
            .bind(s.sentiment_start)
            .bind(s.sentiment_end)
            .bind(s.estimate.map(i64::from))
            .execute(&mut **tx)
            .await?;
        }
        Record::CoachingFlags {
            conversation_id,
            agent_id,
            seq,
            codes,
            at,
        } => {
            for code in codes {
                sqlx::query(
                    "INSERT OR IGNORE INTO coaching_flags (conversation_id, seq, code, agent_id, at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(&**conversation_id)
                .bind(db_int(*seq))
                .bind(&**code)
                .bind(&**agent_id)
                .bind(db_int(*at))
                .execute(&mut **tx)
                .await?;
            }
        }
        Record::FollowUpScheduled {
            follow_up_id,
            conversation_id,
            customer_id,
            queue,
            agent_id,
            due_at,
            note,
            at,
        } => {
            sqlx::query(
                "INSERT INTO follow_ups (id, conversation_id, customer_id, queue, agent_id,
                    due_at, note, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(id) DO UPDATE SET due_at = excluded.due_at, note = excluded.note",
            )
            .bind(&**follow_up_id)
            .bind(&**conversation_id)
            .bind(&**customer_id)
            .bind(&**queue)
            .bind(&**agent_id)
            .bind(db_int(*due_at))
            .bind(note.as_deref())
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
        }
        Record::FollowUpOpened {
            follow_up_id,
            conversation_id,
            at,
        } => {
            sqlx::query(
                "UPDATE follow_ups SET opened_as = ?2, opened_at = ?3
                 WHERE id = ?1 AND opened_as IS NULL",
            )
            .bind(&**follow_up_id)
            .bind(&**conversation_id)
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
        }
        Record::CustomerName { id, name } => {
            sqlx::query("UPDATE customers SET name = ?2 WHERE id = ?1")
                .bind(&**id)
                .bind(&**name)
                .execute(&mut **tx)
                .await?;
        }
        Record::CustomerMerged { from, into, at } => {
            for sql in [
                "UPDATE conversations SET customer_id = ?2 WHERE customer_id = ?1",
                "UPDATE surveys SET customer_id = ?2 WHERE customer_id = ?1",
            ] {
                sqlx::query(sql)
                    .bind(&**from)
                    .bind(&**into)
                    .execute(&mut **tx)
                    .await?;
            }
            sqlx::query(
                "INSERT OR IGNORE INTO customer_merges (visitor_id, customer_id, at)
                 VALUES (?1, ?2, ?3)",
            )
            .bind(&**from)
            .bind(&**into)
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
        }
        Record::VoiceSignals {
            conversation_id,
            agent_id,
            signals: v,
            at,
        } => {
            sqlx::query(
                "INSERT INTO voice_signals (conversation_id, agent_id, duration_ms,
                 caller_talk_ms, agent_talk_ms, crosstalk_ms, silence_ms, silences,
                 longest_silence_ms, hold_ms, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(&**conversation_id)
            .bind(agent_id.as_deref())
            .bind(db_int(v.duration_ms))
            .bind(db_int(v.caller_talk_ms))
            .bind(db_int(v.agent_talk_ms))
            .bind(db_int(v.crosstalk_ms))
            .bind(db_int(v.silence_ms))
            .bind(i64::from(v.silences))
            .bind(db_int(v.longest_silence_ms))
            .bind(db_int(v.hold_ms))
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
        }
        Record::OfferDeclined {
            offer_id,
            conversation_id,
            agent_id,
            queue,
            missed,
            reason,
            at,
        } => {
            sqlx::query(
                "INSERT OR IGNORE INTO offer_declines
                 (offer_id, conversation_id, agent_id, queue, missed, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(&**offer_id)
            .bind(&**conversation_id)
            .bind(&**agent_id)
            .bind(&**queue)
            .bind(*missed)
            .bind(reason.as_deref())
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        // Runs of events (most of a busy batch) go in multi-row INSERTs; everything
        // keeps its order (an event follows its conversation's row).
        let mut events: Vec<&Event> = Vec::new();
        for record in records {
            if let Record::Event(e) = record {
                events.push(e);
                continue;
            }
            write_events(&mut tx, &events).await?;
            events.clear();
            write(&mut tx, record).await?;
        }
        write_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_open(&self) -> Result<Vec<RestoredConversation>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM conversations WHERE state <> 'closed' ORDER BY priority DESC, ticket",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let record = conversation_from_row(&row)?;
            let last_seq: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE conversation_id = ?1",
            )
            .bind(&*record.id)
            .fetch_one(&self.pool)
            .await?;
            let mut recent: Vec<(Id, Id, u64)> = sqlx::query(
                "SELECT author_id, client_msg_id, seq FROM events
                 WHERE conversation_id = ?1 AND client_msg_id IS NOT NULL
                 ORDER BY seq DESC LIMIT ?2",
            )
            .bind(&*record.id)
            .bind(self.dedupe_window)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0)?.into(),
                    r.try_get::<String, _>(1)?.into(),
                    millis(r.try_get(2)?),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
            recent.reverse();
            let history = self.history(&record.customer_id).await?;
            out.push(RestoredConversation {
                customer_name: default_customer_name(&record.customer_id),
                history,
                last_seq: millis(last_seq),
                recent_client_ids: recent,
                record,
            });
        }
        Ok(out)
    }

    async fn events_after(
        &self,
        conversation_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let id: Id = Arc::from(conversation_id);
        sqlx::query(
            "SELECT * FROM events WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(conversation_id)
        .bind(db_int(after))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| event_from_row(&id, row))
        .collect()
    }

    async fn conversation(&self, id: &str) -> Result<Option<StoredConversation>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM conversations WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let record = conversation_from_row(&row)?;
        let last_seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE conversation_id = ?1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(StoredConversation {
            record,
            last_seq: millis(last_seq),
        }))
    }

    async fn was_assigned(
        &self,
        conversation_id: &str,
        agent_id: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM assignments WHERE conversation_id = ?1 AND agent_id = ?2 LIMIT 1",
        )
        .bind(conversation_id)
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn history(&self, customer_id: &str) -> Result<CustomerHistory, StoreError> {
        let previous: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations WHERE customer_id = ?1 AND state = 'closed'",
        )
        .bind(customer_id)
        .fetch_one(&self.pool)
        .await?;
        // The latest resolved contact's agent, unless the customer rated it 2 or lower.
        let last: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT c.agent_id, s.csat FROM conversations c
             LEFT JOIN surveys s ON s.conversation_id = c.id
             WHERE c.customer_id = ?1 AND c.state = 'closed' AND c.resolution = 'resolved'
               AND c.agent_id IS NOT NULL
             ORDER BY c.closed_at DESC LIMIT 1",
        )
        .bind(customer_id)
        .fetch_optional(&self.pool)
        .await?;
        let poorly_rated: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT agent_id FROM surveys
             WHERE customer_id = ?1 AND csat <= 2 AND agent_id IS NOT NULL",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(CustomerHistory {
            previous_conversations: u32::try_from(previous).unwrap_or(u32::MAX),
            last_agent: last
                .filter(|(_, csat)| csat.is_none_or(|c| c > 2))
                .map(|(agent, _)| agent.into()),
            poorly_rated: poorly_rated.into_iter().map(Into::into).collect(),
        })
    }

    async fn customer(&self, id: &str) -> Result<Option<CustomerRecord>, StoreError> {
        let row: Option<(String, i64, i64, Option<String>)> =
            sqlx::query_as("SELECT id, first_seen, last_seen, name FROM customers WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id, first, last, name)| CustomerRecord {
            id,
            first_seen: u64::try_from(first).unwrap_or(0),
            last_seen: u64::try_from(last).unwrap_or(0),
            name,
        }))
    }

    async fn agent_ratings(
        &self,
        since: Millis,
        min: u32,
    ) -> Result<Vec<(String, String, u32)>, StoreError> {
        let rows: Vec<(String, String, f64)> = sqlx::query_as(
            "SELECT c.agent_id, c.queue, AVG(COALESCE(s.csat * 100, cs.estimate)) AS rating
             FROM conversations c
             LEFT JOIN surveys s ON s.conversation_id = c.id
             LEFT JOIN conversation_signals cs ON cs.conversation_id = c.id
             WHERE c.state = 'closed' AND c.closed_at >= ?1 AND c.agent_id IS NOT NULL
               AND COALESCE(s.csat * 100, cs.estimate) IS NOT NULL
             GROUP BY c.agent_id, c.queue
             HAVING COUNT(*) >= ?2",
        )
        .bind(db_int(since))
        .bind(i64::from(min))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(agent, queue, rating)| (agent, queue, rating.round().clamp(100.0, 500.0) as u32))
            .collect())
    }

    async fn satisfaction_report(
        &self,
        by_agent: bool,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<ReportRow>, StoreError> {
        macro_rules! report {
            ($key:literal) => {
                concat!(
                    "SELECT ",
                    $key,
                    " AS key, COUNT(*) AS conversations,
                        SUM(s.csat IS NOT NULL) AS surveyed,
                        COALESCE(SUM(s.csat), 0) AS csat_sum,
                        SUM(s.csat = 1) AS c1, SUM(s.csat = 2) AS c2, SUM(s.csat = 3) AS c3,
                        SUM(s.csat = 4) AS c4, SUM(s.csat = 5) AS c5,
                        COALESCE(SUM(s.effort), 0) AS effort_sum,
                        SUM(s.effort IS NOT NULL) AS effort_answers,
                        SUM(c.resolution = 'resolved') AS resolved,
                        SUM(c.resolution = 'resolved' AND NOT EXISTS
                            (SELECT 1 FROM conversations r WHERE r.repeat_of = c.id)) AS fcr,
                        SUM(COALESCE(cs.bounces, 0) > 0) AS bounced,
                        SUM(COALESCE(cs.transfers_cold + cs.transfers_warm, c.transfers) > 0)
                            AS transferred,
                        SUM(COALESCE(cs.abandoned, c.agent_id IS NULL)) AS abandoned,
                        COALESCE(SUM(cs.handle_ms), 0) AS handle_ms_sum,
                        SUM(cs.handle_ms IS NOT NULL) AS handled,
                        COALESCE(SUM(cs.flags_negative), 0) AS flags_negative,
                        COALESCE(SUM(cs.flags_positive), 0) AS flags_positive,
                        COALESCE(SUM(cs.repeated_info), 0) AS repeated_info,
                        SUM(COALESCE(c.resolution, '') <> 'resolved'
                            AND cs.sentiment_end < -50) AS bad_terms,
                        SUM(COALESCE(s.csat * 100, cs.estimate)) AS satisfaction_sum,
                        SUM(COALESCE(s.csat * 100, cs.estimate) IS NOT NULL) AS satisfaction_n
                     FROM conversations c
                     LEFT JOIN surveys s ON s.conversation_id = c.id
                     LEFT JOIN conversation_signals cs ON cs.conversation_id = c.id
                     WHERE c.state = 'closed' AND c.closed_at >= ?1 AND c.closed_at < ?2
                     GROUP BY key ORDER BY key"
                )
            };
        }
        let sql = if by_agent {
            report!("c.agent_id")
        } else {
            report!("c.queue")
        };
        let rows = sqlx::query(sql)
            .bind(db_int(from))
            .bind(db_int(to))
            .fetch_all(&self.pool)
            .await?;
        let n = |r: &SqliteRow, col: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(r.try_get::<Option<i64>, _>(col)?.unwrap_or(0)).unwrap_or(0))
        };
        rows.iter()
            .map(|r| {
                Ok(ReportRow {
                    key: r.try_get("key")?,
                    conversations: n(r, "conversations")?,
                    surveyed: n(r, "surveyed")?,
                    csat_sum: n(r, "csat_sum")?,
                    csat_counts: [
                        n(r, "c1")?,
                        n(r, "c2")?,
                        n(r, "c3")?,
                        n(r, "c4")?,
                        n(r, "c5")?,
                    ],
                    effort_sum: n(r, "effort_sum")?,
                    effort_answers: n(r, "effort_answers")?,
                    resolved: n(r, "resolved")?,
                    first_contact_resolved: n(r, "fcr")?,
                    bounced: n(r, "bounced")?,
                    transferred: n(r, "transferred")?,
                    abandoned: n(r, "abandoned")?,
                    handle_ms_sum: n(r, "handle_ms_sum")?,
                    handled: n(r, "handled")?,
                    flags_negative: n(r, "flags_negative")?,
                    flags_positive: n(r, "flags_positive")?,
                    repeated_info: n(r, "repeated_info")?,
                    ended_on_bad_terms: n(r, "bad_terms")?,
                    satisfaction_centi_sum: n(r, "satisfaction_sum")?,
                    satisfaction_n: n(r, "satisfaction_n")?,
                })
            })
            .collect()
    }

    async fn due_follow_ups(
        &self,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<FollowUpRow>, StoreError> {
        self.follow_up_rows(true, now, limit).await
    }

    async fn follow_ups(&self, limit: u32) -> Result<Vec<FollowUpRow>, StoreError> {
        self.follow_up_rows(false, 0, limit).await
    }

    async fn repeat_candidate(
        &self,
        customer_id: &str,
        queue: &str,
        since: Millis,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM conversations
             WHERE customer_id = ?1 AND queue = ?2 AND state = 'closed' AND closed_at >= ?3
             ORDER BY closed_at DESC, id DESC LIMIT 1",
        )
        .bind(customer_id)
        .bind(queue)
        .bind(db_int(since))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn put_context(
        &self,
        customer_id: &str,
        attributes: &[(String, String)],
        expires_at: Millis,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM customers WHERE id = ?1")
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Ok(false);
        }
        for (key, value) in attributes {
            sqlx::query(
                "INSERT INTO customer_context (customer_id, key, value, expires_at, set_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(customer_id, key) DO UPDATE SET value = excluded.value,
                   expires_at = excluded.expires_at, set_at = excluded.set_at",
            )
            .bind(customer_id)
            .bind(key)
            .bind(value)
            .bind(db_int(expires_at))
            .bind(db_int(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn context(
        &self,
        customer_id: &str,
        now: Millis,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT key, value FROM customer_context
             WHERE customer_id = ?1 AND expires_at > ?2 ORDER BY key",
        )
        .bind(customer_id)
        .bind(db_int(now))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn past_conversations(
        &self,
        customer_id: &str,
        limit: u32,
    ) -> Result<Vec<PastConversation>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.channel, c.queue, c.state, c.agent_id, c.created_at, c.closed_at,
                    c.resolution, c.transfers, c.repeat_of, s.csat, s.effort,
                    (SELECT SUM(v.caller_talk_ms + v.agent_talk_ms) FROM voice_signals v
                      WHERE v.conversation_id = c.id) AS talk_ms,
                    (SELECT SUM(v.silence_ms) FROM voice_signals v
                      WHERE v.conversation_id = c.id) AS dead_air_ms
             FROM conversations c LEFT JOIN surveys s ON s.conversation_id = c.id
             WHERE c.customer_id = ?1
             ORDER BY c.created_at DESC, c.id DESC LIMIT ?2",
        )
        .bind(customer_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let ms = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        rows.iter()
            .map(|r| {
                Ok(PastConversation {
                    id: r.try_get("id")?,
                    channel: r.try_get("channel")?,
                    queue: r.try_get("queue")?,
                    state: r.try_get("state")?,
                    agent_id: r.try_get("agent_id")?,
                    created_at: ms(r.try_get("created_at")?).unwrap_or(0),
                    closed_at: ms(r.try_get("closed_at")?),
                    resolution: r.try_get("resolution")?,
                    transfers: u32::try_from(r.try_get::<i64, _>("transfers")?).unwrap_or(0),
                    csat: r
                        .try_get::<Option<i64>, _>("csat")?
                        .and_then(|v| u8::try_from(v).ok()),
                    effort: r
                        .try_get::<Option<i64>, _>("effort")?
                        .and_then(|v| u8::try_from(v).ok()),
                    talk_ms: ms(r.try_get("talk_ms")?),
                    dead_air_ms: ms(r.try_get("dead_air_ms")?),
                    repeat_of: r.try_get("repeat_of")?,
                })
            })
            .collect()
    }

    async fn record_survey(&self, survey: &Survey) -> Result<SurveyOutcome, StoreError> {
        let Some(row) =
            sqlx::query("SELECT customer_id, agent_id, state FROM conversations WHERE id = ?1")
                .bind(&survey.conversation_id)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(SurveyOutcome::NotFound);
        };
        let owner: String = row.try_get("customer_id")?;
        let state: String = row.try_get("state")?;
        if owner != survey.customer_id {
            return Ok(SurveyOutcome::NotYours);
        }
        if state != "closed" {
            return Ok(SurveyOutcome::NotClosed);
        }
        let agent_id: Option<String> = row.try_get("agent_id")?;
        let done = sqlx::query(
            "INSERT INTO surveys (conversation_id, customer_id, agent_id, csat, effort, resolved, comment, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(conversation_id) DO NOTHING",
        )
        .bind(&survey.conversation_id)
        .bind(&survey.customer_id)
        .bind(agent_id)
        .bind(i64::from(survey.csat))
        .bind(survey.effort.map(i64::from))
        .bind(survey.resolved)
        .bind(survey.comment.as_deref())
        .bind(db_int(survey.at))
        .execute(&self.pool)
        .await?;
        Ok(if done.rows_affected() == 1 {
            SurveyOutcome::Recorded
        } else {
            SurveyOutcome::AlreadyAnswered
        })
    }

    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn revoke_agent(&self, agent_id: &str, at_secs: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(format!("{REVOKED_AGENT}{agent_id}"))
        .bind(at_secs.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn revoked_agents(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows =
            sqlx::query_as("SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1")
                .bind(REVOKED_AGENT)
                .fetch_all(&self.pool)
                .await?;
        Ok(revocations(rows))
    }

    async fn definitions(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT kind, body FROM definitions ORDER BY kind, id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn put_definition(
        &self,
        kind: &str,
        id: &str,
        body: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO definitions (kind, id, body, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(kind, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(kind)
        .bind(id)
        .bind(body)
        .bind(db_int(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_definition(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM definitions WHERE kind = ?1 AND id = ?2")
            .bind(kind)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn writable(&self) -> Result<(), StoreError> {
        // On the writer, as a commit would: a page written and synced.
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('write_probe', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(format!("{:?}", std::time::SystemTime::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn close(&self) {
        self.checkpointer.abort();
        self.writer.close().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }
}

//! The store at scale: PostgreSQL through a pool (8 connections unless told
//! otherwise). The same tables as SQLite, the same answers: where the two SQL
//! dialects differ (NULL ordering, text collation, booleans, the types of `SUM` and
//! `AVG`) the queries here say what SQLite does implicitly. A batch of records is one
//! transaction; a run of events is one `INSERT ... SELECT FROM UNNEST` (one round
//! trip, one prepared statement, whatever the run's length).
//!
//! The schema lives in the connection's `search_path` (its first schema): give the
//! URL `?options=-c%20search_path%3Dname` to keep several stores in one database.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use super::restore;
use super::rows::{conversation_from_row, event_columns, event_from_row, past_from_row};
use super::{
    CustomerRecord, FollowUpRow, PastConversation, REVOKED_AGENT, ReportRow, Store, StoreError,
    StoredConversation, Survey, SurveyOutcome, db_int, millis, revocations, skills_to_text,
};
use crate::core::{
    CustomerHistory, Event, Id, Millis, Record, Resolution, RestoredConversation, Role,
};

pub struct PostgresStore {
    pool: PgPool,
    dedupe_window: u32,
    /// The fencing token this store writes under (0: none taken, one node).
    fence: AtomicU64,
}

impl PostgresStore {
    /// Connections in the pool unless told otherwise: the hub commits one batch at
    /// a time; the rest serve replays, history and the operator API.
    pub const DEFAULT_POOL_SIZE: u32 = 8;

    /// Connects to `url` with [`Self::DEFAULT_POOL_SIZE`] connections and runs the
    /// migrations.
    pub async fn open(url: &str, dedupe_window: u32) -> Result<Self, StoreError> {
        Self::open_with_pool_size(url, dedupe_window, Self::DEFAULT_POOL_SIZE).await
    }

    /// Connects to `url` (a libpq URL; `options` such as `search_path` are honoured)
    /// with at most `pool_size` connections, and runs the migrations in the first
    /// schema of the search path.
    pub async fn open_with_pool_size(
        url: &str,
        dedupe_window: u32,
        pool_size: u32,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .min_connections(1)
            .max_connections(pool_size.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("src/store/migrations/postgres")
            .run(&pool)
            .await?;
        Ok(PostgresStore {
            pool,
            dedupe_window,
            fence: AtomicU64::new(0),
        })
    }

    /// In a write's transaction: fails with `Fenced` unless the stored token is
    /// still this store's. The row lock (shared) makes a new owner's `take_fence`
    /// wait for the write in flight, so no write of a deposed owner lands after it.
    async fn check_fence(&self, tx: &mut PgConnection) -> Result<(), StoreError> {
        let ours = self.fence.load(Ordering::Acquire);
        if ours == 0 {
            return Ok(());
        }
        let held: i64 = sqlx::query_scalar("SELECT token FROM fence WHERE id = 1 FOR SHARE")
            .fetch_one(&mut *tx)
            .await?;
        let held = millis(held);
        if held == ours {
            Ok(())
        } else {
            Err(StoreError::Fenced { held })
        }
    }

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
            select!("WHERE f.opened_as IS NULL AND f.due_at <= $1 ORDER BY f.due_at LIMIT $2")
        } else {
            select!("WHERE $1 >= 0 ORDER BY f.due_at LIMIT $2")
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
}

/// Inserts a run of events in one statement: each column goes as one array and
/// `UNNEST` turns them back into rows, in order. A duplicate `(conversation_id, seq)`
/// fails the statement, and with it the batch.
async fn write_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&Event],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len();
    let mut conversation_ids = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    let mut tss = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut roles = Vec::with_capacity(n);
    let mut author_ids = Vec::with_capacity(n);
    let mut author_names = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    let mut client_msg_ids = Vec::with_capacity(n);
    let mut resolutions = Vec::with_capacity(n);
    for e in events {
        let (kind, role, author_id, author_name, text, client_msg_id, resolution) =
            event_columns(e);
        conversation_ids.push(&*e.conversation_id);
        seqs.push(db_int(e.seq));
        tss.push(db_int(e.ts));
        kinds.push(kind);
        roles.push(role.as_str());
        author_ids.push(author_id);
        author_names.push(author_name);
        texts.push(text);
        client_msg_ids.push(client_msg_id);
        resolutions.push(resolution);
    }
    sqlx::query(
        "INSERT INTO events (conversation_id, seq, ts, kind, role, author_id,
            author_name, text, client_msg_id, resolution)
         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[],
            $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[])",
    )
    .bind(conversation_ids)
    .bind(seqs)
    .bind(tss)
    .bind(kinds)
    .bind(roles)
    .bind(author_ids)
    .bind(author_names)
    .bind(texts)
    .bind(client_msg_ids)
    .bind(resolutions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write(tx: &mut Transaction<'_, Postgres>, record: &Record) -> Result<(), sqlx::Error> {
    match record {
        Record::Customer { id, seen_at } => {
            sqlx::query(
                "INSERT INTO customers (id, first_seen, last_seen) VALUES ($1, $2, $2)
                 ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, queue = excluded.queue,
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
                "INSERT INTO assignments (conversation_id, agent_id, started_at)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
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
                "UPDATE assignments SET ended_at = $3
                 WHERE conversation_id = $1 AND agent_id = $2 AND ended_at IS NULL",
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
            // SQLite's INSERT OR REPLACE: the row is written whole.
            sqlx::query(
                "INSERT INTO conversation_signals (conversation_id, customer_id,
                    queue, agent_id, resolution, wait_ms, first_response_ms, mean_response_ms,
                    max_response_ms, handle_ms, abandoned, transfers_cold, transfers_warm,
                    bounces, repeated_info, asked_known, customer_messages, agent_messages,
                    flags_negative, flags_positive, closed_at, sentiment_start, sentiment_end,
                    estimate)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17, $18, $19, $20, $21, $22, $23, $24)
                 ON CONFLICT (conversation_id) DO UPDATE SET customer_id = excluded.customer_id,
                    queue = excluded.queue, agent_id = excluded.agent_id,
                    resolution = excluded.resolution, wait_ms = excluded.wait_ms,
                    first_response_ms = excluded.first_response_ms,
                    mean_response_ms = excluded.mean_response_ms,
                    max_response_ms = excluded.max_response_ms, handle_ms = excluded.handle_ms,
                    abandoned = excluded.abandoned, transfers_cold = excluded.transfers_cold,
                    transfers_warm = excluded.transfers_warm, bounces = excluded.bounces,
                    repeated_info = excluded.repeated_info, asked_known = excluded.asked_known,
                    customer_messages = excluded.customer_messages,
                    agent_messages = excluded.agent_messages,
                    flags_negative = excluded.flags_negative,
                    flags_positive = excluded.flags_positive, closed_at = excluded.closed_at,
                    sentiment_start = excluded.sentiment_start,
                    sentiment_end = excluded.sentiment_end, estimate = excluded.estimate",
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
            .bind(s.sentiment_start.map(i64::from))
            .bind(s.sentiment_end.map(i64::from))
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
            let codes: Vec<&str> = codes.iter().map(|c| &**c).collect();
            sqlx::query(
                "INSERT INTO coaching_flags (conversation_id, seq, code, agent_id, at)
                 SELECT $1, $2, code, $4, $5 FROM UNNEST($3::TEXT[]) AS code
                 ON CONFLICT DO NOTHING",
            )
            .bind(&**conversation_id)
            .bind(db_int(*seq))
            .bind(codes)
            .bind(&**agent_id)
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, note = excluded.note",
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
                "UPDATE follow_ups SET opened_as = $2, opened_at = $3
                 WHERE id = $1 AND opened_as IS NULL",
            )
            .bind(&**follow_up_id)
            .bind(&**conversation_id)
            .bind(db_int(*at))
            .execute(&mut **tx)
            .await?;
        }
        Record::CustomerName { id, name } => {
            sqlx::query("UPDATE customers SET name = $2 WHERE id = $1")
                .bind(&**id)
                .bind(&**name)
                .execute(&mut **tx)
                .await?;
        }
        Record::CustomerMerged { from, into, at } => {
            for sql in [
                "UPDATE conversations SET customer_id = $2 WHERE customer_id = $1",
                "UPDATE surveys SET customer_id = $2 WHERE customer_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(&**from)
                    .bind(&**into)
                    .execute(&mut **tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO customer_merges (visitor_id, customer_id, at)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
                "INSERT INTO offer_declines
                 (offer_id, conversation_id, agent_id, queue, missed, reason, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
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
impl Store for PostgresStore {
    async fn commit(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        // Runs of events (most of a busy batch) go in one INSERT each; everything
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
        restore::load(&self.pool, self.dedupe_window).await
    }

    async fn events_after(
        &self,
        conversation_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let id: Id = Arc::from(conversation_id);
        sqlx::query(
            "SELECT * FROM events WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(conversation_id)
        .bind(db_int(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| event_from_row(&id, row))
        .collect()
    }

    async fn conversation(&self, id: &str) -> Result<Option<StoredConversation>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM conversations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let record = conversation_from_row(&row)?;
        let last_seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE conversation_id = $1",
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
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM assignments WHERE conversation_id = $1 AND agent_id = $2)",
        )
        .bind(conversation_id)
        .bind(agent_id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn history(&self, customer_id: &str) -> Result<CustomerHistory, StoreError> {
        let previous: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations WHERE customer_id = $1 AND state = 'closed'",
        )
        .bind(customer_id)
        .fetch_one(&self.pool)
        .await?;
        // The latest resolved contact's agent, unless the customer rated it 2 or lower.
        // (SQLite sorts NULL first, so last when descending.)
        let last: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT c.agent_id, s.csat FROM conversations c
             LEFT JOIN surveys s ON s.conversation_id = c.id
             WHERE c.customer_id = $1 AND c.state = 'closed' AND c.resolution = 'resolved'
               AND c.agent_id IS NOT NULL
             ORDER BY c.closed_at DESC NULLS LAST LIMIT 1",
        )
        .bind(customer_id)
        .fetch_optional(&self.pool)
        .await?;
        // By agent, as SQLite reads them off its (customer_id, agent_id) index.
        let poorly_rated: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT agent_id FROM surveys
             WHERE customer_id = $1 AND csat <= 2 AND agent_id IS NOT NULL
             ORDER BY agent_id",
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
            sqlx::query_as("SELECT id, first_seen, last_seen, name FROM customers WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id, first, last, name)| CustomerRecord {
            id,
            first_seen: millis(first),
            last_seen: millis(last),
            name,
        }))
    }

    async fn agent_ratings(
        &self,
        since: Millis,
        min: u32,
    ) -> Result<Vec<(String, String, u32)>, StoreError> {
        // AVG of integers is NUMERIC here; SQLite's is a double. Ordered as SQLite
        // groups (by agent, then queue).
        let rows: Vec<(String, String, f64)> = sqlx::query_as(
            "SELECT c.agent_id, c.queue,
                    AVG(COALESCE(s.csat * 100, cs.estimate))::DOUBLE PRECISION AS rating
             FROM conversations c
             LEFT JOIN surveys s ON s.conversation_id = c.id
             LEFT JOIN conversation_signals cs ON cs.conversation_id = c.id
             WHERE c.state = 'closed' AND c.closed_at >= $1 AND c.agent_id IS NOT NULL
               AND COALESCE(s.csat * 100, cs.estimate) IS NOT NULL
             GROUP BY c.agent_id, c.queue
             HAVING COUNT(*) >= $2
             ORDER BY c.agent_id, c.queue",
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
        // SQLite sums 0/1 comparisons; here they are counts with a FILTER, and sums
        // of BIGINT (NUMERIC here) are cast back. No agent (NULL) sorts first, as in
        // SQLite.
        macro_rules! report {
            ($key:literal) => {
                concat!(
                    "SELECT ",
                    $key,
                    " AS key, COUNT(*) AS conversations,
                        COUNT(s.csat) AS surveyed,
                        COALESCE(SUM(s.csat), 0)::BIGINT AS csat_sum,
                        COUNT(*) FILTER (WHERE s.csat = 1) AS c1,
                        COUNT(*) FILTER (WHERE s.csat = 2) AS c2,
                        COUNT(*) FILTER (WHERE s.csat = 3) AS c3,
                        COUNT(*) FILTER (WHERE s.csat = 4) AS c4,
                        COUNT(*) FILTER (WHERE s.csat = 5) AS c5,
                        COALESCE(SUM(s.effort), 0)::BIGINT AS effort_sum,
                        COUNT(s.effort) AS effort_answers,
                        COUNT(*) FILTER (WHERE c.resolution = 'resolved') AS resolved,
                        COUNT(*) FILTER (WHERE c.resolution = 'resolved' AND NOT EXISTS
                            (SELECT 1 FROM conversations r WHERE r.repeat_of = c.id)) AS fcr,
                        COUNT(*) FILTER (WHERE COALESCE(cs.bounces, 0) > 0) AS bounced,
                        COUNT(*) FILTER (WHERE
                            COALESCE(cs.transfers_cold + cs.transfers_warm, c.transfers) > 0)
                            AS transferred,
                        COUNT(*) FILTER (WHERE COALESCE(cs.abandoned, c.agent_id IS NULL))
                            AS abandoned,
                        COALESCE(SUM(cs.handle_ms), 0)::BIGINT AS handle_ms_sum,
                        COUNT(cs.handle_ms) AS handled,
                        COALESCE(SUM(cs.flags_negative), 0)::BIGINT AS flags_negative,
                        COALESCE(SUM(cs.flags_positive), 0)::BIGINT AS flags_positive,
                        COALESCE(SUM(cs.repeated_info), 0)::BIGINT AS repeated_info,
                        COUNT(*) FILTER (WHERE COALESCE(c.resolution, '') <> 'resolved'
                            AND cs.sentiment_end < -50) AS bad_terms,
                        SUM(COALESCE(s.csat * 100, cs.estimate))::BIGINT AS satisfaction_sum,
                        COUNT(COALESCE(s.csat * 100, cs.estimate)) AS satisfaction_n
                     FROM conversations c
                     LEFT JOIN surveys s ON s.conversation_id = c.id
                     LEFT JOIN conversation_signals cs ON cs.conversation_id = c.id
                     WHERE c.state = 'closed' AND c.closed_at >= $1 AND c.closed_at < $2
                     GROUP BY ",
                    $key,
                    " ORDER BY ",
                    $key,
                    " NULLS FIRST"
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
        let n = |r: &PgRow, col: &str| -> Result<u64, StoreError> {
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
             WHERE customer_id = $1 AND queue = $2 AND state = 'closed' AND closed_at >= $3
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
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM customers WHERE id = $1")
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Ok(false);
        }
        // One statement per key, as SQLite: a key given twice keeps its last value.
        for (key, value) in attributes {
            sqlx::query(
                "INSERT INTO customer_context (customer_id, key, value, expires_at, set_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (customer_id, key) DO UPDATE SET value = excluded.value,
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
             WHERE customer_id = $1 AND expires_at > $2 ORDER BY key",
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
                      WHERE v.conversation_id = c.id)::BIGINT AS talk_ms,
                    (SELECT SUM(v.silence_ms) FROM voice_signals v
                      WHERE v.conversation_id = c.id)::BIGINT AS dead_air_ms
             FROM conversations c LEFT JOIN surveys s ON s.conversation_id = c.id
             WHERE c.customer_id = $1
             ORDER BY c.created_at DESC, c.id DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(past_from_row).collect()
    }

    async fn record_survey(&self, survey: &Survey) -> Result<SurveyOutcome, StoreError> {
        let Some(row) =
            sqlx::query("SELECT customer_id, agent_id, state FROM conversations WHERE id = $1")
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (conversation_id) DO NOTHING",
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
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn revoke_agent(&self, agent_id: &str, at_secs: u64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(format!("{REVOKED_AGENT}{agent_id}"))
        .bind(at_secs.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoked_agents(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query_as("SELECT key, value FROM meta WHERE starts_with(key, $1)")
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
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        sqlx::query(
            "INSERT INTO definitions (kind, id, body, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(kind)
        .bind(id)
        .bind(body)
        .bind(db_int(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_definition(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        sqlx::query("DELETE FROM definitions WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_fence(&self, token: u64) -> Result<(), StoreError> {
        let taken = sqlx::query("UPDATE fence SET token = $1 WHERE id = 1 AND token < $1")
            .bind(db_int(token))
            .execute(&self.pool)
            .await?
            .rows_affected();
        if taken == 1 {
            self.fence.store(token, Ordering::Release);
            Ok(())
        } else {
            Err(StoreError::Fenced {
                held: self.fence().await?,
            })
        }
    }

    async fn fence(&self) -> Result<u64, StoreError> {
        let held: i64 = sqlx::query_scalar("SELECT token FROM fence WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(millis(held))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

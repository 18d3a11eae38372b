//! The embedded store: one SQLite file in WAL mode, `synchronous=FULL` unless told
//! otherwise. A batch of records is one transaction, so many messages share one fsync.
//! Batches are committed by `writer.rs` on a thread of its own; everything else runs
//! on sqlx's pool (reads, migrations, the operator API's few writes).

mod reader;
mod reads;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::restore;
use super::{
    CustomerRecord, FollowUpRow, PastConversation, REVOKED_AGENT, ReportRow, StartFacts, Store,
    StoreError, StoredConversation, Survey, SurveyOutcome, db_int, millis, revocations,
};
use crate::core::{CustomerHistory, Event, Millis, Record, RestoredConversation};

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
    /// One connection, on a thread of its own, that only commits the hub's batches
    /// (`writer.rs`). In WAL mode a connection drops its whole page cache when another
    /// one has written, so commits taking turns over the pool's connections would read
    /// their pages back from disk each time; the same connection keeps them.
    writer: writer::Writer,
    /// Threads with a read-only connection each, for the reads on hot paths
    /// (`reader.rs`); the pool keeps the cold ones.
    readers: reader::Readers,
    dedupe_window: u32,
    /// Checkpoints the WAL in the background (the writer never does, see `open`).
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// The page size of a new store (an existing one keeps its own: a store in WAL mode
/// cannot change it). What a message costs on disk is the pages its commit rewrites:
/// the last page of the transcript (shared by the batch) and the page of the
/// `(conversation_id, seq)` index where its conversation's entries end, one per
/// message. Pages of 1 KiB rather than SQLite's default 4 KiB make that ~2.5 KB
/// appended to the WAL per message instead of ~6 KB at 200 busy conversations
/// (docs/benchmarks.md); a long message takes overflow pages, read in order.
const PAGE_SIZE: u32 = 1024;

/// Reader threads (`reader.rs`): one per core of the machines this is sized for.
const READER_THREADS: usize = 2;

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
            .page_size(PAGE_SIZE)
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
        let writer = writer::Writer::open(&data_dir.join("warmline.db"), synchronous)?;
        let readers = reader::Readers::open(&data_dir.join("warmline.db"), READER_THREADS)?;
        let checkpointer = tokio::spawn(checkpoint_every(pool.clone(), CHECKPOINT_EVERY));
        Ok(SqliteStore {
            pool,
            writer,
            readers,
            dedupe_window,
            checkpointer,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.writer.commit(records.to_vec()).await
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
        let id = conversation_id.to_owned();
        self.readers
            .read(move |conn| reads::events_after(conn, &id, after, limit))
            .await
    }

    async fn conversation(&self, id: &str) -> Result<Option<StoredConversation>, StoreError> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| reads::conversation(conn, &id))
            .await
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
        let customer_id = customer_id.to_owned();
        self.readers
            .read(move |conn| reads::history(conn, &customer_id))
            .await
    }

    async fn start_facts(
        &self,
        customer_id: &str,
        queue: &str,
        repeat_since: Millis,
        now: Millis,
    ) -> Result<StartFacts, StoreError> {
        let (customer_id, queue) = (customer_id.to_owned(), queue.to_owned());
        self.readers
            .read(move |conn| reads::start_facts(conn, &customer_id, &queue, repeat_since, now))
            .await
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
        let (customer_id, queue) = (customer_id.to_owned(), queue.to_owned());
        self.readers
            .read(move |conn| reads::repeat_candidate(conn, &customer_id, &queue, since))
            .await
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
        let customer_id = customer_id.to_owned();
        self.readers
            .read(move |conn| reads::context(conn, &customer_id, now))
            .await
    }

    async fn past_conversations(
        &self,
        customer_id: &str,
        limit: u32,
    ) -> Result<Vec<PastConversation>, StoreError> {
        let customer_id = customer_id.to_owned();
        self.readers
            .read(move |conn| reads::past_conversations(conn, &customer_id, limit))
            .await
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
        self.writer.probe().await
    }

    fn wal_bytes(&self) -> u64 {
        self.writer.wal_bytes()
    }

    async fn close(&self) {
        self.checkpointer.abort();
        self.writer.close().await;
        self.readers.close().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }
}

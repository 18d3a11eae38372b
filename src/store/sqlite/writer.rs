//! The SQLite writer: one connection on a thread of its own that commits the hub's
//! batches, one transaction and one fsync each.
//!
//! A batch is handed to the thread once and answered once: every statement of it runs
//! on this thread, from statements prepared once and kept (`prepare_cached`). Through
//! sqlx each statement was a round trip to its database thread (two futex hand-offs
//! per statement: 13 % of the gateway's samples at 4,000 messages a second), and
//! multi-row `INSERT`s, the way to make those round trips fewer, made SQLite keep a
//! statement journal in a temporary file rewritten at every commit. Here each event
//! is its own single-row `INSERT` (no statement journal) and costs a few
//! microseconds. The crate is rusqlite: synchronous, so nothing here waits on an
//! executor, it binds borrowed `&str` without copies, and it links the same SQLite
//! (`libsqlite3-sys`) as sqlx, which keeps the migrations and every read.
//!
//! The connection never checkpoints (`wal_autocheckpoint=0`): the store's background
//! task does, so no commit pays for copying the WAL back.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::super::rows::event_columns;
use super::super::{StoreError, db_int, skills_to_text};
use super::Synchronous;
use crate::core::{Event, Record, Resolution, Role};

/// What the writer thread is asked to do.
enum Job {
    Commit {
        records: Vec<Record>,
        done: oneshot::Sender<Result<(), rusqlite::Error>>,
    },
    /// A small durable write: whether a commit would go through now.
    Probe {
        done: oneshot::Sender<Result<(), rusqlite::Error>>,
    },
}

/// The handle the store keeps: send a batch, await its answer.
pub(super) struct Writer {
    jobs: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Bytes appended to the WAL by this writer's commits (frames and their headers).
    wal_bytes: Arc<AtomicU64>,
}

impl Writer {
    /// Opens the writer's connection to `path` (the migrations have run) and starts
    /// its thread.
    pub(super) fn open(path: &Path, synchronous: Synchronous) -> Result<Writer, StoreError> {
        let mut conn = connect(path, synchronous)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
        let page_size = u64::try_from(page_size).unwrap_or(4096);
        let (jobs, rx) = mpsc::channel();
        let wal_bytes = Arc::new(AtomicU64::new(0));
        let counted = wal_bytes.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                conn.wal_hook(Some(count_wal_frames));
                serve(&mut conn, &rx, || {
                    // A WAL frame is a page and its 24-byte header.
                    let frames = WAL_FRAMES.with(|f| f.get().1);
                    counted.store(frames * (page_size + 24), Ordering::Relaxed);
                });
            })
            .map_err(|e| StoreError::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            jobs: std::sync::Mutex::new(Some(jobs)),
            thread: std::sync::Mutex::new(Some(thread)),
            wal_bytes,
        })
    }

    /// Bytes appended to the WAL so far (`warmline_store_wal_bytes_total`).
    pub(super) fn wal_bytes(&self) -> u64 {
        self.wal_bytes.load(Ordering::Relaxed)
    }

    /// Makes every record durable in one transaction, in order.
    pub(super) async fn commit(&self, records: Vec<Record>) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Commit { records, done })?;
        answer.await.map_err(|_| gone())?.map_err(StoreError::from)
    }

    /// A small write and sync on the writer's connection, as a commit would do.
    pub(super) async fn probe(&self) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Probe { done })?;
        answer.await.map_err(|_| gone())?.map_err(StoreError::from)
    }

    /// Lets the thread finish the jobs it has and waits for it (its connection
    /// closes with it). Later calls fail.
    pub(super) async fn close(&self) {
        drop(self.jobs.lock().map(|mut j| j.take()));
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let jobs = self.jobs.lock().map_err(|_| gone())?;
        jobs.as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())
    }
}

fn gone() -> StoreError {
    StoreError::Writer("the store is closed".into())
}

fn connect(path: &Path, synchronous: Synchronous) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(PathBuf::from(path))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Any temporary structure (a statement journal of a multi-row UPDATE) in memory.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

thread_local! {
    /// The writer thread's WAL: frames in it after the last commit, and frames
    /// appended in all (SQLite's WAL hook is a plain function; the writer is the only
    /// connection on its thread, so its thread's cell is its own).
    static WAL_FRAMES: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// SQLite calls this after each commit with the frames now in the WAL. Fewer than
/// before: the WAL restarted from its beginning (after a complete checkpoint), so all
/// of them are this commit's.
#[allow(clippy::unnecessary_wraps)] // the hook's signature
fn count_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    let frames = u64::try_from(frames).unwrap_or(0);
    WAL_FRAMES.with(|f| {
        let (before, total) = f.get();
        let added = if frames >= before {
            frames - before
        } else {
            frames
        };
        f.set((frames, total + added));
    });
    Ok(())
}

/// The thread's loop: one job at a time until every sender is gone.
fn serve(conn: &mut Connection, jobs: &mpsc::Receiver<Job>, committed: impl Fn()) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Commit { records, done } => {
                let result = commit(conn, &records);
                committed();
                let _ = done.send(result);
            }
            Job::Probe { done } => {
                let _ = done.send(probe(conn));
            }
        }
    }
}

fn commit(conn: &mut Connection, records: &[Record]) -> Result<(), rusqlite::Error> {
    // IMMEDIATE: the write lock is taken at the start, so the transaction never has
    // to upgrade a read lock another connection's write would make stale.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for record in records {
        write(&tx, record)?;
    }
    tx.commit()
}

fn probe(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('write_probe', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([format!("{:?}", std::time::SystemTime::now())])?;
    tx.commit()
}

fn write_event(tx: &Transaction<'_>, e: &Event) -> Result<(), rusqlite::Error> {
    let (kind, role, author_id, author_name, text, client_msg_id, resolution) = event_columns(e);
    tx.prepare_cached(
        "INSERT INTO events (conversation_id, seq, ts, kind, role, author_id, author_name,
            text, client_msg_id, resolution)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        &*e.conversation_id,
        db_int(e.seq),
        db_int(e.ts),
        kind,
        role.as_str(),
        author_id,
        author_name,
        text,
        client_msg_id,
        resolution,
    ])?;
    Ok(())
}

#[allow(clippy::too_many_lines)] // one arm per record, each a statement and its values
fn write(tx: &Transaction<'_>, record: &Record) -> Result<(), rusqlite::Error> {
    match record {
        Record::Event(e) => write_event(tx, e)?,
        Record::Customer { id, seen_at } => {
            tx.prepare_cached(
                "INSERT INTO customers (id, first_seen, last_seen) VALUES (?1, ?2, ?2)
                 ON CONFLICT(id) DO UPDATE SET last_seen = excluded.last_seen",
            )?
            .execute(params![&**id, db_int(*seen_at)])?;
        }
        Record::Conversation(c) => {
            tx.prepare_cached(
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
            )?
            .execute(params![
                &*c.id,
                &*c.customer_id,
                &*c.queue,
                c.channel.as_str(),
                c.state.as_str(),
                c.agent_id.as_deref(),
                c.priority,
                db_int(c.ticket),
                skills_to_text(&c.skills),
                c.language.as_deref(),
                &*c.attributes,
                db_int(c.created_at),
                c.closed_at.map(db_int),
                c.closed_by.map(Role::as_str),
                c.resolution.map(Resolution::as_str),
                db_int(c.entered_at),
                i64::from(c.transfers),
                c.repeat_of.as_deref(),
            ])?;
        }
        Record::AssignmentStarted {
            conversation_id,
            agent_id,
            at,
        } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO assignments (conversation_id, agent_id, started_at)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&**conversation_id, &**agent_id, db_int(*at)])?;
        }
        Record::AssignmentEnded {
            conversation_id,
            agent_id,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE assignments SET ended_at = ?3
                 WHERE conversation_id = ?1 AND agent_id = ?2 AND ended_at IS NULL",
            )?
            .execute(params![&**conversation_id, &**agent_id, db_int(*at)])?;
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
            tx.prepare_cached(
                "INSERT OR REPLACE INTO conversation_signals (conversation_id, customer_id,
                    queue, agent_id, resolution, wait_ms, first_response_ms, mean_response_ms,
                    max_response_ms, handle_ms, abandoned, transfers_cold, transfers_warm,
                    bounces, repeated_info, asked_known, customer_messages, agent_messages,
                    flags_negative, flags_positive, closed_at, sentiment_start, sentiment_end,
                    estimate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )?
            .execute(params![
                &**conversation_id,
                &**customer_id,
                &**queue,
                agent_id.as_deref(),
                resolution.map(Resolution::as_str),
                db_int(s.wait_ms),
                opt(s.first_response_ms),
                opt(s.mean_response_ms),
                opt(s.max_response_ms),
                opt(s.handle_ms),
                s.abandoned,
                s.transfers_cold,
                s.transfers_warm,
                s.bounces,
                s.repeated_info,
                s.asked_known,
                s.customer_messages,
                s.agent_messages,
                s.flags_negative,
                s.flags_positive,
                db_int(*closed_at),
                s.sentiment_start,
                s.sentiment_end,
                s.estimate,
            ])?;
        }
        Record::CoachingFlags {
            conversation_id,
            agent_id,
            seq,
            codes,
            at,
        } => {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO coaching_flags (conversation_id, seq, code, agent_id, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for code in codes {
                insert.execute(params![
                    &**conversation_id,
                    db_int(*seq),
                    &**code,
                    &**agent_id,
                    db_int(*at),
                ])?;
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
            tx.prepare_cached(
                "INSERT INTO follow_ups (id, conversation_id, customer_id, queue, agent_id,
                    due_at, note, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(id) DO UPDATE SET due_at = excluded.due_at, note = excluded.note",
            )?
            .execute(params![
                &**follow_up_id,
                &**conversation_id,
                &**customer_id,
                &**queue,
                &**agent_id,
                db_int(*due_at),
                note.as_deref(),
                db_int(*at),
            ])?;
        }
        Record::FollowUpOpened {
            follow_up_id,
            conversation_id,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE follow_ups SET opened_as = ?2, opened_at = ?3
                 WHERE id = ?1 AND opened_as IS NULL",
            )?
            .execute(params![&**follow_up_id, &**conversation_id, db_int(*at)])?;
        }
        Record::CustomerName { id, name } => {
            tx.prepare_cached("UPDATE customers SET name = ?2 WHERE id = ?1")?
                .execute(params![&**id, &**name])?;
        }
        Record::CustomerMerged { from, into, at } => {
            for sql in [
                "UPDATE conversations SET customer_id = ?2 WHERE customer_id = ?1",
                "UPDATE surveys SET customer_id = ?2 WHERE customer_id = ?1",
            ] {
                tx.prepare_cached(sql)?.execute(params![&**from, &**into])?;
            }
            tx.prepare_cached(
                "INSERT OR IGNORE INTO customer_merges (visitor_id, customer_id, at)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&**from, &**into, db_int(*at)])?;
        }
        Record::VoiceSignals {
            conversation_id,
            agent_id,
            signals: v,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO voice_signals (conversation_id, agent_id, duration_ms,
                 caller_talk_ms, agent_talk_ms, crosstalk_ms, silence_ms, silences,
                 longest_silence_ms, hold_ms, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                &**conversation_id,
                agent_id.as_deref(),
                db_int(v.duration_ms),
                db_int(v.caller_talk_ms),
                db_int(v.agent_talk_ms),
                db_int(v.crosstalk_ms),
                db_int(v.silence_ms),
                v.silences,
                db_int(v.longest_silence_ms),
                db_int(v.hold_ms),
                db_int(*at),
            ])?;
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
            tx.prepare_cached(
                "INSERT OR IGNORE INTO offer_declines
                 (offer_id, conversation_id, agent_id, queue, missed, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                &**offer_id,
                &**conversation_id,
                &**agent_id,
                &**queue,
                *missed,
                reason.as_deref(),
                db_int(*at),
            ])?;
        }
    }
    Ok(())
}

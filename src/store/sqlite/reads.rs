//! The hot reads as SQL, run on a reader thread's connection (`reader.rs`): plain
//! functions of a connection, so one hand-off can run several of them (`start_facts`).

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::super::rows::{Lite, conversation_from_row, event_from_row, past_from_row};
use super::super::{PastConversation, StartFacts, StoreError, StoredConversation, db_int, millis};
use crate::core::{CustomerHistory, Event, Id, Millis};

pub(super) fn events_after(
    conn: &Connection,
    conversation_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    let id: Id = Arc::from(conversation_id);
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM events WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![conversation_id, db_int(after), limit])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(event_from_row(&id, &Lite(row))?);
    }
    Ok(events)
}

pub(super) fn conversation(
    conn: &Connection,
    id: &str,
) -> Result<Option<StoredConversation>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT * FROM conversations WHERE id = ?1")?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let record = conversation_from_row(&Lite(row))?;
    let last_seq: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE conversation_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    Ok(Some(StoredConversation {
        record,
        last_seq: millis(last_seq),
    }))
}

pub(super) fn history(conn: &Connection, customer_id: &str) -> Result<CustomerHistory, StoreError> {
    let previous: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM conversations WHERE customer_id = ?1 AND state = 'closed'",
        )?
        .query_row([customer_id], |r| r.get(0))?;
    // The latest resolved contact's agent, unless the customer rated it 2 or lower.
    let last: Option<(String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT c.agent_id, s.csat FROM conversations c
             LEFT JOIN surveys s ON s.conversation_id = c.id
             WHERE c.customer_id = ?1 AND c.state = 'closed' AND c.resolution = 'resolved'
               AND c.agent_id IS NOT NULL
             ORDER BY c.closed_at DESC LIMIT 1",
        )?
        .query_row([customer_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT agent_id FROM surveys
         WHERE customer_id = ?1 AND csat <= 2 AND agent_id IS NOT NULL",
    )?;
    let poorly_rated = stmt
        .query_map([customer_id], |r| r.get::<_, String>(0))?
        .map(|agent| agent.map(Id::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CustomerHistory {
        previous_conversations: u32::try_from(previous).unwrap_or(u32::MAX),
        last_agent: last
            .filter(|(_, csat)| csat.is_none_or(|c| c > 2))
            .map(|(agent, _)| agent.into()),
        poorly_rated,
    })
}

pub(super) fn context(
    conn: &Connection,
    customer_id: &str,
    now: Millis,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, value FROM customer_context
         WHERE customer_id = ?1 AND expires_at > ?2 ORDER BY key",
    )?;
    let pairs = stmt
        .query_map(params![customer_id, db_int(now)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pairs)
}

pub(super) fn repeat_candidate(
    conn: &Connection,
    customer_id: &str,
    queue: &str,
    since: Millis,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM conversations
             WHERE customer_id = ?1 AND queue = ?2 AND state = 'closed' AND closed_at >= ?3
             ORDER BY closed_at DESC, id DESC LIMIT 1",
        )?
        .query_row(params![customer_id, queue, db_int(since)], |r| r.get(0))
        .optional()?)
}

/// The three reads of a `start`, on one connection, in one read transaction (so they
/// agree with each other).
pub(super) fn start_facts(
    conn: &Connection,
    customer_id: &str,
    queue: &str,
    repeat_since: Millis,
    now: Millis,
) -> Result<StartFacts, StoreError> {
    conn.execute_batch("BEGIN")?;
    let facts = (|| {
        Ok(StartFacts {
            history: history(conn, customer_id)?,
            context: context(conn, customer_id, now)?,
            repeat_of: repeat_candidate(conn, customer_id, queue, repeat_since)?,
        })
    })();
    conn.execute_batch("COMMIT")?;
    facts
}

pub(super) fn past_conversations(
    conn: &Connection,
    customer_id: &str,
    limit: u32,
) -> Result<Vec<PastConversation>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.id, c.channel, c.queue, c.state, c.agent_id, c.created_at, c.closed_at,
                c.resolution, c.transfers, c.repeat_of, s.csat, s.effort,
                (SELECT SUM(v.caller_talk_ms + v.agent_talk_ms) FROM voice_signals v
                  WHERE v.conversation_id = c.id) AS talk_ms,
                (SELECT SUM(v.silence_ms) FROM voice_signals v
                  WHERE v.conversation_id = c.id) AS dead_air_ms
         FROM conversations c LEFT JOIN surveys s ON s.conversation_id = c.id
         WHERE c.customer_id = ?1
         ORDER BY c.created_at DESC, c.id DESC LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![customer_id, i64::from(limit)])?;
    let mut past = Vec::new();
    while let Some(row) = rows.next()? {
        past.push(past_from_row(&Lite(row))?);
    }
    Ok(past)
}

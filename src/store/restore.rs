//! Bringing the open conversations back after a restart, in a handful of queries
//! whatever their number: the conversations with their last `seq`, the recent client
//! ids of all of them, and their customers' history in three grouped queries. A
//! round of queries per conversation took 6.4 s for 15,000 (longer than the cluster's
//! lease for 100,000); these are the same SQL on both backends (`$1` is SQLite's
//! first parameter too) and `assemble` puts the rows together.

use std::collections::HashMap;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::rows::conversation_from_row;
use super::{StoreError, millis};

use crate::core::{
    ConversationRecord, CustomerHistory, Id, RestoredConversation, default_customer_name,
};

/// Every conversation that is not closed, queued ones in their order, with its last
/// `seq` (0: no event yet).
pub(super) const OPEN: &str = "SELECT c.*,
        COALESCE((SELECT MAX(e.seq) FROM events e WHERE e.conversation_id = c.id), 0)
            AS last_seq
     FROM conversations c WHERE c.state <> 'closed'
     ORDER BY c.priority DESC, c.ticket";

/// The last `$1` client ids of each open conversation: (conversation, author, client
/// id, seq), oldest first.
pub(super) const CLIENT_IDS: &str = "SELECT conversation_id, author_id, client_msg_id, seq FROM (
        SELECT e.conversation_id, e.author_id, e.client_msg_id, e.seq,
            ROW_NUMBER() OVER (PARTITION BY e.conversation_id ORDER BY e.seq DESC) AS n
        FROM events e JOIN conversations c ON c.id = e.conversation_id
        WHERE c.state <> 'closed' AND e.client_msg_id IS NOT NULL) recent
     WHERE n <= $1
     ORDER BY conversation_id, seq";

/// How many closed conversations each customer with an open one has had.
pub(super) const PREVIOUS: &str = "SELECT customer_id, COUNT(*) FROM conversations
     WHERE state = 'closed'
       AND customer_id IN (SELECT customer_id FROM conversations WHERE state <> 'closed')
     GROUP BY customer_id";

/// The agent of each such customer's latest resolved contact, with its CSAT if rated.
pub(super) const LAST_AGENT: &str = "SELECT customer_id, agent_id, csat FROM (
        SELECT c.customer_id, c.agent_id, s.csat,
            ROW_NUMBER() OVER (PARTITION BY c.customer_id ORDER BY c.closed_at DESC) AS n
        FROM conversations c LEFT JOIN surveys s ON s.conversation_id = c.id
        WHERE c.state = 'closed' AND c.resolution = 'resolved' AND c.agent_id IS NOT NULL
          AND c.customer_id IN (SELECT customer_id FROM conversations WHERE state <> 'closed')
     ) latest
     WHERE n = 1";

/// Agents each such customer rated 2 or lower.
pub(super) const POORLY_RATED: &str = "SELECT DISTINCT customer_id, agent_id FROM surveys
     WHERE csat <= 2 AND agent_id IS NOT NULL
       AND customer_id IN (SELECT customer_id FROM conversations WHERE state <> 'closed')
     ORDER BY customer_id, agent_id";

/// What the queries above returned.
#[derive(Default)]
pub(super) struct Rows {
    /// `OPEN`, in its order.
    pub open: Vec<(ConversationRecord, u64)>,
    /// `CLIENT_IDS`: (conversation, author, client id, seq), by conversation then seq.
    pub client_ids: Vec<(String, String, String, u64)>,
    /// `PREVIOUS`: (customer, closed conversations).
    pub previous: Vec<(String, i64)>,
    /// `LAST_AGENT`: (customer, agent, CSAT).
    pub last_agent: Vec<(String, String, Option<i64>)>,
    /// `POORLY_RATED`: (customer, agent).
    pub poorly_rated: Vec<(String, String)>,
}

/// Runs the queries above on either backend's pool and puts their rows together.
pub(super) async fn load<DB>(
    pool: &Pool<DB>,
    dedupe_window: u32,
) -> Result<Vec<RestoredConversation>, StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB>,
    i64: Type<DB>,
    for<'r> String: Decode<'r, DB>,
    String: Type<DB>,
    for<'r> i32: Decode<'r, DB>,
    i32: Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> (String, String, String, i64): FromRow<'r, DB::Row>,
    for<'r> (String, i64): FromRow<'r, DB::Row>,
    for<'r> (String, String, Option<i64>): FromRow<'r, DB::Row>,
    for<'r> (String, String): FromRow<'r, DB::Row>,
{
    use sqlx::Row;
    let open = sqlx::query(OPEN)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                conversation_from_row(row)?,
                millis(row.try_get("last_seq")?),
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    let client_ids = sqlx::query_as::<_, (String, String, String, i64)>(CLIENT_IDS)
        .bind(i64::from(dedupe_window))
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(c, a, id, seq)| (c, a, id, millis(seq)))
        .collect();
    Ok(assemble(Rows {
        open,
        client_ids,
        previous: sqlx::query_as(PREVIOUS).fetch_all(pool).await?,
        last_agent: sqlx::query_as(LAST_AGENT).fetch_all(pool).await?,
        poorly_rated: sqlx::query_as(POORLY_RATED).fetch_all(pool).await?,
    }))
}

/// Puts the rows together: each open conversation with its last `seq`, recent client
/// ids and its customer's history, in `OPEN`'s order.
pub(super) fn assemble(rows: Rows) -> Vec<RestoredConversation> {
    let mut histories: HashMap<String, CustomerHistory> = HashMap::new();
    for (customer, n) in rows.previous {
        histories
            .entry(customer)
            .or_default()
            .previous_conversations = u32::try_from(n).unwrap_or(u32::MAX);
    }
    for (customer, agent, csat) in rows.last_agent {
        // Not the one they rated 2 or lower.
        if csat.is_none_or(|c| c > 2) {
            histories.entry(customer).or_default().last_agent = Some(agent.into());
        }
    }
    for (customer, agent) in rows.poorly_rated {
        histories
            .entry(customer)
            .or_default()
            .poorly_rated
            .push(agent.into());
    }
    let mut recent: HashMap<String, Vec<(Id, Id, u64)>> = HashMap::new();
    for (conversation, author, client_id, seq) in rows.client_ids {
        recent
            .entry(conversation)
            .or_default()
            .push((author.into(), client_id.into(), seq));
    }
    rows.open
        .into_iter()
        .map(|(record, last_seq)| RestoredConversation {
            customer_name: default_customer_name(&record.customer_id),
            history: histories
                .get(&*record.customer_id)
                .cloned()
                .unwrap_or_default(),
            last_seq,
            recent_client_ids: recent.remove(&*record.id).unwrap_or_default(),
            record,
        })
        .collect()
}

//! Rows as both backends keep them: the same columns, read and written the same way,
//! so SQLite and PostgreSQL answer alike (`tests/store.rs` holds them to it).

use sqlx::{ColumnIndex, Decode, Type};

use super::{PastConversation, StoreError, corrupt, millis, skills_from_text};
use crate::core::{
    Author, Channel, ConversationRecord, ConversationState, Event, EventBody, Id, Resolution, Role,
};

/// A row's columns by name, whichever crate read it: sqlx's rows (the pool, PostgreSQL)
/// and rusqlite's (`sqlite/reader.rs`, as [`Lite`]) decode through the same functions.
pub(super) trait Columns {
    fn text(&self, name: &str) -> Result<String, StoreError>;
    fn opt_text(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, name: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError>;
    /// A 32-bit column (PostgreSQL's `INTEGER`).
    fn small(&self, name: &str) -> Result<i32, StoreError>;
}

impl<R> Columns for R
where
    R: sqlx::Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database>,
    String: Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database>,
    i64: Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database>,
    i32: Type<R::Database>,
{
    fn text(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn small(&self, name: &str) -> Result<i32, StoreError> {
        Ok(self.try_get(name)?)
    }
}

/// A rusqlite row, read through [`Columns`].
pub(super) struct Lite<'a, 'r>(pub &'a rusqlite::Row<'r>);

impl Columns for Lite<'_, '_> {
    fn text(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.0.get(name)?)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.0.get(name)?)
    }
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self.0.get(name)?)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.0.get(name)?)
    }
    fn small(&self, name: &str) -> Result<i32, StoreError> {
        Ok(self.0.get(name)?)
    }
}

pub(super) fn conversation_from_row(row: &impl Columns) -> Result<ConversationRecord, StoreError> {
    let channel = row.text("channel")?;
    let state = row.text("state")?;
    let closed_by = row.opt_text("closed_by")?;
    let resolution = row.opt_text("resolution")?;
    let skills = row.text("skills")?;
    let created_at = row.int("created_at")?;
    Ok(ConversationRecord {
        id: row.text("id")?.into(),
        customer_id: row.text("customer_id")?.into(),
        queue: row.text("queue")?.into(),
        channel: Channel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?,
        state: ConversationState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        agent_id: row.opt_text("agent_id")?.map(Into::into),
        priority: row.small("priority")?,
        ticket: millis(row.int("ticket")?),
        skills: skills_from_text(&skills)?,
        language: row.opt_text("language")?.map(Into::into),
        attributes: row.text("attributes")?.into(),
        created_at: millis(created_at),
        entered_at: millis(row.opt_int("entered_at")?.unwrap_or(created_at)),
        transfers: u32::try_from(row.int("transfers")?).unwrap_or(0),
        closed_at: row.opt_int("closed_at")?.map(millis),
        closed_by: match closed_by {
            Some(r) => Some(Role::parse(&r).ok_or_else(|| corrupt("closed_by", &r))?),
            None => None,
        },
        resolution: match resolution {
            Some(r) => Some(Resolution::parse(&r).ok_or_else(|| corrupt("resolution", &r))?),
            None => None,
        },
        repeat_of: row.opt_text("repeat_of")?.map(Into::into),
    })
}

pub(super) fn event_from_row(
    conversation_id: &Id,
    row: &impl Columns,
) -> Result<Event, StoreError> {
    let kind = row.text("kind")?;
    let role = row.text("role")?;
    let role = Role::parse(&role).ok_or_else(|| corrupt("role", &role))?;
    let author_id: Id = row.text("author_id")?.into();
    let author_name: Id = row.text("author_name")?.into();
    let text = row.opt_text("text")?;
    let body = match kind.as_str() {
        "message" => EventBody::Message {
            author: Author {
                role,
                id: author_id,
                display_name: author_name,
            },
            text: text.unwrap_or_default().into(),
            client_msg_id: row.opt_text("client_msg_id")?.map(Into::into),
        },
        "assigned" => EventBody::Assigned {
            agent_id: author_id,
            display_name: author_name,
        },
        "closed" => EventBody::Closed {
            by: role,
            resolution: match row.opt_text("resolution")? {
                Some(r) => Some(Resolution::parse(&r).ok_or_else(|| corrupt("resolution", &r))?),
                None => None,
            },
            note: text.map(Into::into),
        },
        other => return Err(corrupt("event kind", other)),
    };
    Ok(Event {
        conversation_id: conversation_id.clone(),
        seq: millis(row.int("seq")?),
        ts: millis(row.int("ts")?),
        body,
    })
}

/// A row of the customer's past conversations (`Store::past_conversations`).
pub(super) fn past_from_row(row: &impl Columns) -> Result<PastConversation, StoreError> {
    let ms = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    let rating = |v: Option<i64>| v.and_then(|v| u8::try_from(v).ok());
    Ok(PastConversation {
        id: row.text("id")?,
        channel: row.text("channel")?,
        queue: row.text("queue")?,
        state: row.text("state")?,
        agent_id: row.opt_text("agent_id")?,
        created_at: ms(row.opt_int("created_at")?).unwrap_or(0),
        closed_at: ms(row.opt_int("closed_at")?),
        resolution: row.opt_text("resolution")?,
        transfers: u32::try_from(row.int("transfers")?).unwrap_or(0),
        csat: rating(row.opt_int("csat")?),
        effort: rating(row.opt_int("effort")?),
        talk_ms: ms(row.opt_int("talk_ms")?),
        dead_air_ms: ms(row.opt_int("dead_air_ms")?),
        repeat_of: row.opt_text("repeat_of")?,
    })
}

/// The columns of an event row after its conversation, seq and ts: kind, role,
/// author id and name, text, client_msg_id, resolution.
pub(super) type EventColumns<'a> = (
    &'static str,
    Role,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'static str>,
);

pub(super) fn event_columns(e: &Event) -> EventColumns<'_> {
    match &e.body {
        EventBody::Message {
            author,
            text,
            client_msg_id,
        } => (
            "message",
            author.role,
            &*author.id,
            &*author.display_name,
            Some(&**text),
            client_msg_id.as_deref(),
            None,
        ),
        EventBody::Assigned {
            agent_id,
            display_name,
        } => (
            "assigned",
            Role::Agent,
            &**agent_id,
            &**display_name,
            None,
            None,
            None,
        ),
        EventBody::Closed {
            by,
            resolution,
            note,
        } => (
            "closed",
            *by,
            "",
            "",
            note.as_deref(),
            None,
            resolution.map(Resolution::as_str),
        ),
    }
}

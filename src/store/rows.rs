//! Rows as both backends keep them: the same columns, read and written the same way,
//! so SQLite and PostgreSQL answer alike (`tests/store.rs` holds them to it).

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{StoreError, corrupt, millis, skills_from_text};
use crate::core::{
    Author, Channel, ConversationRecord, ConversationState, Event, EventBody, Id, Resolution, Role,
};

pub(super) fn conversation_from_row<R>(row: &R) -> Result<ConversationRecord, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database>,
    String: Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database>,
    i64: Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database>,
    i32: Type<R::Database>,
{
    let channel: String = row.try_get("channel")?;
    let state: String = row.try_get("state")?;
    let closed_by: Option<String> = row.try_get("closed_by")?;
    let resolution: Option<String> = row.try_get("resolution")?;
    let skills: String = row.try_get("skills")?;
    Ok(ConversationRecord {
        id: row.try_get::<String, _>("id")?.into(),
        customer_id: row.try_get::<String, _>("customer_id")?.into(),
        queue: row.try_get::<String, _>("queue")?.into(),
        channel: Channel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?,
        state: ConversationState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        agent_id: row
            .try_get::<Option<String>, _>("agent_id")?
            .map(Into::into),
        priority: row.try_get("priority")?,
        ticket: millis(row.try_get("ticket")?),
        skills: skills_from_text(&skills)?,
        language: row
            .try_get::<Option<String>, _>("language")?
            .map(Into::into),
        attributes: row.try_get::<String, _>("attributes")?.into(),
        created_at: millis(row.try_get("created_at")?),
        entered_at: millis(
            row.try_get::<Option<i64>, _>("entered_at")?
                .unwrap_or(row.try_get("created_at")?),
        ),
        transfers: u32::try_from(row.try_get::<i64, _>("transfers")?).unwrap_or(0),
        closed_at: row.try_get::<Option<i64>, _>("closed_at")?.map(millis),
        closed_by: match closed_by {
            Some(r) => Some(Role::parse(&r).ok_or_else(|| corrupt("closed_by", &r))?),
            None => None,
        },
        resolution: match resolution {
            Some(r) => Some(Resolution::parse(&r).ok_or_else(|| corrupt("resolution", &r))?),
            None => None,
        },
        repeat_of: row
            .try_get::<Option<String>, _>("repeat_of")?
            .map(Into::into),
    })
}

pub(super) fn event_from_row<R>(conversation_id: &Id, row: &R) -> Result<Event, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database>,
    String: Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database>,
    i64: Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database>,
    i32: Type<R::Database>,
{
    let kind: String = row.try_get("kind")?;
    let role: String = row.try_get("role")?;
    let role = Role::parse(&role).ok_or_else(|| corrupt("role", &role))?;
    let author_id: Id = row.try_get::<String, _>("author_id")?.into();
    let author_name: Id = row.try_get::<String, _>("author_name")?.into();
    let text: Option<String> = row.try_get("text")?;
    let body = match kind.as_str() {
        "message" => EventBody::Message {
            author: Author {
                role,
                id: author_id,
                display_name: author_name,
            },
            text: text.unwrap_or_default().into(),
            client_msg_id: row
                .try_get::<Option<String>, _>("client_msg_id")?
                .map(Into::into),
        },
        "assigned" => EventBody::Assigned {
            agent_id: author_id,
            display_name: author_name,
        },
        "closed" => {
            let resolution: Option<String> = row.try_get("resolution")?;
            EventBody::Closed {
                by: role,
                resolution: match resolution {
                    Some(r) => {
                        Some(Resolution::parse(&r).ok_or_else(|| corrupt("resolution", &r))?)
                    }
                    None => None,
                },
                note: text.map(Into::into),
            }
        }
        other => return Err(corrupt("event kind", other)),
    };
    Ok(Event {
        conversation_id: conversation_id.clone(),
        seq: millis(row.try_get("seq")?),
        ts: millis(row.try_get("ts")?),
        body,
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

//! The store's contract, written once over `Arc<dyn Store>` and run against every
//! backend: SQLite in a temporary directory, and PostgreSQL (feature `postgres`) in a
//! schema of its own per test, dropped at the end even when the test fails.
//!
//! PostgreSQL is at `postgres://postgres@127.0.0.1:5432/test` unless
//! `WARMLINE_TEST_POSTGRES_URL` says otherwise; when it cannot be reached the
//! PostgreSQL tests fail (they are never skipped). SQLite is the reference: where
//! the backends could differ (order, NULLs, a failed batch) these tests pin what
//! SQLite does.

use std::sync::Arc;

use warmline::core::signals::conversation::Summary;
use warmline::core::signals::voice::VoiceSignals;
use warmline::core::{
    Author, Channel, ConversationRecord, ConversationState, Event, EventBody, Id, Record,
    Resolution, Role, Skills,
};
use warmline::store::{
    CustomerRecord, FollowUpRow, ReportRow, SqliteStore, Store, Survey, SurveyOutcome, Synchronous,
};

const DEDUPE_WINDOW: u32 = 64;

// ---------------------------------------------------------------------------------
// Backends

/// A store under test and where it lives (dropped after the store).
struct Backend {
    store: Arc<dyn Store>,
    place: Place,
}

enum Place {
    Sqlite(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres(pg::Schema),
}

impl Backend {
    async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(dir.path(), Synchronous::Full, DEDUPE_WINDOW)
            .await
            .expect("open SQLite");
        Backend {
            store: Arc::new(store),
            place: Place::Sqlite(dir),
        }
    }

    #[cfg(feature = "postgres")]
    async fn postgres() -> Backend {
        let schema = pg::Schema::create().await;
        let store = warmline::store::PostgresStore::open(&schema.url, DEDUPE_WINDOW)
            .await
            .unwrap_or_else(|e| panic!("open PostgreSQL in schema {}: {e}", schema.name));
        Backend {
            store: Arc::new(store),
            place: Place::Postgres(schema),
        }
    }

    /// A second store on the same data (the first one may be closed).
    async fn reopen(&self) -> Arc<dyn Store> {
        match &self.place {
            Place::Sqlite(dir) => Arc::new(
                SqliteStore::open(dir.path(), Synchronous::Full, DEDUPE_WINDOW)
                    .await
                    .expect("reopen SQLite"),
            ),
            #[cfg(feature = "postgres")]
            Place::Postgres(schema) => Arc::new(
                warmline::store::PostgresStore::open(&schema.url, DEDUPE_WINDOW)
                    .await
                    .expect("reopen PostgreSQL"),
            ),
        }
    }
}

#[cfg(feature = "postgres")]
#[path = "common/pg.rs"]
mod pg;

/// Each case as a test on every backend: `sqlite::case` and `postgres::case`.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::sqlite().await;
                    super::$case(&backend).await;
                    backend.store.close().await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::postgres().await;
                    super::$case(&backend).await;
                    backend.store.close().await;
                }
            )*
        }
    };
}

suite!(
    empty_commit_and_ping,
    conversation_round_trips_and_upserts,
    events_read_back_by_seq,
    load_open_restores_queue_order_and_recent_ids,
    customer_seen_and_named,
    history_for_routing,
    assignments,
    past_conversations_newest_first,
    satisfaction_report_by_queue_and_agent,
    agent_ratings_per_agent_and_queue,
    follow_ups_due_opened_done,
    repeat_candidate_latest_on_queue,
    context_expires_and_replaces,
    survey_outcomes,
    meta_init_keeps_the_first,
    definitions_put_and_delete,
    customer_merge_moves_conversations_and_surveys,
    records_without_readers_commit_idempotently,
    failed_commit_leaves_nothing,
    large_batch_commits,
    values_round_trip_verbatim,
    closed_store_refuses_and_reopens,
);

// ---------------------------------------------------------------------------------
// Building records

fn customer(id: &str, seen_at: u64) -> Record {
    Record::Customer {
        id: id.into(),
        seen_at,
    }
}

/// A queued chat conversation created at `at`.
fn conv(id: &str, customer_id: &str, queue: &str, at: u64) -> ConversationRecord {
    ConversationRecord {
        id: id.into(),
        customer_id: customer_id.into(),
        queue: queue.into(),
        channel: Channel::Chat,
        state: ConversationState::Queued,
        agent_id: None,
        priority: 0,
        ticket: at,
        skills: Skills::new(),
        language: None,
        attributes: "{}".into(),
        created_at: at,
        entered_at: at,
        transfers: 0,
        closed_at: None,
        closed_by: None,
        resolution: None,
        repeat_of: None,
    }
}

/// `c` closed at `at` by the agent, with `agent` as its last agent.
fn closed(
    mut c: ConversationRecord,
    agent: Option<&str>,
    resolution: Option<Resolution>,
    at: u64,
) -> ConversationRecord {
    c.state = ConversationState::Closed;
    c.agent_id = agent.map(Into::into);
    c.closed_at = Some(at);
    c.closed_by = Some(Role::Agent);
    c.resolution = resolution;
    c
}

fn put(c: ConversationRecord) -> Record {
    Record::Conversation(Arc::new(c))
}

fn message(conversation: &str, seq: u64, role: Role, author: &str, text: &str) -> Event {
    Event {
        conversation_id: conversation.into(),
        seq,
        ts: 1_000 + seq,
        body: EventBody::Message {
            author: Author {
                role,
                id: author.into(),
                display_name: format!("{author} name").into(),
            },
            text: text.into(),
            client_msg_id: None,
        },
    }
}

fn with_client_id(mut e: Event, client_msg_id: &str) -> Event {
    if let EventBody::Message {
        client_msg_id: id, ..
    } = &mut e.body
    {
        *id = Some(client_msg_id.into());
    }
    e
}

fn event(e: Event) -> Record {
    Record::Event(Arc::new(e))
}

fn summary_of(c: &ConversationRecord, summary: Summary) -> Record {
    Record::ConversationSummary {
        conversation_id: c.id.clone(),
        customer_id: c.customer_id.clone(),
        queue: c.queue.clone(),
        agent_id: c.agent_id.clone(),
        resolution: c.resolution,
        summary,
        closed_at: c.closed_at.unwrap_or(0),
        channel: c.channel,
        repeat: c.repeat_of.is_some(),
        within_service_level: None,
    }
}

fn survey(conversation: &str, customer: &str, csat: u8, effort: Option<u8>) -> Survey {
    Survey {
        conversation_id: conversation.to_owned(),
        customer_id: customer.to_owned(),
        csat,
        effort,
        resolved: Some(true),
        comment: Some("thanks".to_owned()),
        at: 5_000,
    }
}

async fn commit(store: &Arc<dyn Store>, records: &[Record]) {
    store.commit(records).await.expect("commit");
}

fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

// ---------------------------------------------------------------------------------
// Cases

async fn empty_commit_and_ping(b: &Backend) {
    b.store.ping().await.expect("ping");
    b.store.commit(&[]).await.expect("an empty batch");
    assert_eq!(b.store.definitions().await.unwrap(), vec![]);
    assert!(b.store.conversation("nope").await.unwrap().is_none());
}

async fn conversation_round_trips_and_upserts(b: &Backend) {
    let s = &b.store;
    let mut c = conv("c1", "cu1", "billing", 100);
    c.channel = Channel::Voice;
    c.priority = -3;
    c.ticket = 7;
    c.skills = [("billing".to_owned(), 3), ("es".to_owned(), 10)].into();
    c.language = Some("es".into());
    c.attributes = r#"{"order": "A-1",  "vip": true}"#.into();
    c.entered_at = 150;
    c.repeat_of = Some("c0".into());
    commit(s, &[customer("cu1", 100), put(c.clone())]).await;

    let stored = s.conversation("c1").await.unwrap().expect("stored");
    assert_eq!(stored.record, c);
    assert_eq!(stored.last_seq, 0);

    // A later write changes what moves (state, queue, channel, agent, priority,
    // ticket, close, entered_at, transfers) and keeps what does not (customer,
    // skills, language, attributes, created_at, repeat_of).
    let mut later = closed(c.clone(), Some("ag1"), Some(Resolution::FollowUp), 900);
    later.queue = "sales".into();
    later.channel = Channel::Chat;
    later.priority = 5;
    later.ticket = 8;
    later.entered_at = 400;
    later.transfers = 2;
    later.closed_by = Some(Role::Customer);
    let mut ignored = later.clone();
    ignored.skills = Skills::new();
    ignored.language = None;
    ignored.attributes = "{}".into();
    ignored.created_at = 1;
    ignored.repeat_of = None;
    commit(s, &[customer("cu1", 900), put(ignored)]).await;
    assert_eq!(s.conversation("c1").await.unwrap().unwrap().record, later);

    // NULLs stay NULL.
    let plain = conv("c2", "cu1", "billing", 200);
    commit(s, &[put(plain.clone())]).await;
    let got = s.conversation("c2").await.unwrap().unwrap().record;
    assert_eq!(got, plain);
    assert!(got.agent_id.is_none() && got.language.is_none() && got.repeat_of.is_none());
    assert!(got.closed_at.is_none() && got.closed_by.is_none() && got.resolution.is_none());
}

async fn events_read_back_by_seq(b: &Backend) {
    let s = &b.store;
    let close = Event {
        conversation_id: "c1".into(),
        seq: 5,
        ts: 1_005,
        body: EventBody::Closed {
            by: Role::Agent,
            resolution: Some(Resolution::Resolved),
            note: Some("done".into()),
        },
    };
    let assigned = Event {
        conversation_id: "c1".into(),
        seq: 2,
        ts: 1_002,
        body: EventBody::Assigned {
            agent_id: "ag1".into(),
            display_name: "Ana".into(),
        },
    };
    let events = vec![
        with_client_id(message("c1", 1, Role::Customer, "cu1", "hello"), "m-1"),
        assigned,
        message("c1", 3, Role::Agent, "ag1", "hi, how can I help?"),
        message("c1", 4, Role::System, "system", ""),
        close,
    ];
    // Out of order within the batch: read back by seq all the same.
    let mut records = vec![customer("cu1", 1), put(conv("c1", "cu1", "q", 1))];
    records.extend([4, 0, 2, 1, 3].map(|i| event(events[i].clone())));
    commit(s, &records).await;

    assert_eq!(s.events_after("c1", 0, 100).await.unwrap(), events);
    assert_eq!(ids(&s.events_after("c1", 2, 2).await.unwrap()), [3, 4]);
    assert_eq!(ids(&s.events_after("c1", 4, 10).await.unwrap()), [5]);
    assert!(s.events_after("c1", 5, 10).await.unwrap().is_empty());
    assert!(s.events_after("c1", 0, 0).await.unwrap().is_empty());
    assert!(s.events_after("other", 0, 10).await.unwrap().is_empty());
    assert_eq!(s.conversation("c1").await.unwrap().unwrap().last_seq, 5);

    // A close without resolution or note reads back without them.
    let bare = Event {
        conversation_id: "c1".into(),
        seq: 6,
        ts: 1_006,
        body: EventBody::Closed {
            by: Role::System,
            resolution: None,
            note: None,
        },
    };
    commit(s, &[event(bare.clone())]).await;
    assert_eq!(s.events_after("c1", 5, 10).await.unwrap(), vec![bare]);
}

async fn load_open_restores_queue_order_and_recent_ids(b: &Backend) {
    let s = &b.store;
    let mut records = vec![customer("cu1", 1), customer("cu2", 1)];
    // Queue order: priority first (higher first), then ticket.
    let mut low_early = conv("low-early", "cu1", "q", 10);
    low_early.ticket = 1;
    let mut high_late = conv("high-late", "cu2", "q", 20);
    high_late.priority = 5;
    high_late.ticket = 9;
    let mut high_early = conv("high-early", "cu2", "q", 30);
    high_early.priority = 5;
    high_early.ticket = 3;
    let mut active = conv("active", "cu1", "q", 40);
    active.state = ConversationState::Active;
    active.agent_id = Some("ag1".into());
    active.ticket = 2;
    let done = closed(conv("done", "cu1", "q", 5), Some("ag1"), None, 50);
    for c in [&low_early, &high_late, &high_early, &active, &done] {
        records.push(put(c.clone()));
    }
    // More client ids than the window remembers, and messages without one.
    let n = u64::from(DEDUPE_WINDOW) + 30;
    for seq in 1..=n {
        let e = message("active", seq, Role::Customer, "cu1", "x");
        records.push(event(if seq % 7 == 0 {
            e
        } else {
            with_client_id(e, &format!("m{seq}"))
        }));
    }
    records.push(event(with_client_id(
        message("high-late", 1, Role::Customer, "cu2", "hi"),
        "only",
    )));
    commit(s, &records).await;

    let open = s.load_open().await.unwrap();
    let order: Vec<&str> = open.iter().map(|o| &*o.record.id).collect();
    assert_eq!(order, ["high-early", "high-late", "low-early", "active"]);

    let restored = |id: &str| open.iter().find(|o| &*o.record.id == id).unwrap();
    let a = restored("active");
    assert_eq!(a.record, active);
    assert_eq!(a.last_seq, n);
    assert_eq!(&*a.customer_name, "Visitor cu1");
    assert_eq!(a.history.previous_conversations, 1);
    let expected: Vec<(Id, Id, u64)> = (1..=n)
        .filter(|seq| seq % 7 != 0)
        .map(|seq| ("cu1".into(), format!("m{seq}").into(), seq))
        .collect();
    let expected = expected[expected.len() - DEDUPE_WINDOW as usize..].to_vec();
    assert_eq!(a.recent_client_ids, expected);

    let h = restored("high-late");
    assert_eq!(h.last_seq, 1);
    assert_eq!(h.recent_client_ids, vec![("cu2".into(), "only".into(), 1)]);
    let l = restored("low-early");
    assert_eq!(l.last_seq, 0);
    assert!(l.recent_client_ids.is_empty());
}

async fn customer_seen_and_named(b: &Backend) {
    let s = &b.store;
    assert_eq!(s.customer("cu1").await.unwrap(), None);
    commit(s, &[customer("cu1", 100)]).await;
    commit(s, &[customer("cu1", 250)]).await;
    let expected = CustomerRecord {
        id: "cu1".to_owned(),
        first_seen: 100,
        last_seen: 250,
        name: None,
    };
    assert_eq!(s.customer("cu1").await.unwrap(), Some(expected.clone()));
    commit(
        s,
        &[Record::CustomerName {
            id: "cu1".into(),
            name: "Zoë O'Brien".into(),
        }],
    )
    .await;
    assert_eq!(
        s.customer("cu1").await.unwrap(),
        Some(CustomerRecord {
            name: Some("Zoë O'Brien".to_owned()),
            ..expected
        })
    );
    // Naming an unknown customer stores nothing.
    commit(
        s,
        &[Record::CustomerName {
            id: "ghost".into(),
            name: "Ghost".into(),
        }],
    )
    .await;
    assert_eq!(s.customer("ghost").await.unwrap(), None);
}

async fn history_for_routing(b: &Backend) {
    let s = &b.store;
    let empty = s.history("cu1").await.unwrap();
    assert_eq!(empty.previous_conversations, 0);
    assert!(empty.last_agent.is_none() && empty.poorly_rated.is_empty());

    commit(
        s,
        &[
            customer("cu1", 1),
            customer("cu2", 1),
            put(closed(
                conv("old", "cu1", "q", 1),
                Some("ag-old"),
                Some(Resolution::Resolved),
                100,
            )),
            put(closed(
                conv("new", "cu1", "q", 2),
                Some("ag-new"),
                Some(Resolution::Resolved),
                300,
            )),
            // Not resolved, no agent, not closed, someone else's: none counts as last.
            put(closed(
                conv("unres", "cu1", "q", 3),
                Some("ag-unres"),
                Some(Resolution::Unresolved),
                400,
            )),
            put(closed(
                conv("noagent", "cu1", "q", 4),
                None,
                Some(Resolution::Resolved),
                500,
            )),
            put(conv("open", "cu1", "q", 5)),
            put(closed(
                conv("theirs", "cu2", "q", 6),
                Some("ag-x"),
                Some(Resolution::Resolved),
                600,
            )),
        ],
    )
    .await;
    let h = s.history("cu1").await.unwrap();
    assert_eq!(h.previous_conversations, 4);
    assert_eq!(h.last_agent.as_deref(), Some("ag-new"));
    assert!(h.poorly_rated.is_empty());

    // A good rating keeps the last agent; 2 or lower drops them and marks them.
    assert_eq!(
        s.record_survey(&survey("new", "cu1", 3, None))
            .await
            .unwrap(),
        SurveyOutcome::Recorded
    );
    assert_eq!(
        s.history("cu1").await.unwrap().last_agent.as_deref(),
        Some("ag-new")
    );
    for (id, csat) in [("old", 1), ("unres", 2)] {
        assert_eq!(
            s.record_survey(&survey(id, "cu1", csat, None))
                .await
                .unwrap(),
            SurveyOutcome::Recorded
        );
    }
    let h = s.history("cu1").await.unwrap();
    assert_eq!(h.last_agent.as_deref(), Some("ag-new"));
    let mut poor: Vec<&str> = h.poorly_rated.iter().map(|a| &**a).collect();
    poor.sort_unstable();
    assert_eq!(poor, ["ag-old", "ag-unres"]);

    // The latest resolved contact rated poorly: no last agent.
    commit(
        s,
        &[put(closed(
            conv("newest", "cu1", "q", 7),
            Some("ag-new"),
            Some(Resolution::Resolved),
            700,
        ))],
    )
    .await;
    assert_eq!(
        s.record_survey(&survey("newest", "cu1", 2, None))
            .await
            .unwrap(),
        SurveyOutcome::Recorded
    );
    let h = s.history("cu1").await.unwrap();
    assert_eq!(h.previous_conversations, 5);
    assert_eq!(h.last_agent, None);
    let mut poor: Vec<&str> = h.poorly_rated.iter().map(|a| &**a).collect();
    poor.sort_unstable();
    assert_eq!(poor, ["ag-new", "ag-old", "ag-unres"]);
}

async fn assignments(b: &Backend) {
    let s = &b.store;
    let started = |agent: &str, at| Record::AssignmentStarted {
        conversation_id: "c1".into(),
        agent_id: agent.into(),
        at,
    };
    commit(s, &[customer("cu1", 1), put(conv("c1", "cu1", "q", 1))]).await;
    assert!(!s.was_assigned("c1", "ag1").await.unwrap());
    // The same start twice is one assignment (ignored, not an error).
    commit(s, &[started("ag1", 10), started("ag1", 10)]).await;
    commit(
        s,
        &[
            Record::AssignmentEnded {
                conversation_id: "c1".into(),
                agent_id: "ag1".into(),
                at: 20,
            },
            started("ag2", 30),
            // Ending an assignment that never started is a no-op.
            Record::AssignmentEnded {
                conversation_id: "c1".into(),
                agent_id: "ag9".into(),
                at: 40,
            },
        ],
    )
    .await;
    assert!(s.was_assigned("c1", "ag1").await.unwrap());
    assert!(s.was_assigned("c1", "ag2").await.unwrap());
    assert!(!s.was_assigned("c1", "ag9").await.unwrap());
    assert!(!s.was_assigned("c2", "ag1").await.unwrap());
}

async fn past_conversations_newest_first(b: &Backend) {
    let s = &b.store;
    let voice = |conversation: &str, caller, agent, silence| Record::VoiceSignals {
        conversation_id: conversation.into(),
        agent_id: Some("ag1".into()),
        signals: VoiceSignals {
            duration_ms: 10_000,
            caller_talk_ms: caller,
            agent_talk_ms: agent,
            crosstalk_ms: 5,
            silence_ms: silence,
            silences: 2,
            longest_silence_ms: 700,
            hold_ms: 0,
        },
        at: 500,
    };
    let mut call = closed(
        conv("call", "cu1", "phones", 300),
        Some("ag1"),
        Some(Resolution::Resolved),
        400,
    );
    call.channel = Channel::Voice;
    call.transfers = 1;
    call.repeat_of = Some("chat".into());
    let chat = closed(conv("chat", "cu1", "web", 100), None, None, 200);
    // Same creation time as `call`: the greater id first.
    let tie = conv("call-b", "cu1", "web", 300);
    commit(
        s,
        &[
            customer("cu1", 1),
            customer("cu2", 1),
            put(chat),
            put(call),
            put(tie),
            put(conv("elsewhere", "cu2", "web", 999)),
            voice("call", 1_000, 2_000, 300),
            voice("call", 500, 250, 50),
        ],
    )
    .await;
    assert_eq!(
        s.record_survey(&survey("call", "cu1", 4, Some(2)))
            .await
            .unwrap(),
        SurveyOutcome::Recorded
    );

    let past = s.past_conversations("cu1", 10).await.unwrap();
    let order: Vec<&str> = past.iter().map(|p| &*p.id).collect();
    assert_eq!(order, ["call-b", "call", "chat"]);
    let call = &past[1];
    assert_eq!(
        (&*call.channel, &*call.queue, &*call.state),
        ("voice", "phones", "closed")
    );
    assert_eq!(call.agent_id.as_deref(), Some("ag1"));
    assert_eq!((call.created_at, call.closed_at), (300, Some(400)));
    assert_eq!(call.resolution.as_deref(), Some("resolved"));
    assert_eq!(call.transfers, 1);
    assert_eq!((call.csat, call.effort), (Some(4), Some(2)));
    assert_eq!(call.talk_ms, Some(3_750));
    assert_eq!(call.dead_air_ms, Some(350));
    assert_eq!(call.repeat_of.as_deref(), Some("chat"));
    let chat = &past[2];
    assert_eq!(chat.agent_id, None);
    assert_eq!(chat.resolution, None);
    assert_eq!((chat.csat, chat.effort), (None, None));
    assert_eq!((chat.talk_ms, chat.dead_air_ms), (None, None));
    let open = &past[0];
    assert_eq!((&*open.state, open.closed_at), ("queued", None));

    assert_eq!(s.past_conversations("cu1", 2).await.unwrap().len(), 2);
    assert!(s.past_conversations("nobody", 10).await.unwrap().is_empty());
}

/// Closed conversations for the report and the ratings: two queues ("Sales" sorts
/// before "billing" bytewise, as in SQLite), three agents and none, surveys,
/// summaries, a repeat contact, and conversations outside the window.
async fn report_fixture(s: &Arc<dyn Store>) {
    let c1 = closed(
        conv("c1", "cu-a", "billing", 1),
        Some("ag-1"),
        Some(Resolution::Resolved),
        1_100,
    );
    let mut c2 = closed(
        conv("c2", "cu-b", "billing", 2),
        Some("ag-2"),
        Some(Resolution::Unresolved),
        1_200,
    );
    c2.transfers = 1;
    let c3 = closed(conv("c3", "cu-a", "billing", 3), None, None, 1_300);
    let c4 = closed(
        conv("c4", "cu-b", "Sales", 4),
        Some("ag-1"),
        Some(Resolution::Resolved),
        1_400,
    );
    let mut c5 = closed(
        conv("c5", "cu-b", "Sales", 5),
        Some("ag-1"),
        Some(Resolution::Resolved),
        1_500,
    );
    c5.repeat_of = Some("c4".into());
    // At `to` and before `from`: outside the report's window.
    let c6 = closed(
        conv("c6", "cu-a", "billing", 6),
        Some("ag-1"),
        Some(Resolution::Resolved),
        2_000,
    );
    let c7 = closed(
        conv("c7", "cu-a", "billing", 7),
        Some("ag-3"),
        Some(Resolution::Resolved),
        999,
    );
    let mut c8 = conv("c8", "cu-a", "billing", 8);
    c8.state = ConversationState::Active;
    c8.agent_id = Some("ag-1".into());

    let summaries = [
        summary_of(
            &c1,
            Summary {
                handle_ms: Some(300),
                flags_negative: 1,
                flags_positive: 2,
                repeated_info: 1,
                sentiment_end: Some(200),
                estimate: Some(400),
                ..Summary::default()
            },
        ),
        // Replaced by the next one: a summary is written whole.
        summary_of(
            &c2,
            Summary {
                handle_ms: Some(9_999),
                flags_negative: 9,
                abandoned: true,
                estimate: Some(500),
                ..Summary::default()
            },
        ),
        summary_of(
            &c2,
            Summary {
                handle_ms: Some(500),
                bounces: 1,
                transfers_cold: 1,
                sentiment_end: Some(-300),
                estimate: Some(150),
                ..Summary::default()
            },
        ),
        summary_of(
            &c4,
            Summary {
                handle_ms: Some(100),
                estimate: Some(480),
                ..Summary::default()
            },
        ),
        summary_of(&c5, Summary::default()),
        summary_of(
            &c6,
            Summary {
                estimate: Some(333),
                ..Summary::default()
            },
        ),
        summary_of(
            &c7,
            Summary {
                estimate: Some(400),
                ..Summary::default()
            },
        ),
    ];
    let mut records = vec![customer("cu-a", 1), customer("cu-b", 1)];
    for c in [c1, c2, c3, c4, c5, c6, c7, c8] {
        records.push(put(c));
    }
    records.extend(summaries);
    commit(s, &records).await;
    for (id, customer, csat, effort) in [
        ("c1", "cu-a", 5, Some(2)),
        ("c4", "cu-b", 2, None),
        ("c6", "cu-a", 4, Some(1)),
    ] {
        assert_eq!(
            s.record_survey(&survey(id, customer, csat, effort))
                .await
                .unwrap(),
            SurveyOutcome::Recorded
        );
    }
}

async fn satisfaction_report_by_queue_and_agent(b: &Backend) {
    let s = &b.store;
    assert!(
        s.satisfaction_report(false, 0, u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    report_fixture(s).await;
    let by_queue = s.satisfaction_report(false, 1_000, 2_000).await.unwrap();
    let sales = ReportRow {
        key: Some("Sales".to_owned()),
        conversations: 2,
        surveyed: 1,
        csat_sum: 2,
        csat_counts: [0, 1, 0, 0, 0],
        resolved: 2,
        // c4 came back as c5.
        first_contact_resolved: 1,
        handle_ms_sum: 100,
        handled: 1,
        satisfaction_centi_sum: 200,
        satisfaction_n: 1,
        ..ReportRow::default()
    };
    let billing = ReportRow {
        key: Some("billing".to_owned()),
        conversations: 3,
        surveyed: 1,
        csat_sum: 5,
        csat_counts: [0, 0, 0, 0, 1],
        effort_sum: 2,
        effort_answers: 1,
        resolved: 1,
        first_contact_resolved: 1,
        bounced: 1,
        transferred: 1,
        // c3: no summary and no agent.
        abandoned: 1,
        handle_ms_sum: 800,
        handled: 2,
        flags_negative: 1,
        flags_positive: 2,
        repeated_info: 1,
        ended_on_bad_terms: 1,
        satisfaction_centi_sum: 650,
        satisfaction_n: 2,
    };
    assert_eq!(by_queue, vec![sales, billing]);

    let by_agent = s.satisfaction_report(true, 1_000, 2_000).await.unwrap();
    let nobody = ReportRow {
        key: None,
        conversations: 1,
        abandoned: 1,
        ..ReportRow::default()
    };
    let ag1 = ReportRow {
        key: Some("ag-1".to_owned()),
        conversations: 3,
        surveyed: 2,
        csat_sum: 7,
        csat_counts: [0, 1, 0, 0, 1],
        effort_sum: 2,
        effort_answers: 1,
        resolved: 3,
        first_contact_resolved: 2,
        handle_ms_sum: 400,
        handled: 2,
        flags_negative: 1,
        flags_positive: 2,
        repeated_info: 1,
        satisfaction_centi_sum: 700,
        satisfaction_n: 2,
        ..ReportRow::default()
    };
    let ag2 = ReportRow {
        key: Some("ag-2".to_owned()),
        conversations: 1,
        bounced: 1,
        transferred: 1,
        handle_ms_sum: 500,
        handled: 1,
        ended_on_bad_terms: 1,
        satisfaction_centi_sum: 150,
        satisfaction_n: 1,
        ..ReportRow::default()
    };
    assert_eq!(by_agent, vec![nobody, ag1, ag2]);

    // The window is half-open: c6 (closed at 2000) counts from 2000 on.
    let later = s.satisfaction_report(false, 2_000, 2_001).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].key.as_deref(), Some("billing"));
    assert_eq!((later[0].conversations, later[0].csat_sum), (1, 4));
}

async fn agent_ratings_per_agent_and_queue(b: &Backend) {
    let s = &b.store;
    assert!(s.agent_ratings(0, 1).await.unwrap().is_empty());
    report_fixture(s).await;
    let sorted = |mut v: Vec<(String, String, u32)>| {
        v.sort();
        v
    };
    let r = |a: &str, q: &str, n| (a.to_owned(), q.to_owned(), n);
    // ag-1 on billing: c1 (survey 5: 500) and c6 (survey 4: 400, over its estimate).
    // ag-1 on Sales: c4 (survey 2: 200; c5 has neither). ag-2: c2's estimate.
    assert_eq!(
        sorted(s.agent_ratings(1_000, 1).await.unwrap()),
        vec![
            r("ag-1", "Sales", 200),
            r("ag-1", "billing", 450),
            r("ag-2", "billing", 150),
        ]
    );
    assert_eq!(
        s.agent_ratings(1_000, 2).await.unwrap(),
        vec![r("ag-1", "billing", 450)]
    );
    // c7 (ag-3, closed at 999) counts from 999 on.
    assert!(
        s.agent_ratings(999, 1)
            .await
            .unwrap()
            .contains(&r("ag-3", "billing", 400))
    );
    assert!(s.agent_ratings(2_001, 1).await.unwrap().is_empty());

    // Means round half away from zero: (500 + 333) / 2 = 416.5 -> 417.
    commit(
        s,
        &[
            put(closed(
                conv("r1", "cu-a", "vip", 10),
                Some("ag-4"),
                None,
                3_000,
            )),
            put(closed(
                conv("r2", "cu-a", "vip", 11),
                Some("ag-4"),
                None,
                3_001,
            )),
        ],
    )
    .await;
    let estimate = |id: &str, estimate| {
        let c = closed(conv(id, "cu-a", "vip", 10), Some("ag-4"), None, 3_000);
        summary_of(
            &c,
            Summary {
                estimate: Some(estimate),
                ..Summary::default()
            },
        )
    };
    commit(s, &[estimate("r1", 500), estimate("r2", 333)]).await;
    assert_eq!(
        s.agent_ratings(3_000, 2).await.unwrap(),
        vec![r("ag-4", "vip", 417)]
    );
}

async fn follow_ups_due_opened_done(b: &Backend) {
    let s = &b.store;
    let schedule = |id: &str, due_at, note: Option<&str>, at| Record::FollowUpScheduled {
        follow_up_id: id.into(),
        conversation_id: "c1".into(),
        customer_id: "cu1".into(),
        queue: "billing".into(),
        agent_id: "ag1".into(),
        due_at,
        note: note.map(Into::into),
        at,
    };
    assert!(s.follow_ups(10).await.unwrap().is_empty());
    commit(
        s,
        &[
            customer("cu1", 1),
            put(closed(
                conv("c1", "cu1", "billing", 1),
                Some("ag1"),
                Some(Resolution::FollowUp),
                50,
            )),
            schedule("f-late", 3_000, Some("call back"), 100),
            schedule("f-early", 1_000, None, 100),
            schedule("f-mid", 2_000, Some("first note"), 100),
        ],
    )
    .await;
    // Rescheduling keeps the row and its creation, changes due time and note.
    commit(s, &[schedule("f-mid", 1_500, Some("second note"), 999)]).await;

    let row = |id: &str, due_at, note: Option<&str>| FollowUpRow {
        id: id.to_owned(),
        conversation_id: "c1".to_owned(),
        customer_id: "cu1".to_owned(),
        queue: "billing".to_owned(),
        agent_id: "ag1".to_owned(),
        due_at,
        note: note.map(str::to_owned),
        created_at: 100,
        opened_as: None,
        done: false,
    };
    let early = row("f-early", 1_000, None);
    let mid = row("f-mid", 1_500, Some("second note"));
    let late = row("f-late", 3_000, Some("call back"));
    assert_eq!(
        s.follow_ups(10).await.unwrap(),
        vec![early.clone(), mid.clone(), late.clone()]
    );
    assert_eq!(
        s.follow_ups(2).await.unwrap(),
        vec![early.clone(), mid.clone()]
    );
    assert!(s.due_follow_ups(999, 10).await.unwrap().is_empty());
    assert_eq!(
        s.due_follow_ups(1_000, 10).await.unwrap(),
        vec![early.clone()]
    );
    assert_eq!(
        s.due_follow_ups(2_000, 10).await.unwrap(),
        vec![early.clone(), mid.clone()]
    );
    assert_eq!(
        s.due_follow_ups(9_000, 1).await.unwrap(),
        vec![early.clone()]
    );

    // The early one opens as a new conversation: no longer due, not done until that
    // conversation closes. A second opening does not move it.
    let mut outbound = conv("c-out", "cu1", "billing", 1_000);
    outbound.state = ConversationState::Offered;
    let opened = |conversation: &str, at| Record::FollowUpOpened {
        follow_up_id: "f-early".into(),
        conversation_id: conversation.into(),
        at,
    };
    commit(s, &[put(outbound.clone()), opened("c-out", 1_000)]).await;
    commit(s, &[opened("c-other", 1_100)]).await;
    let opened_early = FollowUpRow {
        opened_as: Some("c-out".to_owned()),
        ..early.clone()
    };
    assert_eq!(
        s.due_follow_ups(9_000, 10).await.unwrap(),
        vec![mid.clone(), late.clone()]
    );
    assert_eq!(
        s.follow_ups(10).await.unwrap(),
        vec![opened_early.clone(), mid.clone(), late.clone()]
    );
    commit(
        s,
        &[put(closed(
            outbound,
            Some("ag1"),
            Some(Resolution::Resolved),
            1_200,
        ))],
    )
    .await;
    assert_eq!(
        s.follow_ups(1).await.unwrap(),
        vec![FollowUpRow {
            done: true,
            ..opened_early
        }]
    );
}

async fn repeat_candidate_latest_on_queue(b: &Backend) {
    let s = &b.store;
    commit(
        s,
        &[
            customer("cu1", 1),
            customer("cu2", 1),
            put(closed(conv("a", "cu1", "billing", 1), None, None, 100)),
            put(closed(conv("b", "cu1", "billing", 2), None, None, 200)),
            // Same close time as "b": the greater id wins.
            put(closed(conv("c", "cu1", "billing", 3), None, None, 200)),
            put(closed(conv("d", "cu1", "sales", 4), None, None, 500)),
            put(closed(conv("e", "cu2", "billing", 5), None, None, 600)),
            put(conv("f", "cu1", "billing", 700)),
        ],
    )
    .await;
    let candidate = |customer, queue, since| async move {
        s.repeat_candidate(customer, queue, since).await.unwrap()
    };
    assert_eq!(candidate("cu1", "billing", 0).await.as_deref(), Some("c"));
    assert_eq!(candidate("cu1", "billing", 200).await.as_deref(), Some("c"));
    assert_eq!(candidate("cu1", "billing", 201).await, None);
    assert_eq!(candidate("cu1", "sales", 0).await.as_deref(), Some("d"));
    assert_eq!(candidate("cu2", "billing", 0).await.as_deref(), Some("e"));
    assert_eq!(candidate("cu3", "billing", 0).await, None);
}

async fn context_expires_and_replaces(b: &Backend) {
    let s = &b.store;
    let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // Unknown customer: nothing stored.
    assert!(
        !s.put_context("ghost", &kv(&[("a", "1")]), 1_000, 10)
            .await
            .unwrap()
    );
    assert!(s.context("ghost", 0).await.unwrap().is_empty());

    commit(s, &[customer("cu1", 1)]).await;
    assert!(
        s.put_context(
            "cu1",
            &kv(&[("order", "A-1"), ("Tier", "gold"), ("account", "42")]),
            1_000,
            10
        )
        .await
        .unwrap()
    );
    assert!(
        s.put_context("cu1", &kv(&[("intent", "refund")]), 2_000, 20)
            .await
            .unwrap()
    );
    // By key, bytewise ("Tier" before "account").
    assert_eq!(
        s.context("cu1", 999).await.unwrap(),
        kv(&[
            ("Tier", "gold"),
            ("account", "42"),
            ("intent", "refund"),
            ("order", "A-1")
        ])
    );
    // Expiry is exclusive.
    assert_eq!(
        s.context("cu1", 1_000).await.unwrap(),
        kv(&[("intent", "refund")])
    );
    assert!(s.context("cu1", 2_000).await.unwrap().is_empty());

    // Same key again: replaced (value and expiry); twice in one call: the last wins.
    assert!(
        s.put_context("cu1", &kv(&[("order", "B-2"), ("order", "C-3")]), 5_000, 30)
            .await
            .unwrap()
    );
    assert_eq!(
        s.context("cu1", 1_500).await.unwrap(),
        kv(&[("intent", "refund"), ("order", "C-3")])
    );
    assert!(s.put_context("cu1", &[], 5_000, 40).await.unwrap());
}

async fn survey_outcomes(b: &Backend) {
    let s = &b.store;
    commit(
        s,
        &[
            customer("cu1", 1),
            customer("cu2", 1),
            put(closed(
                conv("done", "cu1", "q", 1),
                Some("ag1"),
                Some(Resolution::Resolved),
                10,
            )),
            put(conv("open", "cu1", "q", 2)),
        ],
    )
    .await;
    let outcome = |sv: Survey| async move { s.record_survey(&sv).await.unwrap() };
    assert_eq!(
        outcome(survey("missing", "cu1", 5, None)).await,
        SurveyOutcome::NotFound
    );
    assert_eq!(
        outcome(survey("done", "cu2", 5, None)).await,
        SurveyOutcome::NotYours
    );
    assert_eq!(
        outcome(survey("open", "cu1", 5, None)).await,
        SurveyOutcome::NotClosed
    );
    // Someone else's open conversation: not theirs comes first.
    assert_eq!(
        outcome(survey("open", "cu2", 5, None)).await,
        SurveyOutcome::NotYours
    );
    let mut first = survey("done", "cu1", 2, Some(6));
    first.resolved = None;
    first.comment = None;
    assert_eq!(outcome(first).await, SurveyOutcome::Recorded);
    assert_eq!(
        outcome(survey("done", "cu1", 5, Some(1))).await,
        SurveyOutcome::AlreadyAnswered
    );
    // The first answer stands, with the conversation's agent.
    let past = s.past_conversations("cu1", 10).await.unwrap();
    let done = past.iter().find(|p| p.id == "done").unwrap();
    assert_eq!((done.csat, done.effort), (Some(2), Some(6)));
    let h = s.history("cu1").await.unwrap();
    assert_eq!(h.poorly_rated, vec![Id::from("ag1")]);
}

async fn meta_init_keeps_the_first(b: &Backend) {
    let s = &b.store;
    assert_eq!(s.meta("secret").await.unwrap(), None);
    assert_eq!(s.meta_init("secret", "first").await.unwrap(), "first");
    assert_eq!(s.meta_init("secret", "second").await.unwrap(), "first");
    assert_eq!(s.meta("secret").await.unwrap().as_deref(), Some("first"));
    assert_eq!(s.meta_init("other", "").await.unwrap(), "");
    assert_eq!(s.meta("other").await.unwrap().as_deref(), Some(""));
}

async fn definitions_put_and_delete(b: &Backend) {
    let s = &b.store;
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, b)| ((*k).to_owned(), (*b).to_owned()))
            .collect()
    };
    s.put_definition("queue", "sales", r#"{"name":"sales"}"#, 1)
        .await
        .unwrap();
    s.put_definition("agent", "b", r#"{"id":"b"}"#, 2)
        .await
        .unwrap();
    s.put_definition("agent", "a", r#"{"id":"a"}"#, 3)
        .await
        .unwrap();
    s.put_definition("queue", "Billing", r#"{"name":"Billing"}"#, 4)
        .await
        .unwrap();
    // By kind, then id, bytewise ("Billing" before "sales").
    assert_eq!(
        s.definitions().await.unwrap(),
        pairs(&[
            ("agent", r#"{"id":"a"}"#),
            ("agent", r#"{"id":"b"}"#),
            ("queue", r#"{"name":"Billing"}"#),
            ("queue", r#"{"name":"sales"}"#),
        ])
    );
    // Replaced in place; deleted; deleting what is not there is fine.
    s.put_definition("agent", "a", r#"{"id":"a","v":2}"#, 5)
        .await
        .unwrap();
    s.delete_definition("queue", "sales").await.unwrap();
    s.delete_definition("queue", "nope").await.unwrap();
    s.delete_definition("agent", "Billing").await.unwrap();
    assert_eq!(
        s.definitions().await.unwrap(),
        pairs(&[
            ("agent", r#"{"id":"a","v":2}"#),
            ("agent", r#"{"id":"b"}"#),
            ("queue", r#"{"name":"Billing"}"#),
        ])
    );
}

async fn customer_merge_moves_conversations_and_surveys(b: &Backend) {
    let s = &b.store;
    commit(
        s,
        &[
            customer("visitor", 1),
            customer("known", 2),
            put(closed(
                conv("v1", "visitor", "q", 1),
                Some("ag1"),
                Some(Resolution::Resolved),
                10,
            )),
            put(conv("v2", "visitor", "q", 20)),
            put(conv("k1", "known", "q", 5)),
        ],
    )
    .await;
    assert_eq!(
        s.record_survey(&survey("v1", "visitor", 1, None))
            .await
            .unwrap(),
        SurveyOutcome::Recorded
    );
    let merge = |at| Record::CustomerMerged {
        from: "visitor".into(),
        into: "known".into(),
        at,
    };
    commit(s, &[merge(30)]).await;
    // A later merge of the same visitor (nothing left to move) is fine.
    commit(s, &[merge(40)]).await;

    let ids: Vec<String> = s
        .past_conversations("known", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["v2", "k1", "v1"]);
    assert!(
        s.past_conversations("visitor", 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stored = s.conversation("v2").await.unwrap().unwrap();
    assert_eq!(&*stored.record.customer_id, "known");
    // The visitor's survey is the customer's now.
    let h = s.history("known").await.unwrap();
    assert_eq!(h.previous_conversations, 1);
    assert_eq!(h.poorly_rated, vec![Id::from("ag1")]);
    assert_eq!(
        s.record_survey(&survey("v1", "known", 5, None))
            .await
            .unwrap(),
        SurveyOutcome::AlreadyAnswered
    );
    assert_eq!(
        s.record_survey(&survey("v1", "visitor", 5, None))
            .await
            .unwrap(),
        SurveyOutcome::NotYours
    );
}

async fn records_without_readers_commit_idempotently(b: &Backend) {
    let s = &b.store;
    let flags_on = |conversation: &str, codes: &[&str]| Record::CoachingFlags {
        conversation_id: conversation.into(),
        agent_id: "ag1".into(),
        seq: 3,
        codes: codes.iter().map(|c| Id::from(*c)).collect(),
        at: 10,
    };
    let flags = |codes: &[&str]| flags_on("c1", codes);
    let declined = |reason: Option<&str>| Record::OfferDeclined {
        offer_id: "offer-1".into(),
        conversation_id: "c1".into(),
        agent_id: "ag1".into(),
        queue: "q".into(),
        missed: reason.is_none(),
        reason: reason.map(Into::into),
        at: 20,
    };
    commit(s, &[customer("cu1", 1), put(conv("c1", "cu1", "q", 1))]).await;
    // Repeats (within a record, a batch, or later) are ignored, not errors.
    commit(
        s,
        &[
            flags(&["blame", "jargon", "blame"]),
            flags(&["jargon"]),
            declined(Some("busy")),
            declined(None),
            flags(&[]),
        ],
    )
    .await;
    commit(s, &[flags(&["blame"]), declined(None)]).await;
    // They name a conversation that must exist.
    assert!(s.commit(&[flags_on("nope", &["blame"])]).await.is_err());
    let orphan = Record::OfferDeclined {
        offer_id: "offer-2".into(),
        conversation_id: "nope".into(),
        agent_id: "ag1".into(),
        queue: "q".into(),
        missed: true,
        reason: None,
        at: 1,
    };
    assert!(s.commit(&[orphan]).await.is_err());
    s.ping().await.unwrap();
}

async fn failed_commit_leaves_nothing(b: &Backend) {
    let s = &b.store;
    let e = |seq| event(message("c1", seq, Role::Customer, "cu1", "x"));

    // A repeated (conversation, seq) in one batch: the whole batch rolls back.
    let batch = vec![
        customer("cu1", 1),
        put(conv("c1", "cu1", "q", 1)),
        e(1),
        e(2),
        e(2),
        Record::CustomerName {
            id: "cu1".into(),
            name: "Never".into(),
        },
    ];
    assert!(s.commit(&batch).await.is_err());
    assert!(s.customer("cu1").await.unwrap().is_none());
    assert!(s.conversation("c1").await.unwrap().is_none());
    assert!(s.events_after("c1", 0, 10).await.unwrap().is_empty());
    assert!(s.load_open().await.unwrap().is_empty());

    // The store carries on: the good part commits on its own.
    commit(s, &batch[..3]).await;
    assert_eq!(ids(&s.events_after("c1", 0, 10).await.unwrap()), [1]);

    // A seq already stored, after other records of the batch.
    let batch = [
        customer("cu2", 5),
        put(conv("c2", "cu2", "q", 5)),
        e(2),
        Record::AssignmentStarted {
            conversation_id: "c1".into(),
            agent_id: "ag1".into(),
            at: 5,
        },
        e(3),
        e(1),
    ];
    assert!(s.commit(&batch).await.is_err());
    assert!(s.customer("cu2").await.unwrap().is_none());
    assert!(s.conversation("c2").await.unwrap().is_none());
    assert!(!s.was_assigned("c1", "ag1").await.unwrap());
    assert_eq!(ids(&s.events_after("c1", 0, 10).await.unwrap()), [1]);

    // An event of an unknown conversation: refused, with the rest of the batch.
    let orphan = [e(2), event(message("ghost", 1, Role::Customer, "cu1", "x"))];
    assert!(s.commit(&orphan).await.is_err());
    assert_eq!(ids(&s.events_after("c1", 0, 10).await.unwrap()), [1]);
    // A client id the core no longer remembers (reused beyond its de-duplication
    // window) is stored as another message: it must not fail the batch, which holds
    // everyone else's messages too. The same id from another author is another
    // message as well.
    commit(
        s,
        &[
            event(with_client_id(
                message("c1", 2, Role::Customer, "cu1", "a"),
                "m-1",
            )),
            event(with_client_id(
                message("c1", 3, Role::Agent, "ag1", "b"),
                "m-1",
            )),
            event(with_client_id(
                message("c1", 4, Role::Customer, "cu1", "c"),
                "m-1",
            )),
        ],
    )
    .await;
    assert_eq!(
        ids(&s.events_after("c1", 0, 10).await.unwrap()),
        [1, 2, 3, 4]
    );
}

async fn large_batch_commits(b: &Backend) {
    let s = &b.store;
    const N: u64 = 1_000;
    let mut records = vec![customer("cu1", 1), put(conv("c1", "cu1", "q", 1))];
    for seq in 1..=N {
        let e = message("c1", seq, Role::Customer, "cu1", &format!("message {seq}"));
        records.push(event(with_client_id(e, &format!("m{seq}"))));
        if seq == N / 2 {
            // A run of events broken by another record.
            records.push(Record::AssignmentStarted {
                conversation_id: "c1".into(),
                agent_id: "ag1".into(),
                at: 2,
            });
        }
    }
    commit(s, &records).await;
    let all = s.events_after("c1", 0, 5_000).await.unwrap();
    assert_eq!(all.len(), N as usize);
    assert_eq!(ids(&all), (1..=N).collect::<Vec<_>>());
    assert_eq!(
        all[999],
        with_client_id(
            message("c1", N, Role::Customer, "cu1", "message 1000"),
            "m1000"
        )
    );
    assert_eq!(
        ids(&s.events_after("c1", 500, 3).await.unwrap()),
        [501, 502, 503]
    );
    assert_eq!(s.conversation("c1").await.unwrap().unwrap().last_seq, N);
    assert!(s.was_assigned("c1", "ag1").await.unwrap());
    let open = s.load_open().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].recent_client_ids.len(), DEDUPE_WINDOW as usize);
    assert_eq!(open[0].recent_client_ids.last().unwrap().2, N);
}

async fn values_round_trip_verbatim(b: &Backend) {
    let s = &b.store;
    let mut c = conv("c-ünï", "cu-😀", "qué", 1);
    // Unsigned values past i64 are clamped, the same everywhere.
    c.ticket = u64::MAX;
    c.priority = i32::MIN;
    c.attributes = "{ \"a\" : [1,2] ,\n \"b\":\"it's; DROP TABLE x; --\" }".into();
    let text = "multi\nline 'quoted' \"double\" \\ back % _ 😀 ñ";
    let e = Event {
        conversation_id: c.id.clone(),
        seq: 1,
        ts: u64::MAX,
        body: EventBody::Message {
            author: Author {
                role: Role::Customer,
                id: "cu-😀".into(),
                display_name: "Zoë".into(),
            },
            text: text.into(),
            client_msg_id: Some("ü-1".into()),
        },
    };
    commit(
        s,
        &[
            customer("cu-😀", u64::MAX),
            put(c.clone()),
            event(e.clone()),
        ],
    )
    .await;
    let stored = s.conversation("c-ünï").await.unwrap().unwrap().record;
    assert_eq!(stored.ticket, i64::MAX as u64);
    assert_eq!(stored.priority, i32::MIN);
    assert_eq!(stored.attributes, c.attributes);
    let read = s.events_after("c-ünï", 0, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].body, e.body);
    assert_eq!(read[0].ts, i64::MAX as u64);
    assert_eq!(
        s.customer("cu-😀").await.unwrap().unwrap().first_seen,
        i64::MAX as u64
    );
}

async fn closed_store_refuses_and_reopens(b: &Backend) {
    let s = &b.store;
    commit(
        s,
        &[
            customer("cu1", 1),
            put(conv("c1", "cu1", "q", 1)),
            event(message("c1", 1, Role::Customer, "cu1", "before close")),
        ],
    )
    .await;
    s.meta_init("k", "v").await.unwrap();
    s.close().await;
    assert!(s.ping().await.is_err());
    assert!(s.commit(&[customer("cu2", 2)]).await.is_err());
    assert!(s.meta("k").await.is_err());

    // Opening again migrates nothing new and finds everything.
    let again = b.reopen().await;
    again.ping().await.unwrap();
    assert_eq!(again.meta("k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(again.conversation("c1").await.unwrap().unwrap().last_seq, 1);
    assert!(again.customer("cu2").await.unwrap().is_none());
    commit(
        &again,
        &[event(message("c1", 2, Role::Customer, "cu1", "after"))],
    )
    .await;
    assert_eq!(ids(&again.events_after("c1", 0, 10).await.unwrap()), [1, 2]);
    again.close().await;
}

// ---------------------------------------------------------------------------------
// PostgreSQL only: where the store's tables land.

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_keeps_its_tables_and_migrations_in_the_search_path_schema() {
    let backend = Backend::postgres().await;
    let Place::Postgres(schema) = &backend.place else {
        unreachable!()
    };
    let mut conn = pg::connect(&pg::server_url()).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::TEXT FROM information_schema.tables
         WHERE table_schema = $1 ORDER BY table_name",
    )
    .bind(&schema.name)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "_sqlx_migrations",
            "assignments",
            "coaching_flags",
            "conversation_signals",
            "conversations",
            "customer_context",
            "customer_merges",
            "customers",
            "definitions",
            "events",
            "fence",
            "follow_ups",
            "meta",
            "offer_declines",
            "surveys",
            "voice_signals",
        ]
    );
    let applied: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {}._sqlx_migrations WHERE success ORDER BY version",
        schema.name
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(applied, [1, 2, 3]);
    backend.store.close().await;
}

/// Several nodes: once a newer owner took the fence, an older one cannot write at
/// all (neither a batch nor a definition), and cannot take the fence back.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_refuses_every_write_of_a_fenced_off_owner() {
    use warmline::store::StoreError;
    let backend = Backend::postgres().await;
    let old = backend.store.clone();
    let new = backend.reopen().await;
    assert_eq!(old.fence().await.unwrap(), 0);
    old.take_fence(5)
        .await
        .expect("the first owner takes the fence");
    commit(&old, &[customer("c1", 1)]).await;
    new.take_fence(6).await.expect("a newer owner takes it");
    assert_eq!(new.fence().await.unwrap(), 6);

    let refused = old.commit(&[customer("c2", 2)]).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { held: 6 })),
        "a deposed owner's commit must be refused: {refused:?}"
    );
    let refused = old.put_definition("queue", "q", "{}", 3).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { held: 6 })),
        "{refused:?}"
    );
    let refused = old.delete_definition("queue", "q").await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { held: 6 })),
        "{refused:?}"
    );
    let refused = old.take_fence(6).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { held: 6 })),
        "{refused:?}"
    );
    assert!(
        old.customer("c2").await.unwrap().is_none(),
        "nothing of the refused batch"
    );

    commit(&new, &[customer("c2", 2)]).await;
    new.put_definition("queue", "q", "{}", 3).await.unwrap();
    assert!(new.customer("c2").await.unwrap().is_some());
    new.close().await;
    old.close().await;
}

/// The writer connection never checkpoints (no commit may pay for copying the WAL into
/// the database file and syncing it: a stall of 100-250 ms for every message waiting
/// on that commit); a background task does, every second. Without it nothing here
/// would ever reach the database file: 200 messages are far below SQLite's automatic
/// checkpoint of 1,000 WAL pages.
#[tokio::test]
async fn sqlite_copies_the_wal_into_the_database_file_in_the_background() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path(), Synchronous::Full, DEDUPE_WINDOW)
            .await
            .expect("open SQLite"),
    );
    let file = dir.path().join("warmline.db");
    let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
    let before = size();
    let mut records = vec![
        customer("cu-wal", 1_000),
        put(conv("c-wal", "cu-wal", "support", 1_000)),
    ];
    let text = "x".repeat(3_000); // one row a page: ~800 KB in all
    records
        .extend((1..=200).map(|seq| event(message("c-wal", seq, Role::Customer, "cu-wal", &text))));
    commit(&store, &records).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while size() < before + 100 * 4096 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database file stayed at {} bytes (from {before}): the WAL was never checkpointed",
            size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

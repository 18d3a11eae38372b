//! A history checker for chaos tests: every simulated client logs what it did and
//! saw ([`Op`]), and [`check`] decides offline, from those logs and the store's
//! transcript rows, whether the gateway kept its promises:
//!
//! - every acked message is in the store exactly once, at its acked `seq`, with its
//!   text and author, and reached every participant of its conversation;
//! - `seq` is gap-free in the store, on every connection (each event is the one after
//!   the last the connection had) and in what each participant ends up with;
//! - nothing is delivered twice on one connection, no message is stored twice, no
//!   `client_msg_id` is acked at two `seq`s;
//! - nobody sees anything of a conversation they take part in not.
//!
//! The log is recorded by [`drive`]: a chatting client that reconnects and resumes
//! on any close, resends what was not acked with the same `client_msg_id`, and is
//! steered through phases (chat, quiet, sync, stop) by the test.
//! `#[path]`-included by `tests/chaos.rs`, beside `common`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http};

use crate::common::{ORIGIN, SECRET, Ws};

// ---------------------------------------------------------------------------
// The log.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Customer,
    Agent,
}

/// One thing a client did or saw. `conn` numbers the client's connections from 1.
#[derive(Clone, Debug)]
pub enum Op {
    /// A connection was welcomed; `started` is when its attempt began.
    Welcomed { conn: u32, started: Instant },
    /// A chat message sent (again, when `resend`).
    Sent {
        conn: u32,
        conversation: String,
        client_msg_id: String,
        text: String,
        resend: bool,
    },
    /// The gateway acknowledged a message: it is durable at `seq`.
    Acked {
        conn: u32,
        conversation: String,
        client_msg_id: String,
        seq: u64,
    },
    /// A transcript event received (live, replayed by `resume`, or in a
    /// `conversation` frame).
    Event {
        conn: u32,
        conversation: String,
        seq: u64,
        kind: String,
        sender_role: String,
        sender_id: String,
        text: Option<String>,
    },
    ResumeSent {
        conn: u32,
        conversation: String,
        last_seq: u64,
    },
    Resumed {
        conn: u32,
        conversation: String,
        last_seq: u64,
    },
    /// All the resumes a connection sent when it was welcomed were answered:
    /// `took` from the start of its attempt.
    Resynced { conn: u32, took: Duration },
    Error {
        conn: u32,
        code: String,
        frame: String,
    },
    /// The connection ended: the close code, `None` when it dropped without one.
    Closed { conn: u32, code: Option<u16> },
}

/// Everything one client did and saw.
#[derive(Clone, Debug)]
pub struct ClientLog {
    pub name: String,
    pub role: Role,
    /// The customer id (from the welcome) or the agent id.
    pub id: String,
    /// The conversations this client takes part in.
    pub conversations: BTreeSet<String>,
    pub ops: Vec<Op>,
}

impl ClientLog {
    pub fn new(name: &str, role: Role, id: &str, conversations: &[&str]) -> ClientLog {
        ClientLog {
            name: name.to_owned(),
            role,
            id: id.to_owned(),
            conversations: conversations.iter().map(|c| (*c).to_owned()).collect(),
            ops: Vec::new(),
        }
    }

    pub fn closes(&self) -> Vec<Option<u16>> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Closed { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    pub fn acks(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| matches!(op, Op::Acked { .. }))
            .count()
    }

    pub fn errors(&self) -> Vec<(String, String)> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Error { code, frame, .. } => Some((code.clone(), frame.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A transcript row as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub conversation_id: String,
    pub seq: u64,
    pub kind: String,
    pub role: String,
    pub author_id: String,
    pub text: Option<String>,
    pub client_msg_id: Option<String>,
}

/// A row of the events table: conversation, seq, kind, role, author, text, client_msg_id.
type Row = (
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// The transcript rows of `conversations` in a SQLite store.
pub async fn sqlite_events(
    db: &mut sqlx::SqliteConnection,
    conversations: &BTreeSet<String>,
) -> Vec<StoredEvent> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT conversation_id, seq, kind, role, author_id, text, client_msg_id \
             FROM events ORDER BY conversation_id, seq",
    )
    .fetch_all(db)
    .await
    .expect("read the events table");
    stored(rows, conversations)
}

/// The transcript rows of `conversations` in a PostgreSQL store (the URL names the
/// test's schema).
#[cfg(all(feature = "postgres", feature = "redis"))]
pub async fn postgres_events(url: &str, conversations: &BTreeSet<String>) -> Vec<StoredEvent> {
    let mut db = crate::pg::connect(url).await;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT conversation_id, seq, kind, role, author_id, text, client_msg_id \
             FROM events ORDER BY conversation_id, seq",
    )
    .fetch_all(&mut db)
    .await
    .expect("read the events table");
    stored(rows, conversations)
}

#[allow(clippy::type_complexity)]
fn stored(
    rows: Vec<(
        String,
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    )>,
    conversations: &BTreeSet<String>,
) -> Vec<StoredEvent> {
    rows.into_iter()
        .filter(|r| conversations.contains(&r.0))
        .map(
            |(conversation_id, seq, kind, role, author_id, text, client_msg_id)| StoredEvent {
                conversation_id,
                seq: u64::try_from(seq).expect("seq >= 0"),
                kind,
                role,
                author_id,
                text,
                client_msg_id,
            },
        )
        .collect()
}

// ---------------------------------------------------------------------------
// The checker.

/// What [`check`] found. A clean history has `lost`, `duplicated`, `foreign`,
/// `gaps` and `conflicts` all zero and no `violations`.
#[derive(Debug, Default)]
pub struct Report {
    /// Distinct messages the gateway acknowledged.
    pub acked: usize,
    /// Acked messages missing from the store, or from a participant's view.
    pub lost: usize,
    /// Messages stored (or acked) twice; events delivered twice on one connection.
    pub duplicated: usize,
    /// Events of a conversation the receiver takes no part in, or from a sender who
    /// is not one of its participants.
    pub foreign: usize,
    /// Missing `seq`s: in the store, on a connection, in a participant's view.
    pub gaps: usize,
    /// One `seq` seen with two different contents.
    pub conflicts: usize,
    /// Transcript events received, over all clients.
    pub events: usize,
    /// Reconnections: from the start of the attempt that was welcomed to the last
    /// `resumed` of what it resumed.
    pub resyncs: Vec<Duration>,
    pub violations: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.foreign == 0
            && self.gaps == 0
            && self.conflicts == 0
            && self.violations.is_empty()
    }

    /// Fails the test with the first violations in words.
    pub fn assert_clean(&self, scenario: &str) {
        self.assert_clean_or(scenario, "");
    }

    /// The same, with `context` (the gateway's log, say) after the violations.
    pub fn assert_clean_or(&self, scenario: &str, context: &str) {
        if self.is_clean() {
            return;
        }
        let shown: Vec<&String> = self.violations.iter().take(25).collect();
        panic!(
            "{scenario}: the history has violations: acked {} lost {} duplicated {} foreign {} gaps {} conflicts {}; {} in all, the first:\n  {}\n{context}",
            self.acked,
            self.lost,
            self.duplicated,
            self.foreign,
            self.gaps,
            self.conflicts,
            self.violations.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }

    /// The `q` quantile (0..=1) of the resync times.
    pub fn resync(&self, q: f64) -> Option<Duration> {
        quantile(&self.resyncs, q)
    }
}

pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// What one `seq` carried, to compare observations with each other and the store.
#[derive(Clone, PartialEq, Eq)]
struct Content {
    kind: String,
    author: String,
    text: Option<String>,
}

impl std::fmt::Debug for Content {
    /// Short: padded texts would drown the report.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = self
            .text
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(32)
            .collect();
        write!(f, "{} by {:?}: {text:?}", self.kind, self.author)
    }
}

/// Checks `logs` (one per client) against each other and, when given, against the
/// store's transcript rows of the conversations the clients took part in.
pub fn check(logs: &[ClientLog], store: Option<&[StoredEvent]>) -> Report {
    let mut r = Report::default();
    let mut v = Vec::new();

    // Who takes part in each conversation.
    let mut participants: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, log) in logs.iter().enumerate() {
        for c in &log.conversations {
            participants.entry(c.as_str()).or_default().push(i);
        }
    }

    // Every observation of every seq; each client's view; acked messages.
    let mut observed: BTreeMap<(String, u64), (Content, String)> = BTreeMap::new();
    let mut views: Vec<BTreeMap<String, BTreeSet<u64>>> = vec![BTreeMap::new(); logs.len()];
    // (client, client_msg_id) -> (conversation, seq, text)
    let mut acked: BTreeMap<(usize, String), (String, u64, String)> = BTreeMap::new();
    let mut observe = |r: &mut Report,
                       v: &mut Vec<String>,
                       who: &str,
                       conversation: &str,
                       seq: u64,
                       content: Content| {
        match observed.get(&(conversation.to_owned(), seq)) {
            Some((known, by)) if *known != content => {
                r.conflicts += 1;
                v.push(format!(
                    "seq {seq} of {conversation}: {by} saw {known:?}, {who} saw {content:?}"
                ));
            }
            Some(_) => {}
            None => {
                observed.insert((conversation.to_owned(), seq), (content, who.to_owned()));
            }
        }
    };

    for (i, log) in logs.iter().enumerate() {
        let mut texts: HashMap<String, String> = HashMap::new(); // client_msg_id -> text
        // Per connection and conversation: the last seq the connection has.
        let mut cursors: HashMap<(u32, String), u64> = HashMap::new();
        // Resumes sent and not yet answered: an event the connection already had may
        // come again in the replay (it went out live before the resume was read).
        let mut resuming: HashMap<(u32, String), u64> = HashMap::new();
        for op in &log.ops {
            match op {
                Op::Sent {
                    client_msg_id,
                    text,
                    conversation,
                    ..
                } => {
                    if !log.conversations.contains(conversation) {
                        v.push(format!(
                            "{} sent to {conversation}, which is not theirs (a test bug)",
                            log.name
                        ));
                    }
                    texts.insert(client_msg_id.clone(), text.clone());
                }
                Op::ResumeSent {
                    conn,
                    conversation,
                    last_seq,
                } => {
                    let cursor = cursors
                        .entry((*conn, conversation.clone()))
                        .or_insert(*last_seq);
                    *cursor = (*cursor).min(*last_seq);
                    resuming.insert((*conn, conversation.clone()), *last_seq);
                }
                Op::Resumed {
                    conn, conversation, ..
                } => {
                    resuming.remove(&(*conn, conversation.clone()));
                }
                Op::Acked {
                    conn,
                    conversation,
                    client_msg_id,
                    seq,
                } => {
                    if !log.conversations.contains(conversation) {
                        r.foreign += 1;
                        v.push(format!(
                            "{} got an ack in {conversation}, not theirs",
                            log.name
                        ));
                        continue;
                    }
                    let text = texts.get(client_msg_id).cloned().unwrap_or_default();
                    match acked.get(&(i, client_msg_id.clone())) {
                        Some((_, s, _)) if s != seq => {
                            r.duplicated += 1;
                            v.push(format!(
                                "{}: {client_msg_id} acked as seq {s} and as seq {seq} in {conversation}",
                                log.name
                            ));
                        }
                        Some(_) => {}
                        None => {
                            acked.insert(
                                (i, client_msg_id.clone()),
                                (conversation.clone(), *seq, text.clone()),
                            );
                        }
                    }
                    let content = Content {
                        kind: "message".into(),
                        author: log.id.clone(),
                        text: Some(text),
                    };
                    observe(&mut r, &mut v, &log.name, conversation, *seq, content);
                    views[i]
                        .entry(conversation.clone())
                        .or_default()
                        .insert(*seq);
                    if let Some(cursor) = cursors.get_mut(&(*conn, conversation.clone())) {
                        if *seq > *cursor + 1 {
                            r.gaps += 1;
                            v.push(format!(
                                "{} connection {conn}: ack of seq {seq} in {conversation} after seq {cursor}",
                                log.name
                            ));
                        }
                        *cursor = (*cursor).max(*seq);
                    }
                }
                Op::Event {
                    conn,
                    conversation,
                    seq,
                    kind,
                    sender_role,
                    sender_id,
                    text,
                } => {
                    r.events += 1;
                    if !log.conversations.contains(conversation) {
                        r.foreign += 1;
                        v.push(format!(
                            "{} received seq {seq} of {conversation}, not theirs",
                            log.name
                        ));
                        continue;
                    }
                    if kind == "message" && sender_role != "system" {
                        let known = participants
                            .get(conversation.as_str())
                            .is_some_and(|ps| ps.iter().any(|&p| logs[p].id == *sender_id));
                        if !known {
                            r.foreign += 1;
                            v.push(format!(
                                "{} received seq {seq} of {conversation} from {sender_role} {sender_id}, who is not in it",
                                log.name
                            ));
                        }
                    }
                    let author = match (kind.as_str(), sender_role.as_str()) {
                        ("message", "system") => "system".to_owned(),
                        ("message", _) => sender_id.clone(),
                        _ => String::new(),
                    };
                    let content = Content {
                        kind: kind.clone(),
                        author,
                        text: if kind == "message" {
                            text.clone()
                        } else {
                            None
                        },
                    };
                    observe(&mut r, &mut v, &log.name, conversation, *seq, content);
                    views[i]
                        .entry(conversation.clone())
                        .or_default()
                        .insert(*seq);
                    let cursor = cursors.entry((*conn, conversation.clone())).or_insert(0);
                    let replayed = resuming
                        .get(&(*conn, conversation.clone()))
                        .is_some_and(|from| seq > from);
                    if *seq <= *cursor && replayed {
                        // Asked for again by the resume: the client keeps one by seq.
                    } else if *seq <= *cursor {
                        r.duplicated += 1;
                        v.push(format!(
                            "{} connection {conn}: seq {seq} of {conversation} delivered again (had up to {cursor})",
                            log.name
                        ));
                    } else if *seq > *cursor + 1 {
                        r.gaps += 1;
                        v.push(format!(
                            "{} connection {conn}: seq {seq} of {conversation} came after seq {cursor}",
                            log.name
                        ));
                    }
                    *cursor = (*cursor).max(*seq);
                }
                // A reconnection's resync (the first connection's is setup).
                Op::Resynced { conn, took } if *conn > 1 => r.resyncs.push(*took),
                Op::Resynced { .. } => {}
                Op::Welcomed { .. } | Op::Error { .. } | Op::Closed { .. } => {}
            }
        }
    }
    r.acked = acked.len();

    // The truth of each conversation: the store when given, else what was observed.
    let mut truth: BTreeMap<String, BTreeMap<u64, Content>> = BTreeMap::new();
    match store {
        Some(rows) => {
            let mut stored_ids: HashMap<(String, String, String), Vec<u64>> = HashMap::new();
            let mut stored_texts: HashMap<(String, String, String), Vec<u64>> = HashMap::new();
            for row in rows {
                let content = Content {
                    kind: row.kind.clone(),
                    author: match (row.kind.as_str(), row.role.as_str()) {
                        ("message", "system") => "system".to_owned(),
                        ("message", _) => row.author_id.clone(),
                        _ => String::new(),
                    },
                    text: if row.kind == "message" {
                        row.text.clone()
                    } else {
                        None
                    },
                };
                let seqs = truth.entry(row.conversation_id.clone()).or_default();
                if seqs.insert(row.seq, content).is_some() {
                    r.duplicated += 1;
                    v.push(format!(
                        "the store has seq {} of {} twice",
                        row.seq, row.conversation_id
                    ));
                }
                if row.kind == "message" && row.role != "system" {
                    if let Some(id) = &row.client_msg_id {
                        stored_ids
                            .entry((
                                row.conversation_id.clone(),
                                row.author_id.clone(),
                                id.clone(),
                            ))
                            .or_default()
                            .push(row.seq);
                    }
                    if let Some(text) = &row.text {
                        stored_texts
                            .entry((
                                row.conversation_id.clone(),
                                row.author_id.clone(),
                                text.clone(),
                            ))
                            .or_default()
                            .push(row.seq);
                    }
                }
            }
            for ((conversation, author, what), seqs) in stored_ids.iter().chain(stored_texts.iter())
            {
                if seqs.len() > 1 {
                    r.duplicated += seqs.len() - 1;
                    v.push(format!(
                        "the store has {author}'s message {:?} in {conversation} at seqs {seqs:?}",
                        what.chars().take(40).collect::<String>()
                    ));
                }
            }
            for ((conversation, seq), (content, who)) in &observed {
                match truth.get(conversation).and_then(|t| t.get(seq)) {
                    Some(stored) if stored != content => {
                        r.conflicts += 1;
                        v.push(format!(
                            "{who} saw seq {seq} of {conversation} as {content:?}; the store has {stored:?}"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        r.conflicts += 1;
                        v.push(format!(
                            "{who} saw seq {seq} of {conversation} ({content:?}); the store does not have it"
                        ));
                    }
                }
            }
        }
        None => {
            for ((conversation, seq), (content, _)) in &observed {
                truth
                    .entry(conversation.clone())
                    .or_default()
                    .insert(*seq, content.clone());
            }
        }
    }
    for (conversation, seqs) in &truth {
        let last = seqs.keys().last().copied().unwrap_or(0);
        for seq in 1..=last {
            if !seqs.contains_key(&seq) {
                r.gaps += 1;
                v.push(format!(
                    "seq {seq} of {conversation} is missing (last {last})"
                ));
            }
        }
    }

    // Every acked message: in the truth at its seq, and seen by every participant.
    for ((client, client_msg_id), (conversation, seq, text)) in &acked {
        let log = &logs[*client];
        let mut missing = Vec::new();
        match truth.get(conversation).and_then(|t| t.get(seq)) {
            Some(c)
                if c.kind == "message" && c.author == log.id && c.text.as_ref() == Some(text) => {}
            other => missing.push(format!("the store (it has {other:?})")),
        }
        for &p in participants
            .get(conversation.as_str())
            .into_iter()
            .flatten()
        {
            if !views[p].get(conversation).is_some_and(|s| s.contains(seq)) {
                missing.push(logs[p].name.clone());
            }
        }
        if !missing.is_empty() {
            r.lost += 1;
            v.push(format!(
                "{}'s {client_msg_id} (seq {seq} of {conversation}) was acked but is missing from {}",
                log.name,
                missing.join(", ")
            ));
        }
    }

    // Each participant ends with every seq of their conversations.
    for (conversation, ps) in &participants {
        let last = truth
            .get(*conversation)
            .and_then(|t| t.keys().last().copied())
            .unwrap_or(0);
        for &p in ps {
            let seen = views[p].get(*conversation);
            let missing: Vec<u64> = (1..=last)
                .filter(|s| !seen.is_some_and(|seen| seen.contains(s)))
                .collect();
            if !missing.is_empty() {
                r.gaps += missing.len();
                v.push(format!(
                    "{} never received seqs {:?} of {conversation} (last {last})",
                    logs[p].name,
                    &missing[..missing.len().min(10)]
                ));
            }
        }
    }
    r.violations = v;
    r
}

// ---------------------------------------------------------------------------
// The driver: a chatting client that survives anything.

/// Where clients may connect: the nodes' addresses, `None` while a node is down.
/// The test updates it (a restarted server listens on a new port).
pub type Targets = Arc<Mutex<Vec<Option<String>>>>;

pub fn targets(addrs: &[&str]) -> Targets {
    Arc::new(Mutex::new(
        addrs.iter().map(|a| Some((*a).to_owned())).collect(),
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Send messages.
    Chat,
    /// Send nothing new; get everything pending acked.
    Quiet,
    /// Quiet, and resume every conversation to learn its latest `seq`.
    Sync,
    /// Close and hand back the log.
    Stop,
}

#[derive(Clone, Debug)]
pub enum Who {
    Customer { visitor_token: String },
    Agent { id: String },
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub who: Who,
    pub conversations: Vec<String>,
    /// Whether this client writes messages (else it only reads).
    pub sends: bool,
    /// Messages in flight at most.
    pub window: usize,
    /// At least this long between two new messages.
    pub pace: Duration,
    /// Bytes of padding in each message.
    pub pad: usize,
    /// The target tried first (others after it, in turn).
    pub prefer: usize,
}

impl Spec {
    pub fn customer(name: &str, visitor_token: &str, conversation: &str) -> Spec {
        Spec {
            name: name.to_owned(),
            who: Who::Customer {
                visitor_token: visitor_token.to_owned(),
            },
            conversations: vec![conversation.to_owned()],
            sends: true,
            window: 2,
            pace: Duration::ZERO,
            pad: 0,
            prefer: 0,
        }
    }

    pub fn agent(id: &str, conversations: &[String]) -> Spec {
        Spec {
            name: id.to_owned(),
            who: Who::Agent { id: id.to_owned() },
            conversations: conversations.to_vec(),
            sends: true,
            window: 2,
            pace: Duration::ZERO,
            pad: 0,
            prefer: 0,
        }
    }
}

/// What a running client tells the test, without waiting for it.
#[derive(Default)]
pub struct Progress {
    pub acks: AtomicU64,
    pub welcomes: AtomicU64,
    pub closes: AtomicU64,
    /// In `Quiet` or `Sync`: connected, resumed, nothing pending.
    pub quiet: AtomicBool,
    /// In `Sync`: every conversation resumed on the current connection.
    pub synced: AtomicBool,
    pub changed: Notify,
}

/// A running client.
pub struct Driver {
    pub name: String,
    pub progress: Arc<Progress>,
    phase: watch::Sender<Phase>,
    stall: watch::Sender<bool>,
    task: tokio::task::JoinHandle<ClientLog>,
}

/// Longest one connection attempt (handshake and welcome) may take.
const ATTEMPT: Duration = Duration::from_secs(5);
/// Longest a client may try to reconnect before the test fails.
const GIVE_UP: Duration = Duration::from_secs(120);

impl Driver {
    pub fn spawn(spec: Spec, targets: Targets) -> Driver {
        let progress = Arc::new(Progress::default());
        let (phase, phase_rx) = watch::channel(Phase::Chat);
        let (stall, stall_rx) = watch::channel(false);
        let name = spec.name.clone();
        let task = tokio::spawn(run(spec, targets, progress.clone(), phase_rx, stall_rx));
        Driver {
            name,
            progress,
            phase,
            stall,
            task,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        let _ = self.phase.send(phase);
    }

    /// Stops reading its socket (a slow consumer) or starts again.
    pub fn stall(&self, on: bool) {
        let _ = self.stall.send(on);
    }

    pub async fn finish(self) -> ClientLog {
        self.set_phase(Phase::Stop);
        self.task.await.expect("a chatting client panicked")
    }
}

/// A crowd of drivers steered together.
pub struct Crowd {
    pub drivers: Vec<Driver>,
}

impl Crowd {
    pub fn acks(&self) -> u64 {
        self.drivers
            .iter()
            .map(|d| d.progress.acks.load(Ordering::Relaxed))
            .sum()
    }

    /// Waits until `ready` holds for every driver, failing after `within`.
    pub async fn wait_each(&self, what: &str, within: Duration, ready: impl Fn(&Progress) -> bool) {
        let deadline = Instant::now() + within;
        for d in &self.drivers {
            loop {
                let changed = d.progress.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if ready(&d.progress) {
                    break;
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    panic!("{}: not {what} within {within:?}", d.name);
                }
            }
        }
    }

    /// Waits until every driver has at least `n` more acks than `since` (per driver).
    pub async fn wait_acks(&self, since: &[u64], n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        for (d, base) in self.drivers.iter().zip(since) {
            loop {
                let changed = d.progress.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if d.progress.acks.load(Ordering::Relaxed) >= base + n {
                    break;
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    panic!(
                        "{}: fewer than {n} acks within {within:?} (has {})",
                        d.name,
                        d.progress.acks.load(Ordering::Relaxed) - base
                    );
                }
            }
        }
    }

    pub fn ack_counts(&self) -> Vec<u64> {
        self.drivers
            .iter()
            .map(|d| d.progress.acks.load(Ordering::Relaxed))
            .collect()
    }

    pub fn set_phase(&self, phase: Phase) {
        for d in &self.drivers {
            d.set_phase(phase);
        }
    }

    /// Quiet (everything acked), then synced (every conversation resumed), then
    /// stopped: the logs, in the drivers' order.
    pub async fn finish(self, within: Duration) -> Vec<ClientLog> {
        self.set_phase(Phase::Quiet);
        self.wait_each("quiet", within, |p| p.quiet.load(Ordering::Relaxed))
            .await;
        self.set_phase(Phase::Sync);
        self.wait_each("synced", within, |p| p.synced.load(Ordering::Relaxed))
            .await;
        let mut logs = Vec::new();
        for d in self.drivers {
            logs.push(d.finish().await);
        }
        logs
    }
}

struct Pending {
    conversation: String,
    text: String,
}

struct State {
    spec: Spec,
    log: ClientLog,
    targets: Targets,
    progress: Arc<Progress>,
    conn: u32,
    ws: Option<Ws>,
    /// client_msg_id -> the message, until acked.
    pending: BTreeMap<String, Pending>,
    /// request id (of this connection) -> client_msg_id.
    requests: HashMap<String, String>,
    /// client_msg_ids to send again (refused as `unavailable`).
    retry: VecDeque<String>,
    /// Per conversation, every seq this client has.
    have: BTreeMap<String, BTreeSet<u64>>,
    awaiting: BTreeSet<String>,
    /// The resumes of the welcome are still being answered: (attempt start).
    resyncing: Option<Instant>,
    next_msg: u64,
    next_request: u64,
    next_conversation: usize,
    next_send: Instant,
    phase: Phase,
    /// In `Sync`, the resumes were sent on this connection.
    sync_sent: bool,
}

async fn run(
    spec: Spec,
    targets: Targets,
    progress: Arc<Progress>,
    mut phase_rx: watch::Receiver<Phase>,
    mut stall_rx: watch::Receiver<bool>,
) -> ClientLog {
    let role = match spec.who {
        Who::Customer { .. } => Role::Customer,
        Who::Agent { .. } => Role::Agent,
    };
    let id = match &spec.who {
        Who::Agent { id } => id.clone(),
        Who::Customer { .. } => String::new(),
    };
    let conversations: Vec<&str> = spec.conversations.iter().map(String::as_str).collect();
    let log = ClientLog::new(&spec.name, role, &id, &conversations);
    let mut s = State {
        spec,
        log,
        targets,
        progress,
        conn: 0,
        ws: None,
        pending: BTreeMap::new(),
        requests: HashMap::new(),
        retry: VecDeque::new(),
        have: BTreeMap::new(),
        awaiting: BTreeSet::new(),
        resyncing: None,
        next_msg: 0,
        next_request: 0,
        next_conversation: 0,
        next_send: Instant::now(),
        phase: Phase::Chat,
        sync_sent: false,
    };
    loop {
        s.phase = *phase_rx.borrow_and_update();
        if s.phase == Phase::Stop {
            break;
        }
        if s.ws.is_none() {
            s.connect(&mut phase_rx).await;
            continue;
        }
        s.update_progress().await;
        let stalled = *stall_rx.borrow_and_update();
        let can_send = !stalled
            && s.awaiting.is_empty()
            && (!s.retry.is_empty()
                || (s.phase == Phase::Chat && s.spec.sends && s.pending.len() < s.spec.window));
        let ws = s.ws.as_mut().expect("connected");
        tokio::select! {
            biased;
            _ = phase_rx.changed() => {}
            _ = stall_rx.changed() => {}
            msg = ws.next(), if !stalled => s.on_message(msg).await,
            () = tokio::time::sleep_until(s.next_send), if can_send => s.send_next().await,
        }
    }
    if let Some(mut ws) = s.ws.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    s.log
}

impl State {
    fn notify(&self) {
        self.progress.changed.notify_waiters();
    }

    async fn update_progress(&mut self) {
        let settled = self.awaiting.is_empty() && self.pending.is_empty() && self.retry.is_empty();
        let quiet = self.phase >= Phase::Quiet && settled;
        if self.phase == Phase::Sync && settled && !self.sync_sent {
            self.sync_sent = true;
            self.resume_all().await;
            return;
        }
        let synced = self.phase == Phase::Sync && self.sync_sent && self.awaiting.is_empty();
        let before = (
            self.progress.quiet.swap(quiet, Ordering::Relaxed),
            self.progress.synced.swap(synced, Ordering::Relaxed),
        );
        if before != (quiet, synced) {
            self.notify();
        }
    }

    fn contiguous(&self, conversation: &str) -> u64 {
        let mut last = 0;
        for seq in self.have.get(conversation).into_iter().flatten() {
            if *seq == last + 1 {
                last = *seq;
            } else {
                break;
            }
        }
        last
    }

    fn request(&mut self, url: &str) -> http::Request<()> {
        match &self.spec.who {
            Who::Customer { .. } => {
                let mut request = format!("ws://{url}/ws/customer")
                    .into_client_request()
                    .unwrap();
                request
                    .headers_mut()
                    .insert("Origin", http::HeaderValue::from_static(ORIGIN));
                request
            }
            Who::Agent { id } => {
                let token = warmline::gateway::auth::mint_agent(SECRET, id, 3600).unwrap();
                format!("ws://{url}/ws/agent?token={token}")
                    .into_client_request()
                    .unwrap()
            }
        }
    }

    /// Connects to a live target (retrying with backoff), is welcomed, resumes every
    /// conversation from what it has without a gap, resends what was not acked.
    async fn connect(&mut self, phase_rx: &mut watch::Receiver<Phase>) {
        let give_up = Instant::now() + GIVE_UP;
        let mut backoff = Duration::from_millis(20);
        loop {
            if *phase_rx.borrow() == Phase::Stop {
                return;
            }
            let addrs: Vec<Option<String>> = self.targets.lock().unwrap().clone();
            let n = addrs.len();
            let mut last_error = String::new();
            for k in 0..n {
                let Some(addr) = &addrs[(self.spec.prefer + k) % n] else {
                    continue;
                };
                let started = Instant::now();
                match self.attempt(addr).await {
                    Ok(()) => {
                        self.welcomed(started).await;
                        return;
                    }
                    Err(e) => last_error = format!("{addr}: {e}"),
                }
            }
            assert!(
                Instant::now() < give_up,
                "{}: no live target welcomed it within {GIVE_UP:?}; last: {last_error}",
                self.spec.name
            );
            // Jittered exponential backoff, as a client in the field should.
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            let wait = backoff.mul_f64(jitter);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = phase_rx.changed() => {}
            }
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    async fn attempt(&mut self, addr: &str) -> Result<(), String> {
        let deadline = Instant::now() + ATTEMPT;
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(64 << 20);
        let connecting =
            tokio_tungstenite::connect_async_with_config(self.request(addr), Some(config), false);
        let mut ws = match tokio::time::timeout_at(deadline, connecting).await {
            Err(_) => return Err("no handshake in time".into()),
            Ok(Err(e)) => return Err(format!("handshake: {e}")),
            Ok(Ok((ws, _))) => ws,
        };
        if let Who::Customer { visitor_token } = &self.spec.who {
            let hello = json!({"type":"hello","visitor_token":visitor_token});
            if ws
                .send(Message::Text(hello.to_string().into()))
                .await
                .is_err()
            {
                return Err("dropped before hello".into());
            }
        }
        loop {
            let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => return Err("no welcome in time".into()),
                Ok(m) => m,
            };
            match msg {
                None | Some(Err(_)) => return Err("dropped before the welcome".into()),
                Some(Ok(Message::Close(f))) => {
                    return Err(format!("closed before the welcome: {f:?}"));
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("the server sent JSON");
                    match v["type"].as_str() {
                        Some("welcome") => {
                            if let Some(id) = v["customer_id"].as_str() {
                                self.log.id = id.to_owned();
                            }
                            self.ws = Some(ws);
                            return Ok(());
                        }
                        Some("error") => return Err(format!("refused: {v}")),
                        // Nothing else is expected before the welcome.
                        _ => return Err(format!("{v} before the welcome")),
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }

    async fn welcomed(&mut self, started: Instant) {
        self.conn += 1;
        self.requests.clear();
        self.sync_sent = self.phase == Phase::Sync;
        self.log.ops.push(Op::Welcomed {
            conn: self.conn,
            started,
        });
        self.progress.welcomes.fetch_add(1, Ordering::Relaxed);
        self.notify();
        self.resume_all().await;
        self.resyncing = Some(started);
        // Everything not acked goes again, with the same client_msg_id.
        self.retry = self.pending.keys().cloned().collect();
        self.next_send = Instant::now();
    }

    async fn resume_all(&mut self) {
        self.awaiting.clear();
        let conversations = self.spec.conversations.clone();
        for conversation in conversations {
            self.resume(conversation).await;
        }
    }

    /// Resumes from the last `seq` it has without a gap (the request id names the
    /// conversation, so a refusal can be matched).
    async fn resume(&mut self, conversation: String) {
        let last_seq = self.contiguous(&conversation);
        self.log.ops.push(Op::ResumeSent {
            conn: self.conn,
            conversation: conversation.clone(),
            last_seq,
        });
        self.send(json!({"type":"resume","id":format!("z{conversation}"),
            "conversation_id":conversation,"last_seq":last_seq}))
            .await;
        self.awaiting.insert(conversation);
    }

    async fn send(&mut self, frame: Value) {
        if let Some(ws) = self.ws.as_mut() {
            // A dead connection shows at the next read.
            let _ = ws.send(Message::Text(frame.to_string().into())).await;
        }
    }

    async fn send_next(&mut self) {
        let (client_msg_id, resend) = match self.retry.pop_front() {
            Some(id) if self.pending.contains_key(&id) => (id, true),
            Some(_) => return,
            None => {
                self.next_msg += 1;
                let id = format!("{}-m{}", self.spec.name, self.next_msg);
                let conversation = self.spec.conversations
                    [self.next_conversation % self.spec.conversations.len()]
                .clone();
                self.next_conversation += 1;
                let mut text = format!("{} says {id}", self.spec.name);
                if self.spec.pad > 0 {
                    text.push(' ');
                    text.push_str(&"x".repeat(self.spec.pad));
                }
                self.pending
                    .insert(id.clone(), Pending { conversation, text });
                (id, false)
            }
        };
        self.next_request += 1;
        let request = format!("q{}", self.next_request);
        self.requests.insert(request.clone(), client_msg_id.clone());
        let p = &self.pending[&client_msg_id];
        let frame = json!({"type":"message","id":request,"conversation_id":p.conversation,
            "text":p.text,"client_msg_id":client_msg_id});
        self.log.ops.push(Op::Sent {
            conn: self.conn,
            conversation: p.conversation.clone(),
            client_msg_id,
            text: p.text.clone(),
            resend,
        });
        self.send(frame).await;
        self.next_send = Instant::now() + self.spec.pace;
    }

    fn lost(&mut self, code: Option<u16>) {
        self.ws = None;
        self.log.ops.push(Op::Closed {
            conn: self.conn,
            code,
        });
        self.progress.closes.fetch_add(1, Ordering::Relaxed);
        self.progress.quiet.store(false, Ordering::Relaxed);
        self.progress.synced.store(false, Ordering::Relaxed);
        self.notify();
    }

    async fn on_message(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) {
        let v: Value = match msg {
            None | Some(Err(_)) => return self.lost(None),
            Some(Ok(Message::Close(frame))) => return self.lost(frame.map(|f| u16::from(f.code))),
            Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("the server sent JSON"),
            Some(Ok(_)) => return,
        };
        let conn = self.conn;
        let conversation = v["conversation_id"].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str().unwrap_or_default() {
            "message" | "assigned" | "closed" => self.event(&v),
            "resumed" => {
                let last_seq = v["last_seq"].as_u64().unwrap_or_default();
                self.log.ops.push(Op::Resumed {
                    conn,
                    conversation: conversation.clone(),
                    last_seq,
                });
                self.awaiting.remove(&conversation);
                if self.awaiting.is_empty()
                    && let Some(started) = self.resyncing.take()
                {
                    self.log.ops.push(Op::Resynced {
                        conn,
                        took: started.elapsed(),
                    });
                }
            }
            "ack" => {
                let Some(client_msg_id) = v["id"].as_str().and_then(|r| self.requests.remove(r))
                else {
                    return;
                };
                let seq = v["seq"].as_u64().unwrap_or_else(|| {
                    panic!("{}: a message ack without seq: {v}", self.spec.name)
                });
                if let Some(p) = self.pending.remove(&client_msg_id) {
                    self.have
                        .entry(p.conversation.clone())
                        .or_default()
                        .insert(seq);
                    self.log.ops.push(Op::Acked {
                        conn,
                        conversation: p.conversation,
                        client_msg_id,
                        seq,
                    });
                    self.progress.acks.fetch_add(1, Ordering::Relaxed);
                    self.notify();
                }
            }
            "error" => {
                let code = v["code"].as_str().unwrap_or_default().to_owned();
                self.log.ops.push(Op::Error {
                    conn,
                    code: code.clone(),
                    frame: v.to_string(),
                });
                if let Some(client_msg_id) = v["id"].as_str().and_then(|r| self.requests.remove(r))
                {
                    if code == "unavailable" {
                        // Nothing was saved: the same message again, a little later.
                        self.retry.push_back(client_msg_id);
                        self.next_send = Instant::now() + Duration::from_millis(100);
                    } else {
                        self.pending.remove(&client_msg_id);
                    }
                } else if let Some(conversation) =
                    v["id"].as_str().and_then(|r| r.strip_prefix('z'))
                    && self.awaiting.contains(conversation)
                {
                    let conversation = conversation.to_owned();
                    if code == "unavailable" {
                        // A resume the store could not answer: ask again.
                        self.resume(conversation).await;
                    } else {
                        // Refused: logged above, for the test to see.
                        self.awaiting.remove(&conversation);
                    }
                }
            }
            "conversation" => {
                for e in v["transcript"].as_array().cloned().unwrap_or_default() {
                    self.event(&e);
                }
            }
            _ => {}
        }
    }

    fn event(&mut self, e: &Value) {
        let (Some(conversation), Some(seq)) = (e["conversation_id"].as_str(), e["seq"].as_u64())
        else {
            return;
        };
        self.have
            .entry(conversation.to_owned())
            .or_default()
            .insert(seq);
        self.log.ops.push(Op::Event {
            conn: self.conn,
            conversation: conversation.to_owned(),
            seq,
            kind: e["type"].as_str().unwrap_or_default().to_owned(),
            sender_role: e["sender"]["role"].as_str().unwrap_or_default().to_owned(),
            sender_id: e["sender"]["id"].as_str().unwrap_or_default().to_owned(),
            text: e["text"].as_str().map(str::to_owned),
        });
    }
}

// ---------------------------------------------------------------------------
// The checker checked: each kind of broken history must be caught.

#[cfg(test)]
mod tests {
    use super::*;

    fn row(c: &str, seq: u64, author: &str, id: &str) -> StoredEvent {
        StoredEvent {
            conversation_id: c.into(),
            seq,
            kind: "message".into(),
            role: if author == "cust" {
                "customer"
            } else {
                "agent"
            }
            .into(),
            author_id: author.into(),
            text: Some(format!("{author} {id}")),
            client_msg_id: Some(id.into()),
        }
    }

    fn sent(log: &mut ClientLog, conn: u32, c: &str, id: &str) {
        log.ops.push(Op::Sent {
            conn,
            conversation: c.into(),
            client_msg_id: id.into(),
            text: format!("{} {id}", log.id),
            resend: false,
        });
    }

    fn acked(log: &mut ClientLog, conn: u32, c: &str, id: &str, seq: u64) {
        log.ops.push(Op::Acked {
            conn,
            conversation: c.into(),
            client_msg_id: id.into(),
            seq,
        });
    }

    fn event(log: &mut ClientLog, conn: u32, c: &str, seq: u64, author: &str, id: &str) {
        log.ops.push(Op::Event {
            conn,
            conversation: c.into(),
            seq,
            kind: "message".into(),
            sender_role: if author == "cust" {
                "customer"
            } else {
                "agent"
            }
            .into(),
            sender_id: author.into(),
            text: Some(format!("{author} {id}")),
        });
    }

    fn resume(log: &mut ClientLog, conn: u32, c: &str, last_seq: u64) {
        log.ops.push(Op::ResumeSent {
            conn,
            conversation: c.into(),
            last_seq,
        });
    }

    /// A customer and an agent in conversation `c`: the customer says m1 (seq 1), the
    /// agent m2 (seq 2), the customer m3 (seq 3); each sees the other's.
    fn clean() -> (Vec<ClientLog>, Vec<StoredEvent>) {
        let mut cust = ClientLog::new("customer", Role::Customer, "cust", &["c"]);
        let mut agent = ClientLog::new("agent", Role::Agent, "ag", &["c"]);
        for log in [&mut cust, &mut agent] {
            resume(log, 1, "c", 0);
            log.ops.push(Op::Resumed {
                conn: 1,
                conversation: "c".into(),
                last_seq: 0,
            });
        }
        sent(&mut cust, 1, "c", "m1");
        acked(&mut cust, 1, "c", "m1", 1);
        event(&mut agent, 1, "c", 1, "cust", "m1");
        sent(&mut agent, 1, "c", "m2");
        acked(&mut agent, 1, "c", "m2", 2);
        event(&mut cust, 1, "c", 2, "ag", "m2");
        sent(&mut cust, 1, "c", "m3");
        acked(&mut cust, 1, "c", "m3", 3);
        event(&mut agent, 1, "c", 3, "cust", "m3");
        let store = vec![
            row("c", 1, "cust", "m1"),
            row("c", 2, "ag", "m2"),
            row("c", 3, "cust", "m3"),
        ];
        (vec![cust, agent], store)
    }

    #[test]
    fn a_clean_history_passes() {
        let (logs, store) = clean();
        let r = check(&logs, Some(&store));
        assert!(r.is_clean(), "{:?}", r.violations);
        assert_eq!(r.acked, 3);
        let r = check(&logs, None);
        assert!(r.is_clean(), "{:?}", r.violations);
    }

    #[test]
    fn an_acked_message_missing_from_the_store_is_lost() {
        let (logs, mut store) = clean();
        store.pop();
        let r = check(&logs, Some(&store));
        assert_eq!(r.lost, 1, "{:?}", r.violations);
        assert!(!r.is_clean());
    }

    #[test]
    fn an_acked_message_a_participant_never_got_is_lost() {
        let (mut logs, store) = clean();
        // The agent never receives seq 3.
        logs[1].ops.pop();
        let r = check(&logs, Some(&store));
        assert_eq!(r.lost, 1, "{:?}", r.violations);
        assert!(r.gaps >= 1, "{:?}", r.violations);
        // Without the store, too.
        let r = check(&logs, None);
        assert_eq!(r.lost, 1, "{:?}", r.violations);
    }

    #[test]
    fn a_message_stored_twice_is_a_duplicate() {
        let (mut logs, mut store) = clean();
        // The customer's resend of m3 was stored again as seq 4 (and delivered).
        store.push(row("c", 4, "cust", "m3"));
        event(&mut logs[1], 1, "c", 4, "cust", "m3");
        let r = check(&logs, Some(&store));
        assert!(r.duplicated >= 1, "{:?}", r.violations);
        assert!(!r.is_clean());
    }

    #[test]
    fn one_message_acked_at_two_seqs_is_a_duplicate() {
        let (mut logs, _) = clean();
        acked(&mut logs[0], 2, "c", "m3", 4);
        let r = check(&logs, None);
        assert!(r.duplicated >= 1, "{:?}", r.violations);
    }

    #[test]
    fn an_event_delivered_twice_on_one_connection_is_a_duplicate() {
        let (mut logs, store) = clean();
        event(&mut logs[1], 1, "c", 3, "cust", "m3");
        let r = check(&logs, Some(&store));
        assert_eq!(r.duplicated, 1, "{:?}", r.violations);
        // On a new connection resumed from 2, it is what was asked for.
        let (mut logs, store) = clean();
        resume(&mut logs[1], 2, "c", 2);
        event(&mut logs[1], 2, "c", 3, "cust", "m3");
        let r = check(&logs, Some(&store));
        assert!(r.is_clean(), "{:?}", r.violations);
    }

    #[test]
    fn an_event_replayed_by_a_resume_raced_by_it_live_is_no_duplicate() {
        let (mut logs, store) = clean();
        // Resume from 2 sent; seq 3 arrives live, then again in the replay.
        resume(&mut logs[1], 2, "c", 2);
        event(&mut logs[1], 2, "c", 3, "cust", "m3");
        event(&mut logs[1], 2, "c", 3, "cust", "m3");
        logs[1].ops.push(Op::Resumed {
            conn: 2,
            conversation: "c".into(),
            last_seq: 3,
        });
        let r = check(&logs, Some(&store));
        assert!(r.is_clean(), "{:?}", r.violations);
        // After the `resumed`, the same again is a duplicate.
        event(&mut logs[1], 2, "c", 3, "cust", "m3");
        let r = check(&logs, Some(&store));
        assert_eq!(r.duplicated, 1, "{:?}", r.violations);
    }

    #[test]
    fn a_gap_is_caught() {
        // On a connection: seq 3 right after the resume from 1.
        let (mut logs, store) = clean();
        resume(&mut logs[0], 2, "c", 1);
        event(&mut logs[0], 2, "c", 3, "cust", "m3");
        let r = check(&logs, Some(&store));
        assert!(r.gaps >= 1, "{:?}", r.violations);
        // In the store: seq 2 missing.
        let (logs, mut store) = clean();
        store.remove(1);
        let r = check(&logs, Some(&store));
        assert!(r.gaps >= 1, "{:?}", r.violations);
    }

    #[test]
    fn an_event_of_another_conversation_is_foreign() {
        let (mut logs, store) = clean();
        event(&mut logs[0], 1, "elsewhere", 1, "someone", "x1");
        let r = check(&logs, Some(&store));
        assert_eq!(r.foreign, 1, "{:?}", r.violations);
        // And a message in one's own conversation from a stranger.
        let (mut logs, mut store) = clean();
        store.push(row("c", 4, "stranger", "s1"));
        event(&mut logs[0], 1, "c", 4, "stranger", "s1");
        event(&mut logs[1], 1, "c", 4, "stranger", "s1");
        let r = check(&logs, Some(&store));
        assert_eq!(r.foreign, 2, "{:?}", r.violations);
    }

    #[test]
    fn a_seq_seen_with_two_contents_is_a_conflict() {
        let (mut logs, store) = clean();
        logs[1].ops.pop();
        event(&mut logs[1], 1, "c", 3, "cust", "something else");
        let r = check(&logs, Some(&store));
        assert!(r.conflicts >= 1, "{:?}", r.violations);
    }

    #[test]
    fn quantiles() {
        let ms = |n| Duration::from_millis(n);
        let values: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&values, 0.5), Some(ms(50)));
        assert_eq!(quantile(&values, 0.99), Some(ms(99)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}

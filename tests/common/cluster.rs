//! Several Warmline nodes sharing one PostgreSQL schema and one Redis (features
//! `postgres` and `redis`): the node set with its owner lookup, a Redis key guard, a
//! private `redis-server`, a client that reconnects elsewhere and resumes, and the
//! checks that nothing acknowledged was lost or duplicated (`#[path]`-included by
//! `tests/cluster.rs`, beside `common` and `pg`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http};

use crate::common::{ORIGIN, SECRET, TestServer, Ws};

/// The operator token every node of these tests is configured with.
pub const ADMIN: &str = "cluster-admin-token-0123456789abcdef";
/// Longest one expected step (a frame, an ack) may take in a stable cluster.
pub const STEP: Duration = Duration::from_secs(10);
/// Longest the cluster may take to be ready (every node joined, an owner elected),
/// at start and after a failure.
pub const READY: Duration = Duration::from_secs(15);
/// Longest a client may take to find a live node and be welcomed there again.
pub const RECONNECT: Duration = Duration::from_secs(20);
/// Longest one connection attempt (handshake and welcome) may take before the
/// client tries again (an edge whose owner just died may never answer).
const ATTEMPT: Duration = Duration::from_secs(3);
/// Between two polls of something that sends no event (readiness, a store row).
const POLL: Duration = Duration::from_millis(50);

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The shared Redis of the tests (`WARMLINE_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("WARMLINE_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// A node's config: `base` (a single-node test config, with an `[auth]` section)
/// plus the operator token, the shared store and the cluster.
pub fn node_config(base: &str, store_url: &str, redis_url: &str, prefix: &str) -> String {
    assert!(
        base.contains("[auth]\n"),
        "the base config needs an [auth] section"
    );
    let mut config = base.replacen(
        "[auth]\n",
        &format!("[auth]\nadmin_token = \"{ADMIN}\"\n"),
        1,
    );
    config.push_str(&format!(
        "\n[store]\nurl = \"{store_url}\"\n\
         [cluster]\nredis_url = \"{redis_url}\"\nprefix = \"{prefix}\"\n\
         heartbeat_ms = 200\nexpiry_ms = 1000\n"
    ));
    config
}

// ---------------------------------------------------------------------------
// Redis: the key guard and a private server.

/// A key prefix of the test's own (`wl_test_<hex>`) on a Redis; every key under it
/// is deleted when this is dropped (at the end of the test, or when it fails).
pub struct RedisKeys {
    pub url: String,
    pub prefix: String,
}

impl RedisKeys {
    /// A fresh prefix on `url`, after checking that Redis answers there.
    pub async fn new(url: &str) -> RedisKeys {
        let client =
            redis::Client::open(url).unwrap_or_else(|e| panic!("bad Redis URL {url}: {e}"));
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_multiplexed_async_connection(),
        )
        .await;
        match connected {
            Ok(Ok(mut conn)) => {
                let pong: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("Redis at {url} does not answer PING: {e}"));
                assert_eq!(pong, "PONG");
            }
            Ok(Err(e)) => panic!(
                "Redis at {url} is unreachable: {e}. The cluster tests need it \
                 (set WARMLINE_TEST_REDIS_URL to point elsewhere)."
            ),
            Err(_) => panic!("Redis at {url} did not answer within 10 s"),
        }
        RedisKeys {
            url: url.to_owned(),
            prefix: format!("wl_test_{:016x}", rand::random::<u64>()),
        }
    }

    /// Every key under the prefix, now.
    pub async fn keys(&self) -> Vec<String> {
        scan(&self.url, &self.prefix)
            .await
            .unwrap_or_else(|e| panic!("scan {}:*: {e}", self.prefix))
    }
}

async fn scan(url: &str, prefix: &str) -> redis::RedisResult<Vec<String>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        // Drop may run while the test's runtime unwinds: a thread and a runtime of
        // its own, as pg::Schema does.
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            runtime.block_on(async move {
                let keys = scan(&url, &prefix).await?;
                if keys.is_empty() {
                    return Ok(());
                }
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                for chunk in keys.chunks(500) {
                    let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
                }
                Ok::<(), redis::RedisError>(())
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not delete the Redis keys {}:*: {e}", self.prefix),
            Err(_) => eprintln!("deleting the Redis keys {}:* panicked", self.prefix),
        }
    }
}

/// A free loopback port: bound, then let go.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A `redis-server` of the test's own on a free loopback port, without
/// persistence: killing it loses everything, as a crashed Redis does. Killed when
/// dropped.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let mut child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (apt-get install redis-server; .ci/run installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut said = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let ready = line.contains("Ready to accept connections");
                said.push(line);
                if ready {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "redis-server on port {} did not become ready:\n{}",
            self.port,
            said.join("\n")
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// SIGKILL: everything it held is gone.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        child.kill().await.expect("kill redis-server");
    }

    /// Starts again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }
}

// ---------------------------------------------------------------------------
// HTTP without panics (a node may be dead or between roles).

/// GET `path` on `addr`: `None` when the node does not answer.
pub async fn http_get(addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response.get(9..12)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

pub async fn readyz(addr: &str) -> Option<u16> {
    http_get(addr, "/readyz", None).await.map(|(s, _)| s)
}

// ---------------------------------------------------------------------------
// The nodes.

/// One node's address and whether the test has killed it; shared with the clients
/// so they reconnect only to live nodes.
#[derive(Clone, Debug)]
pub struct Slot {
    pub addr: String,
    pub alive: bool,
}

pub type Roster = Arc<Mutex<Vec<Slot>>>;

/// The owner as the nodes see it.
#[derive(Clone, Debug)]
pub struct Owner {
    /// Index of the owning node in `Nodes::servers`.
    pub index: usize,
    pub node_id: String,
    pub fence: u64,
}

/// Nodes started from one config (same schema, same Redis prefix).
pub struct Nodes {
    pub servers: Vec<TestServer>,
    pub roster: Roster,
}

impl Nodes {
    pub async fn start(config: &str, count: usize) -> Nodes {
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            servers.push(TestServer::start(config).await);
        }
        let roster = servers
            .iter()
            .map(|s| Slot {
                addr: s.addr.clone(),
                alive: true,
            })
            .collect();
        Nodes {
            servers,
            roster: Arc::new(Mutex::new(roster)),
        }
    }

    pub fn addr(&self, i: usize) -> &str {
        &self.servers[i].addr
    }

    pub fn alive(&self, i: usize) -> bool {
        self.roster.lock().unwrap()[i].alive
    }

    fn live(&self) -> Vec<usize> {
        (0..self.servers.len()).filter(|&i| self.alive(i)).collect()
    }

    /// Waits until every live node answers `/readyz` with 200 (joined, and the
    /// cluster has an owner).
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for i in self.live() {
            loop {
                let status = readyz(self.addr(i)).await;
                if status == Some(200) {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "node {i} ({}) not ready within {within:?} (last /readyz: {status:?})\n{}",
                        self.addr(i),
                        self.logs()
                    );
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// `GET /api/v1/cluster` on node `i`, when it answers 200.
    pub async fn status(&self, i: usize) -> Option<Value> {
        let (status, body) = http_get(self.addr(i), "/api/v1/cluster", Some(ADMIN)).await?;
        if status != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// The owner, once every live node names the same one and it is a live node
    /// (matched by the `listen` address the nodes list gives for it).
    pub async fn owner(&self, within: Duration) -> Owner {
        let deadline = Instant::now() + within;
        loop {
            let mut views = Vec::new();
            for i in self.live() {
                views.push((i, self.status(i).await));
            }
            if let Some(owner) = self.agreed_owner(&views) {
                return owner;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the live nodes did not agree on a live owner within {within:?}; their views: {views:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn agreed_owner(&self, views: &[(usize, Option<Value>)]) -> Option<Owner> {
        let mut owner: Option<(String, u64)> = None;
        for (_, view) in views {
            let view = view.as_ref()?;
            // Not part of the contract, but when a node says it is between roles it
            // has not settled on this owner yet.
            if view["role"] == "joining" {
                return None;
            }
            let id = view["owner"].as_str()?.to_owned();
            let fence = view["fence"].as_u64()?;
            match &owner {
                None => owner = Some((id, fence)),
                Some(o) if *o == (id, fence) => {}
                Some(_) => return None,
            }
        }
        let (id, fence) = owner?;
        // Which server it is: the `listen` of its entry in the node list.
        let (_, view) = views.first()?;
        let listen = view.as_ref()?["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node_id"] == json!(id))?["listen"]
            .as_str()?
            .to_owned();
        let index = self.servers.iter().position(|s| s.addr == listen)?;
        if !self.alive(index) {
            return None;
        }
        // And the node itself agrees it is that node.
        let own = views.iter().find(|(i, _)| *i == index)?.1.as_ref()?;
        if own["node_id"] != json!(id) {
            return None;
        }
        Some(Owner {
            index,
            node_id: id,
            fence,
        })
    }

    /// SIGKILL node `i`. Clients stop choosing it first.
    pub async fn kill(&mut self, i: usize) {
        self.roster.lock().unwrap()[i].alive = false;
        self.servers[i].kill().await;
    }

    /// Kills every live node (the end of a test).
    pub async fn stop(&mut self) {
        for i in self.live() {
            self.kill(i).await;
        }
    }

    /// The end of each node's log, to explain a failure.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, server) in self.servers.iter().enumerate() {
            let log = server.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            out.push_str(&format!(
                "----- node {i} ({}) log, last {} lines -----\n{}\n",
                server.addr,
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ---------------------------------------------------------------------------
// A client that survives its node.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Customer,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
        }
    }
}

#[derive(Clone, Debug)]
struct Pending {
    conversation_id: String,
    text: String,
    /// The request id of the latest send (a resend gets a fresh one).
    request: String,
}

/// A message of this peer that the gateway acknowledged.
#[derive(Clone, Debug)]
pub struct Acked {
    pub conversation_id: String,
    pub seq: u64,
    pub text: String,
}

/// A close this peer saw.
#[derive(Clone, Debug)]
pub struct Close {
    /// The node it was connected to.
    pub node: usize,
    /// The close code, `None` when the socket dropped without a close frame.
    pub code: Option<u16>,
    pub reason: String,
}

/// A customer or an agent, as a robust client is written: it remembers every
/// conversation event by `seq`, tracks its messages until acknowledged, and (when
/// `resilient`) after any close reconnects to a live node, says hello again (or
/// connects again with its agent token), resumes every conversation it follows from
/// the last `seq` it has without a gap, and resends its unacknowledged messages
/// with the same `client_msg_id`.
///
/// A peer that is not resilient fails the test on any close.
pub struct Peer {
    pub name: String,
    pub role: Role,
    /// The customer id (after the first welcome) or the agent id.
    pub id: String,
    visitor_token: Option<String>,
    roster: Roster,
    /// Nodes to try, best first (then any other live node).
    pub prefer: Vec<usize>,
    pub resilient: bool,
    pub ws: Option<Ws>,
    /// The node of the current connection.
    pub node: Option<usize>,
    /// Connections that were welcomed.
    pub connects: usize,
    pub welcome: Value,
    /// An agent that wants offers: says `available` again when a new connection
    /// does not already have it.
    pub want_available: bool,
    next_request: u64,
    next_message: u64,
    /// Conversations this peer follows (started, accepted, listed at welcome).
    pub followed: BTreeSet<String>,
    /// Every event with a `seq` seen, per conversation (own acked messages too).
    pub transcripts: BTreeMap<String, BTreeMap<u64, Value>>,
    /// A `seq` seen twice with different contents.
    pub conflicts: Vec<String>,
    pending: BTreeMap<String, Pending>,
    /// client_msg_id -> what the gateway acknowledged.
    pub acked: BTreeMap<String, Acked>,
    /// The latest `seq` each conversation had at its last `resumed`.
    pub latest: BTreeMap<String, u64>,
    awaiting_resumed: BTreeSet<String>,
    pub closes: Vec<Close>,
    /// Messages sent again (same client_msg_id) after a reconnection.
    pub resent: usize,
    pub errors: Vec<Value>,
    /// Frames not yet handed to the test, oldest first.
    pub stash: VecDeque<Value>,
    /// Binary frames (call audio), oldest first.
    pub audio: VecDeque<Vec<u8>>,
}

impl Peer {
    fn new(name: &str, role: Role, id: &str, roster: &Roster, prefer: &[usize]) -> Peer {
        Peer {
            name: name.to_owned(),
            role,
            id: id.to_owned(),
            visitor_token: None,
            roster: roster.clone(),
            prefer: prefer.to_vec(),
            resilient: false,
            ws: None,
            node: None,
            connects: 0,
            welcome: Value::Null,
            want_available: false,
            next_request: 0,
            next_message: 0,
            followed: BTreeSet::new(),
            transcripts: BTreeMap::new(),
            conflicts: Vec::new(),
            pending: BTreeMap::new(),
            acked: BTreeMap::new(),
            latest: BTreeMap::new(),
            awaiting_resumed: BTreeSet::new(),
            closes: Vec::new(),
            resent: 0,
            errors: Vec::new(),
            stash: VecDeque::new(),
            audio: VecDeque::new(),
        }
    }

    /// A customer (named `name` in the test's messages) that will connect to the
    /// nodes in `prefer` first.
    pub fn customer(name: &str, roster: &Roster, prefer: &[usize]) -> Peer {
        Peer::new(name, Role::Customer, "", roster, prefer)
    }

    /// Agent `id` (configured in the nodes' config).
    pub fn agent(id: &str, roster: &Roster, prefer: &[usize]) -> Peer {
        Peer::new(id, Role::Agent, id, roster, prefer)
    }

    /// Reconnects and resumes after a close instead of failing the test.
    pub fn resilient(mut self) -> Peer {
        self.resilient = true;
        self
    }

    /// Connects (to the first preferred live node that is ready) and is welcomed.
    pub async fn connect(&mut self) {
        let deadline = Instant::now() + RECONNECT;
        self.reconnect(deadline).await;
    }

    /// Connected, welcomed, and `available`.
    pub async fn connect_available(&mut self) {
        self.connect().await;
        self.available().await;
    }

    pub async fn available(&mut self) {
        self.want_available = true;
        self.request(json!({"type":"status","state":"available"}))
            .await;
    }

    fn request_id(&mut self) -> String {
        self.next_request += 1;
        format!("{}-r{}", self.name, self.next_request)
    }

    fn order(&self) -> Vec<usize> {
        let count = self.roster.lock().unwrap().len();
        let mut order: Vec<usize> = self.prefer.iter().copied().filter(|&i| i < count).collect();
        order.extend((0..count).filter(|i| !self.prefer.contains(i)));
        order
    }

    fn slot(&self, i: usize) -> Slot {
        self.roster.lock().unwrap()[i].clone()
    }

    fn request_for(&self, addr: &str) -> http::Request<()> {
        match self.role {
            Role::Customer => {
                let mut request = format!("ws://{addr}/ws/customer")
                    .into_client_request()
                    .unwrap();
                request
                    .headers_mut()
                    .insert("Origin", http::HeaderValue::from_static(ORIGIN));
                request
            }
            Role::Agent => {
                let token = warmline::gateway::auth::mint_agent(SECRET, &self.id, 3600).unwrap();
                format!("ws://{addr}/ws/agent?token={token}")
                    .into_client_request()
                    .unwrap()
            }
        }
    }

    /// Finds a live, ready node, connects, is welcomed, follows its conversations
    /// again from where it has them without a gap, and resends what was not acked.
    async fn reconnect(&mut self, deadline: Instant) {
        let mut tried = Vec::new();
        loop {
            for i in self.order() {
                let slot = self.slot(i);
                if !slot.alive {
                    continue;
                }
                match readyz(&slot.addr).await {
                    Some(200) => {}
                    other => {
                        tried.push(format!("node {i}: /readyz {other:?}"));
                        continue;
                    }
                }
                let attempt = (Instant::now() + ATTEMPT).min(deadline);
                match self.attempt(i, &slot.addr, attempt).await {
                    Ok(()) => {
                        self.resync().await;
                        return;
                    }
                    Err(e) => tried.push(format!("node {i}: {e}")),
                }
            }
            if Instant::now() >= deadline {
                let tail = &tried[tried.len().saturating_sub(8)..];
                panic!(
                    "{}: could not connect to a live node in time; last attempts: {tail:?}",
                    self.name
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One connection attempt on node `i`: the handshake and the welcome.
    async fn attempt(&mut self, i: usize, addr: &str, deadline: Instant) -> Result<(), String> {
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(64 << 20);
        let connecting = tokio_tungstenite::connect_async_with_config(
            self.request_for(addr),
            Some(config),
            false,
        );
        let mut ws = match tokio::time::timeout_at(deadline, connecting).await {
            Err(_) => return Err("no handshake in time".into()),
            Ok(Err(e)) => return Err(format!("handshake: {e}")),
            Ok(Ok((ws, _))) => ws,
        };
        if self.role == Role::Customer {
            let hello = match &self.visitor_token {
                Some(t) => json!({"type":"hello","visitor_token":t}),
                None => json!({"type":"hello"}),
            };
            if ws
                .send(Message::Text(hello.to_string().into()))
                .await
                .is_err()
            {
                return Err("the connection dropped before hello".into());
            }
        }
        loop {
            let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => return Err("no welcome in time".into()),
                Ok(m) => m,
            };
            match msg {
                None | Some(Err(_)) => {
                    self.closes.push(Close {
                        node: i,
                        code: None,
                        reason: "dropped before the welcome".into(),
                    });
                    return Err("dropped before the welcome".into());
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                        .unwrap_or((None, String::new()));
                    self.closes.push(Close {
                        node: i,
                        code,
                        reason: reason.clone(),
                    });
                    return Err(format!("closed before the welcome: {code:?} {reason}"));
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("the server sent JSON");
                    match v["type"].as_str() {
                        Some("welcome") => {
                            self.on_welcome(v);
                            self.ws = Some(ws);
                            self.node = Some(i);
                            self.connects += 1;
                            return Ok(());
                        }
                        Some("error") => {
                            return Err(format!("refused at hello: {v}"));
                        }
                        _ => self.stash.push_back(v),
                    }
                }
                Some(Ok(Message::Binary(b))) => self.audio.push_back(b.to_vec()),
                Some(Ok(_)) => {}
            }
        }
    }

    fn on_welcome(&mut self, welcome: Value) {
        match self.role {
            Role::Customer => {
                let token = welcome["visitor_token"].as_str().expect("visitor_token");
                self.visitor_token = Some(token.to_owned());
                self.id = welcome["customer_id"]
                    .as_str()
                    .expect("customer_id")
                    .to_owned();
                for c in welcome["open_conversations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = c["conversation_id"].as_str() {
                        self.followed.insert(id.to_owned());
                    }
                }
            }
            Role::Agent => {
                for c in welcome["conversations"].as_array().into_iter().flatten() {
                    if let Some(id) = c["conversation_id"].as_str() {
                        self.followed.insert(id.to_owned());
                    }
                }
            }
        }
        self.welcome = welcome;
    }

    /// After a welcome: availability, resumes, resends.
    async fn resync(&mut self) {
        if self.role == Role::Agent
            && self.want_available
            && self.welcome["state"] != json!("available")
        {
            let id = self.request_id();
            self.send(json!({"type":"status","id":id,"state":"available"}))
                .await;
        }
        self.awaiting_resumed.clear();
        let followed: Vec<String> = self.followed.iter().cloned().collect();
        for conversation_id in followed {
            let last_seq = self.contiguous(&conversation_id);
            self.send(
                json!({"type":"resume","conversation_id":conversation_id,"last_seq":last_seq}),
            )
            .await;
            self.awaiting_resumed.insert(conversation_id);
        }
        let pending: Vec<String> = self.pending.keys().cloned().collect();
        for client_msg_id in pending {
            self.resent += 1;
            self.send_pending(&client_msg_id).await;
        }
    }

    /// The highest `seq` of `conversation_id` this peer has with nothing missing
    /// before it (what it resumes from).
    pub fn contiguous(&self, conversation_id: &str) -> u64 {
        let mut last = 0;
        if let Some(events) = self.transcripts.get(conversation_id) {
            for seq in events.keys() {
                if *seq == last + 1 {
                    last = *seq;
                } else if *seq > last + 1 {
                    break;
                }
            }
        }
        last
    }

    /// Sends a frame; a dead connection shows up at the next read.
    pub async fn send(&mut self, frame: Value) {
        if let Some(ws) = self.ws.as_mut() {
            let _ = ws.send(Message::Text(frame.to_string().into())).await;
        }
    }

    async fn send_pending(&mut self, client_msg_id: &str) {
        let request = self.request_id();
        let Some(p) = self.pending.get_mut(client_msg_id) else {
            return;
        };
        p.request = request.clone();
        let frame = json!({"type":"message","id":request,"conversation_id":p.conversation_id,
            "text":p.text,"client_msg_id":client_msg_id});
        self.send(frame).await;
    }

    fn lost(&mut self, code: Option<u16>, reason: String) {
        let node = self.node.take().unwrap_or(usize::MAX);
        self.ws = None;
        if !self.resilient {
            panic!(
                "{}: the connection to node {node} closed unexpectedly: {code:?} {reason}",
                self.name
            );
        }
        self.closes.push(Close { node, code, reason });
    }

    /// Reads one frame from the connection (reconnecting first when there is none)
    /// and returns it unless it was consumed here; `None` at the deadline.
    async fn pump(&mut self, deadline: Instant) -> Option<Option<Value>> {
        if self.ws.is_none() {
            assert!(self.resilient, "{}: not connected", self.name);
            self.reconnect(deadline.max(Instant::now() + RECONNECT))
                .await;
        }
        let ws = self.ws.as_mut().expect("connected");
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        match msg {
            None | Some(Err(_)) => self.lost(None, "dropped".into()),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                    .unwrap_or((None, "close frame without a code".into()));
                self.lost(code, reason);
            }
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("the server sent JSON");
                // `unavailable`: nothing was saved; send it again, same client_msg_id.
                let retry = if v["type"] == "error" && v["code"] == "unavailable" {
                    self.pending_for(&v)
                } else {
                    None
                };
                let out = self.ingest(v);
                if let Some(client_msg_id) = retry {
                    self.send_pending(&client_msg_id).await;
                }
                return Some(out);
            }
            Some(Ok(Message::Binary(b))) => self.audio.push_back(b.to_vec()),
            Some(Ok(_)) => {}
        }
        Some(None)
    }

    /// Keeps what a robust client keeps; returns the frame unless it is fully handled
    /// here (the ack of a tracked message).
    fn ingest(&mut self, v: Value) -> Option<Value> {
        match v["type"].as_str().unwrap_or_default() {
            "message" | "assigned" | "closed" => self.record(&v),
            "conversation" => {
                let id = v["conversation_id"].as_str().unwrap_or_default().to_owned();
                self.followed.insert(id);
                for e in v["transcript"].as_array().into_iter().flatten() {
                    self.record(e);
                }
            }
            "resumed" => {
                let id = v["conversation_id"].as_str().unwrap_or_default().to_owned();
                if let Some(last) = v["last_seq"].as_u64() {
                    self.latest.insert(id.clone(), last);
                }
                self.awaiting_resumed.remove(&id);
            }
            "ack" => {
                if let Some(client_msg_id) = self.pending_for(&v) {
                    let p = self.pending.remove(&client_msg_id).expect("pending");
                    let seq = v["seq"]
                        .as_u64()
                        .unwrap_or_else(|| panic!("{}: a message ack without seq: {v}", self.name));
                    let own = json!({"type":"message","conversation_id":p.conversation_id,"seq":seq,
                        "text":p.text,"sender":{"role":self.role.as_str(),"id":self.id}});
                    self.record(&own);
                    self.acked.insert(
                        client_msg_id,
                        Acked {
                            conversation_id: p.conversation_id,
                            seq,
                            text: p.text,
                        },
                    );
                    return None;
                }
            }
            "error" => {
                if let Some(client_msg_id) = self.pending_for(&v)
                    && v["code"] != "unavailable"
                {
                    self.pending.remove(&client_msg_id);
                }
                self.errors.push(v.clone());
            }
            _ => {}
        }
        Some(v)
    }

    fn pending_for(&self, v: &Value) -> Option<String> {
        let id = v["id"].as_str()?;
        self.pending
            .iter()
            .find(|(_, p)| p.request == id)
            .map(|(k, _)| k.clone())
    }

    fn record(&mut self, e: &Value) {
        let (Some(conversation_id), Some(seq)) = (e["conversation_id"].as_str(), e["seq"].as_u64())
        else {
            return;
        };
        let events = self
            .transcripts
            .entry(conversation_id.to_owned())
            .or_default();
        match events.get(&seq) {
            Some(known) if fingerprint(known) != fingerprint(e) => self.conflicts.push(format!(
                "{}: seq {seq} of {conversation_id} seen as {known} and as {e}",
                self.name
            )),
            Some(_) => {}
            None => {
                events.insert(seq, e.clone());
            }
        }
    }

    /// The next frame (the stash first), or `None` at the deadline.
    pub async fn next_before(&mut self, deadline: Instant) -> Option<Value> {
        if let Some(v) = self.stash.pop_front() {
            return Some(v);
        }
        loop {
            match self.pump(deadline).await? {
                Some(v) => return Some(v),
                None => continue,
            }
        }
    }

    /// The first frame `what` matches (frames read meanwhile stay queued, in order),
    /// failing the test after `within`.
    pub async fn take_where(
        &mut self,
        what: &str,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(at) = self.stash.iter().position(&matches) {
            return self.stash.remove(at).expect("stashed");
        }
        let deadline = Instant::now() + within;
        loop {
            match self.pump(deadline).await {
                None => {
                    let seen: Vec<String> = self
                        .stash
                        .iter()
                        .rev()
                        .take(8)
                        .map(Value::to_string)
                        .collect();
                    panic!(
                        "{}: no {what} within {within:?}; latest frames: {seen:?}",
                        self.name
                    );
                }
                Some(Some(v)) if matches(&v) => return v,
                Some(Some(v)) => self.stash.push_back(v),
                Some(None) => {}
            }
        }
    }

    /// The first frame of `kind` within `STEP`.
    pub async fn take(&mut self, kind: &str) -> Value {
        self.take_where(&format!("`{kind}`"), STEP, |v| v["type"] == kind)
            .await
    }

    /// The `message` event with this text in this conversation.
    pub async fn take_text(&mut self, conversation_id: &str, text: &str) -> Value {
        self.take_where(
            &format!("message {text:?} in {conversation_id}"),
            STEP,
            |v| {
                v["type"] == "message"
                    && v["conversation_id"] == conversation_id
                    && v["text"] == text
            },
        )
        .await
    }

    /// Sends a request with a fresh id: its `ack`, or its `error`.
    pub async fn try_request(&mut self, mut frame: Value) -> Result<Value, Value> {
        let id = self.request_id();
        frame["id"] = json!(id);
        self.send(frame.clone()).await;
        let reply = self
            .take_where(&format!("reply to {frame}"), STEP, |v| {
                v["id"] == json!(id) && (v["type"] == "ack" || v["type"] == "error")
            })
            .await;
        if reply["type"] == "ack" {
            Ok(reply)
        } else {
            Err(reply)
        }
    }

    /// Sends a request with a fresh id and returns its `ack` (an error fails).
    pub async fn request(&mut self, frame: Value) -> Value {
        match self.try_request(frame.clone()).await {
            Ok(ack) => ack,
            Err(e) => panic!("{}: {frame} was refused: {e}", self.name),
        }
    }

    /// A customer's `start` on `queue`: the new conversation, followed.
    pub async fn start(&mut self, queue: &str) -> String {
        let ack = self.request(json!({"type":"start","queue":queue})).await;
        let id = ack["conversation_id"]
            .as_str()
            .expect("conversation_id")
            .to_owned();
        self.followed.insert(id.clone());
        id
    }

    /// An agent accepts `offer`: the `conversation` frame.
    pub async fn accept(&mut self, offer: &Value) -> Value {
        let conversation_id = offer["conversation_id"].clone();
        self.request(json!({"type":"accept","offer_id":offer["offer_id"]}))
            .await;
        self.take_where("the accepted conversation", STEP, |v| {
            v["type"] == "conversation" && v["conversation_id"] == conversation_id
        })
        .await
    }

    /// Sends a message with a fresh `client_msg_id` and does not wait for its ack
    /// (resent with the same id on the next connection until acked).
    pub async fn say_nowait(&mut self, conversation_id: &str, text: &str) -> String {
        self.next_message += 1;
        let client_msg_id = format!("{}-m{}", self.name, self.next_message);
        self.pending.insert(
            client_msg_id.clone(),
            Pending {
                conversation_id: conversation_id.to_owned(),
                text: text.to_owned(),
                request: String::new(),
            },
        );
        self.send_pending(&client_msg_id).await;
        client_msg_id
    }

    /// Sends a message and waits (through reconnections, when resilient) for its
    /// ack: its seq.
    pub async fn say_within(&mut self, conversation_id: &str, text: &str, within: Duration) -> u64 {
        let client_msg_id = self.say_nowait(conversation_id, text).await;
        let deadline = Instant::now() + within;
        loop {
            if let Some(acked) = self.acked.get(&client_msg_id) {
                return acked.seq;
            }
            if !self.pending.contains_key(&client_msg_id) {
                panic!(
                    "{}: message {text:?} was refused: {:?}",
                    self.name,
                    self.errors.last()
                );
            }
            match self.pump(deadline).await {
                None => panic!("{}: no ack for {text:?} within {within:?}", self.name),
                Some(Some(v)) => self.stash.push_back(v),
                Some(None) => {}
            }
        }
    }

    pub async fn say(&mut self, conversation_id: &str, text: &str) -> u64 {
        self.say_within(conversation_id, text, STEP).await
    }

    /// Reads (and reconnects, when resilient) until this peer has seen at least
    /// `closes` closes, is connected again, has every followed conversation resumed
    /// and every message acked.
    pub async fn settle(&mut self, closes: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.closes.len() < closes
            || self.ws.is_none()
            || !self.awaiting_resumed.is_empty()
            || !self.pending.is_empty()
        {
            match self.pump(deadline).await {
                None => panic!(
                    "{}: not settled within {within:?}: {} closes (want {closes}), connected: {}, \
                     awaiting resumed: {:?}, pending: {:?}",
                    self.name,
                    self.closes.len(),
                    self.ws.is_some(),
                    self.awaiting_resumed,
                    self.pending.keys().collect::<Vec<_>>()
                ),
                Some(Some(v)) => self.stash.push_back(v),
                Some(None) => {}
            }
        }
    }

    /// Resumes every followed conversation from where this peer has it without a gap
    /// and waits for every `resumed` (and every pending ack): afterwards the peer has
    /// each conversation's transcript up to its latest `seq`.
    pub async fn sync(&mut self, within: Duration) {
        if self.ws.is_none() {
            self.reconnect(Instant::now() + within).await;
        }
        let followed: Vec<String> = self.followed.iter().cloned().collect();
        for conversation_id in followed {
            let last_seq = self.contiguous(&conversation_id);
            self.send(
                json!({"type":"resume","conversation_id":conversation_id,"last_seq":last_seq}),
            )
            .await;
            self.awaiting_resumed.insert(conversation_id);
        }
        let closes = self.closes.len();
        self.settle(closes, within).await;
    }

    /// Errors the gateway sent this peer, other than `unavailable` (nothing saved,
    /// retried).
    pub fn refusals(&self) -> Vec<&Value> {
        self.errors
            .iter()
            .filter(|e| e["code"] != "unavailable")
            .collect()
    }

    /// The codes of the closes seen since the `from`-th.
    pub fn close_codes(&self, from: usize) -> Vec<Option<u16>> {
        self.closes[from.min(self.closes.len())..]
            .iter()
            .map(|c| c.code)
            .collect()
    }
}

/// What must be the same each time a `seq` is delivered.
fn fingerprint(e: &Value) -> String {
    json!([
        e["type"],
        e["text"],
        e["sender"]["role"],
        e["agent"]["id"],
        e["by"]
    ])
    .to_string()
}

// ---------------------------------------------------------------------------
// Checks.

/// Every message `sender` had acked in `conversation_id` is, in `receiver`'s and in
/// `sender`'s own transcript, at exactly its acked seq and at no other: the problems
/// found (empty when none).
pub fn delivered_once(conversation_id: &str, sender: &Peer, receiver: &Peer) -> Vec<String> {
    let mut problems = Vec::new();
    let empty = BTreeMap::new();
    for (client_msg_id, acked) in &sender.acked {
        if acked.conversation_id != conversation_id {
            continue;
        }
        for peer in [receiver, sender] {
            let events = peer.transcripts.get(conversation_id).unwrap_or(&empty);
            let at: Vec<u64> = events
                .iter()
                .filter(|(_, e)| e["type"] == "message" && e["text"] == acked.text.as_str())
                .map(|(seq, _)| *seq)
                .collect();
            if at != [acked.seq] {
                problems.push(format!(
                    "{}'s message {client_msg_id} {:?} (acked as seq {}) is at seqs {at:?} for {}",
                    sender.name, acked.text, acked.seq, peer.name
                ));
            } else if events[&acked.seq]["sender"]["role"] != sender.role.as_str() {
                problems.push(format!(
                    "seq {} of {conversation_id} for {}: wrong sender: {}",
                    acked.seq, peer.name, events[&acked.seq]
                ));
            }
        }
    }
    problems
}

/// `peer`'s transcript of `conversation_id` is every seq from 1 to the latest its
/// last `resumed` said, without a gap.
pub fn complete(peer: &Peer, conversation_id: &str) -> Result<(), String> {
    let latest = peer
        .latest
        .get(conversation_id)
        .copied()
        .ok_or_else(|| format!("{} never resumed {conversation_id}", peer.name))?;
    let have: Vec<u64> = peer
        .transcripts
        .get(conversation_id)
        .map(|t| t.keys().copied().collect())
        .unwrap_or_default();
    let want: Vec<u64> = (1..=latest).collect();
    if have != want {
        return Err(format!(
            "{} has seqs {have:?} of {conversation_id}, latest {latest}",
            peer.name
        ));
    }
    Ok(())
}

/// What the store holds for each of `peers`' acked messages, and whether any message
/// is stored twice: the problems found.
pub async fn stored_once(store_url: &str, peers: &[&Peer]) -> Vec<String> {
    let mut conn = crate::pg::connect(store_url).await;
    let mut problems = Vec::new();
    for peer in peers {
        for (client_msg_id, acked) in &peer.acked {
            let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
                "SELECT seq, text FROM events WHERE conversation_id = $1 AND kind = 'message'
                 AND author_id = $2 AND client_msg_id = $3 ORDER BY seq",
            )
            .bind(&acked.conversation_id)
            .bind(&peer.id)
            .bind(client_msg_id)
            .fetch_all(&mut conn)
            .await
            .expect("read events");
            let want = vec![(acked.seq as i64, Some(acked.text.clone()))];
            if rows != want {
                problems.push(format!(
                    "{}'s {client_msg_id} (acked as seq {} in {}): stored as {rows:?}",
                    peer.name, acked.seq, acked.conversation_id
                ));
            }
        }
    }
    let twice: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT conversation_id, author_id, client_msg_id, COUNT(*) FROM events
         WHERE client_msg_id IS NOT NULL
         GROUP BY conversation_id, author_id, client_msg_id HAVING COUNT(*) > 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read events");
    for row in twice {
        problems.push(format!("client_msg_id stored more than once: {row:?}"));
    }
    let same_text: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT conversation_id, text, COUNT(*) FROM events
         WHERE kind = 'message' AND role <> 'system'
         GROUP BY conversation_id, text HAVING COUNT(*) > 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read events");
    for row in same_text {
        problems.push(format!("one message text stored more than once: {row:?}"));
    }
    let gaps: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT conversation_id, COUNT(*), MAX(seq) FROM events GROUP BY conversation_id
         HAVING COUNT(*) <> MAX(seq) OR MIN(seq) <> 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read events");
    for row in gaps {
        problems.push(format!(
            "seqs with gaps (conversation, count, max): {row:?}"
        ));
    }
    problems
}

/// The most conversations each agent held at once, from the store's `assignments`
/// (started_at, ended_at): agent -> (most, when).
pub async fn load_from_assignments(store_url: &str) -> BTreeMap<String, (i64, i64)> {
    let mut conn = crate::pg::connect(store_url).await;
    let rows: Vec<(String, i64, Option<i64>)> =
        sqlx::query_as("SELECT agent_id, started_at, ended_at FROM assignments")
            .fetch_all(&mut conn)
            .await
            .expect("read assignments");
    let mut changes = Vec::new();
    for (agent, started, ended) in rows {
        changes.push((started, 1, agent.clone()));
        if let Some(ended) = ended {
            changes.push((ended, -1, agent));
        }
    }
    sweep(changes)
}

/// The same from the transcripts: an `assigned` event gives the conversation to its
/// agent (taking it from the one before: a warm transfer), `closed` ends it. Cold
/// transfers leave no event when the first agent lets go: not for tests with them.
pub async fn load_from_events(store_url: &str) -> BTreeMap<String, (i64, i64)> {
    let mut conn = crate::pg::connect(store_url).await;
    let rows: Vec<(String, i64, i64, String, String)> = sqlx::query_as(
        "SELECT conversation_id, seq, ts, kind, author_id FROM events
         WHERE kind IN ('assigned', 'closed') ORDER BY conversation_id, seq",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read events");
    let mut changes = Vec::new();
    let mut holder: Option<(String, String)> = None;
    for (conversation, _, ts, kind, author) in rows {
        if holder.as_ref().is_some_and(|(c, _)| *c != conversation) {
            holder = None;
        }
        if let Some((_, agent)) = holder.take() {
            changes.push((ts, -1, agent));
        }
        if kind == "assigned" {
            changes.push((ts, 1, author.clone()));
            holder = Some((conversation, author));
        }
    }
    sweep(changes)
}

/// Per agent, the highest running sum of (time, +1/-1) changes, ends before starts
/// at the same millisecond: agent -> (most, when).
fn sweep(mut changes: Vec<(i64, i64, String)>) -> BTreeMap<String, (i64, i64)> {
    changes.sort();
    let mut now: BTreeMap<String, i64> = BTreeMap::new();
    let mut most: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (at, delta, agent) in changes {
        let load = now.entry(agent.clone()).or_default();
        *load += delta;
        let best = most.entry(agent).or_insert((0, at));
        if *load > best.0 {
            *best = (*load, at);
        }
    }
    most
}

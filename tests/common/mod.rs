//! Black-box test kit: the real `warmline` binary on an ephemeral port with its own
//! data directory, and real WebSocket clients. Nothing here sleeps: every wait is for
//! an event, bounded by a timeout that fails the test.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-agent-secret-0123456789abcdef";
pub const ORIGIN: &str = "http://shop.test";
/// The shop backend's secret for customer identity tokens, in tests that enable them.
#[allow(dead_code)]
pub const IDENTITY_SECRET: &str = "the-shop-backend-identity-secret-0123";

/// An identity token for customer `sub` (named "Customer SUB"), valid 10 minutes.
#[allow(dead_code)]
pub fn identity_token(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "name": format!("Customer {sub}")}),
        &jsonwebtoken::EncodingKey::from_secret(IDENTITY_SECRET.as_bytes()),
    )
    .unwrap()
}
/// Longest any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The config every test starts from; tests append queues and agents.
pub fn base_config() -> String {
    format!(
        r#"
[server]
shutdown_grace_ms = 5000
[rate_limits]
# The tests drive many clients from one address at machine speed: rates are off
# here (tests/security.rs turns each on and tests it). Connection counts stay on.
customer_frames_per_minute = 0
agent_frames_per_minute = 0
connections_per_ip_per_second = 0
starts_per_customer_per_hour = 0
# Tests close clients for bad frames and then reconnect from the same address.
cooldown_seconds = 0
[customer]
allowed_origins = ["{ORIGIN}"]
allow_missing_origin = false
[auth]
agent_secret = "{SECRET}"
[routing]
[log]
level = "warn,warmline=info"
"#
    )
}

/// A config with one queue `support` and the given agents (id, chat capacity).
pub fn config_with(agents: &[(&str, u32)], routing: &str) -> String {
    let mut config = base_config();
    config = config.replace("[routing]\n", &format!("[routing]\n{routing}\n"));
    config.push_str("[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n");
    for (id, chat) in agents {
        config.push_str(&format!(
            "[[agents]]\nid = \"{id}\"\ndisplay_name = \"Agent {id}\"\ncapacity = {{ chat = {chat}, voice = 0 }}\n"
        ));
    }
    config
}

/// The gateway binary: cargo's, or `GATEWAY_TEST_BIN` (a copy of this worktree's
/// build, when several worktrees share one target directory and overwrite its
/// `warmline`).
pub fn binary() -> String {
    std::env::var("GATEWAY_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_warmline").to_owned())
}

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub addr: String,
    child: Option<Child>,
}

impl TestServer {
    pub async fn start(config: &str) -> TestServer {
        TestServer::start_prepared(config, |_| {}).await
    }

    /// Starts after `prepare` ran on the server's directory (before its data
    /// directory `DIR/data` exists): to mount a small file system there, say.
    pub async fn start_prepared(
        config: &str,
        prepare: impl FnOnce(&std::path::Path),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("warmline.toml"), config).expect("write config");
        prepare(dir.path());
        let mut server = TestServer {
            dir,
            addr: String::new(),
            child: None,
        };
        server.spawn().await;
        server
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut child = Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("warmline.toml"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn warmline");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                let listening = line
                    .strip_prefix("Warmline listening on http://")
                    .or_else(|| line.strip_prefix("Warmline listening on https://"));
                if let Some(rest) = listening {
                    return rest.trim().to_owned();
                }
            }
            panic!("warmline exited before listening; log:\n{}", self.log());
        })
        .await
        .expect("warmline did not start in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.addr = addr;
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("running")
    }

    /// The process's peak resident memory (VmHWM) in KiB, while it runs.
    pub fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Fails the test if the gateway's log shows a panic (a panic in a spawned task
    /// does not stop the process, so it is looked for here). Called when the server
    /// is dropped; call it earlier to fail sooner.
    pub fn assert_no_panic(&self) {
        let log = self.log();
        if let Some(at) = log.find("panicked at") {
            let from = log[..at].rfind('\n').map_or(0, |i| i + 1);
            let excerpt: String = log[from..].chars().take(2000).collect();
            panic!("the gateway panicked; its log from there:\n{excerpt}");
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("kill");
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.exited(Duration::from_secs(20)).await
    }

    /// SIGTERM, without waiting for anything.
    pub fn send_sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    }

    /// Waits for the process to exit (after a signal); fails the test if it is still
    /// running after `bound`.
    pub async fn exited(&mut self, bound: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = tokio::time::timeout(bound, child.wait())
            .await
            .unwrap_or_else(|_| panic!("warmline was still running {bound:?} after SIGTERM"))
            .expect("wait");
        self.child = None;
        status
    }

    /// Starts again on the same data directory (a new port).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn().await;
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn customer(&self) -> Client {
        let mut request = self.ws_url("/ws/customer").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", http::HeaderValue::from_static(ORIGIN));
        Client::connect(request).await.expect("customer connects")
    }

    /// A customer that said hello (with `token` if given) and got `welcome`.
    pub async fn customer_hello(&self, token: Option<&str>) -> (Client, Value) {
        let mut c = self.customer().await;
        match token {
            Some(t) => c.send(json!({"type":"hello","visitor_token":t})).await,
            None => c.send(json!({"type":"hello"})).await,
        }
        let welcome = c.expect("welcome").await;
        (c, welcome)
    }

    pub async fn agent(&self, id: &str) -> (Client, Value) {
        let token = warmline::gateway::auth::mint_agent(SECRET, id, 3600).unwrap();
        let url = self.ws_url(&format!("/ws/agent?token={token}"));
        let mut c = Client::connect(url.into_client_request().unwrap())
            .await
            .expect("agent connects");
        let welcome = c.expect("welcome").await;
        (c, welcome)
    }

    /// An agent that is connected and `available`.
    pub async fn available_agent(&self, id: &str) -> Client {
        let (mut a, _) = self.agent(id).await;
        a.send(json!({"type":"status","id":"s","state":"available"}))
            .await;
        a.until("ack").await;
        a
    }

    /// A plain HTTP GET: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path, None).await
    }

    /// An HTTP request with an optional Bearer token and JSON body: (status, JSON body
    /// or `null` when empty).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.addr).await.expect("connect");
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().expect("status");
        let text = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, json)
    }

    /// The server's SQLite file, opened read-only while it runs (as an operator would).
    #[allow(dead_code)]
    pub async fn store(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        let path = self.dir.path().join("data").join("warmline.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true);
        sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open the store read-only")
    }

    /// Declined offers as the server's SQLite file holds them: (offer, agent, missed,
    /// reason), oldest first.
    #[allow(dead_code)]
    pub async fn declines(&self) -> Vec<(String, String, bool, Option<String>)> {
        let mut db = self.store().await;
        sqlx::query_as(
            "SELECT offer_id, agent_id, missed, reason FROM offer_declines ORDER BY at, offer_id",
        )
        .fetch_all(&mut db)
        .await
        .expect("read offer_declines")
    }

    /// The value of a metric series (or the sum over a family's labels).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Any panic in the gateway fails the test that ran it (unless it is failing
        // already: a second panic would abort and hide the first).
        if !std::thread::panicking() {
            self.assert_no_panic();
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking JSON text frames.
pub struct Client {
    pub ws: Ws,
    next_id: u64,
    /// Frames read while waiting for a reply, handed out first by `next`.
    stash: std::collections::VecDeque<Value>,
    /// Binary frames (call audio) read while waiting for JSON, oldest first.
    pub audio: std::collections::VecDeque<Vec<u8>>,
}

#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Closed(Option<(u16, String)>),
}

impl Client {
    pub async fn connect(
        request: http::Request<()>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(64 << 20);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
        Ok(Client {
            ws,
            next_id: 0,
            stash: Default::default(),
            audio: Default::default(),
        })
    }

    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("r{}", self.next_id)
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    /// Sends without failing the test: `false` if the connection is gone.
    pub async fn try_send(&mut self, frame: Value) -> bool {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_ok()
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next frame (JSON or the close), failing the test after `WAIT`.
    pub async fn next(&mut self) -> Frame {
        if let Some(v) = self.stash.pop_front() {
            return Frame::Json(v);
        }
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame within the wait");
            match msg {
                None => return Frame::Closed(None),
                Some(Err(_)) => return Frame::Closed(None),
                Some(Ok(Message::Text(t))) => {
                    return Frame::Json(serde_json::from_str(&t).expect("server sent JSON"));
                }
                Some(Ok(Message::Close(c))) => {
                    return Frame::Closed(c.map(|c| (u16::from(c.code), c.reason.to_string())));
                }
                Some(Ok(Message::Binary(b))) => self.audio.push_back(b.to_vec()),
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Frame::Json(v) => v,
            Frame::Closed(c) => panic!("connection closed: {c:?}"),
        }
    }

    /// The next frame, which must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let v = self.json().await;
        assert_eq!(v["type"], kind, "expected `{kind}`, got {v}");
        v
    }

    /// Skips frames until one of `kind` (failing the test after `WAIT` in all, even
    /// if other frames keep coming).
    pub async fn until(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{kind}` within the wait"
            );
            let v = self.json().await;
            if v["type"] == kind {
                return v;
            }
            assert_ne!(
                v["type"], "error",
                "unexpected error while waiting for `{kind}`: {v}"
            );
        }
    }

    /// The next `signals` frame that carries `field` (`flags`, `sentiment`, `voice`):
    /// live signals of other kinds are skipped.
    #[allow(dead_code)]
    pub async fn signals_with(&mut self, field: &str) -> Value {
        loop {
            let s = self.until("signals").await;
            if s.get(field).is_some() {
                return s;
            }
        }
    }

    /// The first frame of `kind`; frames of other kinds read meanwhile stay queued,
    /// in order, for later reads.
    pub async fn take(&mut self, kind: &str) -> Value {
        let mut others = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        let found = loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{kind}` within the wait"
            );
            let v = match self.next().await {
                Frame::Json(v) => v,
                Frame::Closed(c) => panic!("connection closed awaiting `{kind}`: {c:?}"),
            };
            if v["type"] == kind {
                break v;
            }
            others.push(v);
        };
        for f in others.into_iter().rev() {
            self.stash.push_front(f);
        }
        found
    }

    /// Reads until the close frame; returns its code and reason.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            if let Frame::Closed(c) = self.next().await {
                return c;
            }
        }
    }

    /// Sends a request with a fresh `id` and returns its `ack`. Frames that come
    /// before the ack are kept for the next reads.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.next_id();
        frame["id"] = json!(id);
        self.send(frame).await;
        let mut before = Vec::new();
        loop {
            let v = match self.next().await {
                Frame::Json(v) => v,
                Frame::Closed(c) => panic!("connection closed awaiting {id}: {c:?}"),
            };
            if v["id"] == json!(id) {
                assert_eq!(v["type"], "ack", "request {id} failed: {v}");
                for f in before.into_iter().rev() {
                    self.stash.push_front(f);
                }
                return v;
            }
            before.push(v);
        }
    }

    /// A customer's `start` on queue `support`: the new conversation id.
    pub async fn start(&mut self) -> String {
        let ack = self
            .request(json!({"type":"start","queue":"support"}))
            .await;
        ack["conversation_id"]
            .as_str()
            .expect("conversation_id")
            .to_owned()
    }

    /// Sends a chat message and returns its seq from the ack.
    pub async fn say(&mut self, conversation_id: &str, text: &str) -> u64 {
        let ack = self
            .request(json!({"type":"message","conversation_id":conversation_id,"text":text}))
            .await;
        ack["seq"].as_u64().expect("seq")
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// An agent takes the next offer: returns (conversation id, the `conversation` frame).
pub async fn accept_next_offer(agent: &mut Client) -> (String, Value) {
    let offer = agent.take("offer").await;
    let conversation_id = offer["conversation_id"].as_str().unwrap().to_owned();
    agent
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = agent.take("conversation").await;
    assert_eq!(conversation["conversation_id"], json!(conversation_id));
    (conversation_id, conversation)
}

/// A plain HTTP GET to `addr`, with a Bearer token when given: (status, body).
pub async fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

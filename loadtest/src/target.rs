//! What is under load: a Warmline the tool starts (generated config, temp data dir,
//! ephemeral port), a running one (`--target`, loopback only), or a baseline relay
//! (the bare tokio + tungstenite one, or Node `ws`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::check_loopback;

pub const DEFAULT_SECRET: &str = "loadtest-secret-0123456789abcdef0123";
/// The operator API's token (`auth.admin_token`) of a started Warmline.
pub const ADMIN_TOKEN: &str = "loadtest-admin-0123456789abcdef012345";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Against {
    /// Warmline itself.
    Warmline,
    /// The bare tokio + tungstenite relay (`warmline-loadtest relay`).
    Relay,
    /// A plain Node `ws` relay (loadtest/node/relay.mjs).
    Node,
}

impl Against {
    pub fn label(self) -> &'static str {
        match self {
            Against::Warmline => "warmline",
            Against::Relay => "bare relay",
            Against::Node => "node ws relay",
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Load a server that is already running (loopback only) instead of starting one.
    /// For Warmline, its config must have the agents `warmline-loadtest config` prints.
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// What is under test.
    #[arg(long, value_enum, default_value = "warmline")]
    pub against: Against,
    /// The warmline binary (default: `warmline` beside this one).
    #[arg(long)]
    pub warmline: Option<PathBuf>,
    /// The server's process id (to measure its memory and CPU) when using --target.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Agent token secret of a --target Warmline (auth.agent_secret).
    #[arg(long, default_value = DEFAULT_SECRET)]
    pub agent_secret: String,
    /// Media token secret of a --target Warmline (auth.media_secret).
    #[arg(long, default_value = DEFAULT_SECRET)]
    pub media_secret: String,
    /// Source addresses to spread connections over (127.0.0.2 ...).
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Store durability of a started Warmline (store.synchronous: full | normal).
    #[arg(long, default_value = "full")]
    pub synchronous: String,
    /// Where a started Warmline keeps its store (a temp dir inside it).
    #[arg(long)]
    pub data_parent: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            target: None,
            against: Against::Warmline,
            warmline: None,
            pid: None,
            agent_secret: DEFAULT_SECRET.into(),
            media_secret: DEFAULT_SECRET.into(),
            sources: 8,
            synchronous: "full".into(),
            data_parent: None,
            json: None,
            quiet: false,
        }
    }
}

/// The agents a started Warmline is configured with: chat agents `c0..`, voice agents
/// `v0..`, all on queue `load` (wrap-up 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Plan {
    pub chat_agents: usize,
    pub chat_capacity: u32,
    pub voice_agents: usize,
    pub voice_capacity: u32,
    /// Keep the gateway's default abuse limits (frames per connection, strikes,
    /// connections and starts per customer or agent), all but new connections per
    /// address, since every connection comes from loopback. Off: every limit off.
    pub abuse_limits: bool,
    /// With `abuse_limits`: the per-address limit on new connections at its default
    /// too (the load must then come from enough source addresses).
    pub address_limit: bool,
    /// With `abuse_limits`: no cooldown after an abuse close (`cooldown_seconds = 0`),
    /// to measure what the cooldown is worth.
    pub no_cooldown: bool,
}

/// The `[rate_limits]` of a started Warmline.
fn rate_limits(plan: &Plan) -> String {
    if plan.abuse_limits {
        let mut c = "[rate_limits]\n# The defaults, except as below.\n".to_owned();
        if !plan.address_limit {
            c.push_str("# All load comes from loopback.\nconnections_per_ip_per_second = 0\n");
        }
        if plan.no_cooldown {
            c.push_str("cooldown_seconds = 0\n");
        }
        c
    } else {
        r#"[rate_limits]
# A benchmark sends at machine speed from a few addresses: abuse limits off.
customer_frames_per_minute = 0
agent_frames_per_minute = 0
connections_per_ip_per_second = 0
starts_per_customer_per_hour = 0
connections_per_customer = 0
connections_per_agent = 0
cooldown_seconds = 0
"#
        .to_owned()
    }
}

pub fn warmline_config(plan: &Plan, common: &Common) -> String {
    let mut c = format!(
        r#"[server]
shutdown_grace_ms = 1000
[store]
synchronous = "{sync}"
[limits]
handshake_timeout_ms = 60000
{rate_limits}[customer]
allowed_origins = ["*"]
allow_missing_origin = true
[auth]
admin_token = "{admin}"
agent_secret = "{agent}"
media_secret = "{media}"
[routing]
offer_timeout_ms = 60000
max_missed_offers = 0
[log]
level = "warn"
[[queues]]
name = "load"
wrap_up_ms = 0
"#,
        sync = common.synchronous,
        rate_limits = rate_limits(plan),
        admin = ADMIN_TOKEN,
        agent = common.agent_secret,
        media = common.media_secret,
    );
    for i in 0..plan.chat_agents {
        c.push_str(&format!(
            "[[agents]]\nid = \"c{i}\"\ndisplay_name = \"Chat {i}\"\ncapacity = {{ chat = {}, voice = 0 }}\n",
            plan.chat_capacity.max(1)
        ));
    }
    for i in 0..plan.voice_agents {
        c.push_str(&format!(
            "[[agents]]\nid = \"v{i}\"\ndisplay_name = \"Voice {i}\"\ncapacity = {{ chat = 0, voice = {} }}\n",
            plan.voice_capacity.max(1)
        ));
    }
    if plan.chat_agents + plan.voice_agents == 0 {
        c.push_str("[[agents]]\nid = \"c0\"\ncapacity = { chat = 1, voice = 0 }\n");
    }
    c
}

/// A server under load; a started one is killed when this is dropped.
pub struct Target {
    pub against: Against,
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub agent_secret: String,
    pub media_secret: String,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    /// The binary of a Warmline this tool started (to start it again).
    warmline: Option<PathBuf>,
}

impl Target {
    pub fn is_warmline(&self) -> bool {
        self.against == Against::Warmline
    }

    /// The SQLite file of a Warmline this tool started (`None` for `--target`).
    pub fn store_file(&self) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        self.is_warmline()
            .then(|| dir.path().join("data").join("warmline.db"))
    }

    pub fn agent_path(&self, id: &str) -> String {
        let token = warmline::gateway::auth::mint_agent(&self.agent_secret, id, 6 * 3600)
            .expect("mint an agent token");
        format!("/ws/agent?token={token}")
    }

    pub fn media_path(&self) -> String {
        let token = warmline::gateway::auth::mint_media(&self.media_secret, "loadtest", 6 * 3600)
            .expect("mint a media token");
        format!("/ws/media?token={token}")
    }

    pub fn rss(&self) -> Option<u64> {
        self.pid.and_then(crate::common::rss_bytes)
    }

    pub fn cpu(&self) -> Option<f64> {
        self.pid.and_then(crate::common::cpu_seconds)
    }

    /// The tail of a started server's log (for error reports).
    pub fn log_tail(&self) -> String {
        let Some(dir) = &self.dir else {
            return String::new();
        };
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGKILLs a Warmline this tool started and starts it again on the same config and
    /// data directory, on the same port when it can be bound again (else on another):
    /// returns the time from the new process's spawn to its first `GET /readyz`
    /// answering 200 (polled every 5 ms), and whether the port is the same.
    pub async fn kill_and_restart(&mut self, ready_within: Duration) -> Result<(Duration, bool)> {
        let (Some(child), Some(dir), Some(bin)) = (&mut self.child, &self.dir, &self.warmline)
        else {
            bail!("only a Warmline this tool started can be killed and restarted");
        };
        child.start_kill().context("SIGKILL the server")?;
        child.wait().await?;
        let same = self.addr.to_string();
        let mut last_error = None;
        for listen in [same.as_str(), "127.0.0.1:0"] {
            let spawned = Instant::now();
            match spawn(
                warmline_command(bin, dir.path(), listen),
                dir.path(),
                self.against,
            )
            .await
            {
                Ok((mut child, addr)) => {
                    let same_port = addr == self.addr;
                    self.addr = addr;
                    self.pid = child.id();
                    let ready = tokio::select! {
                        r = tokio::time::timeout(ready_within, ready(addr)) => r,
                        status = child.wait() => bail!("the restarted server exited ({status:?}) before it was ready"),
                    };
                    self.child = Some(child);
                    let ready = ready.with_context(|| {
                        format!("the restarted server was not ready within {ready_within:?}")
                    })??;
                    return Ok((ready.duration_since(spawned), same_port));
                }
                Err(e) => {
                    crate::common::note(format!("could not start again on {listen}: {e:#}"));
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.expect("tried"))
    }

    /// Leaves the temp directory of a started server (config, data, log) in place when
    /// this is dropped: its path.
    pub fn keep_dir(&mut self) -> Option<PathBuf> {
        self.dir.take().map(tempfile::TempDir::keep)
    }

    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("exe dir")?.join(name))
}

/// The Node relay script, beside this crate's sources.
pub fn node_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node/relay.mjs")
}

/// Polls `GET /readyz` every 5 ms until it answers 200: when it did. A connection the
/// server has not accepted yet (restoring, say) waits in its listen backlog and is
/// answered as soon as it serves.
async fn ready(addr: SocketAddr) -> Result<Instant> {
    loop {
        if let Ok((200, _)) = crate::common::http_request(addr, "/readyz", None).await {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `node` and the `ws` module are installed.
pub fn node_available() -> bool {
    let script = node_script();
    let has_ws = script
        .parent()
        .is_some_and(|d| d.join("node_modules/ws/package.json").exists());
    has_ws
        && std::process::Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Connects to `--target`, or starts what `--against` names.
/// Starts the target for `plan`, runs `scenario` on it, shows the server's log tail
/// when the scenario fails, and stops the target.
pub async fn around<T>(
    common: &Common,
    plan: &Plan,
    scenario: impl AsyncFnOnce(&Target) -> Result<T>,
) -> Result<T> {
    let target = start(common, plan).await?;
    let outcome = scenario(&target).await;
    if outcome.is_err() {
        let tail = target.log_tail();
        if !tail.is_empty() {
            eprintln!("server log tail:\n{tail}");
        }
    }
    target.stop().await;
    outcome
}

pub async fn start(common: &Common, plan: &Plan) -> Result<Target> {
    crate::common::set_sources(common.sources);
    crate::common::set_quiet(common.quiet);
    if let Some(addr) = common.target {
        check_loopback(&addr)?;
        return Ok(Target {
            against: common.against,
            addr,
            pid: common.pid,
            agent_secret: common.agent_secret.clone(),
            media_secret: common.media_secret.clone(),
            child: None,
            dir: None,
            warmline: None,
        });
    }
    let dir = match &common.data_parent {
        Some(p) => tempfile::tempdir_in(p)?,
        None => tempfile::tempdir()?,
    };
    let mut warmline = None;
    let cmd = match common.against {
        Against::Warmline => {
            let bin = match &common.warmline {
                Some(p) => p.clone(),
                None => sibling("warmline")?,
            };
            if !bin.exists() {
                bail!(
                    "no warmline binary at {} (build it: cargo build -p warmline, or pass --warmline)",
                    bin.display()
                );
            }
            std::fs::write(
                dir.path().join("warmline.toml"),
                warmline_config(plan, common),
            )?;
            let cmd = warmline_command(&bin, dir.path(), "127.0.0.1:0");
            warmline = Some(bin);
            cmd
        }
        Against::Relay => {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["relay", "--listen", "127.0.0.1:0"]);
            cmd
        }
        Against::Node => {
            if !node_available() {
                bail!("node or the `ws` module is missing (cd loadtest/node && npm ci)");
            }
            let mut cmd = Command::new("node");
            cmd.arg(node_script()).env("PORT", "0");
            cmd
        }
    };
    let (child, addr) = spawn(cmd, dir.path(), common.against).await?;
    Ok(Target {
        against: common.against,
        addr,
        pid: child.id(),
        agent_secret: common.agent_secret.clone(),
        media_secret: common.media_secret.clone(),
        child: Some(child),
        dir: Some(dir),
        warmline,
    })
}

/// `warmline serve` with the config and data directory in `dir`, listening on `listen`.
fn warmline_command(bin: &Path, dir: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("warmline.toml"))
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("RUST_LOG");
    cmd
}

/// Starts `cmd` (its stderr appended to `dir`/server.log) and waits for the line that
/// says where it listens.
async fn spawn(mut cmd: Command, dir: &Path, against: Against) -> Result<(Child, SocketAddr)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))?;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("start the server")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            for prefix in ["Warmline listening on http://", "relay listening on "] {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.trim().to_owned());
                }
            }
        }
        None
    })
    .await;
    let addr = match found {
        Ok(Some(a)) => a.parse::<SocketAddr>()?,
        _ => {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            bail!("{} did not start; its log:\n{log}", against.label());
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

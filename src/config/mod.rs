//! One typed config: a TOML file, then `WARMLINE_` environment overrides (nested keys
//! joined by `__`, e.g. `WARMLINE_SERVER__LISTEN`), then CLI flags. Every key has a
//! default (see warmline.example.toml); with no config at all Warmline runs a demo
//! queue and a demo agent.
//!
//! # Layout
//! - `mod.rs`: the types, their defaults, `ConfigError` and `Origin`.
//! - `load.rs`: file, environment and flags into one tree; every problem, located.
//! - `schema.rs`: the keys of each table (from the serde derives) and key paths.
//! - `validate.rs`: the rules beyond types (shared with the operator API).
//! - `suggest.rs`, `language.rs`: the nearest key for a typo; ISO 639-1 codes.
//! - `report.rs`: the text printed for a bad config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::hours::Window;
use crate::core::signals::coaching::{Coaching, CoachingRule};
use crate::core::{
    AgentSettings, AttributeRule, CoreSettings, Hours, QueueSettings, StepSettings, Strategy,
};
use crate::store::Synchronous;

mod language;
mod load;
mod report;
mod schema;
mod suggest;
mod validate;

pub use report::report;
pub use validate::valid_attribute;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub cluster: ClusterConfig,
    pub limits: LimitsConfig,
    pub rate_limits: RateLimitsConfig,
    pub customer: CustomerConfig,
    pub auth: AuthConfig,
    pub routing: RoutingConfig,
    pub media: MediaConfig,
    pub signals: SignalsConfig,
    pub log: LogConfig,
    /// The skills queues and agents may name. Empty: any.
    pub skills: Vec<String>,
    pub queues: Vec<QueueConfig>,
    pub agents: Vec<AgentConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Port 0 picks a free port (printed at start).
    pub listen: String,
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// After SIGTERM, how long clients and the store get to finish.
    pub shutdown_grace_ms: u64,
    /// TLS in the process (for deployments without a proxy in front): the PEM
    /// certificate chain and its private key. Unset: plain HTTP and WebSocket.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Unset: the embedded SQLite store in `server.data_dir`. `postgres://...`: a
    /// shared PostgreSQL (builds with the `postgres` feature; docs/scaling.md).
    pub url: Option<String>,
    /// SQLite's `PRAGMA synchronous` (PostgreSQL keeps its own `synchronous_commit`).
    pub synchronous: Synchronous,
    /// Most client commands applied (and committed) as one batch.
    pub max_batch: usize,
}

/// Several nodes over Redis (feature `redis`; docs/scaling.md). Unset `redis_url`:
/// one node, nothing shared.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:port`: join the nodes that share this Redis (and the store,
    /// which must then be PostgreSQL).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so installations can share a Redis.
    pub prefix: String,
    /// How often a node renews its registration (and the owner its lease).
    pub heartbeat_ms: u64,
    /// A node (or the owner's lease) not renewed for this long is dead.
    pub expiry_ms: u64,
    /// This node's id. Unset: a fresh random one at every start.
    pub node_id: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            prefix: "warmline".into(),
            heartbeat_ms: 1000,
            expiry_ms: 5000,
            node_id: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest text frame or message; larger gets `too_large` and close 1009.
    pub max_message_bytes: usize,
    /// The WebSocket read buffer each connection allocates up front (1 KiB by
    /// default: an idle connection holds it all its life); it grows to fit a larger
    /// frame.
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    /// Bytes the socket may hold unsent before writes wait.
    pub max_write_buffer_bytes: usize,
    /// Frames queued to one connection before it is closed as a slow consumer (4001).
    pub outbound_queue: usize,
    /// Time to finish the HTTP upgrade, and for a customer to send `hello`.
    pub handshake_timeout_ms: u64,
    /// A write that cannot complete in this time closes the connection (slow consumer).
    pub write_timeout_ms: u64,
    pub ping_interval_ms: u64,
    /// Bad frames tolerated per connection per minute before close 1008.
    pub bad_frames_per_minute: u32,
    /// Most client commands waiting for the core before connections wait.
    pub core_queue: usize,
}

/// Abuse limits (docs/protocol.md, "Rate limits"). A rate is sustained per period
/// with a burst on top; 0 turns that limit off.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Text frames a customer may send per minute, all of their connections together
    /// (a reconnect does not refill it), and the burst.
    pub customer_frames_per_minute: u32,
    pub customer_frame_burst: u32,
    /// Text frames an agent may send per minute, all of their connections together
    /// (call audio is not counted), and the burst.
    pub agent_frames_per_minute: u32,
    pub agent_frame_burst: u32,
    /// Over-limit frames per minute after which the connection is closed (1008).
    pub strikes_before_close: u32,
    /// After a close for abuse (1008 for the frame rate or for bad frames), seconds
    /// the customer or agent is refused before they may connect again (a customer at
    /// `hello`, an agent at the upgrade, each told when to retry).
    pub cooldown_seconds: u32,
    /// Abuse closes (and refusals of a cooling-off customer) from one client address
    /// within `cooldown_seconds` after which that address may open no customer
    /// connection for `cooldown_seconds` (429). Catches a flooder who comes back as a
    /// new anonymous visitor each time.
    pub abuse_closes_per_ip: u32,
    /// New customer and agent connections per client address per second, and the
    /// burst (an office of agents behind one address reconnecting at once).
    pub connections_per_ip_per_second: u32,
    pub connections_per_ip_burst: u32,
    /// Connections open at once per customer and per agent.
    pub connections_per_customer: u32,
    pub connections_per_agent: u32,
    /// Conversations one customer may start per hour.
    pub starts_per_customer_per_hour: u32,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            customer_frames_per_minute: 100,
            customer_frame_burst: 20,
            agent_frames_per_minute: 600,
            agent_frame_burst: 100,
            strikes_before_close: 20,
            cooldown_seconds: 60,
            abuse_closes_per_ip: 3,
            connections_per_ip_per_second: 20,
            connections_per_ip_burst: 200,
            connections_per_customer: 5,
            connections_per_agent: 3,
            starts_per_customer_per_hour: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerConfig {
    /// Origins allowed on /ws/customer: exact origins ("https://shop.example"),
    /// "self" (the Host the request was sent to), or "*" (any; not for production).
    pub allowed_origins: Vec<String>,
    /// Accept connections without an Origin header (non-browser clients).
    pub allow_missing_origin: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret for agent tokens. Unset: one is generated and kept in the store.
    pub agent_secret: Option<String>,
    /// Secret for signing visitor tokens. Unset: generated and kept in the store.
    pub visitor_secret: Option<String>,
    /// HS256 secret of the business's backend for customer identity tokens
    /// (`hello.identity`). Unset: identity is off and such a `hello` is refused.
    pub identity_secret: Option<String>,
    /// When set, identity tokens must carry this `aud`.
    pub identity_audience: Option<String>,
    /// When set, identity tokens must carry this `iss`.
    pub identity_issuer: Option<String>,
    /// When set, agent tokens must carry this `iss` (`warmline token agent` puts it in).
    pub agent_issuer: Option<String>,
    /// HS256 secret for media stream tokens (`/ws/media`). Unset: generated and kept
    /// in the store; mint tokens with `warmline token media NAME`.
    pub media_secret: Option<String>,
    /// Bearer token for the operator API (/api/v1). Unset: generated, kept in the
    /// store and printed at start.
    pub admin_token: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Default offer timeout for queues that do not set one.
    pub offer_timeout_ms: u64,
    /// Default wrap-up time for queues that do not set one.
    pub wrap_up_ms: u64,
    pub agent_grace_ms: u64,
    pub max_missed_offers: u32,
    pub reoffer_delay_ms: u64,
    pub queued_update_interval_ms: u64,
    pub dedupe_window: usize,
    /// Default wait for the agent who last resolved the customer's contact.
    pub affinity_wait_ms: u64,
    /// An agent on a voice call takes no chats.
    pub voice_excludes_chat: bool,
    /// A new conversation within this long of the customer's previous one on the same
    /// queue is a repeat contact (it names that one; its agent sees it).
    pub repeat_window_ms: u64,
    /// Among candidates, prefer the agent with the better satisfaction record for the
    /// queue over `satisfaction_window_days` (CSAT, else the estimate; 3+ conversations).
    /// Off by default: it sends more work to the best-rated, which is not always fair.
    pub prefer_satisfied_agents: bool,
    pub satisfaction_window_days: u32,
    /// Default service level for queues that do not set one: `service_level_percent`
    /// of conversations should be answered within `service_level_ms` (80 % in 20 s).
    pub service_level_ms: u64,
    pub service_level_percent: u8,
}

/// Satisfaction signals.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalsConfig {
    /// Coaching rules on agents' messages. Unset: the built-in list (see
    /// warmline.example.toml); set: exactly these.
    pub coaching: Option<Vec<CoachingRuleConfig>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoachingRuleConfig {
    pub code: String,
    pub hint: String,
    #[serde(default)]
    pub positive: bool,
    pub phrases: Vec<String>,
}

impl SignalsConfig {
    pub fn coaching(&self) -> Coaching {
        match &self.coaching {
            None => Coaching::default(),
            Some(rules) => Coaching::new(
                rules
                    .iter()
                    .map(|r| CoachingRule {
                        code: r.code.as_str().into(),
                        hint: r.hint.as_str().into(),
                        positive: r.positive,
                        phrases: r.phrases.clone(),
                    })
                    .collect(),
            ),
        }
    }
}

/// Phone calls streamed over `/ws/media` (Twilio Media Streams format).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Queue for calls whose `customParameters` name none. Unset: the first queue.
    pub default_queue: Option<String>,
    /// Treat the caller's number (`customParameters.from`) as the customer, so a
    /// returning caller is recognised (history, last agent). Caller ID can be spoofed:
    /// agents still verify before disclosing anything.
    pub caller_id_is_customer: bool,
    /// Audio frames queued to one agent connection (or to the provider) before new
    /// ones are dropped (and counted): late audio is worse than lost audio.
    pub audio_queue_frames: usize,
    /// How often the agent is sent the call's live voice signals.
    pub signals_interval_ms: u64,
    /// Voice activity: a 20 ms frame louder than this (dBov) is speech.
    pub vad_threshold_dbov: f32,
    /// Speech continues this long after the last loud frame (gaps between words).
    pub vad_hangover_ms: u64,
    /// Nobody talking for at least this long (not on hold) is dead air.
    pub dead_air_ms: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            default_queue: None,
            caller_id_is_customer: true,
            audio_queue_frames: 50,
            signals_interval_ms: 2_000,
            vad_threshold_dbov: -40.0,
            vad_hangover_ms: 200,
            dead_air_ms: 3_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `warmline=debug`. `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    /// Minimum proficiency (1-10) per skill every agent of the queue needs.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// A language every agent of the queue must speak (unless the conversation names one).
    pub language: Option<String>,
    /// Higher goes first, across queues.
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub strategy: StrategyConfig,
    /// Relaxations over time (bullseye), in order of `after_ms`.
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    /// Opening hours; none: always open.
    pub hours: Option<HoursConfig>,
    pub offer_timeout_ms: Option<u64>,
    pub wrap_up_ms: Option<u64>,
    /// Waiting for the customer's last agent; default routing.affinity_wait_ms.
    pub affinity_wait_ms: Option<u64>,
    /// After this long waiting, move to `overflow_to`.
    pub max_wait_ms: Option<u64>,
    pub overflow_to: Option<String>,
    /// Answer this share (`service_level_percent`) within this long; defaults:
    /// routing.service_level_ms and routing.service_level_percent.
    pub service_level_ms: Option<u64>,
    pub service_level_percent: Option<u8>,
    /// Rules on trusted attributes (customer context from the operator API, the
    /// telephony provider's parameters): `{ attribute = "tier", equals = "gold",
    /// priority = 10 }`, `{ attribute = "intent", equals = "billing", skills = { billing = 1 } }`.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub attribute: String,
    pub equals: String,
    /// Added to the queue's priority when the rule matches.
    #[serde(default)]
    pub priority: i32,
    /// Required (at least these levels) when the rule matches.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StrategyConfig {
    #[default]
    LongestIdle,
    LeastOccupied,
    MostProficient,
    RoundRobin,
}

/// `time_zone = "Europe/Paris"`, `open = ["mon-fri 09:00-17:00", "sat 10:00-13:00"]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    /// An IANA time zone name.
    pub time_zone: String,
    /// Windows: a day (`mon`..`sun`), a range (`mon-fri`) or `daily`, then `HH:MM-HH:MM`.
    #[serde(default)]
    pub open: Vec<String>,
}

impl HoursConfig {
    /// The core's hours, or the field at fault and why.
    pub fn parse(&self) -> Result<Hours, (String, String)> {
        let time_zone = jiff::tz::TimeZone::get(&self.time_zone).map_err(|_| {
            (
                "time_zone".to_owned(),
                format!(
                    "`{}` is not a known IANA time zone (e.g. Europe/Paris)",
                    self.time_zone
                ),
            )
        })?;
        let mut windows = Vec::new();
        for (i, spec) in self.open.iter().enumerate() {
            let bad = |why: &str| (format!("open[{i}]"), format!("`{spec}`: {why}"));
            let (days, times) = spec.split_once(' ').ok_or_else(|| {
                bad("expected a day and a time range, e.g. `mon-fri 09:00-17:00`")
            })?;
            let days = parse_days(days)
                .ok_or_else(|| bad("days are mon..sun, a range such as mon-fri, or daily"))?;
            let (start, end) = times
                .trim()
                .split_once('-')
                .and_then(|(a, b)| Some((parse_time(a)?, parse_time(b)?)))
                .filter(|(a, b)| a < b)
                .ok_or_else(|| bad("times are HH:MM-HH:MM (seconds optional), start before end, end at most 24:00"))?;
            windows.extend(days.into_iter().map(|day| Window { day, start, end }));
        }
        Ok(Hours { time_zone, windows })
    }
}

/// `HH:MM` or `HH:MM:SS` as seconds after midnight; `24:00` is the end of the day.
fn parse_time(s: &str) -> Option<u32> {
    let mut parts = s.trim().split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let sec: u32 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    if parts.next().is_some() || m >= 60 || sec >= 60 {
        return None;
    }
    let total = h * 3600 + m * 60 + sec;
    (total <= 86_400).then_some(total)
}

fn parse_days(s: &str) -> Option<Vec<jiff::civil::Weekday>> {
    use jiff::civil::Weekday;
    const DAYS: [(&str, Weekday); 7] = [
        ("mon", Weekday::Monday),
        ("tue", Weekday::Tuesday),
        ("wed", Weekday::Wednesday),
        ("thu", Weekday::Thursday),
        ("fri", Weekday::Friday),
        ("sat", Weekday::Saturday),
        ("sun", Weekday::Sunday),
    ];
    let index = |name: &str| DAYS.iter().position(|(n, _)| *n == name);
    let s = s.trim().to_ascii_lowercase();
    let (first, last) = match s.as_str() {
        "daily" => (0, 6),
        _ => match s.split_once('-') {
            Some((a, b)) => (index(a)?, index(b)?),
            None => (index(&s)?, index(&s)?),
        },
    };
    (first <= last).then(|| DAYS[first..=last].iter().map(|(_, d)| *d).collect())
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Applies once a conversation has waited this long in the queue.
    pub after_ms: u64,
    /// Lower the minimum level of these required skills.
    #[serde(default)]
    pub min_levels: BTreeMap<String, u8>,
    /// Stop requiring these skills.
    #[serde(default)]
    pub drop_skills: Vec<String>,
    /// Let agents qualified for these queues take it too.
    #[serde(default)]
    pub widen_to: Vec<String>,
}

impl StepConfig {
    /// The step as the core runs it.
    pub fn settings(&self) -> StepSettings {
        StepSettings {
            after_ms: self.after_ms,
            min_levels: self.min_levels.clone(),
            drop_skills: self.drop_skills.clone(),
            widen_to: self.widen_to.iter().map(|w| w.as_str().into()).collect(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub id: String,
    pub display_name: Option<String>,
    /// Proficiency 1-10 per skill.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// Languages the agent serves in (e.g. "en", "es").
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub capacity: CapacityConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    pub chat: u32,
    pub voice: u32,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig { chat: 3, voice: 1 }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("./warmline-data"),
            shutdown_grace_ms: 10_000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            synchronous: Synchronous::Full,
            max_batch: 1024,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 64 * 1024,
            read_buffer_bytes: 1024,
            write_buffer_bytes: 8 * 1024,
            max_write_buffer_bytes: 256 * 1024,
            outbound_queue: 256,
            handshake_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            ping_interval_ms: 20_000,
            bad_frames_per_minute: 30,
            core_queue: 4096,
        }
    }
}

impl Default for CustomerConfig {
    fn default() -> Self {
        CustomerConfig {
            allowed_origins: vec!["self".to_owned()],
            allow_missing_origin: false,
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            offer_timeout_ms: 20_000,
            wrap_up_ms: 10_000,
            agent_grace_ms: 60_000,
            max_missed_offers: 3,
            reoffer_delay_ms: 30_000,
            queued_update_interval_ms: 5_000,
            dedupe_window: 256,
            affinity_wait_ms: 30_000,
            voice_excludes_chat: true,
            repeat_window_ms: 7 * 24 * 3600 * 1000,
            prefer_satisfied_agents: false,
            satisfaction_window_days: 30,
            service_level_ms: 20_000,
            service_level_percent: 80,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".to_owned(),
            level: "info".to_owned(),
        }
    }
}

/// Overrides from the command line (`None`: keep what the file and env say).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// A config problem: the key it is about (`queues[1].overflow_to`), why, and, when
/// read from a file or the environment, where the value came from and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
    pub origin: Option<Origin>,
    /// The value at fault, as TOML (secrets hidden).
    pub value: Option<String>,
    /// For an unknown key: how its table is written and the keys it may hold.
    pub valid_keys: Option<(&'static str, &'static [&'static str])>,
    /// A warning is valid but probably not meant; it stops nothing.
    pub severity: Severity,
}

/// Whether a problem stops the config from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl ConfigError {
    pub fn new(key: &str, message: &str) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            message: message.to_owned(),
            origin: None,
            value: None,
            valid_keys: None,
            severity: Severity::Error,
        }
    }

    pub fn warning(key: &str, message: &str) -> ConfigError {
        ConfigError {
            severity: Severity::Warning,
            ..ConfigError::new(key, message)
        }
    }
}

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file, at a line and column (1-based) when the file holds the key.
    File {
        path: PathBuf,
        at: Option<(usize, usize)>,
    },
    /// A `WARMLINE_` environment variable, by name.
    Env(String),
    /// A command-line flag.
    Flag(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File {
                path,
                at: Some((line, column)),
            } => write!(f, "{}:{line}:{column}", path.display()),
            Origin::File { path, at: None } => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
        }
    }
}

/// `warmline.toml:14:15: queues[1].overflow_to = "suport": names no queue; ...`
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.key.is_empty() {
            f.write_str(&self.key)?;
            if let Some(value) = &self.value {
                write!(f, " = {value}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl Config {
    /// Reads the file (if any), the `WARMLINE_` environment and the overrides, then
    /// validates. Returns every problem found, not just the first.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<ConfigError>> {
        Config::load_with_warnings(file, overrides).map(|(config, _)| config)
    }

    /// As [`Config::load`], with the warnings ([`Config::advise`]) of a config that
    /// loads. When it does not, the warnings are among the problems returned.
    pub fn load_with_warnings(
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<(Config, Vec<ConfigError>), Vec<ConfigError>> {
        let env = std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        });
        load::load(file, env, overrides)
    }

    /// With no queues or agents configured, a demo queue and a demo agent.
    pub(crate) fn fill_demo(&mut self) {
        if self.queues.is_empty() {
            self.queues.push(QueueConfig {
                name: "demo".to_owned(),
                wrap_up_ms: Some(3_000),
                ..QueueConfig::named("demo")
            });
        }
        if self.agents.is_empty() {
            self.agents.push(AgentConfig::demo());
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.server
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// The routing settings the core runs with.
    pub fn core_settings(&self) -> CoreSettings {
        CoreSettings {
            queues: self
                .queues
                .iter()
                .map(|q| q.settings(&self.routing))
                .collect(),
            agents: self.agents.iter().map(AgentConfig::settings).collect(),
            agent_grace_ms: self.routing.agent_grace_ms,
            max_missed_offers: self.routing.max_missed_offers,
            reoffer_delay_ms: self.routing.reoffer_delay_ms,
            queued_update_interval_ms: self.routing.queued_update_interval_ms,
            dedupe_window: self.routing.dedupe_window,
            voice_excludes_chat: self.routing.voice_excludes_chat,
            coaching: std::sync::Arc::new(self.signals.coaching()),
            prefer_satisfied: self.routing.prefer_satisfied_agents,
        }
    }
}

impl QueueConfig {
    /// The core's view, with the routing defaults filled in.
    pub fn settings(&self, routing: &RoutingConfig) -> QueueSettings {
        QueueSettings {
            name: self.name.as_str().into(),
            skills: self.skills.clone(),
            language: self.language.as_deref().map(Into::into),
            priority: self.priority,
            strategy: match self.strategy {
                StrategyConfig::LongestIdle => Strategy::LongestIdle,
                StrategyConfig::LeastOccupied => Strategy::LeastOccupied,
                StrategyConfig::MostProficient => Strategy::MostProficient,
                StrategyConfig::RoundRobin => Strategy::RoundRobin,
            },
            steps: self.steps.iter().map(StepConfig::settings).collect(),
            hours: self.hours.as_ref().and_then(|h| h.parse().ok()),
            offer_timeout_ms: self.offer_timeout_ms.unwrap_or(routing.offer_timeout_ms),
            wrap_up_ms: self.wrap_up_ms.unwrap_or(routing.wrap_up_ms),
            affinity_wait_ms: self.affinity_wait_ms.unwrap_or(routing.affinity_wait_ms),
            max_wait_ms: self.max_wait_ms,
            overflow_to: self.overflow_to.as_deref().map(Into::into),
            service_level_ms: self.service_level_ms.unwrap_or(routing.service_level_ms),
            rules: self
                .rules
                .iter()
                .map(|r| AttributeRule {
                    attribute: r.attribute.as_str().into(),
                    equals: r.equals.as_str().into(),
                    priority: r.priority,
                    skills: r.skills.clone(),
                })
                .collect(),
        }
    }

    /// A queue with every optional setting at its default.
    pub fn named(name: &str) -> QueueConfig {
        QueueConfig {
            name: name.to_owned(),
            skills: BTreeMap::new(),
            language: None,
            priority: 0,
            strategy: StrategyConfig::default(),
            steps: Vec::new(),
            hours: None,
            offer_timeout_ms: None,
            wrap_up_ms: None,
            affinity_wait_ms: None,
            max_wait_ms: None,
            overflow_to: None,
            service_level_ms: None,
            service_level_percent: None,
            rules: Vec::new(),
        }
    }
}

impl AgentConfig {
    /// The agent Warmline runs with when none is configured.
    pub(crate) fn demo() -> AgentConfig {
        AgentConfig {
            id: "demo".to_owned(),
            display_name: Some("Demo Agent".to_owned()),
            skills: BTreeMap::new(),
            languages: vec!["en".to_owned()],
            capacity: CapacityConfig::default(),
        }
    }

    pub fn settings(&self) -> AgentSettings {
        AgentSettings {
            id: self.id.as_str().into(),
            display_name: self.display_name.as_deref().unwrap_or(&self.id).into(),
            skills: self.skills.clone(),
            languages: self.languages.iter().map(|l| l.as_str().into()).collect(),
            capacity_chat: self.capacity.chat,
            capacity_voice: self.capacity.voice,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(Some(&path), &Overrides::default())
    }

    #[test]
    fn no_config_means_a_demo_queue_and_agent() {
        let config = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(config.queues[0].name, "demo");
        assert_eq!(config.agents[0].id, "demo");
        assert_eq!(config.limits.max_message_bytes, 65536);
    }

    #[test]
    fn reports_every_error_with_its_key() {
        let errors = load_str(
            r#"
            [server]
            listen = "nowhere"
            [[queues]]
            name = "a"
            skills = { x = 11 }
            [[queues]]
            name = "a"
            service_level_ms = 0
            service_level_percent = 101
            "#,
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"server.listen"), "{errors:?}");
        assert!(keys.contains(&"queues[0].skills.x"), "{errors:?}");
        assert!(keys.contains(&"queues[1].name"), "{errors:?}");
        assert!(keys.contains(&"queues[1].service_level_ms"), "{errors:?}");
        assert!(
            keys.contains(&"queues[1].service_level_percent"),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let errors = load_str("[server]\nlisten_on = \"x\"\n").unwrap_err();
        assert_eq!(errors[0].key, "server.listen_on", "{errors:?}");
        assert!(
            errors[0].message.contains("did you mean `listen`?"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_example_file_is_valid_and_documents_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("warmline.example.toml");
        let config = Config::load(Some(&path), &Overrides::default()).unwrap();
        let defaults = Config::default();
        assert_eq!(
            config.limits.max_message_bytes,
            defaults.limits.max_message_bytes
        );
        assert_eq!(
            config.routing.agent_grace_ms,
            defaults.routing.agent_grace_ms
        );
        assert_eq!(config.server.listen, defaults.server.listen);
    }
}

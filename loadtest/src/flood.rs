//! `flood`: ordinary conversations chat at a steady rate under the gateway's default
//! abuse limits, phase "normal"; then the same while one more customer, from a source
//! address of its own, sends message frames as fast as its socket allows and, whenever
//! the gateway closes or refuses it, comes back at once with its visitor token and
//! floods again (ignoring every retry hint), phase "flood". `--rounds` repeats the pair
//! (normal, flood, normal, flood...), so the two are interleaved on a noisy machine.
//! The others' latency in the two phases is compared, per round and with every round
//! pooled: the goal is their p99 within 20% of normal.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};
use warmline::config::RateLimitsConfig;

use crate::chat::{PhaseResult, Session};
use crate::common::{Outcome, Ws, inc, load, note, r1, ws_connect_from};
use crate::proto::{self, In};
use crate::target::{self, Common, Plan, Target};

#[derive(Args, Clone, Debug)]
pub struct FloodArgs {
    /// Ordinary conversations (a customer and an agent connection each).
    #[arg(long, default_value_t = 200)]
    pub conversations: usize,
    /// Conversations per agent.
    #[arg(long, default_value_t = 1)]
    pub per_agent: u32,
    /// The ordinary conversations' offered messages per second in all, half each way.
    /// The default, 400 for 200 conversations, is one message a second from each
    /// customer and each agent (60 a minute): under the gateway's default frame limits
    /// (customers 100 a minute, bursts of 20; agents 600 a minute, bursts of 100), so
    /// no ordinary chatter is ever refused. A rate that would go over them is refused.
    #[arg(long, default_value_t = 400.0)]
    pub rate: f64,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Pairs of phases (normal, flood), interleaved.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Message text length in bytes (ordinary conversations).
    #[arg(long, default_value_t = 80)]
    pub size: usize,
    /// Seconds to wait for stragglers after a phase.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// The goal: the others' p99 during the flood at most this many times normal
    /// (reported, not a failure: timing on a shared machine is noisy).
    #[arg(long, default_value_t = 1.2)]
    pub goal: f64,
    /// Turn off the limit on new connections per address (the flooder then
    /// reconnects as fast as it can), to measure what that limit is worth.
    #[arg(long)]
    pub no_address_limit: bool,
    /// Turn off the cooldown after an abuse close (`rate_limits.cooldown_seconds = 0`),
    /// to measure what it is worth.
    #[arg(long)]
    pub no_cooldown: bool,
    #[command(flatten)]
    pub common: Common,
}

impl FloodArgs {
    /// The smoke run's size.
    pub fn small(common: Common) -> FloodArgs {
        FloodArgs {
            conversations: 10,
            per_agent: 1,
            rate: 10.0,
            duration: 1.5,
            rounds: 1,
            size: 80,
            drain: 10.0,
            goal: 1.2,
            no_address_limit: false,
            no_cooldown: false,
            common,
        }
    }

    /// Ordinary chatters must stay under the default frame limits.
    fn check_rate(&self) -> Result<()> {
        let limits = RateLimitsConfig::default();
        let per_agent = self.per_agent.max(1) as usize;
        let conversations = self.conversations.div_ceil(per_agent) * per_agent;
        let customer = self.rate / conversations as f64 / 2.0 * 60.0;
        let agent = customer * per_agent as f64;
        if customer > f64::from(limits.customer_frames_per_minute) {
            bail!(
                "--rate {} over {conversations} conversations is {customer:.0} messages a minute per customer: over the gateway's default of {} (lower --rate)",
                self.rate,
                limits.customer_frames_per_minute
            );
        }
        if agent > f64::from(limits.agent_frames_per_minute) {
            bail!(
                "--rate {} with {per_agent} conversations per agent is {agent:.0} messages a minute per agent: over the gateway's default of {} (lower --rate or --per-agent)",
                self.rate,
                limits.agent_frames_per_minute
            );
        }
        Ok(())
    }
}

/// What the flooder saw in one flood phase.
#[derive(Default)]
struct FloodCounts {
    /// Connections that got a `welcome`; those after the first are reconnects.
    connections: AtomicU64,
    /// Message frames written to the socket.
    frames: AtomicU64,
    acked: AtomicU64,
    rate_limited: AtomicU64,
    /// `rate_limited` errors without a positive `retry_after_ms`.
    no_retry_hint: AtomicU64,
    closed_1008: AtomicU64,
    /// Closed with another code, or dropped without a close frame.
    closed_other: AtomicU64,
    /// Upgrades refused with HTTP 429 (new connections per address, or the address
    /// cooling off after abuse closes).
    refused_429: AtomicU64,
    /// `hello`s answered with `rate_limited` (the customer cooling off) and closed.
    refused_at_hello: AtomicU64,
    /// Connections that did not get to `welcome` otherwise (reported).
    refused: AtomicU64,
    /// Error frames other than `rate_limited` (a failure).
    other_errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The first refusal or unexpected close (reported).
    first_note: Mutex<Option<String>>,
}

impl FloodCounts {
    /// An unexpected frame (a failure).
    fn error(&self, what: String) {
        inc(&self.other_errors);
        self.first_error.lock().unwrap().get_or_insert(what);
    }

    /// A refusal or an unexpected close (reported).
    fn note(&self, counter: &AtomicU64, what: String) {
        inc(counter);
        self.first_note.lock().unwrap().get_or_insert(what);
    }

    fn json(&self) -> Value {
        let connections = load(&self.connections);
        json!({
            "connections": connections,
            "reconnects": connections.saturating_sub(1),
            "frames_sent": load(&self.frames),
            "acked": load(&self.acked),
            "rate_limited": load(&self.rate_limited),
            "rate_limited_without_retry_after_ms": load(&self.no_retry_hint),
            "closed_1008": load(&self.closed_1008),
            "closed_otherwise": load(&self.closed_other),
            "refused_429": load(&self.refused_429),
            "refused_at_hello": load(&self.refused_at_hello),
            "refused_otherwise": load(&self.refused),
            "other_errors": load(&self.other_errors),
            "first_error": self.first_error.lock().unwrap().clone(),
            "first_refusal_or_close": self.first_note.lock().unwrap().clone(),
        })
    }
}

/// The flooder's own source address (the chatters connect from 127.0.0.2 onwards), so
/// that the per-address limits see it as one client.
const FLOODER_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 250);

/// The flooder's identity, kept over reconnects and rounds.
#[derive(Default)]
struct Flooder {
    visitor_token: Option<String>,
    conversation: Option<String>,
    next: u64,
}

enum Ending {
    Closed(Option<u16>),
    Dropped,
    Stopped,
}

/// Why a connection did not get to `welcome`.
enum Refusal {
    /// HTTP 429 before the upgrade.
    Status429,
    /// `rate_limited` in answer to `hello`.
    AtHello,
    Other(String),
}

impl Flooder {
    /// A customer past `welcome` (with the token of earlier connections), and its
    /// conversation (started on the first connection).
    async fn connect(&mut self, addr: SocketAddr) -> Result<(Ws, String), Refusal> {
        let mut ws = match ws_connect_from(addr, "/ws/customer", FLOODER_SOURCE).await {
            Ok(ws) => ws,
            Err(e) => {
                let status = e.chain().find_map(|c| match c.downcast_ref() {
                    Some(tungstenite::Error::Http(r)) => Some(r.status().as_u16()),
                    _ => None,
                });
                return Err(match status {
                    Some(429) => Refusal::Status429,
                    _ => Refusal::Other(format!("connect: {e:#}")),
                });
            }
        };
        let hello = match &self.visitor_token {
            Some(t) => json!({"type":"hello","visitor_token":t}),
            None => json!({"type":"hello"}),
        };
        let other = |e: anyhow::Error| Refusal::Other(format!("hello: {e:#}"));
        proto::send(&mut ws, hello).await.map_err(other)?;
        let welcome = loop {
            let v = proto::next_json(&mut ws).await.map_err(other)?;
            match v["type"].as_str() {
                Some("welcome") => break v,
                Some("error") if v["code"] == "rate_limited" => {
                    // Read on to the close, as a client that honours the protocol would.
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.next()).await;
                    return Err(Refusal::AtHello);
                }
                Some("error") => return Err(Refusal::Other(format!("hello answered: {v}"))),
                _ => {}
            }
        };
        if let Some(t) = welcome["visitor_token"].as_str() {
            self.visitor_token = Some(t.to_owned());
        }
        let conversation = match &self.conversation {
            Some(c) => c.clone(),
            None => {
                let c = proto::start(&mut ws).await.map_err(other)?;
                self.conversation = Some(c.clone());
                c
            }
        };
        Ok((ws, conversation))
    }

    /// Once the flood is over: the flooder's messages the gateway stored, read from
    /// its SQLite file (the flooder itself may be refused for a while). An accepted
    /// message is committed even when the connection was closed before its ack got
    /// out, so acks undercount what got through. `None` for a `--target` gateway.
    async fn census(&self, target: &Target) -> Result<Option<u64>> {
        let (Some(file), Some(conversation)) = (target.store_file(), &self.conversation) else {
            return Ok(None);
        };
        // Let the last commits land.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let options = SqliteConnectOptions::new().filename(&file).read_only(true);
        let mut db = SqliteConnection::connect_with(&options)
            .await
            .with_context(|| {
                format!("opening {} to count the flooder's messages", file.display())
            })?;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM events WHERE conversation_id = ? AND kind = 'message'",
        )
        .bind(conversation)
        .fetch_one(&mut db)
        .await?;
        let _ = db.close().await;
        Ok(Some(u64::try_from(n).unwrap_or(0)))
    }

    /// Floods until `stop`, reconnecting at once whenever the connection ends or is
    /// refused (after 10 ms when refused with 429: it ignores `Retry-After`, but is
    /// not a busy loop).
    async fn run(
        mut self,
        addr: SocketAddr,
        counts: Arc<FloodCounts>,
        mut stop: watch::Receiver<bool>,
    ) -> Flooder {
        while !*stop.borrow() {
            let connected = tokio::select! {
                c = self.connect(addr) => c,
                _ = stop.changed() => break,
            };
            let (ws, conversation) = match connected {
                Ok(c) => c,
                Err(refusal) => {
                    match refusal {
                        // Closed at once after its hello: back at once.
                        Refusal::AtHello => {
                            inc(&counts.refused_at_hello);
                            continue;
                        }
                        Refusal::Status429 => inc(&counts.refused_429),
                        Refusal::Other(e) => counts.note(&counts.refused, e),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            inc(&counts.connections);
            match self.flood(ws, &conversation, &counts, &mut stop).await {
                Ending::Closed(Some(1008)) => inc(&counts.closed_1008),
                Ending::Closed(code) => counts.note(
                    &counts.closed_other,
                    format!("closed with {code:?} (expected 1008)"),
                ),
                Ending::Dropped => counts.note(
                    &counts.closed_other,
                    "connection dropped without a close frame".into(),
                ),
                Ending::Stopped => break,
            }
        }
        self
    }

    /// One connection: write message frames as fast as the socket takes them (no
    /// waiting for acks) while reading what comes back, until the gateway closes it.
    async fn flood(
        &mut self,
        ws: Ws,
        conversation: &str,
        counts: &FloodCounts,
        stop: &mut watch::Receiver<bool>,
    ) -> Ending {
        let (mut sink, mut stream) = ws.split();
        let next = &mut self.next;
        let ending = {
            let writer = async {
                loop {
                    *next += 1;
                    let n = *next;
                    let frame = format!(
                        r#"{{"type":"message","id":"f{n}","conversation_id":"{conversation}","text":"flood {n}"}}"#
                    );
                    if sink.feed(Message::text(frame)).await.is_err() {
                        break;
                    }
                    inc(&counts.frames);
                    if n % 32 == 0 {
                        if sink.flush().await.is_err() {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                }
            };
            let reader = read_until_end(&mut stream, counts);
            tokio::pin!(writer, reader);
            tokio::select! {
                e = &mut reader => e,
                _ = &mut writer => tokio::time::timeout(Duration::from_secs(2), &mut reader)
                    .await
                    .unwrap_or(Ending::Dropped),
                _ = stop.changed() => Ending::Stopped,
            }
        };
        match ending {
            Ending::Stopped => {
                // Stop writing; collect the acks still coming, then close.
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    read_until_end(&mut stream, counts),
                )
                .await;
            }
            _ => {
                // Send the close reply tungstenite queued, so the gateway lets go of
                // this connection's place at once.
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.flush()).await;
            }
        }
        ending
    }
}

async fn read_until_end(stream: &mut SplitStream<Ws>, counts: &FloodCounts) -> Ending {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                let Ok(f) = serde_json::from_str::<In>(&t) else {
                    counts.error(format!("not JSON: {t}"));
                    continue;
                };
                match f.kind() {
                    "ack" if f.id.as_deref().is_some_and(|id| id.starts_with('f')) => {
                        inc(&counts.acked)
                    }
                    "error" if f.code.as_deref() == Some("rate_limited") => {
                        inc(&counts.rate_limited);
                        if f.retry_after_ms.is_none_or(|ms| ms == 0) {
                            inc(&counts.no_retry_hint);
                        }
                    }
                    "error" => counts.error(t.to_string()),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(c))) => return Ending::Closed(c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Ending::Dropped,
        }
    }
}

pub async fn run(args: &FloodArgs) -> Result<Outcome> {
    args.check_rate()?;
    if args.common.sources > 200 {
        bail!("--sources: at most 200 (the flooder connects from {FLOODER_SOURCE})");
    }
    let plan = Plan {
        chat_agents: args.conversations.div_ceil(args.per_agent.max(1) as usize),
        chat_capacity: args.per_agent,
        abuse_limits: true,
        address_limit: !args.no_address_limit,
        no_cooldown: args.no_cooldown,
        ..Plan::default()
    };
    target::around(&args.common, &plan, async |target| {
        flood_on(target, args).await
    })
    .await
}

/// One phase's others' figures, the server's CPU over it, and the flooder's counts.
struct Measured {
    result: PhaseResult,
    cpu_percent: Option<f64>,
    flood: Option<Value>,
}

impl Measured {
    fn ack(&self, q: &str) -> f64 {
        self.result.report["ack_latency"][q].as_f64().unwrap_or(0.0)
    }

    fn json(&self) -> Value {
        let mut v = self.result.report.clone();
        v["server_cpu_percent"] = json!(self.cpu_percent.map(r1));
        if let Some(f) = &self.flood {
            v["flooder"] = f.clone();
        }
        v
    }
}

async fn measure(
    session: &mut Session,
    target: &Target,
    args: &FloodArgs,
    label: &str,
) -> Measured {
    let cpu0 = target.cpu();
    let t0 = Instant::now();
    let result = session.phase(args.rate, args.duration, label).await;
    let cpu_percent = match (cpu0, target.cpu()) {
        (Some(a), Some(b)) => Some((b - a) / t0.elapsed().as_secs_f64() * 100.0),
        _ => None,
    };
    Measured {
        result,
        cpu_percent,
        flood: None,
    }
}

async fn flood_on(target: &Target, args: &FloodArgs) -> Result<Outcome> {
    crate::PAD.store(args.size.saturating_sub(30), Ordering::Relaxed);
    let mut session =
        Session::open(target, args.conversations, args.per_agent, 0, args.drain).await?;
    note(format!(
        "flood: {} conversations at {:.0} msg/s under the default abuse limits; {} rounds of {} s normal, {} s with one customer flooding",
        session.conversations, args.rate, args.rounds, args.duration, args.duration
    ));
    let rss_max = Arc::new(AtomicU64::new(0));
    let sampler = {
        let rss_max = rss_max.clone();
        let pid = target.pid;
        tokio::spawn(async move {
            loop {
                if let Some(r) = pid.and_then(crate::common::rss_bytes) {
                    rss_max.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut flooder = Flooder::default();
    let mut rounds: Vec<(Measured, Measured)> = Vec::new();
    let mut totals = FloodTotals::default();
    let mut stored_before = 0;
    for _ in 0..args.rounds.max(1) {
        let normal = measure(&mut session, target, args, "normal").await;
        let counts = Arc::new(FloodCounts::default());
        let (stop, stopped) = watch::channel(false);
        // The flooder runs on a thread and runtime of its own, as if on another
        // machine: its writing does not delay the chatters' tasks in this process
        // (it still takes CPU from the same cores).
        let task = {
            let (addr, counts) = (target.addr, counts.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the flooder's runtime");
                runtime.block_on(flooder.run(addr, counts, stopped))
            })
        };
        let mut flood = measure(&mut session, target, args, "flood").await;
        let _ = stop.send(true);
        flooder = match tokio::task::spawn_blocking(move || task.join()).await {
            Ok(Ok(f)) => f,
            _ => bail!("the flooder's thread failed"),
        };
        let stored = flooder
            .census(target)
            .await?
            .map(|n| n.saturating_sub(stored_before));
        stored_before += stored.unwrap_or(0);
        totals.add(&counts, stored.unwrap_or(0));
        let mut report = counts.json();
        report["messages_stored"] = json!(stored);
        flood.flood = Some(report);
        rounds.push((normal, flood));
    }
    sampler.abort();
    let rss_peak = rss_max.load(Ordering::Relaxed);
    let rss_end = target.rss();
    let mut failures = session.finish().await;
    failures.extend(totals.failures());

    let limits = RateLimitsConfig::default();
    let ratio = |flood: f64, normal: f64| {
        if normal > 0.0 {
            flood / normal
        } else {
            f64::NAN
        }
    };
    let mut summary = String::new();
    let mut met = 0;
    let mut round_json = Vec::new();
    for (i, (n, f)) in rounds.iter().enumerate() {
        let deliver = ratio(f.result.deliver_p99, n.result.deliver_p99);
        let ack = ratio(f.result.ack_p99, n.result.ack_p99);
        let ok = deliver <= args.goal && ack <= args.goal;
        met += usize::from(ok);
        let cpu = |m: &Measured| m.cpu_percent.map_or("?".into(), |c| format!("{c:.0}%"));
        summary.push_str(&format!(
            "round {}: others' delivery p50/p99/p99.9 {:.2}/{:.2}/{:.2} ms normal, {:.2}/{:.2}/{:.2} ms flood (p99 x{deliver:.2}); \
             ack {:.2}/{:.2}/{:.2} ms normal, {:.2}/{:.2}/{:.2} ms flood (p99 x{ack:.2}); goal x{}: {}\n  \
             {} of {} delivered in the flood; server CPU {} normal, {} flood\n  \
             flooder: {}\n",
            i + 1,
            n.result.deliver_p50,
            n.result.deliver_p99,
            n.result.deliver_p999,
            f.result.deliver_p50,
            f.result.deliver_p99,
            f.result.deliver_p999,
            n.ack("p50_ms"),
            n.result.ack_p99,
            n.ack("p999_ms"),
            f.ack("p50_ms"),
            f.result.ack_p99,
            f.ack("p999_ms"),
            args.goal,
            if ok { "met" } else { "not met" },
            f.result.delivered,
            f.result.sent,
            cpu(n),
            cpu(f),
            flood_line(f.flood.as_ref().unwrap_or(&Value::Null)),
        ));
        round_json.push(json!({
            "normal": n.json(),
            "flood": f.json(),
            "delivery_p99_ratio": r2(deliver),
            "ack_p99_ratio": r2(ack),
            "goal_met": ok,
        }));
    }
    // Every round's phases pooled: one stall (an fsync, a neighbour's build) sets a
    // 10 s phase's p99, so single rounds swing both ways; pooled, it weighs less.
    let pooled = |flood: bool, ack: bool| -> f64 {
        let mut all = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        for (n, f) in &rounds {
            let r = if flood { &f.result } else { &n.result };
            let _ = all.add(if ack { &r.ack_hist } else { &r.deliver_hist });
        }
        if all.is_empty() {
            0.0
        } else {
            all.value_at_quantile(0.99) as f64 / 1000.0
        }
    };
    let (deliver_n, deliver_f) = (pooled(false, false), pooled(true, false));
    let (ack_n, ack_f) = (pooled(false, true), pooled(true, true));
    let (deliver_ratio, ack_ratio) = (ratio(deliver_f, deliver_n), ratio(ack_f, ack_n));
    let pooled_met = deliver_ratio <= args.goal && ack_ratio <= args.goal;
    summary.push_str(&format!(
        "all rounds pooled: others' delivery p99 {deliver_n:.2} ms normal, {deliver_f:.2} ms flood (x{deliver_ratio:.2}); \
         ack p99 {ack_n:.2} ms normal, {ack_f:.2} ms flood (x{ack_ratio:.2}); goal x{}: {}\n",
        args.goal,
        if pooled_met { "met" } else { "not met" },
    ));
    let mib = |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    // What a customer's frame limit lets through in one phase: one burst, then the rate.
    let one_customer = f64::from(limits.customer_frame_burst)
        + f64::from(limits.customer_frames_per_minute) * args.duration / 60.0;
    summary.push_str(&format!(
        "goal (others' delivery and ack p99 during the flood within x{} of normal): met in {met} of {} rounds\n\
         flooder in all: {} messages stored ({} acked) over {} connections; one customer's frame limit allows about {:.0} a phase ({} at once, {} a minute)\n\
         server RSS peak {}, end {}\n",
        args.goal,
        rounds.len(),
        totals.stored,
        totals.acked,
        totals.connections,
        one_customer,
        limits.customer_frame_burst,
        limits.customer_frames_per_minute,
        mib(Some(rss_peak)),
        mib(rss_end),
    ));
    Ok(Outcome {
        name: "flood".into(),
        report: json!({
            "conversations": session_conversations(args),
            "rate": args.rate,
            "duration_s": args.duration,
            "goal_ratio": args.goal,
            "rounds": round_json,
            "goal_met_rounds": met,
            "pooled": {
                "delivery_p99_ms": {"normal": deliver_n, "flood": deliver_f, "ratio": r2(deliver_ratio)},
                "ack_p99_ms": {"normal": ack_n, "flood": ack_f, "ratio": r2(ack_ratio)},
                "goal_met": pooled_met,
            },
            "one_customer_limit_per_phase": one_customer,
            "rss_peak_bytes": rss_peak,
            "rss_end_bytes": rss_end,
        }),
        summary,
        failures,
    })
}

fn session_conversations(args: &FloodArgs) -> usize {
    let per_agent = args.per_agent.max(1) as usize;
    args.conversations.div_ceil(per_agent) * per_agent
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn flood_line(f: &Value) -> String {
    format!(
        "{} frames sent, {} rate_limited ({} without retry_after_ms), {} closes 1008 ({} otherwise), {} connections after the first, refused: {} with 429, {} at hello ({} otherwise); {} messages acked, {} stored",
        f["frames_sent"],
        f["rate_limited"],
        f["rate_limited_without_retry_after_ms"],
        f["closed_1008"],
        f["closed_otherwise"],
        f["reconnects"],
        f["refused_429"],
        f["refused_at_hello"],
        f["refused_otherwise"],
        f["acked"],
        f["messages_stored"],
    )
}

/// The flooder's counts over every flood phase, for the correctness check.
#[derive(Default)]
struct FloodTotals {
    connections: u64,
    acked: u64,
    stored: u64,
    rate_limited: u64,
    no_retry_hint: u64,
    closed_1008: u64,
    other_errors: u64,
    first_error: Option<String>,
    first_note: Option<String>,
}

impl FloodTotals {
    fn add(&mut self, c: &FloodCounts, stored: u64) {
        self.connections += load(&c.connections);
        self.acked += load(&c.acked);
        self.stored += stored;
        self.rate_limited += load(&c.rate_limited);
        self.no_retry_hint += load(&c.no_retry_hint);
        self.closed_1008 += load(&c.closed_1008);
        self.other_errors += load(&c.other_errors);
        if self.first_error.is_none() {
            self.first_error = c.first_error.lock().unwrap().clone();
        }
        if self.first_note.is_none() {
            self.first_note = c.first_note.lock().unwrap().clone();
        }
    }

    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.connections == 0 {
            failures.push(format!(
                "the flooder never got past hello: {}",
                self.first_note.clone().unwrap_or_default()
            ));
        }
        if self.rate_limited == 0 {
            failures.push("the flooder was never rate-limited".into());
        }
        if self.no_retry_hint > 0 {
            failures.push(format!(
                "{} rate_limited errors without retry_after_ms",
                self.no_retry_hint
            ));
        }
        if self.closed_1008 == 0 {
            failures.push("the flooder was never closed with 1008".into());
        }
        if self.other_errors > 0 {
            failures.push(format!(
                "the flooder got {} unexpected error frames, first: {}",
                self.other_errors,
                self.first_error.clone().unwrap_or_default()
            ));
        }
        failures
    }
}

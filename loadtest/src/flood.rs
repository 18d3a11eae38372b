//! `flood`: ordinary conversations chat at a steady rate under the gateway's default
//! abuse limits, phase "normal"; then the same while one more customer sends message
//! frames as fast as its socket allows and, whenever the gateway closes it (1008 after
//! repeated `rate_limited`), reconnects at once with its visitor token and floods
//! again, phase "flood". `--rounds` repeats the pair (normal, flood, normal, flood...),
//! so the two are interleaved on a noisy machine. The others' latency in the two
//! phases is compared: the goal is their p99 within 20% of normal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use warmline::config::RateLimitsConfig;

use crate::chat::{PhaseResult, Session};
use crate::common::{Outcome, Ws, inc, load, note, r1, ws_connect};
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
    /// Connections that did not get to `welcome` (connect or hello refused).
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
            "refused_at_connect_or_hello": load(&self.refused),
            "other_errors": load(&self.other_errors),
            "first_error": self.first_error.lock().unwrap().clone(),
            "first_refusal_or_close": self.first_note.lock().unwrap().clone(),
        })
    }
}

/// The flooder's identity, kept over reconnects and rounds.
#[derive(Default)]
struct Flooder {
    visitor_token: Option<String>,
    conversation: Option<String>,
    next: u64,
    /// The conversation's `last_seq` in the latest `welcome`: how many of the
    /// flooder's messages the gateway took (its only transcript events; nobody
    /// accepts it), whether or not their acks got out before the close.
    last_seq: u64,
}

enum Ending {
    Closed(Option<u16>),
    Dropped,
    Stopped,
}

impl Flooder {
    /// A customer past `welcome` (with the token of earlier connections), and its
    /// conversation (started on the first connection).
    async fn connect(&mut self, addr: SocketAddr) -> Result<(Ws, String)> {
        let mut ws = ws_connect(addr, "/ws/customer").await?;
        let hello = match &self.visitor_token {
            Some(t) => json!({"type":"hello","visitor_token":t}),
            None => json!({"type":"hello"}),
        };
        proto::send(&mut ws, hello).await?;
        let welcome = proto::until(&mut ws, "welcome").await?;
        if let Some(t) = welcome["visitor_token"].as_str() {
            self.visitor_token = Some(t.to_owned());
        }
        let open = welcome["open_conversations"].as_array();
        if let Some(c) = open.into_iter().flatten().find(|c| {
            self.conversation.is_some()
                && c["conversation_id"].as_str() == self.conversation.as_deref()
        }) {
            self.last_seq = c["last_seq"].as_u64().unwrap_or(0);
        }
        let conversation = match &self.conversation {
            Some(c) => c.clone(),
            None => {
                let c = proto::start(&mut ws).await?;
                self.conversation = Some(c.clone());
                c
            }
        };
        Ok((ws, conversation))
    }

    /// Once the flood is over: the messages stored so far (a fresh `hello`).
    async fn census(&mut self, addr: SocketAddr) -> Result<u64> {
        // Let the last commits land.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut ws, _) = self.connect(addr).await?;
        let _ = ws.close(None).await;
        Ok(self.last_seq)
    }

    /// Floods until `stop`, reconnecting at once whenever the connection ends.
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
                Err(e) => {
                    counts.note(&counts.refused, format!("connect/hello: {e:#}"));
                    // Not a busy loop if the gateway refuses every connection.
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
    let plan = Plan {
        chat_agents: args.conversations.div_ceil(args.per_agent.max(1) as usize),
        chat_capacity: args.per_agent,
        abuse_limits: true,
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
        let task = tokio::spawn(flooder.run(target.addr, counts.clone(), stopped));
        let mut flood = measure(&mut session, target, args, "flood").await;
        let _ = stop.send(true);
        flooder = match task.await {
            Ok(f) => f,
            Err(e) => bail!("the flooder failed: {e}"),
        };
        let stored = flooder
            .census(target.addr)
            .await?
            .saturating_sub(stored_before);
        stored_before += stored;
        totals.add(&counts, stored);
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
        "{} frames sent, {} rate_limited ({} without retry_after_ms), {} closes 1008 ({} otherwise), {} reconnects ({} refused), {} messages acked, {} stored",
        f["frames_sent"],
        f["rate_limited"],
        f["rate_limited_without_retry_after_ms"],
        f["closed_1008"],
        f["closed_otherwise"],
        f["reconnects"],
        f["refused_at_connect_or_hello"],
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

//! `chat` (and `slow`): P conversations, each customer and agent sending messages on a
//! schedule fixed in advance (open loop). Latency is measured from the scheduled send
//! time, so a server that falls behind shows it. Works against Warmline and the
//! baseline relays (which pair /pair/K/a with /pair/K/b and ack in order).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use futures_util::{SinkExt, StreamExt, stream};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{
    Hist, Outcome, Progress, Ws, at_ns, inc, load, note, now_ns, r1, sleep_opt, ws_connect,
};
use crate::proto::{self, In};
use crate::target::{self, Common, Plan, Target};

pub const MAX_PHASES: usize = 24;

#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    /// Concurrent conversations (each a customer and an agent connection).
    #[arg(long, default_value_t = 200)]
    pub conversations: usize,
    /// Conversations per agent (Warmline's chat capacity; the relays use 1).
    #[arg(long, default_value_t = 1)]
    pub per_agent: u32,
    /// Offered messages per second in all, half each way.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Raise the rate step by step (x --step) until the server falls behind, and
    /// report the highest rate it sustained.
    #[arg(long)]
    pub find_max: bool,
    #[arg(long, default_value_t = 1.5)]
    pub step: f64,
    #[arg(long, default_value_t = 200_000.0)]
    pub max_rate: f64,
    /// A step falls behind when delivery p99 exceeds this many milliseconds, or
    /// delivered/s in its window is under 95% of the offered rate.
    #[arg(long, default_value_t = 250.0)]
    pub slo_ms: f64,
    /// After --find-max: one more step at this fraction of the highest sustained rate.
    #[arg(long)]
    pub then_fraction: Option<f64>,
    /// Message text length in bytes.
    #[arg(long, default_value_t = 80)]
    pub size: usize,
    /// Seconds to wait for stragglers after a step.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    #[command(flatten)]
    pub common: Common,
}

impl Default for ChatArgs {
    fn default() -> Self {
        ChatArgs {
            conversations: 200,
            per_agent: 1,
            rate: 2000.0,
            duration: 10.0,
            find_max: false,
            step: 1.5,
            max_rate: 200_000.0,
            slo_ms: 250.0,
            then_fraction: None,
            size: 80,
            drain: 10.0,
            common: Common::default(),
        }
    }
}

#[derive(Default)]
pub struct GroupStats {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    pub in_window: AtomicU64,
    pub dups: AtomicU64,
    pub deliver: Hist,
    pub ack: Hist,
}

#[derive(Default)]
pub struct PhaseStats {
    pub end_ns: AtomicU64,
    /// [0]: ordinary conversations, [1]: those of slow agents.
    pub groups: [GroupStats; 2],
}

#[derive(Default)]
pub struct Shared {
    pub phases: Vec<PhaseStats>,
    pub errors: AtomicU64,
    pub disconnects: AtomicU64,
    pub first_error: std::sync::Mutex<Option<String>>,
    /// When slow agents stop reading (ns; u64::MAX: never).
    pub slow_at: AtomicU64,
}

impl Shared {
    fn error(&self, what: String) {
        inc(&self.errors);
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(what);
        }
    }

    fn totals(&self, group: usize) -> (u64, u64, u64, u64) {
        let mut t = (0, 0, 0, 0);
        for p in &self.phases {
            let g = &p.groups[group];
            t.0 += load(&g.sent);
            t.1 += load(&g.acked);
            t.2 += load(&g.delivered);
            t.3 += load(&g.dups);
        }
        t
    }
}

#[derive(Clone, Copy, Debug)]
enum Ctl {
    Idle,
    Phase {
        idx: usize,
        start_ns: u64,
        end_ns: u64,
        rate_per_conv_dir: f64,
    },
    Stop,
}

struct Conn {
    ws: Ws,
    /// 0: customer side (sends towards the agent), 1: agent side.
    dir: u8,
    convs: Vec<(usize, String)>,
    group: usize,
    fifo_acks: bool,
    slow: bool,
    /// A Warmline customer: ends its conversation when the run stops.
    ends: bool,
}

/// Open conversations under load: connections and their tasks.
pub struct Session {
    pub shared: Arc<Shared>,
    ctl: watch::Sender<Ctl>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    next_phase: usize,
    pub conversations: usize,
    pub connections: usize,
    drain: f64,
}

#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub offered: f64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub delivered_per_s: f64,
    pub dups: u64,
    pub drained: bool,
    pub deliver_p50: f64,
    pub deliver_p99: f64,
    pub deliver_p999: f64,
    pub ack_p99: f64,
    pub report: Value,
    /// The latency histograms (microseconds), to pool phases.
    pub deliver_hist: Histogram<u64>,
    pub ack_hist: Histogram<u64>,
}

impl Session {
    /// Connects both sides of `conversations` conversations (rounded up to whole
    /// agents); `slow_agents` of the agents will stop reading when told.
    pub async fn open(
        target: &Target,
        conversations: usize,
        per_agent: u32,
        slow_agents: usize,
        drain: f64,
    ) -> Result<Session> {
        let per_agent = if target.is_warmline() {
            per_agent.max(1) as usize
        } else {
            1
        };
        let agents = conversations.div_ceil(per_agent);
        let conversations = agents * per_agent;
        anyhow::ensure!(
            conversations + agents <= 18_000,
            "{} connections would pass the open-file cap of one process (20,000): use fewer conversations",
            conversations + agents
        );
        let mut conns: Vec<Conn> = Vec::new();
        let fifo = !target.is_warmline();
        if target.is_warmline() {
            // Agents first: they accept while customers start.
            let agent_ws: Vec<Result<(usize, Ws)>> = stream::iter(0..agents)
                .map(|i| async move {
                    let id = format!("c{i}");
                    let (ws, agent) = proto::agent(target, &id).await?;
                    proto::check_agent(&id, &agent, "chat", per_agent)?;
                    Ok((i, ws))
                })
                .buffer_unordered(32)
                .collect()
                .await;
            let mut accepting = Vec::new();
            for r in agent_ws {
                let (i, mut ws) = r?;
                accepting.push(tokio::spawn(async move {
                    let got = proto::accept(&mut ws, per_agent).await?;
                    let ids: Vec<String> = got
                        .iter()
                        .map(|c| c["conversation_id"].as_str().unwrap_or("").to_owned())
                        .collect();
                    anyhow::Ok((i, ws, ids))
                }));
            }
            let customers: Vec<Result<(usize, Ws, String)>> = stream::iter(0..conversations)
                .map(|k| async move {
                    let mut ws = proto::customer(target).await?;
                    let cid = proto::start(&mut ws).await?;
                    Ok((k, ws, cid))
                })
                .buffer_unordered(64)
                .collect()
                .await;
            let mut index: HashMap<String, usize> = HashMap::new();
            let mut customer_conns = Vec::new();
            for r in customers {
                let (k, ws, cid) = r?;
                index.insert(cid.clone(), k);
                customer_conns.push((k, ws, cid));
            }
            let mut agent_of: HashMap<usize, usize> = HashMap::new();
            for t in accepting {
                let (i, ws, ids) = tokio::time::timeout(Duration::from_secs(60), t)
                    .await
                    .context("agents did not get their conversations in time")???;
                let convs = ids
                    .into_iter()
                    .map(|cid| match index.get(&cid) {
                        Some(&k) => Ok((k, cid)),
                        None => Err(anyhow::anyhow!(
                            "agent c{i} was given conversation {cid}, which this run did not start (left open on the target by an earlier run?)"
                        )),
                    })
                    .collect::<Result<Vec<(usize, String)>>>()?;
                for (k, _) in &convs {
                    agent_of.insert(*k, i);
                }
                let slow = i < slow_agents;
                conns.push(Conn {
                    ws,
                    dir: 1,
                    convs,
                    group: usize::from(slow),
                    fifo_acks: fifo,
                    slow,
                    ends: false,
                });
            }
            for (k, ws, cid) in customer_conns {
                let group = usize::from(agent_of.get(&k).is_some_and(|a| *a < slow_agents));
                conns.push(Conn {
                    ws,
                    dir: 0,
                    convs: vec![(k, cid)],
                    group,
                    fifo_acks: fifo,
                    slow: false,
                    ends: true,
                });
            }
        } else {
            let pairs: Vec<Result<(usize, Ws, Ws)>> = stream::iter(0..conversations)
                .map(|k| async move {
                    let a = ws_connect(target.addr, &format!("/pair/c{k}/a")).await?;
                    let b = ws_connect(target.addr, &format!("/pair/c{k}/b")).await?;
                    Ok((k, a, b))
                })
                .buffer_unordered(64)
                .collect()
                .await;
            for r in pairs {
                let (k, a, b) = r?;
                let slow = k < slow_agents;
                for (dir, ws) in [(0u8, a), (1u8, b)] {
                    conns.push(Conn {
                        ws,
                        dir,
                        convs: vec![(k, k.to_string())],
                        group: usize::from(slow),
                        fifo_acks: true,
                        slow: slow && dir == 1,
                        ends: false,
                    });
                }
            }
        }
        let shared = Arc::new(Shared {
            phases: (0..MAX_PHASES).map(|_| PhaseStats::default()).collect(),
            slow_at: AtomicU64::new(u64::MAX),
            ..Shared::default()
        });
        let (ctl, rx) = watch::channel(Ctl::Idle);
        let connections = conns.len();
        let tasks = conns
            .into_iter()
            .map(|c| tokio::spawn(conn_task(c, rx.clone(), shared.clone())))
            .collect();
        Ok(Session {
            shared,
            ctl,
            tasks,
            next_phase: 0,
            conversations,
            connections,
            drain,
        })
    }

    /// One step at `rate` messages per second for `duration` seconds, then a wait
    /// for stragglers.
    pub async fn phase(&mut self, rate: f64, duration: f64, label: &str) -> PhaseResult {
        let idx = self.next_phase.min(MAX_PHASES - 1);
        self.next_phase += 1;
        let start_ns = now_ns() + 200_000_000;
        let end_ns = start_ns + (duration * 1e9) as u64;
        self.shared.phases[idx]
            .end_ns
            .store(end_ns, Ordering::Relaxed);
        let rate_per_conv_dir = rate / self.conversations as f64 / 2.0;
        let _ = self.ctl.send(Ctl::Phase {
            idx,
            start_ns,
            end_ns,
            rate_per_conv_dir,
        });
        let shared = self.shared.clone();
        let progress = Progress::start(label, move || {
            let g = &shared.phases[idx].groups[0];
            let s = load(&g.sent);
            let d = load(&g.delivered);
            format!(
                "offered {rate:.0}/s: sent {s} acked {} delivered {d} (in flight {}) errors {} | delivery {}",
                load(&g.acked),
                s.saturating_sub(d),
                load(&shared.errors),
                g.deliver.short()
            )
        });
        tokio::time::sleep_until(at_ns(end_ns)).await;
        let drained = self.wait_drained(idx, self.drain).await;
        drop(progress);
        let _ = self.ctl.send(Ctl::Idle);
        let g = &self.shared.phases[idx].groups[0];
        let delivered = load(&g.delivered);
        let result = PhaseResult {
            offered: rate,
            sent: load(&g.sent),
            acked: load(&g.acked),
            delivered,
            delivered_per_s: load(&g.in_window) as f64 / duration,
            dups: load(&g.dups),
            drained,
            deliver_p50: g.deliver.quantile_ms(0.5),
            deliver_p99: g.deliver.quantile_ms(0.99),
            deliver_p999: g.deliver.quantile_ms(0.999),
            ack_p99: g.ack.quantile_ms(0.99),
            report: Value::Null,
            deliver_hist: g.deliver.snapshot(),
            ack_hist: g.ack.snapshot(),
        };
        let mut report = json!({
            "offered_per_s": rate,
            "duration_s": duration,
            "sent": result.sent,
            "acked": result.acked,
            "delivered": result.delivered,
            "duplicates": result.dups,
            "delivered_per_s_in_window": r1(result.delivered_per_s),
            "drained": drained,
            "delivery_latency": g.deliver.summary(),
            "ack_latency": g.ack.summary(),
        });
        let slow = &self.shared.phases[idx].groups[1];
        if load(&slow.sent) > 0 {
            report["slow_conversations"] = json!({
                "sent": load(&slow.sent),
                "acked": load(&slow.acked),
                "delivered": load(&slow.delivered),
                "ack_latency": slow.ack.summary(),
            });
        }
        PhaseResult { report, ..result }
    }

    async fn wait_drained(&self, idx: usize, timeout: f64) -> bool {
        let deadline = now_ns() + (timeout * 1e9) as u64;
        loop {
            let p = &self.shared.phases[idx];
            let g = &p.groups[0];
            let s = &p.groups[1];
            let sent = load(&g.sent);
            if load(&g.acked) >= sent
                && load(&g.delivered) >= sent
                && load(&s.acked) >= load(&s.sent)
            {
                return true;
            }
            if now_ns() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Slow agents stop reading now.
    pub fn go_slow(&self) {
        self.shared.slow_at.store(now_ns(), Ordering::Relaxed);
    }

    /// Waits for everything still in flight, then closes: the correctness check
    /// (ordinary conversations: every message acked and delivered once; slow
    /// agents' customers: every message acked).
    pub async fn finish(self) -> Vec<String> {
        let deadline = now_ns() + (self.drain * 1e9) as u64;
        loop {
            let (s, a, d, _) = self.shared.totals(0);
            let (ss, sa, _, _) = self.shared.totals(1);
            if (a >= s && d >= s && sa >= ss) || now_ns() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.ctl.send(Ctl::Stop);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let mut failures = Vec::new();
        let (s, a, d, dups) = self.shared.totals(0);
        if a != s {
            failures.push(format!("{} of {s} messages not acked", s.saturating_sub(a)));
        }
        if d < s {
            failures.push(format!("{} of {s} messages lost (not delivered)", s - d));
        }
        if dups > 0 {
            failures.push(format!("{dups} messages delivered twice or out of order"));
        }
        let (ss, sa, _, _) = self.shared.totals(1);
        if sa != ss {
            failures.push(format!(
                "{} of {ss} messages to slow agents not acked",
                ss.saturating_sub(sa)
            ));
        }
        let errors = load(&self.shared.errors);
        if errors > 0 {
            failures.push(format!(
                "{errors} error frames, first: {}",
                self.shared
                    .first_error
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_default()
            ));
        }
        let disconnects = load(&self.shared.disconnects);
        if disconnects > 0 {
            failures.push(format!("{disconnects} connections dropped during the run"));
        }
        failures
    }
}

async fn conn_task(c: Conn, mut ctl: watch::Receiver<Ctl>, shared: Arc<Shared>) {
    let Conn {
        mut ws,
        dir,
        convs,
        group,
        fifo_acks,
        slow,
        ends,
    } = c;
    let n = convs.len().max(1);
    let mut ks = vec![0u64; n];
    let mut last_seen: HashMap<usize, u64> = HashMap::new();
    let mut pending: VecDeque<(u64, u64, usize)> = VecDeque::new();
    let mut phase: Option<(usize, u64, u64)> = None; // idx, end, interval
    let mut next_ns = u64::MAX;
    let mut rr = 0usize;
    let pad = "x".repeat(crate::PAD.load(Ordering::Relaxed));
    loop {
        let mut due = match phase {
            Some((_, end, _)) if next_ns < end => Some(next_ns),
            _ => None,
        };
        if slow {
            let at = shared.slow_at.load(Ordering::Relaxed);
            if at != u64::MAX && now_ns() >= at {
                // Stop reading and writing; hold the socket until told to stop.
                loop {
                    if ctl.changed().await.is_err() || matches!(*ctl.borrow(), Ctl::Stop) {
                        return;
                    }
                }
            }
            if at != u64::MAX {
                due = Some(due.map_or(at, |d| d.min(at)));
            }
        }
        tokio::select! {
            r = ctl.changed() => {
                if r.is_err() { break; }
                let v = *ctl.borrow_and_update();
                match v {
                    Ctl::Idle => phase = None,
                    Ctl::Stop => break,
                    Ctl::Phase { idx, start_ns, end_ns, rate_per_conv_dir } => {
                        let interval = (1e9 / (rate_per_conv_dir * n as f64)).max(1.0) as u64;
                        phase = Some((idx, end_ns, interval));
                        next_ns = start_ns + rand::random_range(0..interval);
                    }
                }
            }
            _ = sleep_opt(due) => {
                let Some((idx, end, interval)) = phase else { continue };
                // Send every message that is due (a burst when behind schedule).
                let now = now_ns();
                let mut burst = 0;
                let mut failed = false;
                while next_ns < end && next_ns <= now && burst < 64 {
                    burst += 1;
                    let i = rr % n;
                    rr += 1;
                    let (conv, cid) = &convs[i];
                    ks[i] += 1;
                    let k = ks[i];
                    let id = ((*conv as u64) << 32) | k;
                    let sched = next_ns;
                    next_ns += interval;
                    let text = format!(
                        r#"{{"type":"message","id":"{id}","conversation_id":"{cid}","client_msg_id":"{id}","text":"lt {conv} {dir} {k} {idx} {sched} {pad}"}}"#
                    );
                    pending.push_back((id, sched, idx));
                    inc(&shared.phases[idx].groups[group].sent);
                    if ws.feed(Message::text(text)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if burst > 0 && !failed && ws.flush().await.is_err() {
                    failed = true;
                }
                if failed {
                    inc(&shared.disconnects);
                    break;
                }
            }
            m = ws.next() => {
                match m {
                    Some(Ok(Message::Text(t))) => {
                        let Ok(f) = serde_json::from_str::<In>(&t) else {
                            shared.error(format!("not JSON: {t}"));
                            continue;
                        };
                        match f.kind() {
                            "ack" => {
                                let id = f.id.as_deref().and_then(|s| s.parse::<u64>().ok());
                                let pos = match id {
                                    Some(id) if !fifo_acks => pending.iter().position(|p| p.0 == id),
                                    _ => if pending.is_empty() { None } else { Some(0) },
                                };
                                if let Some(pos) = pos && let Some((_, sched, idx)) = pending.remove(pos) {
                                    let g = &shared.phases[idx].groups[group];
                                    inc(&g.acked);
                                    g.ack.since(sched);
                                }
                            }
                            "message" => {
                                let Some(text) = f.text.as_deref() else { continue };
                                let Some(rest) = text.strip_prefix("lt ") else { continue };
                                let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap_or(0));
                                let (conv, from, k, idx, sched) = (
                                    it.next().unwrap_or(0) as usize,
                                    it.next().unwrap_or(0) as u8,
                                    it.next().unwrap_or(0),
                                    (it.next().unwrap_or(0) as usize).min(MAX_PHASES - 1),
                                    it.next().unwrap_or(0),
                                );
                                if from == dir { continue; }
                                let p = &shared.phases[idx];
                                let g = &p.groups[group];
                                let last = last_seen.entry(conv).or_insert(0);
                                if k <= *last {
                                    inc(&g.dups);
                                } else {
                                    *last = k;
                                    inc(&g.delivered);
                                    let now = now_ns();
                                    if now <= p.end_ns.load(Ordering::Relaxed) {
                                        inc(&g.in_window);
                                    }
                                    g.deliver.record_ns(now.saturating_sub(sched));
                                }
                            }
                            "error" => shared.error(t.to_string()),
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(c))) => {
                        shared.error(format!("closed by the server: {c:?}"));
                        inc(&shared.disconnects);
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        inc(&shared.disconnects);
                        break;
                    }
                }
            }
        }
    }
    if ends {
        end_conversations(&mut ws, &convs).await;
    }
    let _ = ws.close(None).await;
}

/// Ends a customer's conversations and waits (briefly) for the answers, so that the
/// server keeps nothing open: on a --target the next run's agents would come back
/// holding them.
async fn end_conversations(ws: &mut Ws, convs: &[(usize, String)]) {
    for (_, cid) in convs {
        let end = json!({"type":"end","id":"end","conversation_id":cid});
        if proto::send(ws, end).await.is_err() {
            return;
        }
    }
    let mut waiting = convs.len();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while waiting > 0 {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if serde_json::from_str::<In>(&t).is_ok_and(|f| f.id.as_deref() == Some("end"))
                    {
                        waiting -= 1;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
}

/// The `chat` scenario: a fixed rate, or a search for the highest sustained rate
/// (and optionally latency at a fraction of it).
pub async fn run(args: &ChatArgs) -> Result<Outcome> {
    let plan = Plan {
        chat_agents: args.conversations.div_ceil(args.per_agent.max(1) as usize),
        chat_capacity: args.per_agent,
        ..Plan::default()
    };
    target::around(&args.common, &plan, async |target| {
        run_on(target, args).await
    })
    .await
}

pub async fn run_on(target: &Target, args: &ChatArgs) -> Result<Outcome> {
    crate::PAD.store(args.size.saturating_sub(30), Ordering::Relaxed);
    let mut session =
        Session::open(target, args.conversations, args.per_agent, 0, args.drain).await?;
    note(format!(
        "chat against {}: {} conversations on {} connections",
        target.against.label(),
        session.conversations,
        session.connections
    ));
    let cpu0 = target.cpu();
    let wal0 = wal_and_messages(target).await;
    let mut steps = Vec::new();
    let mut best: Option<PhaseResult> = None;
    let mut rate = args.rate;
    loop {
        let r = session.phase(rate, args.duration, "chat").await;
        let ok = sustained(&r, args.slo_ms);
        note(format!(
            "  offered {:.0}/s: delivered {:.0}/s in window, delivery p99 {:.2} ms, ack p99 {:.2} ms{}",
            r.offered,
            r.delivered_per_s,
            r.deliver_p99,
            r.ack_p99,
            if ok { "" } else { "  (fell behind)" }
        ));
        steps.push(r.clone());
        if ok
            && best
                .as_ref()
                .is_none_or(|b| r.delivered_per_s > b.delivered_per_s)
        {
            best = Some(r.clone());
        }
        if !args.find_max || !ok || rate * args.step > args.max_rate || !r.drained {
            break;
        }
        rate *= args.step;
    }
    let mut half = None;
    if let (Some(fraction), Some(b)) = (args.then_fraction, &best) {
        let r = session
            .phase(b.offered * fraction, args.duration, "chat-half")
            .await;
        half = Some(r);
    }
    let cpu = match (cpu0, target.cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let wal_per_message = match (wal0, wal_and_messages(target).await) {
        (Some((w0, m0)), Some((w1, m1))) if m1 > m0 => Some((w1 - w0) / (m1 - m0)),
        _ => None,
    };
    let failures = session.finish().await;
    let mut summary = String::new();
    for s in steps.iter().chain(half.iter()) {
        summary.push_str(&format!(
            "offered {:>7.0}/s  delivered {:>7.0}/s  sent {} acked {} delivered {} dup {}  delivery p50 {:.2} p99 {:.2} p99.9 {:.2} ms  ack p99 {:.2} ms\n",
            s.offered, s.delivered_per_s, s.sent, s.acked, s.delivered, s.dups,
            s.deliver_p50, s.deliver_p99, s.deliver_p999, s.ack_p99
        ));
    }
    if let Some(b) = &best {
        summary.push_str(&format!(
            "highest sustained: {:.0} delivered msg/s (offered {:.0}/s)\n",
            b.delivered_per_s, b.offered
        ));
    }
    if let Some(bytes) = wal_per_message {
        summary.push_str(&format!(
            "store: {bytes:.0} bytes appended to the WAL per stored message\n"
        ));
    }
    Ok(Outcome {
        name: "chat".into(),
        report: json!({
            "against": target.against.label(),
            "conversations": args.conversations,
            "per_agent": args.per_agent,
            "steps": steps.iter().map(|s| s.report.clone()).collect::<Vec<_>>(),
            "max_sustained_delivered_per_s": best.as_ref().map(|b| r1(b.delivered_per_s)),
            "max_sustained_offered_per_s": best.as_ref().map(|b| b.offered),
            "at_fraction": half.as_ref().map(|h| h.report.clone()),
            "server_cpu_s": cpu,
            "wal_bytes_per_message": wal_per_message.map(r1),
        }),
        summary,
        failures,
    })
}

/// A Warmline's WAL bytes and stored messages so far (its `/metrics`); `None` for
/// the relays, or a Warmline that does not count them.
async fn wal_and_messages(target: &Target) -> Option<(f64, f64)> {
    if !target.is_warmline() {
        return None;
    }
    let wal = crate::common::metric(target.addr, "warmline_store_wal_bytes_total").await;
    let messages = crate::common::metric(target.addr, "warmline_messages_total").await;
    (wal.is_finite() && messages.is_finite()).then_some((wal, messages))
}

/// Whether a step kept up: everything arrived, p99 under the bound, and the window
/// saw at least 95% of the offered rate delivered.
pub fn sustained(r: &PhaseResult, slo_ms: f64) -> bool {
    r.drained && r.deliver_p99 <= slo_ms && r.delivered_per_s >= 0.95 * r.offered
}

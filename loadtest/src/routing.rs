//! `routing`: conversations arriving at a fixed rate (open loop, scheduled in
//! advance) from a pool of connected customers; agents accept every offer, optionally
//! exchange messages, and close. Start-to-offer and start-to-assigned latency are
//! measured from the scheduled start.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{
    Hist, Outcome, Progress, Ws, inc, load, note, now_ns, r1, sleep_opt, sleep_until_ns,
};
use crate::proto::{self, In};
use crate::target::{self, Common, Plan, Target};

#[derive(Args, Clone, Debug)]
pub struct RoutingArgs {
    /// New conversations per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of arrivals.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Agents (chat agents c0..).
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Chat capacity per agent.
    #[arg(long, default_value_t = 10)]
    pub per_agent: u32,
    /// Connected customers the arrivals are spread over.
    #[arg(long, default_value_t = 200)]
    pub customers: usize,
    /// How long an agent keeps a conversation before closing it (without messages).
    #[arg(long, default_value_t = 200)]
    pub hold_ms: u64,
    /// Messages the agent sends per conversation (the customer answers each).
    #[arg(long, default_value_t = 0)]
    pub messages: u32,
    /// Time between an agent's messages (and before the close).
    #[arg(long, default_value_t = 200)]
    pub think_ms: u64,
    #[command(flatten)]
    pub common: Common,
}

impl Default for RoutingArgs {
    fn default() -> Self {
        RoutingArgs {
            rate: 1000.0,
            duration: 10.0,
            agents: 100,
            per_agent: 10,
            customers: 200,
            hold_ms: 200,
            messages: 0,
            think_ms: 200,
            common: Common::default(),
        }
    }
}

enum Slot {
    Scheduled(u64),
    Offered(u64),
}

#[derive(Default)]
struct Stats {
    scheduled: AtomicU64,
    started: AtomicU64,
    offered: AtomicU64,
    assigned: AtomicU64,
    closed_agent: AtomicU64,
    closed_customer: AtomicU64,
    msgs_sent: AtomicU64,
    msgs_delivered: AtomicU64,
    errors: AtomicU64,
    start_ack: Hist,
    to_offer: Hist,
    to_assigned: Hist,
    delivery: Hist,
    slots: Mutex<HashMap<String, Slot>>,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, e: String) {
        inc(&self.errors);
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// The start's scheduled time and the offer's arrival meet here, whichever first.
    fn meet(&self, cid: &str, slot: Slot) {
        let mut slots = self.slots.lock().unwrap();
        match (slots.remove(cid), slot) {
            (Some(Slot::Offered(o)), Slot::Scheduled(s))
            | (Some(Slot::Scheduled(s)), Slot::Offered(o)) => {
                self.to_offer.record_ns(o.saturating_sub(s));
            }
            (_, slot) => {
                slots.insert(cid.to_owned(), slot);
            }
        }
    }
}

pub async fn run(args: &RoutingArgs) -> Result<Outcome> {
    let plan = Plan {
        chat_agents: args.agents,
        chat_capacity: args.per_agent,
        ..Plan::default()
    };
    target::around(&args.common, &plan, async |target| {
        run_on(target, args).await
    })
    .await
}

pub async fn run_on(target: &Target, args: &RoutingArgs) -> Result<Outcome> {
    anyhow::ensure!(target.is_warmline(), "routing runs against Warmline only");
    note(format!(
        "routing: {:.0} conversations/s for {} s, {} agents x {}, {} customers",
        args.rate, args.duration, args.agents, args.per_agent, args.customers
    ));
    let agents: Vec<Result<(Ws, proto::Agent)>> = stream::iter(0..args.agents)
        .map(|i| async move { proto::agent(target, &format!("c{i}")).await })
        .buffer_unordered(32)
        .collect()
        .await;
    // Agents accept every offer: capacity only bounds how many they hold at once. On a
    // --target it is the target's, whatever --per-agent says; the report gives that one.
    let per_agent = agents
        .iter()
        .find_map(|r| r.as_ref().ok())
        .map_or(args.per_agent, |(_, agent)| agent.chat_capacity);
    if per_agent != args.per_agent {
        note(format!(
            "the target's agents have chat capacity {per_agent} (--per-agent {} is for a Warmline this tool starts)",
            args.per_agent
        ));
    }
    let customers: Vec<Result<Ws>> = stream::iter(0..args.customers)
        .map(|_| async move { proto::customer(target).await })
        .buffer_unordered(64)
        .collect()
        .await;
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = now_ns() + 300_000_000;
    let end = start + (args.duration * 1e9) as u64;
    let total = (args.rate * args.duration).round() as u64;
    let mut tasks = Vec::new();
    for r in agents {
        let (ws, _) = r?;
        tasks.push(tokio::spawn(agent(
            ws,
            args.clone(),
            stats.clone(),
            stop_rx.clone(),
        )));
    }
    let k = args.customers.max(1) as u64;
    for (i, ws) in customers.into_iter().enumerate() {
        let arrivals: Vec<(u64, u64)> = (i as u64..total)
            .step_by(k as usize)
            .map(|j| (j, start + (j as f64 * 1e9 / args.rate) as u64))
            .collect();
        tasks.push(tokio::spawn(customer(
            ws.context("customer connects")?,
            arrivals,
            stats.clone(),
            stop_rx.clone(),
        )));
    }
    let s2 = stats.clone();
    let progress = Progress::start("routing", move || {
        format!(
            "started {} offered {} assigned {} closed {} errors {} | start->offer {}",
            load(&s2.started),
            load(&s2.offered),
            load(&s2.assigned),
            load(&s2.closed_customer),
            load(&s2.errors),
            s2.to_offer.short()
        )
    });
    sleep_until_ns(end).await;
    let tail = args.hold_ms + u64::from(args.messages + 1) * args.think_ms;
    let deadline = now_ns() + (tail + 15_000) * 1_000_000;
    while now_ns() < deadline
        && (load(&stats.closed_customer) < total
            || load(&stats.closed_agent) < total
            || load(&stats.msgs_delivered) < load(&stats.msgs_sent))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(progress);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let counts = [
        ("scheduled", load(&stats.scheduled)),
        ("started", load(&stats.started)),
        ("offered", load(&stats.offered)),
        ("assigned", load(&stats.assigned)),
        ("closed (agents)", load(&stats.closed_agent)),
        ("closed (customers)", load(&stats.closed_customer)),
    ];
    let mut failures = Vec::new();
    for (what, n) in counts {
        if n != total {
            failures.push(format!("{what}: {n} of {total} conversations"));
        }
    }
    let (ms, md) = (load(&stats.msgs_sent), load(&stats.msgs_delivered));
    if md != ms {
        failures.push(format!(
            "{} of {ms} messages not delivered",
            ms.saturating_sub(md)
        ));
    }
    let errors = load(&stats.errors);
    if errors > 0 {
        failures.push(format!(
            "{errors} errors, first: {}",
            stats
                .first_error
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_default()
        ));
    }
    let summary = format!(
        "{total} conversations at {:.0}/s: started {} offered {} assigned {} closed {}\n\
         start ack: {}\nstart -> offer: {}\nstart -> assigned: {}\n{}",
        args.rate,
        load(&stats.started),
        load(&stats.offered),
        load(&stats.assigned),
        load(&stats.closed_customer),
        stats.start_ack.short(),
        stats.to_offer.short(),
        stats.to_assigned.short(),
        if ms > 0 {
            format!("messages {md}/{ms} delivered: {}\n", stats.delivery.short())
        } else {
            String::new()
        }
    );
    Ok(Outcome {
        name: "routing".into(),
        report: json!({
            "rate_per_s": args.rate,
            "duration_s": args.duration,
            "agents": args.agents,
            "per_agent": per_agent,
            "conversations": total,
            "started": load(&stats.started),
            "offered": load(&stats.offered),
            "assigned": load(&stats.assigned),
            "closed": load(&stats.closed_customer),
            "achieved_per_s": r1(load(&stats.started) as f64 / args.duration),
            "start_ack_latency": stats.start_ack.summary(),
            "start_to_offer": stats.to_offer.summary(),
            "start_to_assigned": stats.to_assigned.summary(),
            "messages": {"sent": ms, "delivered": md, "latency": stats.delivery.summary()},
        }),
        summary,
        failures,
    })
}

async fn customer(
    mut ws: Ws,
    arrivals: Vec<(u64, u64)>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 0usize;
    let mut pending: HashMap<u64, u64> = HashMap::new();
    let mut mine: HashMap<String, u64> = HashMap::new();
    loop {
        let due = arrivals.get(next).map(|a| a.1);
        tokio::select! {
            _ = stop.changed() => break,
            _ = sleep_opt(due) => {
                let (j, sched) = arrivals[next];
                next += 1;
                inc(&stats.scheduled);
                pending.insert(j, sched);
                let frame = format!(r#"{{"type":"start","id":"s{j}","queue":"load"}}"#);
                if ws.send(Message::text(frame)).await.is_err() {
                    stats.error("customer: send failed".into());
                    return;
                }
            }
            m = ws.next() => {
                let t = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => { stats.error(format!("customer closed: {c:?}")); return; }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => { stats.error("customer: connection lost".into()); return; }
                };
                let Ok(f) = serde_json::from_str::<In>(&t) else { continue };
                match f.kind() {
                    "ack" => {
                        let Some(j) = f.id.as_deref().and_then(|id| id.strip_prefix('s')).and_then(|j| j.parse::<u64>().ok()) else { continue };
                        let (Some(sched), Some(cid)) = (pending.remove(&j), f.conversation_id.as_deref()) else { continue };
                        inc(&stats.started);
                        stats.start_ack.since(sched);
                        mine.insert(cid.to_owned(), sched);
                        stats.meet(cid, Slot::Scheduled(sched));
                    }
                    "assigned" => {
                        if let Some(sched) = f.conversation_id.as_deref().and_then(|c| mine.get(c)) {
                            inc(&stats.assigned);
                            stats.to_assigned.since(*sched);
                        }
                    }
                    "message" => {
                        let (Some(text), Some(cid)) = (f.text.as_deref(), f.conversation_id.as_deref()) else { continue };
                        if let Some(sent) = text.strip_prefix("rt ").and_then(|s| s.split(' ').next()?.parse::<u64>().ok()) {
                            inc(&stats.msgs_delivered);
                            stats.delivery.since(sent);
                            // Answer at once.
                            let now = now_ns();
                            inc(&stats.msgs_sent);
                            let frame = format!(r#"{{"type":"message","conversation_id":"{cid}","text":"rt {now} thanks, that helps"}}"#);
                            if ws.send(Message::text(frame)).await.is_err() {
                                stats.error("customer: send failed".into());
                                return;
                            }
                        }
                    }
                    "closed" => {
                        if f.conversation_id.as_deref().and_then(|c| mine.remove(c)).is_some() {
                            inc(&stats.closed_customer);
                        }
                    }
                    "error" => stats.error(t.to_string()),
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

enum Action {
    Message(String, u32),
    Close(String),
}

async fn agent(mut ws: Ws, args: RoutingArgs, stats: Arc<Stats>, mut stop: watch::Receiver<bool>) {
    let mut timers: BTreeMap<(u64, u64), Action> = BTreeMap::new();
    let mut seq = 0u64;
    let think = args.think_ms * 1_000_000;
    let hold = args.hold_ms * 1_000_000;
    let mut schedule = |timers: &mut BTreeMap<(u64, u64), Action>, at: u64, a: Action| {
        seq += 1;
        timers.insert((at, seq), a);
    };
    loop {
        let due = timers.first_key_value().map(|(k, _)| k.0);
        tokio::select! {
            _ = stop.changed() => break,
            _ = sleep_opt(due) => {
                let Some((_, action)) = timers.pop_first() else { continue };
                let frame = match action {
                    Action::Message(cid, n) => {
                        let now = now_ns();
                        inc(&stats.msgs_sent);
                        let f = format!(r#"{{"type":"message","conversation_id":"{cid}","text":"rt {now} here is what I found, step {n}"}}"#);
                        if n < args.messages {
                            schedule(&mut timers, now + think, Action::Message(cid, n + 1));
                        } else {
                            schedule(&mut timers, now + think, Action::Close(cid));
                        }
                        f
                    }
                    Action::Close(cid) => format!(
                        r#"{{"type":"close","id":"c","conversation_id":"{cid}","resolution":"resolved"}}"#
                    ),
                };
                if ws.send(Message::text(frame)).await.is_err() {
                    stats.error("agent: send failed".into());
                    return;
                }
            }
            m = ws.next() => {
                let t = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => { stats.error(format!("agent closed: {c:?}")); return; }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => { stats.error("agent: connection lost".into()); return; }
                };
                let Ok(f) = serde_json::from_str::<In>(&t) else { continue };
                match f.kind() {
                    "offer" => {
                        let now = now_ns();
                        let (Some(cid), Some(offer)) = (f.conversation_id.as_deref(), f.offer_id.as_deref()) else { continue };
                        inc(&stats.offered);
                        stats.meet(cid, Slot::Offered(now));
                        let frame = format!(r#"{{"type":"accept","id":"a","offer_id":"{offer}"}}"#);
                        if ws.send(Message::text(frame)).await.is_err() {
                            stats.error("agent: send failed".into());
                            return;
                        }
                    }
                    "conversation" => {
                        let Some(cid) = f.conversation_id.as_deref() else { continue };
                        let now = now_ns();
                        if args.messages > 0 {
                            schedule(&mut timers, now + think, Action::Message(cid.to_owned(), 1));
                        } else {
                            schedule(&mut timers, now + hold, Action::Close(cid.to_owned()));
                        }
                    }
                    "message" => {
                        if let Some(sent) = f.text.as_deref().and_then(|t| t.strip_prefix("rt ")).and_then(|s| s.split(' ').next()?.parse::<u64>().ok()) {
                            inc(&stats.msgs_delivered);
                            stats.delivery.since(sent);
                        }
                    }
                    "closed" => inc(&stats.closed_agent),
                    "error" => stats.error(t.to_string()),
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

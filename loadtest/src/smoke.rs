//! `slow`, `mixed`, and `smoke` (every scenario at a small size, as a correctness
//! check for CI).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use futures_util::{StreamExt, stream};
use serde_json::json;

use crate::chat::{self, ChatArgs, Session};
use crate::common::{Outcome, note, r1};
use crate::flood::{self, FloodArgs};
use crate::idle::{self, IdleArgs};
use crate::restore::{self, RestoreArgs};
use crate::routing::{self, RoutingArgs};
use crate::setup::{self, SetupArgs};
use crate::target::{self, Against, Common, Plan, Target};
use crate::voice::{self, VoiceArgs};

#[derive(Args, Clone, Debug)]
pub struct SlowArgs {
    /// Share of the agents that stop reading.
    #[arg(long, default_value_t = 0.1)]
    pub slow_fraction: f64,
    /// Seconds of normal traffic before they stop.
    #[arg(long, default_value_t = 3.0)]
    pub slow_after: f64,
    #[command(flatten)]
    pub chat: ChatArgs,
}

pub async fn run_slow(args: &SlowArgs) -> Result<Outcome> {
    let c = &args.chat;
    let plan = Plan {
        chat_agents: c.conversations.div_ceil(c.per_agent.max(1) as usize),
        chat_capacity: c.per_agent,
        ..Plan::default()
    };
    target::around(&c.common, &plan, async |target| slow_on(target, args).await).await
}

async fn slow_on(target: &Target, args: &SlowArgs) -> Result<Outcome> {
    let c = &args.chat;
    crate::PAD.store(c.size.saturating_sub(30), Ordering::Relaxed);
    let agents = c.conversations.div_ceil(c.per_agent.max(1) as usize);
    let slow_agents = ((agents as f64 * args.slow_fraction).ceil() as usize).clamp(1, agents);
    let mut session =
        Session::open(target, c.conversations, c.per_agent, slow_agents, c.drain).await?;
    note(format!(
        "slow: {} conversations, {slow_agents} of {agents} agents stop reading after {} s",
        session.conversations, args.slow_after
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
    let before = session.phase(c.rate, args.slow_after, "slow-warmup").await;
    let rss_at_slow = target.rss();
    rss_max.store(rss_at_slow.unwrap_or(0), Ordering::Relaxed);
    session.go_slow();
    let during = session.phase(c.rate, c.duration, "slow").await;
    let rss_end = target.rss();
    sampler.abort();
    let rss_peak = rss_max.load(Ordering::Relaxed);
    let failures = session.finish().await;
    let mib = |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    let summary = format!(
        "before: delivery p99 {:.2} ms; with {slow_agents} agents not reading: others' delivery p50 {:.2} p99 {:.2} p99.9 {:.2} ms, {} of {} delivered\n\
         slow agents' customers: {} of {} messages acked (ack p99 {} ms)\n\
         server RSS when they stopped {}, peak {}, end {}\n",
        before.deliver_p99,
        during.deliver_p50,
        during.deliver_p99,
        during.deliver_p999,
        during.delivered,
        during.sent,
        during.report["slow_conversations"]["acked"],
        during.report["slow_conversations"]["sent"],
        during.report["slow_conversations"]["ack_latency"]["p99_ms"],
        mib(rss_at_slow),
        mib(Some(rss_peak)),
        mib(rss_end),
    );
    Ok(Outcome {
        name: "slow".into(),
        report: json!({
            "conversations": c.conversations,
            "slow_agents": slow_agents,
            "agents": agents,
            "before": before.report,
            "during": during.report,
            "rss_at_slow_bytes": rss_at_slow,
            "rss_peak_bytes": rss_peak,
            "rss_end_bytes": rss_end,
            "rss_growth_bytes": rss_at_slow.map(|s| rss_peak.saturating_sub(s)),
        }),
        summary,
        failures,
    })
}

#[derive(Args, Clone, Debug)]
pub struct MixedArgs {
    /// New chat conversations per second.
    #[arg(long, default_value_t = 20.0)]
    pub arrivals: f64,
    /// Seconds (the hour, compressed).
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 100)]
    pub chat_agents: usize,
    #[arg(long, default_value_t = 4)]
    pub per_agent: u32,
    /// Agent messages per conversation (each answered by the customer).
    #[arg(long, default_value_t = 6)]
    pub messages: u32,
    #[arg(long, default_value_t = 500)]
    pub think_ms: u64,
    /// Concurrent phone calls for the whole run.
    #[arg(long, default_value_t = 100)]
    pub calls: usize,
    /// Idle visitors (said hello, not chatting).
    #[arg(long, default_value_t = 3000)]
    pub idle: usize,
    #[command(flatten)]
    pub common: Common,
}

impl MixedArgs {
    fn small(common: Common) -> MixedArgs {
        MixedArgs {
            arrivals: 10.0,
            duration: 3.0,
            chat_agents: 10,
            per_agent: 4,
            messages: 2,
            think_ms: 100,
            calls: 4,
            idle: 20,
            common,
        }
    }
}

pub async fn run_mixed(args: &MixedArgs) -> Result<Outcome> {
    let plan = Plan {
        chat_agents: args.chat_agents,
        chat_capacity: args.per_agent,
        voice_agents: args.calls.div_ceil(args.calls.clamp(1, 10)),
        voice_capacity: args.calls.clamp(1, 10) as u32,
        ..Plan::default()
    };
    target::around(&args.common, &plan, async |target| {
        mixed_on(target, args).await
    })
    .await
}

async fn mixed_on(target: &Target, args: &MixedArgs) -> Result<Outcome> {
    note(format!(
        "mixed: {} idle visitors, {:.0} chats/s for {} s ({} messages each way), {} calls",
        args.idle, args.arrivals, args.duration, args.messages, args.calls
    ));
    let idle: Vec<Result<crate::common::Ws>> = stream::iter(0..args.idle)
        .map(|_| crate::proto::customer(target))
        .buffer_unordered(128)
        .collect()
        .await;
    let mut held = Vec::new();
    let mut idle_errors = 0;
    for ws in idle {
        match ws {
            Ok(mut ws) => held.push(tokio::spawn(async move {
                while let Some(Ok(_)) = ws.next().await {}
            })),
            Err(_) => idle_errors += 1,
        }
    }
    let rss0 = target.rss();
    let cpu0 = target.cpu();
    let routing_args = RoutingArgs {
        rate: args.arrivals,
        duration: args.duration,
        agents: args.chat_agents,
        per_agent: args.per_agent,
        customers: ((args.arrivals * 2.0) as usize).clamp(4, 500),
        hold_ms: 0,
        messages: args.messages,
        think_ms: args.think_ms,
        common: args.common.clone(),
    };
    let voice_args = VoiceArgs {
        calls: args.calls,
        per_agent: args.calls.clamp(1, 10) as u32,
        duration: args.duration,
        common: args.common.clone(),
    };
    let started = Instant::now();
    let (r, v) = tokio::join!(routing::run_on(target, &routing_args), async {
        if args.calls == 0 {
            return Ok(None);
        }
        voice::run_on(target, &voice_args).await.map(Some)
    });
    let (r, v) = (r?, v?);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu0, target.cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let rss1 = target.rss();
    for h in held {
        h.abort();
    }
    let mut failures = Vec::new();
    if idle_errors > 0 {
        failures.push(format!("{idle_errors} idle visitors could not connect"));
    }
    failures.extend(r.failures.iter().map(|f| format!("chat: {f}")));
    let mut summary = format!(
        "{} idle visitors held; server RSS {} -> {}; server CPU {}\nchat:\n{}",
        args.idle - idle_errors,
        rss0.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        rss1.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        cpu.map_or("?".into(), |c| format!(
            "{:.0}% of one core",
            c / elapsed * 100.0
        )),
        r.summary
    );
    if let Some(v) = &v {
        failures.extend(v.failures.iter().map(|f| format!("voice: {f}")));
        summary.push_str(&format!("voice:\n{}", v.summary));
    }
    Ok(Outcome {
        name: "mixed".into(),
        report: json!({
            "idle_visitors": args.idle - idle_errors,
            "rss_before_bytes": rss0,
            "rss_after_bytes": rss1,
            "server_cpu_percent": cpu.map(|c| r1(c / elapsed * 100.0)),
            "chat": r.report,
            "voice": v.map(|v| v.report),
        }),
        summary,
        failures,
    })
}

#[derive(Args, Clone, Debug)]
pub struct SmokeArgs {
    /// Also check the baseline relays (the bare one always; Node when installed).
    #[arg(long)]
    pub no_relay: bool,
    #[command(flatten)]
    pub common: Common,
}

/// Every scenario at a small size; non-zero exit on any failure.
pub async fn run(args: SmokeArgs) -> ExitCode {
    let started = Instant::now();
    let common = Common {
        quiet: true,
        ..args.common.clone()
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    macro_rules! scenario {
        ($name:expr, $fut:expr) => {{
            let t = Instant::now();
            match $fut.await {
                Ok(o) => {
                    eprintln!(
                        "smoke: {:<12} {:>5.1} s  {}",
                        $name,
                        t.elapsed().as_secs_f64(),
                        if o.failures.is_empty() {
                            "ok"
                        } else {
                            "FAILED"
                        }
                    );
                    outcomes.push(o);
                }
                Err(e) => {
                    eprintln!("smoke: {:<12} ERROR {e:#}", $name);
                    errors.push(format!("{}: {e:#}", $name));
                }
            }
        }};
    }
    let chat_args = ChatArgs {
        conversations: 20,
        per_agent: 2,
        rate: 400.0,
        duration: 1.5,
        drain: 10.0,
        common: common.clone(),
        ..ChatArgs::default()
    };
    scenario!("chat", chat::run(&chat_args));
    if !args.no_relay {
        let relay = ChatArgs {
            common: Common {
                against: Against::Relay,
                ..common.clone()
            },
            ..chat_args.clone()
        };
        scenario!("chat/relay", chat::run(&relay));
        if target::node_available() {
            let node = ChatArgs {
                common: Common {
                    against: Against::Node,
                    ..common.clone()
                },
                ..chat_args.clone()
            };
            scenario!("chat/node", chat::run(&node));
        }
    }
    scenario!(
        "idle",
        idle::run(&IdleArgs {
            steps: vec![50, 150],
            settle: 0.2,
            per_process: 100,
            common: common.clone(),
        })
    );
    scenario!(
        "routing",
        routing::run(&RoutingArgs {
            rate: 50.0,
            duration: 2.0,
            agents: 5,
            per_agent: 5,
            customers: 10,
            hold_ms: 100,
            messages: 0,
            think_ms: 100,
            common: common.clone(),
        })
    );
    scenario!(
        "setup",
        setup::run(&SetupArgs {
            rate: 100.0,
            duration: 1.0,
            common: common.clone(),
            ..SetupArgs::default()
        })
    );
    scenario!(
        "voice",
        voice::run(&VoiceArgs {
            calls: 10,
            per_agent: 5,
            duration: 2.0,
            common: common.clone(),
        })
    );
    scenario!(
        "slow",
        run_slow(&SlowArgs {
            slow_fraction: 0.2,
            slow_after: 1.0,
            chat: ChatArgs {
                conversations: 10,
                per_agent: 1,
                rate: 200.0,
                duration: 2.0,
                drain: 10.0,
                common: common.clone(),
                ..ChatArgs::default()
            },
        })
    );
    scenario!("mixed", run_mixed(&MixedArgs::small(common.clone())));
    scenario!("flood", flood::run(&FloodArgs::small(common.clone())));
    scenario!("restore", restore::run(&RestoreArgs::small(common.clone())));
    let mut failed = !errors.is_empty();
    for o in &outcomes {
        if !o.failures.is_empty() {
            failed = true;
            o.print();
        }
    }
    if let Some(path) = &args.common.json {
        let v = json!({
            "scenarios": outcomes.iter().map(Outcome::json).collect::<Vec<_>>(),
            "errors": errors,
        });
        let _ = std::fs::write(path, serde_json::to_string_pretty(&v).unwrap());
    }
    let total = outcomes.len() + errors.len();
    let bad = errors.len() + outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    println!("smoke: took {:.1} s", started.elapsed().as_secs_f64());
    println!("smoke: {} passed, {bad} failed", total - bad);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

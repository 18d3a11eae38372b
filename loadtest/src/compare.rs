//! `compare`: Warmline, the bare tokio + tungstenite relay and (when installed) a
//! Node `ws` relay, interleaved round by round (A B C A B C ...), each freshly
//! started, under the same load: the highest sustained chat rate, delivery latency
//! at half of Warmline's highest rate, connection setup, and memory per idle
//! connection. Medians over rounds, and ratios. With `--scenarios`, then every
//! Warmline scenario at full size.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use crate::chat::{self, Session};
use crate::common::{Outcome, note, r1};
use crate::idle::{self, IdleArgs};
use crate::setup::{self, SetupArgs};
use crate::smoke::{self, MixedArgs, SlowArgs};
use crate::target::{self, Against, Common, Plan};
use crate::{routing, voice};

#[derive(Args, Clone, Debug)]
pub struct CompareArgs {
    /// Rounds; each runs every server once, in turn.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Chat conversations (each a customer and an agent connection).
    #[arg(long, default_value_t = 200)]
    pub conversations: usize,
    /// First chat rate of the search (messages/s), raised x --step per step.
    #[arg(long, default_value_t = 4000.0)]
    pub chat_rate: f64,
    #[arg(long, default_value_t = 1.5)]
    pub step: f64,
    /// Seconds per chat step.
    #[arg(long, default_value_t = 5.0)]
    pub chat_step_s: f64,
    /// Seconds of the latency run at half of Warmline's highest rate.
    #[arg(long, default_value_t = 8.0)]
    pub half_s: f64,
    /// First connection rate of the setup search (per second).
    #[arg(long, default_value_t = 1000.0)]
    pub setup_rate: f64,
    #[arg(long, default_value_t = 2.0)]
    pub setup_step_s: f64,
    /// Idle connection counts for memory per connection (slope).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub idle_steps: Vec<usize>,
    /// Leave out the Node relay even when installed.
    #[arg(long)]
    pub no_node: bool,
    /// Then run every Warmline scenario at full size (idle to 19k, routing at
    /// 1,000/s, 500 calls, slow agents, the mixed hour).
    #[arg(long)]
    pub scenarios: bool,
    /// Write the tables as Markdown here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

type Samples = BTreeMap<(&'static str, Against), Vec<f64>>;

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

pub async fn run(args: CompareArgs) -> ExitCode {
    let started = Instant::now();
    crate::common::set_quiet(args.common.quiet);
    let mut targets = vec![Against::Warmline, Against::Relay];
    if !args.no_node {
        if target::node_available() {
            targets.push(Against::Node);
        } else {
            note(
                "node or its `ws` module is missing (cd loadtest/node && npm ci): no Node baseline",
            );
        }
    }
    let mut samples: Samples = BTreeMap::new();
    let mut runs: Vec<Value> = Vec::new();
    let mut half_rate: Option<f64> = None;
    let mut warmline_max: Vec<f64> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for round in 0..args.rounds {
        for &against in &targets {
            note(format!(
                "--- round {} of {}: {} ---",
                round + 1,
                args.rounds,
                against.label()
            ));
            match one(&args, against, &mut half_rate, &mut warmline_max).await {
                Ok((vals, report)) => {
                    for (k, v) in vals {
                        samples.entry((k, against)).or_default().push(v);
                    }
                    runs.push(
                        json!({"round": round + 1, "against": against.label(), "results": report}),
                    );
                }
                Err(e) => {
                    eprintln!("{} round {}: {e:#}", against.label(), round + 1);
                    errors.push(format!("{} round {}: {e:#}", against.label(), round + 1));
                }
            }
        }
    }
    let (table, rows) = table(&samples, &targets, half_rate);
    println!("\n{table}");
    let mut scenario_outcomes: Vec<Outcome> = Vec::new();
    if args.scenarios {
        scenario_outcomes = scenarios(&args).await;
    }
    let mut md = format!(
        "Load: {} chat conversations ({} connections); chat steps of {} s from {:.0} msg/s x{}; \
         setup steps of {} s from {:.0}/s; {} rounds, interleaved; medians.\n\n{table}\n",
        args.conversations,
        args.conversations * 2,
        args.chat_step_s,
        args.chat_rate,
        args.step,
        args.setup_step_s,
        args.setup_rate,
        args.rounds
    );
    for o in &scenario_outcomes {
        o.print();
        md.push_str(&format!(
            "\n### {}\n\n```\n{}\n```\n",
            o.name,
            o.summary.trim_end()
        ));
        for f in &o.failures {
            md.push_str(&format!("FAILED: {f}\n"));
        }
    }
    println!("compare: took {:.0} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.markdown {
        if let Err(e) = std::fs::write(path, &md) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    if let Some(path) = &args.common.json {
        let v = json!({
            "machine": machine(),
            "comparison": {"rows": rows, "runs": runs, "half_rate_per_s": half_rate},
            "scenarios": scenario_outcomes.iter().map(Outcome::json).collect::<Vec<_>>(),
            "errors": errors,
        });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// One server, freshly started: chat search, latency at half of Warmline's highest
/// rate, setup search, idle memory.
async fn one(
    args: &CompareArgs,
    against: Against,
    half_rate: &mut Option<f64>,
    warmline_max: &mut Vec<f64>,
) -> anyhow::Result<(Vec<(&'static str, f64)>, Value)> {
    let common = Common {
        against,
        ..args.common.clone()
    };
    let mut vals: Vec<(&'static str, f64)> = Vec::new();
    let mut report = json!({});
    // Chat.
    {
        let plan = Plan {
            chat_agents: args.conversations,
            chat_capacity: 1,
            ..Plan::default()
        };
        let target = target::start(&common, &plan).await?;
        crate::PAD.store(50, std::sync::atomic::Ordering::Relaxed);
        let mut session = Session::open(&target, args.conversations, 1, 0, 10.0).await?;
        let mut rate = args.chat_rate;
        let mut best: Option<chat::PhaseResult> = None;
        let mut steps = Vec::new();
        let cpu0 = target.cpu();
        loop {
            let r = session.phase(rate, args.chat_step_s, "chat").await;
            let ok = chat::sustained(&r, 250.0);
            note(format!(
                "  chat offered {:.0}/s: delivered {:.0}/s, p99 {:.2} ms{}",
                r.offered,
                r.delivered_per_s,
                r.deliver_p99,
                if ok { "" } else { "  (fell behind)" }
            ));
            steps.push(r.report.clone());
            if ok
                && best
                    .as_ref()
                    .is_none_or(|b| r.delivered_per_s > b.delivered_per_s)
            {
                best = Some(r.clone());
            }
            if !ok || rate > 400_000.0 {
                break;
            }
            rate *= args.step;
        }
        let cpu = match (cpu0, target.cpu()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let max = best.as_ref().map_or(0.0, |b| b.delivered_per_s);
        vals.push(("chat_max", max));
        if against == Against::Warmline && max > 0.0 {
            warmline_max.push(max);
            *half_rate = median(warmline_max).map(|m| (m / 2.0).round());
        }
        let search_failures = session.finish().await;
        target.stop().await;
        // The latency run on a fresh server, clear of the overload step.
        let half = half_rate.unwrap_or(args.chat_rate / 2.0);
        let target = target::start(&common, &plan).await?;
        let mut session = Session::open(&target, args.conversations, 1, 0, 10.0).await?;
        let h = session.phase(half, args.half_s, "chat-half").await;
        note(format!(
            "  chat at {half:.0}/s: delivery p50 {:.2} p99 {:.2} p99.9 {:.2} ms, ack p99 {:.2} ms",
            h.deliver_p50, h.deliver_p99, h.deliver_p999, h.ack_p99
        ));
        vals.push(("half_p50", h.deliver_p50));
        vals.push(("half_p99", h.deliver_p99));
        vals.push(("half_p999", h.deliver_p999));
        vals.push(("half_ack_p99", h.ack_p99));
        let failures = session.finish().await;
        vals.push(("half_failures", failures.len() as f64));
        report["chat"] = json!({"steps": steps, "max_sustained_delivered_per_s": r1(max),
            "server_cpu_s_search": cpu, "search_failures": search_failures,
            "half": h.report, "half_failures": failures});
        target.stop().await;
    }
    // Setup.
    {
        let target = target::start(&common, &Plan::default()).await?;
        let sargs = SetupArgs {
            rate: args.setup_rate,
            duration: args.setup_step_s,
            find_max: true,
            step: args.step,
            common: common.clone(),
            ..SetupArgs::default()
        };
        let (steps, best) = setup::sweep(&target, &sargs).await;
        vals.push(("setup_max", best.as_ref().map_or(0.0, |b| b.achieved)));
        if let Some(first) = steps.first() {
            vals.push(("setup_p99_first", first.ready_p99));
        }
        report["setup"] =
            json!({"steps": steps.iter().map(|s| s.report.clone()).collect::<Vec<_>>()});
        target.stop().await;
    }
    // Idle memory.
    if !args.idle_steps.is_empty() {
        let target = target::start(&common, &Plan::default()).await?;
        let o = idle::run_on(
            &target,
            &IdleArgs {
                steps: args.idle_steps.clone(),
                settle: 1.0,
                per_process: 15_000,
                common: common.clone(),
            },
        )
        .await?;
        if let Some(b) = o.report["bytes_per_connection"].as_f64() {
            vals.push(("idle_kb", b / 1000.0));
        }
        report["idle"] = o.report;
        target.stop().await;
    }
    Ok((vals, report))
}

fn table(samples: &Samples, targets: &[Against], half_rate: Option<f64>) -> (String, Vec<Value>) {
    let rows: [(&str, String, bool); 9] = [
        (
            "chat_max",
            "chat: highest sustained delivered msg/s".into(),
            true,
        ),
        (
            "half_p50",
            format!(
                "chat delivery p50 at {:.0} msg/s (ms)",
                half_rate.unwrap_or(0.0)
            ),
            false,
        ),
        (
            "half_p99",
            "chat delivery p99 at the same rate (ms)".into(),
            false,
        ),
        (
            "half_p999",
            "chat delivery p99.9 at the same rate (ms)".into(),
            false,
        ),
        (
            "half_ack_p99",
            "chat ack p99 at the same rate (ms)".into(),
            false,
        ),
        (
            "half_failures",
            "correctness failures at the same rate (lost, unacked, duplicated, errors)".into(),
            false,
        ),
        (
            "setup_max",
            "setup: highest sustained connections/s".into(),
            true,
        ),
        (
            "setup_p99_first",
            "setup: p99 to ready at the first step (ms)".into(),
            false,
        ),
        (
            "idle_kb",
            "memory per idle connection (KB, slope)".into(),
            false,
        ),
    ];
    let mut out = String::from("| measure |");
    for t in targets {
        out.push_str(&format!(" {} |", t.label()));
    }
    for t in &targets[1..] {
        out.push_str(&format!(" warmline / {} |", t.label()));
    }
    out.push_str("\n|---|");
    for _ in 0..(targets.len() * 2 - 1) {
        out.push_str("---|");
    }
    out.push('\n');
    let mut json_rows = Vec::new();
    for (key, label, _) in rows {
        let meds: Vec<Option<f64>> = targets
            .iter()
            .map(|t| samples.get(&(key, *t)).and_then(|v| median(v)))
            .collect();
        let all: Vec<Vec<f64>> = targets
            .iter()
            .map(|t| samples.get(&(key, *t)).cloned().unwrap_or_default())
            .collect();
        out.push_str(&format!("| {label} |"));
        for m in &meds {
            out.push_str(&match m {
                Some(v) if *v >= 100.0 => format!(" {v:.0} |"),
                Some(v) => format!(" {v:.2} |"),
                None => " - |".into(),
            });
        }
        let mut ratios = Vec::new();
        for m in &meds[1..] {
            let r = match (meds[0], m) {
                (Some(w), Some(b)) if *b != 0.0 => Some(w / b),
                _ => None,
            };
            ratios.push(r);
            out.push_str(&match r {
                Some(r) => format!(" {r:.2}x |"),
                None => " - |".into(),
            });
        }
        out.push('\n');
        json_rows.push(json!({
            "measure": key,
            "label": label,
            "medians": targets.iter().zip(&meds).map(|(t, m)| (t.label().to_owned(), json!(m))).collect::<serde_json::Map<_, _>>(),
            "samples": targets.iter().zip(&all).map(|(t, v)| (t.label().to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "ratios": targets[1..].iter().zip(&ratios).map(|(t, r)| (t.label().to_owned(), json!(r))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    (out, json_rows)
}

/// Every Warmline scenario at full size.
async fn scenarios(args: &CompareArgs) -> Vec<Outcome> {
    let common = Common {
        against: Against::Warmline,
        ..args.common.clone()
    };
    let mut out = Vec::new();
    macro_rules! go {
        ($name:expr, $fut:expr) => {{
            note(format!("--- scenario {} ---", $name));
            match $fut.await {
                Ok(o) => out.push(o),
                Err(e) => out.push(Outcome {
                    name: $name.into(),
                    report: json!({"error": format!("{e:#}")}),
                    summary: format!("error: {e:#}"),
                    failures: vec![format!("{e:#}")],
                }),
            }
        }};
    }
    go!(
        "idle",
        idle::run(&IdleArgs {
            steps: vec![1000, 5000, 10000, 19000],
            settle: 2.0,
            per_process: 15_000,
            common: common.clone(),
        })
    );
    go!(
        "routing",
        routing::run(&routing::RoutingArgs {
            rate: 1000.0,
            duration: 10.0,
            common: common.clone(),
            ..routing::RoutingArgs::default()
        })
    );
    go!(
        "voice",
        voice::run(&voice::VoiceArgs {
            calls: 500,
            per_agent: 10,
            duration: 20.0,
            common: common.clone(),
        })
    );
    go!(
        "slow",
        smoke::run_slow(&SlowArgs {
            slow_fraction: 0.1,
            slow_after: 3.0,
            chat: chat::ChatArgs {
                conversations: 200,
                rate: 2000.0,
                duration: 10.0,
                common: common.clone(),
                ..chat::ChatArgs::default()
            },
        })
    );
    go!(
        "mixed",
        smoke::run_mixed(&MixedArgs {
            arrivals: 20.0,
            duration: 60.0,
            chat_agents: 100,
            per_agent: 4,
            messages: 6,
            think_ms: 500,
            calls: 100,
            idle: 3000,
            common: common.clone(),
        })
    );
    out
}

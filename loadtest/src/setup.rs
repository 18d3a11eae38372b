//! `setup`: new connections at a fixed rate (open loop): TCP connect, WebSocket
//! upgrade and, on Warmline, `hello` -> `welcome`; then a clean close. Handshake
//! latency is measured from the scheduled arrival.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::common::{
    Hist, Outcome, Progress, inc, load, note, now_ns, r1, sleep_until_ns, ws_connect,
};
use crate::target::{self, Common, Plan, Target};

#[derive(Args, Clone, Debug)]
pub struct SetupArgs {
    /// New connections per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Raise the rate (x --step) until the server falls behind.
    #[arg(long)]
    pub find_max: bool,
    #[arg(long, default_value_t = 1.5)]
    pub step: f64,
    #[arg(long, default_value_t = 40_000.0)]
    pub max_rate: f64,
    /// A step falls behind when the p99 to ready exceeds this (ms).
    #[arg(long, default_value_t = 100.0)]
    pub slo_ms: f64,
    /// Connections being set up at once before arrivals are counted as refused by
    /// the load generator itself (it must not pile up without bound).
    #[arg(long, default_value_t = 3000)]
    pub max_in_flight: usize,
    #[command(flatten)]
    pub common: Common,
}

impl Default for SetupArgs {
    fn default() -> Self {
        SetupArgs {
            rate: 1000.0,
            duration: 5.0,
            find_max: false,
            step: 1.5,
            max_rate: 40_000.0,
            slo_ms: 100.0,
            max_in_flight: 3000,
            common: Common::default(),
        }
    }
}

#[derive(Default)]
struct Stats {
    scheduled: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    last_done_ns: AtomicU64,
    in_flight: AtomicUsize,
    upgrade: Hist,
    ready: Hist,
    first_error: std::sync::Mutex<Option<String>>,
}

#[derive(Clone, Debug)]
pub struct SetupStep {
    pub offered: f64,
    pub achieved: f64,
    pub errors: u64,
    pub skipped: u64,
    pub ready_p50: f64,
    pub ready_p99: f64,
    pub report: Value,
}

pub fn sustained(s: &SetupStep, slo_ms: f64) -> bool {
    s.errors == 0 && s.skipped == 0 && s.ready_p99 <= slo_ms && s.achieved >= 0.95 * s.offered
}

/// One step of `rate` new connections per second for `duration` seconds.
pub async fn step(
    target: &Target,
    rate: f64,
    duration: f64,
    max_in_flight: usize,
    tag: usize,
) -> SetupStep {
    let stats = Arc::new(Stats::default());
    let count = (rate * duration).round().max(1.0) as u64;
    let start = now_ns() + 100_000_000;
    let s2 = stats.clone();
    let progress = Progress::start("setup", move || {
        format!(
            "offered {rate:.0}/s: scheduled {} ready {} errors {} refused {} in flight {} | ready {}",
            load(&s2.scheduled),
            load(&s2.completed),
            load(&s2.errors),
            load(&s2.skipped),
            s2.in_flight.load(Ordering::Relaxed),
            s2.ready.short()
        )
    });
    let warmline = target.is_warmline();
    let addr = target.addr;
    let mut tasks = Vec::new();
    for i in 0..count {
        let sched = start + (i as f64 * 1e9 / rate) as u64;
        if sched > now_ns() {
            sleep_until_ns(sched).await;
        }
        inc(&stats.scheduled);
        if stats.in_flight.load(Ordering::Relaxed) >= max_in_flight {
            inc(&stats.skipped);
            continue;
        }
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let path = if warmline {
                "/ws/customer".to_owned()
            } else {
                format!("/pair/s{tag}-{i}/a")
            };
            let r = async {
                let mut ws = ws_connect(addr, &path).await?;
                stats.upgrade.since(sched);
                if warmline {
                    crate::proto::send(&mut ws, json!({"type":"hello"})).await?;
                    crate::proto::until(&mut ws, "welcome").await?;
                }
                stats.ready.since(sched);
                stats.last_done_ns.fetch_max(now_ns(), Ordering::Relaxed);
                inc(&stats.completed);
                let _ = ws.close(None).await;
                // Let the server finish the close (so it, not us, keeps TIME_WAIT).
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = r {
                inc(&stats.errors);
                let mut f = stats.first_error.lock().unwrap();
                if f.is_none() {
                    *f = Some(format!("{e:#}"));
                }
            }
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    drop(progress);
    let completed = load(&stats.completed);
    let span = (load(&stats.last_done_ns).saturating_sub(start) as f64 / 1e9).max(duration);
    let achieved = completed as f64 / span;
    let errors = load(&stats.errors);
    let skipped = load(&stats.skipped);
    let report = json!({
        "offered_per_s": rate,
        "duration_s": duration,
        "scheduled": load(&stats.scheduled),
        "ready": completed,
        "errors": errors,
        "first_error": stats.first_error.lock().unwrap().clone(),
        "refused_by_generator": skipped,
        "achieved_per_s": r1(achieved),
        "upgrade_latency": stats.upgrade.summary(),
        "ready_latency": stats.ready.summary(),
    });
    SetupStep {
        offered: rate,
        achieved,
        errors,
        skipped,
        ready_p50: stats.ready.quantile_ms(0.5),
        ready_p99: stats.ready.quantile_ms(0.99),
        report,
    }
}

/// Fixed rate, or raise it until the server falls behind; the best sustained step.
pub async fn sweep(target: &Target, args: &SetupArgs) -> (Vec<SetupStep>, Option<SetupStep>) {
    let mut steps = Vec::new();
    let mut best: Option<SetupStep> = None;
    let mut rate = args.rate;
    let mut tag = 0;
    loop {
        let s = step(target, rate, args.duration, args.max_in_flight, tag).await;
        tag += 1;
        let ok = sustained(&s, args.slo_ms);
        note(format!(
            "  setup offered {:.0}/s: {:.0}/s ready, p50 {:.2} ms p99 {:.2} ms, errors {}, refused {}{}",
            s.offered,
            s.achieved,
            s.ready_p50,
            s.ready_p99,
            s.errors,
            s.skipped,
            if ok { "" } else { "  (fell behind)" }
        ));
        steps.push(s.clone());
        if ok && best.as_ref().is_none_or(|b| s.achieved > b.achieved) {
            best = Some(s);
        }
        if !args.find_max || !ok || rate * args.step > args.max_rate {
            break;
        }
        rate *= args.step;
        // Let TIME_WAIT and the server settle between steps.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (steps, best)
}

pub async fn run(args: &SetupArgs) -> Result<Outcome> {
    let target = target::start(&args.common, &Plan::default()).await?;
    let outcome = run_on(&target, args).await;
    target.stop().await;
    outcome
}

pub async fn run_on(target: &Target, args: &SetupArgs) -> Result<Outcome> {
    note(format!("setup against {}", target.against.label()));
    let (steps, best) = sweep(target, args).await;
    let mut failures = Vec::new();
    let mut summary = String::new();
    for s in &steps {
        summary.push_str(&format!(
            "offered {:>6.0}/s  ready {:>6.0}/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  refused {}\n",
            s.offered, s.achieved, s.ready_p50, s.ready_p99, s.errors, s.skipped
        ));
    }
    if !args.find_max {
        for s in &steps {
            if s.errors > 0 {
                failures.push(format!(
                    "{} connections failed: {}",
                    s.errors, s.report["first_error"]
                ));
            }
        }
    }
    if let Some(b) = &best {
        summary.push_str(&format!(
            "highest sustained: {:.0} connections/s\n",
            b.achieved
        ));
    }
    Ok(Outcome {
        name: "setup".into(),
        report: json!({
            "against": target.against.label(),
            "steps": steps.iter().map(|s| s.report.clone()).collect::<Vec<_>>(),
            "max_sustained_per_s": best.as_ref().map(|b| r1(b.achieved)),
        }),
        summary,
        failures,
    })
}

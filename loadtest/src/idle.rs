//! `idle`: N connections held (customers who said hello; pairs on the relays), the
//! server's resident memory measured at each step; memory per connection is the
//! slope. Connections are held by worker processes (this binary's `idle-worker`),
//! each under the per-process open-file cap.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::{StreamExt, stream};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::common::{Outcome, Progress, Ws, note, r1, slope, ws_connect};
use crate::target::{self, Against, Common, Plan, Target};

#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    /// Connection counts to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,19000")]
    pub steps: Vec<usize>,
    /// Seconds to let the server settle before measuring a step.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Connections per worker process (the open-file cap is 20,000 per process).
    #[arg(long, default_value_t = 15_000)]
    pub per_process: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long)]
    pub warmline: bool,
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
}

async fn open_one(addr: SocketAddr, warmline: bool, key: usize) -> Result<Ws> {
    if warmline {
        let mut ws = ws_connect(addr, "/ws/customer").await?;
        crate::proto::send(&mut ws, json!({"type":"hello"})).await?;
        crate::proto::until(&mut ws, "welcome").await?;
        Ok(ws)
    } else {
        let side = if key % 2 == 0 { "a" } else { "b" };
        ws_connect(addr, &format!("/pair/i{}/{side}", key / 2)).await
    }
}

/// Holds connections; stdin: `open N` (hold N in all; answers `ok N errors E`),
/// `exit`.
pub async fn worker(args: WorkerArgs) -> Result<()> {
    crate::common::set_sources(args.sources);
    crate::common::check_loopback(&args.addr)?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut held: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut errors = 0usize;
    let mut first_error = String::new();
    while let Some(line) = lines.next_line().await? {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("open") => {
                let n: usize = parts.next().context("open N")?.parse()?;
                let from = held.len();
                let opened: Vec<Result<Ws>> = stream::iter(from..n.max(from))
                    .map(|k| open_one(args.addr, args.warmline, args.offset + k))
                    .buffer_unordered(256)
                    .collect()
                    .await;
                for r in opened {
                    match r {
                        Ok(mut ws) => held.push(tokio::spawn(async move {
                            // Keep reading: answers pings, notices the close.
                            while let Some(Ok(_)) = ws.next().await {}
                        })),
                        Err(e) => {
                            errors += 1;
                            if first_error.is_empty() {
                                first_error = format!("{e:#}");
                            }
                        }
                    }
                }
                println!("ok {} errors {errors} {first_error}", held.len());
            }
            Some("exit") | None => break,
            Some(other) => bail!("unknown command {other}"),
        }
    }
    for h in held {
        h.abort();
    }
    Ok(())
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

async fn spawn_worker(target: &Target, offset: usize, sources: u8) -> Result<Worker> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("idle-worker")
        .arg("--addr")
        .arg(target.addr.to_string())
        .arg("--offset")
        .arg(offset.to_string())
        .arg("--sources")
        .arg(sources.to_string());
    if target.is_warmline() {
        cmd.arg("--warmline");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take().context("stdin")?;
    let lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    Ok(Worker {
        child,
        stdin,
        lines,
    })
}

pub async fn run(args: &IdleArgs) -> Result<Outcome> {
    let target = target::start(&args.common, &Plan::default()).await?;
    let outcome = run_on(&target, args).await;
    target.stop().await;
    outcome
}

pub async fn run_on(target: &Target, args: &IdleArgs) -> Result<Outcome> {
    let max = args.steps.iter().copied().max().unwrap_or(0);
    let per = args.per_process.max(1);
    let nworkers = max.div_ceil(per).max(1);
    note(format!(
        "idle against {}: steps {:?}, {nworkers} worker process(es)",
        target.against.label(),
        args.steps
    ));
    let mut workers = Vec::new();
    for w in 0..nworkers {
        workers.push(spawn_worker(target, w * per, args.common.sources).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = target.rss();
    let mut points = Vec::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &n in &args.steps {
        let started = std::time::Instant::now();
        let _progress = Progress::start("idle", move || format!("opening {n} connections"));
        let mut held = 0usize;
        let mut errors = 0usize;
        for (w, worker) in workers.iter_mut().enumerate() {
            let want = n.saturating_sub(w * per).min(per);
            worker
                .stdin
                .write_all(format!("open {want}\n").as_bytes())
                .await?;
            worker.stdin.flush().await?;
        }
        for worker in workers.iter_mut() {
            let line = tokio::time::timeout(Duration::from_secs(300), worker.lines.next_line())
                .await
                .context("idle worker did not answer in 5 min")??
                .context("idle worker exited")?;
            let mut parts = line.split_whitespace();
            let _ok = parts.next();
            held += parts.next().unwrap_or("0").parse::<usize>().unwrap_or(0);
            let _ = parts.next();
            let e: usize = parts.next().unwrap_or("0").parse().unwrap_or(0);
            if e > 0 {
                failures.push(format!(
                    "{e} connections failed: {}",
                    parts.collect::<Vec<_>>().join(" ")
                ));
            }
            errors += e;
        }
        let open_s = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let mut samples: Vec<u64> = Vec::new();
        for _ in 0..3 {
            if let Some(r) = target.rss() {
                samples.push(r);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        samples.sort_unstable();
        let rss = samples.get(samples.len() / 2).copied();
        if let Some(r) = rss {
            points.push((held as f64, r as f64));
        }
        note(format!(
            "  {held} connections held (errors {errors}) in {open_s:.1} s; server RSS {}",
            rss.map_or("?".into(), |r| format!("{:.1} MiB", r as f64 / 1048576.0))
        ));
        rows.push(
            json!({"connections": held, "errors": errors, "open_s": r1(open_s), "rss_bytes": rss}),
        );
    }
    for mut w in workers {
        let _ = w.stdin.write_all(b"exit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), w.child.wait()).await;
    }
    let per_conn = slope(&points);
    let mut summary = String::new();
    for r in &rows {
        summary.push_str(&format!(
            "{:>6} connections: server RSS {}\n",
            r["connections"],
            r["rss_bytes"]
                .as_u64()
                .map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
        ));
    }
    if per_conn.is_finite() {
        summary.push_str(&format!(
            "memory per idle connection (slope): {:.2} KB\n",
            per_conn / 1000.0
        ));
    } else if target.pid.is_none() {
        summary.push_str("no server pid (--pid): memory not measured\n");
    }
    let label = match target.against {
        Against::Warmline => "customers after hello",
        _ => "paired connections",
    };
    Ok(Outcome {
        name: "idle".into(),
        report: json!({
            "against": target.against.label(),
            "connections_are": label,
            "rss_before_bytes": rss0,
            "steps": rows,
            "bytes_per_connection": if per_conn.is_finite() { Some(per_conn.round()) } else { None },
        }),
        summary,
        failures,
    })
}

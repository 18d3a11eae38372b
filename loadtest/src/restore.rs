//! `restore`: N conversations left waiting, the server SIGKILLed and started again on
//! the same data directory. Each conversation is opened by its own customer with the
//! real protocol (`hello`, `start`, one message, then the customer leaves: that does
//! not close it) while no agent is connected, so all N wait in queue `load`, in start
//! order. Measured: the time from the new process's spawn to its first `/readyz` 200.
//! Checked: every conversation is back in its place: the operator API's `waiting` is
//! N, and a sample of customers, spread over the line, find at `hello` their
//! conversation still queued at the place it had (and its message).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::common::{Outcome, Progress, http_request, load, note, r1, ws_connect};
use crate::proto::{next_json, send, until};
use crate::target::{self, ADMIN_TOKEN, Common, Plan, Target};

#[derive(Args, Clone, Debug)]
pub struct RestoreArgs {
    /// Conversations left waiting when the server is killed (one customer each).
    #[arg(long, default_value_t = 100_000)]
    pub conversations: usize,
    /// Customers opening their conversation at once (each connection is closed once
    /// its conversation is open, so this is also the number of open sockets).
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Customers who come back after the restart to check their place, spread evenly
    /// over the line (all of them when there are fewer).
    #[arg(long, default_value_t = 200)]
    pub sample: usize,
    /// Open the conversations without a message each (by default each customer sends
    /// one, with a `client_msg_id`, so the restart has a transcript to read too).
    #[arg(long)]
    pub no_message: bool,
    /// Keep the server's directory (config, data as the last SIGKILL left it, log) and
    /// print its path: `warmline serve --config DIR/warmline.toml --data-dir DIR/data`
    /// restores the same conversations again, to profile it.
    #[arg(long)]
    pub keep: bool,
    /// Seconds the restarted server has to become ready before the run fails.
    #[arg(long, default_value_t = 300.0)]
    pub ready_timeout: f64,
    #[command(flatten)]
    pub common: Common,
}

impl RestoreArgs {
    /// The size `smoke` runs.
    pub fn small(common: Common) -> RestoreArgs {
        RestoreArgs {
            conversations: 200,
            concurrency: 50,
            sample: 200,
            no_message: false,
            keep: false,
            ready_timeout: 60.0,
            common,
        }
    }
}

/// A conversation as its customer left it.
struct Opened {
    visitor_token: String,
    conversation_id: String,
    /// The place in line the `queued` after the start gave (1 = next).
    position: u64,
}

pub async fn run(args: &RestoreArgs) -> Result<Outcome> {
    if args.common.target.is_some() {
        bail!("restore kills and restarts the server: it runs only on a Warmline it starts");
    }
    if args.conversations == 0 {
        bail!("--conversations must be at least 1");
    }
    if !(1..=15_000).contains(&args.concurrency) {
        bail!("--concurrency must be 1..=15000 (the open-file cap is 20,000 per process)");
    }
    // Agents are configured (one is needed) but never connect: nobody takes anything.
    let plan = Plan {
        chat_agents: 1,
        chat_capacity: 1,
        ..Plan::default()
    };
    // `around` takes the target by reference; the restart needs it by value.
    let mut target = target::start(&args.common, &plan).await?;
    let outcome = run_on(&mut target, args).await;
    if outcome.is_err() {
        let tail = target.log_tail();
        if !tail.is_empty() {
            eprintln!("server log tail:\n{tail}");
        }
    }
    if args.keep
        && let Some(dir) = target.keep_dir()
    {
        eprintln!("restore: kept {}", dir.display());
    }
    target.stop().await;
    outcome
}

async fn run_on(target: &mut Target, args: &RestoreArgs) -> Result<Outcome> {
    let n = args.conversations;
    let message = !args.no_message;
    note(format!(
        "restore: opening {n} conversations ({} at once{}), then SIGKILL and restart",
        args.concurrency,
        if message { ", one message each" } else { "" }
    ));
    let mut failures = Vec::new();

    // 1. Open them.
    let done = Arc::new(AtomicU64::new(0));
    let progress = {
        let done = done.clone();
        Progress::start("restore", move || format!("opened {} of {n}", load(&done)))
    };
    let opening = Instant::now();
    let addr = target.addr;
    let opened: Vec<Result<Opened>> = stream::iter(0..n)
        .map(|i| {
            let done = done.clone();
            async move {
                let r = open(addr, i, message).await;
                done.fetch_add(1, Ordering::Relaxed);
                r
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let open_s = opening.elapsed().as_secs_f64();
    drop(progress);
    let mut line: Vec<Opened> = Vec::with_capacity(n);
    let mut errors = 0usize;
    let mut first_error = None;
    for r in opened {
        match r {
            Ok(o) => line.push(o),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    if errors > 0 {
        bail!(
            "{errors} of {n} conversations could not be opened; first: {}",
            first_error.unwrap_or_default()
        );
    }
    // Nobody leaves the line, so the places given at the start are 1..=N, each once.
    line.sort_by_key(|o| o.position);
    if let Some((i, o)) = line
        .iter()
        .enumerate()
        .find(|(i, o)| o.position != *i as u64 + 1)
    {
        failures.push(format!(
            "the places given at the start are not 1..={n}: the {}th in line was told place {}",
            i + 1,
            o.position
        ));
    }
    note(format!(
        "restore: {n} opened in {open_s:.1} s ({:.0}/s)",
        n as f64 / open_s
    ));
    let waiting_before = waiting(target).await?;
    if waiting_before != n as u64 {
        failures.push(format!(
            "before the kill the queue has {waiting_before} waiting, not {n}"
        ));
    }
    let rss_before = target.rss();

    // 2. SIGKILL, start again, time it.
    let (ready, same_port) = target
        .kill_and_restart(Duration::from_secs_f64(args.ready_timeout))
        .await?;
    // What the new process used until then (less noisy than the wall clock on a
    // shared machine).
    let cpu_s = target.cpu();
    let rss_after = target.rss();
    let ready_s = ready.as_secs_f64();
    note(format!(
        "restore: ready {ready_s:.3} s after the new process was spawned{}",
        if same_port { "" } else { " (on another port)" }
    ));

    // 3. Every one back in its place.
    let state = queue_state(target).await?;
    let waiting_after = state["waiting"].as_u64().unwrap_or(0);
    if waiting_after != n as u64 {
        failures.push(format!(
            "after the restart the queue has {waiting_after} waiting, not {n}: {state}"
        ));
    }
    let sample = spread(line.len(), args.sample);
    let addr = target.addr;
    let line = &line;
    let checked: Vec<Result<()>> = stream::iter(sample.iter().copied())
        .map(|i| async move { check(addr, &line[i], message).await })
        .buffer_unordered(32)
        .collect()
        .await;
    let wrong: Vec<String> = checked
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !wrong.is_empty() {
        failures.push(format!(
            "{} of {} sampled customers did not find their conversation in its place; first: {}",
            wrong.len(),
            sample.len(),
            wrong[0]
        ));
    }

    let mib = |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    let summary = format!(
        "{n} conversations waiting, opened in {open_s:.1} s ({:.0}/s)\n\
         SIGKILL, restart to ready: {ready_s:.3} s{} (server CPU until then: {})\n\
         server RSS: {} before the kill, {} after the restore\n\
         waiting: {waiting_before} before, {waiting_after} after; places checked: {} of {} sampled customers\n",
        n as f64 / open_s,
        if same_port { "" } else { " (on another port)" },
        cpu_s.map_or("?".into(), |c| format!("{c:.2} s")),
        mib(rss_before),
        mib(rss_after),
        sample.len() - wrong.len(),
        sample.len(),
    );
    Ok(Outcome {
        name: "restore".into(),
        report: json!({
            "conversations": n,
            "message_each": message,
            "open_s": (open_s * 1000.0).round() / 1000.0,
            "open_per_s": r1(n as f64 / open_s),
            "restart_to_ready_s": (ready_s * 1000.0).round() / 1000.0,
            "same_port": same_port,
            "server_cpu_until_ready_s": cpu_s,
            "rss_before_kill_bytes": rss_before,
            "rss_after_restore_bytes": rss_after,
            "waiting_before": waiting_before,
            "waiting_after": waiting_after,
            "queue_state_after": state,
            "sampled": sample.len(),
            "sample_in_place": sample.len() - wrong.len(),
            "sample_errors": wrong.iter().take(10).collect::<Vec<_>>(),
        }),
        summary,
        failures,
    })
}

/// Customer `i`: `hello`, `start` (its ack and the `queued` with its place), one
/// message if asked (until its ack: durable), then a clean close.
async fn open(addr: std::net::SocketAddr, i: usize, message: bool) -> Result<Opened> {
    let mut ws = ws_connect(addr, "/ws/customer")
        .await
        .with_context(|| format!("customer {i} connects"))?;
    send(&mut ws, json!({"type":"hello"})).await?;
    let welcome = until(&mut ws, "welcome").await?;
    let visitor_token = welcome["visitor_token"]
        .as_str()
        .context("welcome without visitor_token")?
        .to_owned();
    send(&mut ws, json!({"type":"start","id":"st","queue":"load"})).await?;
    let (mut conversation_id, mut position) = (None::<String>, None::<u64>);
    // The `queued` may come before the start's ack (it leaves beside the commit).
    let mut queued: Vec<Value> = Vec::new();
    while conversation_id.is_none() || position.is_none() {
        let v = next_json(&mut ws)
            .await
            .with_context(|| format!("customer {i} waits for its start's ack and place"))?;
        match v["type"].as_str() {
            Some("ack") if v["id"] == "st" => {
                conversation_id = Some(v["conversation_id"].as_str().context("ack")?.into());
            }
            Some("queued") => queued.push(v),
            Some("error") => bail!("customer {i}: start refused: {v}"),
            _ => {}
        }
        if let Some(cid) = &conversation_id {
            position = queued
                .iter()
                .find(|q| q["conversation_id"] == cid.as_str())
                .and_then(|q| q["position"].as_u64())
                .or(position);
        }
    }
    let conversation_id = conversation_id.expect("loop ends with it");
    if message {
        send(
            &mut ws,
            json!({"type":"message","id":"m","conversation_id":conversation_id,
                   "client_msg_id":format!("c{i}-1"),"text":"Hello, is anyone there? My order has not arrived."}),
        )
        .await?;
        loop {
            let v = next_json(&mut ws).await?;
            if v["type"] == "ack" && v["id"] == "m" {
                break;
            }
            if v["type"] == "error" {
                bail!("customer {i}: message refused: {v}");
            }
        }
    }
    // Leaving closes the socket, not the conversation. The close handshake ends it.
    ws.close(None).await?;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {}
    Ok(Opened {
        visitor_token,
        conversation_id,
        position: position.expect("loop ends with it"),
    })
}

/// A customer comes back: their `welcome` lists the conversation, queued, at the place
/// it had, with its message.
async fn check(addr: std::net::SocketAddr, o: &Opened, message: bool) -> Result<()> {
    let mut ws = ws_connect(addr, "/ws/customer").await?;
    send(
        &mut ws,
        json!({"type":"hello","visitor_token":o.visitor_token}),
    )
    .await?;
    let welcome = until(&mut ws, "welcome").await?;
    let _ = ws.close(None).await;
    let cid = &o.conversation_id;
    let listed = welcome["open_conversations"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["conversation_id"] == cid.as_str()))
        .with_context(|| {
            format!(
                "place {}: {cid} is not among the open conversations",
                o.position
            )
        })?;
    let want_seq = u64::from(message);
    if listed["state"] != "queued"
        || listed["position"].as_u64() != Some(o.position)
        || listed["last_seq"].as_u64() != Some(want_seq)
    {
        bail!(
            "{cid} was queued at place {} with last_seq {want_seq}, now: {listed}",
            o.position
        );
    }
    Ok(())
}

/// `k` indices spread evenly over `0..n`, first and last included (all when k >= n).
fn spread(n: usize, k: usize) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    if k <= 1 {
        return vec![0; k.min(n)];
    }
    (0..k).map(|j| j * (n - 1) / (k - 1)).collect()
}

async fn queue_state(target: &Target) -> Result<Value> {
    let path = "/api/v1/queues/load/state";
    let (status, body) = http_request(target.addr, path, Some(ADMIN_TOKEN)).await?;
    if status != 200 {
        bail!("GET {path}: {status} {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {path}: {body}"))
}

async fn waiting(target: &Target) -> Result<u64> {
    queue_state(target).await?["waiting"]
        .as_u64()
        .context("queue state without `waiting`")
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn the_sample_spans_the_line() {
        assert_eq!(spread(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(spread(101, 3), vec![0, 50, 100]);
        let s = spread(100_000, 200);
        assert_eq!((s.len(), s[0], s[199]), (200, 0, 99_999));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}

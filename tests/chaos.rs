//! Chaos with a history checker (issue 11): customers and agents chat through the
//! real gateway while it is killed, restarted, flooded with reconnections, starved of
//! disk, fed garbage, or (several nodes) restarted one node at a time. Every client
//! logs what it did and saw (`common/history.rs`); afterwards the logs and the
//! store's transcript are checked offline: every acked message present exactly once,
//! `seq` gap-free, each participant has everything exactly once, nothing from another
//! conversation.
//!
//! Small sizes by default (CI); `CHAOS_SIZE=full` for the sizes of
//! docs/reliability.md (`scripts/chaos.sh full`). Each scenario prints one table row
//! (and appends it to `$CHAOS_ROWS` when set).

mod common;
#[path = "common/history.rs"]
mod history;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Client, TestServer, accept_next_offer, config_with};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use history::{ClientLog, Crowd, Driver, Report, Spec, Targets, check, targets};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

// ---------------------------------------------------------------------------
// Sizes, setup, the table.

fn full() -> bool {
    std::env::var("CHAOS_SIZE").is_ok_and(|v| v == "full")
}

/// Small in CI, full with `CHAOS_SIZE=full`.
fn size(small: usize, full_size: usize) -> usize {
    if full() { full_size } else { small }
}

/// Longest a phase of a scenario (traffic, quiet, sync) may take.
fn phase_limit() -> Duration {
    Duration::from_secs(if full() { 300 } else { 60 })
}

/// Agents `a0..` with `capacity` chats each; agents keep their conversations across
/// any restart of these tests (their grace is long).
fn chaos_config(agents: usize, capacity: usize, limits: &str) -> String {
    let ids: Vec<String> = (0..agents).map(|i| format!("a{i}")).collect();
    let list: Vec<(&str, u32)> = ids
        .iter()
        .map(|id| (id.as_str(), u32::try_from(capacity).unwrap()))
        .collect();
    let mut config = config_with(&list, "agent_grace_ms = 3600000");
    if !limits.is_empty() {
        config = config.replace("[customer]\n", &format!("[limits]\n{limits}\n[customer]\n"));
    }
    config
}

/// The cast of a scenario: customers each in one conversation with one of the
/// agents, every agent full.
struct Cast {
    customers: Vec<Spec>,
    agents: Vec<Spec>,
    conversations: BTreeSet<String>,
}

impl Cast {
    /// Customer specs first, then agents (the order of the drivers and logs).
    fn specs(&self) -> Vec<Spec> {
        self.customers.iter().chain(&self.agents).cloned().collect()
    }
}

/// `agents` agents with `per_agent` conversations each, set up through `server`
/// (agents connect, customers start, agents accept); the setup connections close.
async fn cast(server: &TestServer, agents: usize, per_agent: usize) -> Cast {
    let mut agent_clients = Vec::new();
    for i in 0..agents {
        agent_clients.push(server.available_agent(&format!("a{i}")).await);
    }
    let n = agents * per_agent;
    let mut started: Vec<(Client, String, String)> = Vec::new();
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(100) {
        let batch = join_all(chunk.iter().map(|_| async {
            let (mut c, welcome) = server.customer_hello(None).await;
            let conversation = c.start().await;
            let token = welcome["visitor_token"].as_str().unwrap().to_owned();
            (c, token, conversation)
        }))
        .await;
        started.extend(batch);
    }
    let held: Vec<Vec<String>> = join_all(agent_clients.iter_mut().map(|a| async move {
        let mut held = Vec::new();
        for _ in 0..per_agent {
            held.push(accept_next_offer(a).await.0);
        }
        held
    }))
    .await;
    for a in agent_clients {
        a.close().await;
    }
    let mut customers = Vec::new();
    let mut conversations = BTreeSet::new();
    for (i, (c, token, conversation)) in started.into_iter().enumerate() {
        c.close().await;
        conversations.insert(conversation.clone());
        customers.push(Spec::customer(&format!("c{i}"), &token, &conversation));
    }
    let agents = held
        .iter()
        .enumerate()
        .map(|(i, convs)| Spec::agent(&format!("a{i}"), convs))
        .collect();
    Cast {
        customers,
        agents,
        conversations,
    }
}

fn spawn(specs: Vec<Spec>, targets: &Targets) -> Crowd {
    Crowd {
        drivers: specs
            .into_iter()
            .map(|spec| Driver::spawn(spec, targets.clone()))
            .collect(),
    }
}

async fn sqlite_store(server: &TestServer, cast: &Cast) -> Vec<history::StoredEvent> {
    let mut db = server.store().await;
    history::sqlite_events(&mut db, &cast.conversations).await
}

/// Errors a well-behaved client may get in `scenario` are `allowed`; any other
/// fails the test.
fn assert_errors(logs: &[ClientLog], allowed: &[&str]) {
    for log in logs {
        for (code, frame) in log.errors() {
            assert!(
                allowed.contains(&code.as_str()),
                "{} got an unexpected error: {frame}",
                log.name
            );
        }
    }
}

/// Prints the scenario's table row (and appends it to `$CHAOS_ROWS`).
fn row(scenario: &str, report: &Report, peak_kib: u64, started: Instant, clients: usize) {
    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()));
    let line = format!(
        "| {scenario} | {} | {clients} | {} | {} | {} | {} | {} | {} / {} | {:.1} MiB | {:.1} s |",
        if full() { "full" } else { "small" },
        report.acked,
        report.lost,
        report.duplicated,
        report.foreign,
        report.gaps,
        ms(report.resync(0.5)),
        ms(report.resync(0.99)),
        peak_kib as f64 / 1024.0,
        started.elapsed().as_secs_f64(),
    );
    println!("CHAOS-ROW {line}");
    if let Ok(path) = std::env::var("CHAOS_ROWS") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open the rows file");
        writeln!(f, "{line}").expect("write a row");
    }
}

/// The end of the gateway's log, to explain a failure.
fn log_tail(server: &TestServer) -> String {
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "----- gateway log, last lines -----\n{}",
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

/// Every driver saw its connection end at least `n` times (the fault reached it).
fn assert_each_closed(logs: &[ClientLog], n: usize) {
    for log in logs {
        assert!(
            log.closes().len() >= n,
            "{} saw {} closes, expected at least {n}",
            log.name,
            log.closes().len()
        );
    }
}

/// Polls `/readyz` (it sends no event) until it answers `want`: the body.
async fn readyz_until(server: &TestServer, want: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = server.get("/readyz").await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer {want} within {within:?} (last: {status} {body})\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// a. SIGKILL mid-traffic, again and again.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_traffic_repeatedly_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let rounds = size(3, 10);
    let (agents, per_agent) = (size(4, 10), size(4, 10));
    let mut server = TestServer::start(&chaos_config(agents, per_agent, "")).await;
    let cast = cast(&server, agents, per_agent).await;
    let targets = targets(&[&server.addr]);
    let crowd = spawn(cast.specs(), &targets);
    let mut peak = 0;
    for _ in 0..rounds {
        // Mid-traffic: everyone has had acks since the last restart.
        let base = crowd.ack_counts();
        crowd.wait_acks(&base, 3, phase_limit()).await;
        peak = peak.max(server.peak_memory_kib());
        targets.lock().unwrap()[0] = None;
        server.kill().await;
        server.restart().await;
        targets.lock().unwrap()[0] = Some(server.addr.clone());
    }
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 3, phase_limit()).await;
    let logs = crowd.finish(phase_limit()).await;
    peak = peak.max(server.peak_memory_kib());
    let store = sqlite_store(&server, &cast).await;
    let report = check(&logs, Some(&store));
    row(
        &format!("SIGKILL mid-traffic x{rounds}"),
        &report,
        peak,
        started,
        logs.len(),
    );
    report.assert_clean_or("sigkill", &log_tail(&server));
    assert_each_closed(&logs, rounds);
    assert_errors(&logs, &[]);
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------
// b. A reconnect storm after a restart.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_after_a_restart_resumes_everyone_whole() {
    let started = Instant::now();
    // 300 clients in CI (294 customers, 6 agents), 5,000 in full (4,950 and 50).
    let (agents, per_agent) = (size(6, 50), size(49, 99));
    let mut server = TestServer::start(&chaos_config(agents, per_agent, "")).await;
    let cast = cast(&server, agents, per_agent).await;
    let targets = targets(&[&server.addr]);
    let mut specs = cast.specs();
    for s in &mut specs {
        // A conversational pace: the storm is the reconnections, not the messages.
        s.pace = Duration::from_millis(if s.name.starts_with('a') { 50 } else { 1000 });
        s.window = 1;
    }
    let crowd = spawn(specs, &targets);
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 1, phase_limit()).await;
    let mut peak = server.peak_memory_kib();
    // A graceful restart: everyone is told 1001 and comes back at once.
    targets.lock().unwrap()[0] = None;
    let exit = server.terminate().await;
    assert!(exit.success(), "{exit:?}");
    server.restart().await;
    targets.lock().unwrap()[0] = Some(server.addr.clone());
    crowd
        .wait_each("reconnected", phase_limit(), |p| {
            p.welcomes.load(std::sync::atomic::Ordering::Relaxed) >= 2
        })
        .await;
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 1, phase_limit()).await;
    let logs = crowd.finish(phase_limit()).await;
    peak = peak.max(server.peak_memory_kib());
    let store = sqlite_store(&server, &cast).await;
    let report = check(&logs, Some(&store));
    row(
        "reconnect storm after a restart",
        &report,
        peak,
        started,
        logs.len(),
    );
    report.assert_clean_or("storm", &log_tail(&server));
    assert_each_closed(&logs, 1);
    assert!(
        report.resyncs.len() >= logs.len(),
        "every client resynced after the restart: {} of {}",
        report.resyncs.len(),
        logs.len()
    );
    assert_errors(&logs, &[]);
}

// ---------------------------------------------------------------------------
// c. A slow consumer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_resumes_whole_and_nobody_else_notices() {
    let started = Instant::now();
    // The write timeout is for the stalled one; 2 s leaves the busy others (an agent
    // reading 48 KiB messages on a loaded CI machine) room to keep up.
    let limits = "outbound_queue = 32\nwrite_timeout_ms = 2000";
    let server = TestServer::start(&chaos_config(2, 2, limits)).await;
    let cast = cast(&server, 2, 2).await;
    let targets = targets(&[&server.addr]);
    let slow_conversation = cast.customers[0].conversations[0].clone();
    let mut specs = cast.specs();
    for s in &mut specs {
        // The slow customer's agent writes long messages, fast.
        if s.conversations.contains(&slow_conversation) && s.name.starts_with('a') {
            s.pad = 48 * 1024;
        }
    }
    let crowd = spawn(specs, &targets);
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 2, phase_limit()).await;
    crowd.drivers[0].stall(true);
    // The gateway cuts it off (the close waits unread in its socket): seen in the
    // metrics, which is all there is to watch from outside.
    let deadline = Instant::now() + phase_limit();
    let metric = r#"warmline_connections_closed_total{reason="slow_consumer",role="customer"}"#;
    while server.metric(metric).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled customer was not cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crowd.drivers[0].stall(false);
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 3, phase_limit()).await;
    let peak = server.peak_memory_kib();
    let logs = crowd.finish(phase_limit()).await;
    let store = sqlite_store(&server, &cast).await;
    let report = check(&logs, Some(&store));
    row("slow consumer", &report, peak, started, logs.len());
    report.assert_clean_or("slow consumer", &log_tail(&server));
    let closes = logs[0].closes();
    assert!(
        !closes.is_empty() && closes.iter().all(|c| matches!(c, Some(4001) | None)),
        "the slow customer is closed 4001 (or its socket dropped): {closes:?}"
    );
    for log in &logs[1..] {
        assert!(log.closes().is_empty(), "{} was disturbed", log.name);
    }
    assert_errors(&logs, &[]);
}

// ---------------------------------------------------------------------------
// d. Malformed, oversized and not-UTF-8 frames amid live chats.

/// A customer connection at the raw WebSocket level (said hello, started one
/// conversation), for sending what a well-behaved client never would.
async fn offender(addr: &str) -> common::Ws {
    let mut request = format!("ws://{addr}/ws/customer")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Origin", http::HeaderValue::from_static(common::ORIGIN));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("offender connects");
    send_text(&mut ws, &json!({"type":"hello"}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    send_text(
        &mut ws,
        &json!({"type":"start","id":"s","queue":"support"}).to_string(),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    ws
}

async fn send_text(ws: &mut common::Ws, text: &str) {
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .expect("send");
}

/// The next JSON frame (skipping `queued` and transcript events); panics on a close.
async fn next_json(ws: &mut common::Ws) -> Value {
    loop {
        match tokio::time::timeout(common::WAIT, ws.next()).await {
            Err(_) => panic!("no frame in time"),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["type"] == "queued" || v["type"] == "message" {
                    continue;
                }
                return v;
            }
            Ok(Some(Ok(Message::Close(c)))) => panic!("closed: {c:?}"),
            Ok(None | Some(Err(_))) => panic!("dropped"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Reads until the close: the error codes seen before it, and the close code.
async fn until_closed(ws: &mut common::Ws) -> (Vec<String>, Option<u16>) {
    let mut errors = Vec::new();
    loop {
        match tokio::time::timeout(common::WAIT, ws.next()).await {
            Err(_) => panic!("not closed in time (errors so far: {errors:?})"),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["type"] == "error" {
                    errors.push(v["code"].as_str().unwrap_or_default().to_owned());
                }
            }
            Ok(Some(Ok(Message::Close(c)))) => return (errors, c.map(|c| u16::from(c.code))),
            Ok(None | Some(Err(_))) => return (errors, None),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// One round of abuse on fresh connections; every answer as docs/protocol.md says.
async fn abuse(addr: &str, victim: &str) {
    // Frames that get an error and leave the connection open.
    let mut ws = offender(addr).await;
    ws.send(Message::Binary(
        vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2].into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "invalid_field");
    for (frame, code) in [
        (
            r#"{"type":"message","conversation_id":"x","te"#.to_owned(),
            "bad_json",
        ),
        ("[1,2,3]".to_owned(), "bad_json"),
        (r#"{"type":42}"#.to_owned(), "bad_json"),
        (r#"{"type":"teleport","id":"t"}"#.to_owned(), "unknown_type"),
        (
            json!({"type":"message","id":"f","conversation_id":victim,"text":"not yours"})
                .to_string(),
            "forbidden",
        ),
        (
            json!({"type":"resume","id":"g","conversation_id":victim,"last_seq":0}).to_string(),
            "forbidden",
        ),
    ] {
        send_text(&mut ws, &frame).await;
        let v = next_json(&mut ws).await;
        assert_eq!(v["code"], code, "{frame} -> {v}");
    }
    // Not UTF-8: the connection fails with 1007 (RFC 6455 8.1), a close and no more.
    let mut ws = offender(addr).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    let (errors, code) = until_closed(&mut ws).await;
    assert_eq!(code, Some(1007), "not UTF-8 (errors: {errors:?})");
    assert!(errors.is_empty(), "{errors:?}");
    // Too large: too_large, then 1009.
    let mut ws = offender(addr).await;
    let text = "x".repeat(200 * 1024);
    let _ = ws
        .send(Message::Text(
            json!({"type":"message","conversation_id":victim,"text":text})
                .to_string()
                .into(),
        ))
        .await;
    let (errors, code) = until_closed(&mut ws).await;
    assert_eq!(code, Some(1009), "too large (errors: {errors:?})");
    assert_eq!(errors, ["too_large"]);
    // Too many bad frames: 1008.
    let mut ws = offender(addr).await;
    for _ in 0..40 {
        if ws.send(Message::Text("{".into())).await.is_err() {
            break;
        }
    }
    let (errors, code) = until_closed(&mut ws).await;
    assert_eq!(
        code,
        Some(1008),
        "a flood of bad frames (errors: {errors:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_non_utf8_frames_touch_no_one_else() {
    let started = Instant::now();
    let server = TestServer::start(&chaos_config(2, 3, "bad_frames_per_minute = 30")).await;
    let cast = cast(&server, 2, 3).await;
    let targets = targets(&[&server.addr]);
    let crowd = spawn(cast.specs(), &targets);
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 2, phase_limit()).await;
    let victims: Vec<String> = cast.conversations.iter().cloned().collect();
    let (offenders, rounds) = (size(3, 20), size(2, 20));
    let addr = server.addr.clone();
    join_all((0..offenders).map(|i| {
        let (addr, victim) = (addr.clone(), victims[i % victims.len()].clone());
        async move {
            for _ in 0..rounds {
                abuse(&addr, &victim).await;
            }
        }
    }))
    .await;
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 2, phase_limit()).await;
    let peak = server.peak_memory_kib();
    let logs = crowd.finish(phase_limit()).await;
    let store = sqlite_store(&server, &cast).await;
    let report = check(&logs, Some(&store));
    row(
        &format!("bad frames ({offenders} offenders x {rounds} rounds)"),
        &report,
        peak,
        started,
        logs.len(),
    );
    report.assert_clean_or("bad frames", &log_tail(&server));
    for log in &logs {
        assert!(log.closes().is_empty(), "{} was disturbed", log.name);
    }
    assert_errors(&logs, &[]);
    assert!(
        server
            .metric(r#"warmline_connections_closed_total{reason="invalid_data",role="customer"}"#)
            .await
            >= 1.0
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------
// e. Disk full.

/// A tmpfs mounted for the test, unmounted when dropped (even when the test fails).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size_kib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the disk-full test mounts a small tmpfs and needs root (or CAP_SYS_ADMIN): mount said {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Bytes free.
    fn available(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.path)
            .output()
            .expect("run df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir(&self.path);
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_acks_nothing_uncommitted_goes_unready_and_recovers_by_itself() {
    let started = Instant::now();
    // Declared before the server: dropped (unmounted) after it, even on a failure.
    let mut mounted = None;
    let server = TestServer::start_prepared(&chaos_config(2, 2, ""), |dir| {
        mounted = Some(Tmpfs::mount(&dir.join("data"), 32 * 1024));
    })
    .await;
    let tmpfs = mounted.as_ref().expect("mounted");
    let cast = cast(&server, 2, 2).await;
    // Ballast leaves a little room; the chat fills it.
    let ballast = tmpfs.path.join("ballast");
    let room = 384 * 1024;
    let fill = tmpfs.available().saturating_sub(room);
    std::fs::write(&ballast, vec![0u8; usize::try_from(fill).unwrap()]).expect("ballast");
    let targets = targets(&[&server.addr]);
    let mut specs = cast.specs();
    for s in &mut specs {
        s.pad = 2048;
    }
    let crowd = spawn(specs, &targets);
    // Commits fail: /readyz says so, with a JSON reason.
    let body = readyz_until(&server, 503, phase_limit()).await;
    let reason: Value = serde_json::from_str(&body).expect("a JSON reason");
    assert_eq!(reason["code"], "unavailable", "{body}");
    assert!(
        server
            .metric(r#"warmline_store_failures_total{op="commit"}"#)
            .await
            >= 1.0
    );
    assert_eq!(server.metric("warmline_store_commit_failing").await, 1.0);
    // Space comes back: ready again without anyone restarting anything.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    readyz_until(&server, 200, phase_limit()).await;
    assert_eq!(server.metric("warmline_store_commit_failing").await, 0.0);
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 3, phase_limit()).await;
    let peak = server.peak_memory_kib();
    let logs = crowd.finish(phase_limit()).await;
    let store = sqlite_store(&server, &cast).await;
    let report = check(&logs, Some(&store));
    row(
        "disk full, then space back",
        &report,
        peak,
        started,
        logs.len(),
    );
    report.assert_clean_or("disk full", &log_tail(&server));
    let refused: usize = logs
        .iter()
        .map(|l| {
            l.errors()
                .iter()
                .filter(|(c, _)| c == "unavailable")
                .count()
        })
        .sum();
    assert!(
        refused > 0,
        "nobody was told `unavailable` while the disk was full"
    );
    assert_errors(&logs, &["unavailable"]);
    drop(server);
}

// ---------------------------------------------------------------------------
// f. A graceful rolling restart of one node of three (features postgres, redis).

#[cfg(all(feature = "postgres", feature = "redis"))]
#[path = "common/cluster.rs"]
mod cluster;
#[cfg(all(feature = "postgres", feature = "redis"))]
#[path = "common/pg.rs"]
mod pg;

#[cfg(all(feature = "postgres", feature = "redis"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_one_node_of_three_loses_nothing() {
    use cluster::{Nodes, READY, RedisKeys, Slot, node_config, redis_url};

    let started = Instant::now();
    let schema = pg::Schema::create().await;
    let keys = RedisKeys::new(&redis_url()).await;
    let (agents, per_agent) = (size(3, 10), size(3, 10));
    let config = node_config(
        &chaos_config(agents, per_agent, ""),
        &schema.url,
        &keys.url,
        &keys.prefix,
    );
    let mut nodes = Nodes::start(&config, 3).await;
    nodes.wait_ready(READY).await;
    let owner = nodes.owner(READY).await;
    let cast = cast(&nodes.servers[owner.index], agents, per_agent).await;
    let addrs: Vec<String> = nodes.servers.iter().map(|s| s.addr.clone()).collect();
    let targets = targets(&addrs.iter().map(String::as_str).collect::<Vec<_>>());
    let mut specs = cast.specs();
    for (i, s) in specs.iter_mut().enumerate() {
        s.prefer = i % 3;
    }
    let crowd = spawn(specs, &targets);
    let base = crowd.ack_counts();
    crowd.wait_acks(&base, 2, phase_limit()).await;
    let mut peak = 0;
    // An edge first, then the owner: SIGTERM, traffic goes on elsewhere, restart.
    let edge = (0..3).find(|&i| i != owner.index).unwrap();
    for (which, i) in [("edge", edge), ("owner", owner.index)] {
        peak = peak.max(nodes.servers[i].peak_memory_kib());
        targets.lock().unwrap()[i] = None;
        nodes.roster.lock().unwrap()[i].alive = false;
        let exit = nodes.servers[i].terminate().await;
        assert!(exit.success(), "the {which} exits cleanly: {exit:?}");
        nodes.wait_ready(READY).await;
        let base = crowd.ack_counts();
        crowd.wait_acks(&base, 2, phase_limit()).await;
        nodes.servers[i].restart().await;
        let addr = nodes.servers[i].addr.clone();
        nodes.roster.lock().unwrap()[i] = Slot {
            addr: addr.clone(),
            alive: true,
        };
        nodes.wait_ready(READY).await;
        nodes.owner(READY).await;
        targets.lock().unwrap()[i] = Some(addr);
        let base = crowd.ack_counts();
        crowd.wait_acks(&base, 2, phase_limit()).await;
    }
    let logs = crowd.finish(phase_limit()).await;
    for s in &nodes.servers {
        peak = peak.max(s.peak_memory_kib());
    }
    let store = history::postgres_events(&schema.url, &cast.conversations).await;
    let report = check(&logs, Some(&store));
    row(
        "rolling restart (edge, then owner) of 1 node of 3",
        &report,
        peak,
        started,
        logs.len(),
    );
    report.assert_clean("rolling restart");
    assert_errors(&logs, &[]);
    nodes.stop().await;
}

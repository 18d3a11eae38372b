//! `voice`: C concurrent phone calls in the Twilio Media Streams format. Each provider
//! stream sends a 20 ms mu-law frame every 20 ms; each agent sends a 20 ms frame per
//! call every 20 ms (binary frames with the 4-byte header). Every payload carries its
//! call, number and scheduled send time, so both directions' latency and drops are
//! measured.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{
    Hist, Outcome, Progress, Ws, inc, load, metric, note, now_ns, r1, sleep_until_ns, ws_connect,
};
use crate::proto;
use crate::target::{self, Common, Plan, Target};

#[derive(Args, Clone, Debug)]
pub struct VoiceArgs {
    /// Concurrent calls.
    #[arg(long, default_value_t = 500)]
    pub calls: usize,
    /// Calls per agent (voice capacity).
    #[arg(long, default_value_t = 10)]
    pub per_agent: u32,
    /// Seconds of audio.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    #[command(flatten)]
    pub common: Common,
}

impl Default for VoiceArgs {
    fn default() -> Self {
        VoiceArgs {
            calls: 500,
            per_agent: 10,
            duration: 20.0,
            common: Common::default(),
        }
    }
}

const MAGIC: &[u8; 4] = b"WLLT";
const FRAME: usize = 160;

fn payload(call: u32, k: u64, sched: u64) -> [u8; FRAME] {
    let mut p = [0xFFu8; FRAME];
    p[..4].copy_from_slice(MAGIC);
    p[4..8].copy_from_slice(&call.to_le_bytes());
    p[8..16].copy_from_slice(&k.to_le_bytes());
    p[16..24].copy_from_slice(&sched.to_le_bytes());
    p
}

fn parse(p: &[u8]) -> Option<(u32, u64, u64)> {
    if p.len() < 24 || &p[..4] != MAGIC {
        return None;
    }
    Some((
        u32::from_le_bytes(p[4..8].try_into().ok()?),
        u64::from_le_bytes(p[8..16].try_into().ok()?),
        u64::from_le_bytes(p[16..24].try_into().ok()?),
    ))
}

/// An outbound event from the gateway to the provider (`media`, `mark`, `clear`) or
/// an error frame.
#[derive(serde::Deserialize)]
struct Outbound<'a> {
    #[serde(borrow, default)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    media: Option<OutMedia<'a>>,
}

#[derive(serde::Deserialize)]
struct OutMedia<'a> {
    #[serde(borrow, default)]
    payload: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Default)]
struct Stats {
    to_agent_sent: AtomicU64,
    to_agent_heard: AtomicU64,
    to_provider_sent: AtomicU64,
    to_provider_heard: AtomicU64,
    errors: AtomicU64,
    to_agent: Hist,
    to_provider: Hist,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, e: String) {
        inc(&self.errors);
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
    }
}

pub async fn run(args: &VoiceArgs) -> Result<Outcome> {
    let plan = Plan {
        voice_agents: args.calls.div_ceil(args.per_agent.max(1) as usize),
        voice_capacity: args.per_agent,
        ..Plan::default()
    };
    target::around(&args.common, &plan, async |target| {
        run_on(target, args).await
    })
    .await
}

pub async fn run_on(target: &Target, args: &VoiceArgs) -> Result<Outcome> {
    anyhow::ensure!(target.is_warmline(), "voice runs against Warmline only");
    let per_agent = args.per_agent.max(1) as usize;
    let agents = args.calls.div_ceil(per_agent);
    let calls = agents * per_agent;
    note(format!(
        "voice: {calls} calls, {agents} agents x {per_agent}, {} s",
        args.duration
    ));
    let agent_ws: Vec<Result<Ws>> = stream::iter(0..agents)
        .map(|i| async move {
            let id = format!("v{i}");
            let (ws, agent) = proto::agent(target, &id).await?;
            proto::check_agent(&id, &agent, "voice", per_agent)?;
            Ok(ws)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut accepting = Vec::new();
    for ws in agent_ws {
        let mut ws = ws?;
        accepting.push(tokio::spawn(async move {
            let convs = proto::accept(&mut ws, per_agent).await?;
            let mut calls = Vec::new();
            for c in convs {
                let sid = c["attributes"]["stream_sid"].as_str().unwrap_or("");
                let idx: u32 = sid.trim_start_matches("MZ").parse().unwrap_or(u32::MAX);
                let handle = c["media"]["handle"].as_u64().context("media.handle")? as u16;
                calls.push((idx, handle));
            }
            anyhow::Ok((ws, calls))
        }));
    }
    let media_path = target.media_path();
    let providers: Vec<Result<(u32, Ws)>> = stream::iter(0..calls as u32)
        .map(|i| {
            let path = media_path.clone();
            async move {
                let mut ws = ws_connect(target.addr, &path).await?;
                let sid = format!("MZ{i:032}");
                proto::send(&mut ws, json!({"event":"start","sequenceNumber":"1","streamSid":sid,
                    "start":{"accountSid":"AC0","streamSid":sid,"callSid":format!("CA{i}"),"tracks":["inbound"],
                    "customParameters":{"queue":"load"},
                    "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}})).await?;
                Ok((i, ws))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut agent_conns = Vec::new();
    for t in accepting {
        let r = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .context("agents did not get their calls in time")???;
        agent_conns.push(r);
    }
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = now_ns() + 300_000_000;
    let end = start + (args.duration * 1e9) as u64;
    let cpu0 = target.cpu();
    let mut tasks = Vec::new();
    for r in providers {
        let (i, ws) = r?;
        tasks.push(tokio::spawn(provider(
            ws,
            i,
            start,
            end,
            stats.clone(),
            stop_rx.clone(),
        )));
    }
    for (ws, calls) in agent_conns {
        tasks.push(tokio::spawn(agent(
            ws,
            calls,
            start,
            end,
            stats.clone(),
            stop_rx.clone(),
        )));
    }
    let s2 = stats.clone();
    let progress = Progress::start("voice", move || {
        format!(
            "to agents {}/{} to providers {}/{} errors {} | to agent {} | to provider {}",
            load(&s2.to_agent_heard),
            load(&s2.to_agent_sent),
            load(&s2.to_provider_heard),
            load(&s2.to_provider_sent),
            load(&s2.errors),
            s2.to_agent.short(),
            s2.to_provider.short()
        )
    });
    sleep_until_ns(end).await;
    // Stragglers: at most a second.
    let deadline = now_ns() + 1_000_000_000;
    while now_ns() < deadline
        && (load(&stats.to_agent_heard) < load(&stats.to_agent_sent)
            || load(&stats.to_provider_heard) < load(&stats.to_provider_sent))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(progress);
    let cpu = match (cpu0, target.cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let dropped_agent = metric(
        target.addr,
        r#"warmline_audio_frames_total{direction="to_agent_dropped"}"#,
    )
    .await;
    let dropped_provider = metric(
        target.addr,
        r#"warmline_audio_frames_total{direction="to_provider_dropped"}"#,
    )
    .await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let (sa, ha, sp, hp) = (
        load(&stats.to_agent_sent),
        load(&stats.to_agent_heard),
        load(&stats.to_provider_sent),
        load(&stats.to_provider_heard),
    );
    let mut failures = Vec::new();
    if ha < sa {
        failures.push(format!(
            "{} of {sa} caller frames not heard by agents",
            sa - ha
        ));
    }
    if hp < sp {
        failures.push(format!(
            "{} of {sp} agent frames not heard by callers",
            sp - hp
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
    let frames = (ha + hp) as f64;
    let summary = format!(
        "{calls} calls for {} s: to agents {ha}/{sa} heard ({} dropped by the gateway), to callers {hp}/{sp} heard ({} dropped)\n\
         caller -> agent latency: {}\nagent -> caller latency: {}\n{}",
        args.duration,
        dropped_agent,
        dropped_provider,
        stats.to_agent.short(),
        stats.to_provider.short(),
        cpu.map_or(String::new(), |c| format!(
            "gateway CPU {:.0}% of one core, {:.1} us per relayed frame\n",
            c / args.duration * 100.0,
            c / frames.max(1.0) * 1e6
        )),
    );
    Ok(Outcome {
        name: "voice".into(),
        report: json!({
            "calls": calls,
            "duration_s": args.duration,
            "to_agent": {"sent": sa, "heard": ha, "dropped_by_gateway": dropped_agent, "latency": stats.to_agent.summary()},
            "to_provider": {"sent": sp, "heard": hp, "dropped_by_gateway": dropped_provider, "latency": stats.to_provider.summary()},
            "server_cpu_s": cpu,
            "server_cpu_us_per_frame": cpu.map(|c| r1(c / frames.max(1.0) * 1e6)),
        }),
        summary,
        failures,
    })
}

async fn provider(
    mut ws: Ws,
    call: u32,
    start: u64,
    end: u64,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let sid = format!("MZ{call:032}");
    let mut next = start + rand::random_range(0..20_000_000u64);
    let mut k = 0u64;
    loop {
        let due = (next < end).then_some(next);
        tokio::select! {
            _ = stop.changed() => break,
            _ = crate::common::sleep_opt(due) => {
                k += 1;
                let sched = next;
                next += 20_000_000;
                let b64 = B64.encode(payload(call, k, sched));
                let event = format!(
                    r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{k}","timestamp":"{}","payload":"{b64}"}}}}"#,
                    k + 1,
                    k * 20
                );
                inc(&stats.to_agent_sent);
                if ws.send(Message::text(event)).await.is_err() {
                    stats.error(format!("call {call}: send failed"));
                    return;
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Outbound>(&t) else { continue };
                    if v.event.as_deref() == Some("media") {
                        let Some(p) = v.media.as_ref().and_then(|m| m.payload.as_deref()) else { continue };
                        if let Ok(bytes) = B64.decode(p)
                            && let Some((_, _, sched)) = parse(&bytes)
                        {
                            inc(&stats.to_provider_heard);
                            stats.to_provider.since(sched);
                        }
                    } else if v.kind.as_deref() == Some("error") {
                        stats.error(format!("call {call}: {t}"));
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    stats.error(format!("call {call}: closed {c:?}"));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    stats.error(format!("call {call}: connection lost"));
                    return;
                }
            }
        }
    }
    let _ = proto::send(
        &mut ws,
        json!({"event":"stop","sequenceNumber":"0","streamSid":sid}),
    )
    .await;
    let _ = ws.close(None).await;
}

async fn agent(
    mut ws: Ws,
    calls: Vec<(u32, u16)>,
    start: u64,
    end: u64,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = start + rand::random_range(0..20_000_000u64);
    let mut k = 0u64;
    loop {
        let due = (next < end).then_some(next);
        tokio::select! {
            _ = stop.changed() => break,
            _ = crate::common::sleep_opt(due) => {
                k += 1;
                let sched = next;
                next += 20_000_000;
                let mut failed = false;
                for (call, handle) in &calls {
                    let mut frame = Vec::with_capacity(4 + FRAME);
                    frame.extend_from_slice(&[1, 0]);
                    frame.extend_from_slice(&handle.to_be_bytes());
                    frame.extend_from_slice(&payload(*call, k, sched));
                    inc(&stats.to_provider_sent);
                    if ws.feed(Message::binary(frame)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || ws.flush().await.is_err() {
                    stats.error("agent: send failed".into());
                    return;
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if let Some((_, _, sched)) = parse(b.get(4..).unwrap_or(&[])) {
                        inc(&stats.to_agent_heard);
                        stats.to_agent.since(sched);
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if t.contains(r#""type":"error""#) {
                        stats.error(format!("agent: {t}"));
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    stats.error(format!("agent: closed {c:?}"));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    stats.error("agent: connection lost".into());
                    return;
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

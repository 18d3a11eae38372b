//! A measurement, not a test of speed: 200 concurrent calls through one gateway. Each
//! provider stream sends a 20 ms mu-law frame every 20 ms; each agent sends every
//! frame it hears straight back, so every frame is relayed twice (caller -> agent as a
//! binary frame, agent -> provider as an outbound `media` event). Reports the frames
//! relayed per second, frames dropped, and the gateway's CPU time per relayed frame
//! (from /proc, so the load generator's own CPU is not counted). Ignored by default:
//!
//!   cargo nextest run --release --run-ignored only -E 'binary(call_load)' --no-capture
//!
//! The figures go in docs/benchmarks.md.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Client, SECRET, TestServer, base_config};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CALLS: usize = 200;
const PER_AGENT: usize = 10;
const SECONDS: u64 = 20;

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run explicitly in release"]
async fn measure_two_hundred_concurrent_calls() {
    let agents = CALLS / PER_AGENT;
    let mut config = base_config().replace(
        "[auth]\n",
        &format!("[auth]\nmedia_secret = \"{SECRET}\"\n"),
    );
    config.push_str("[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n");
    for i in 0..agents {
        config.push_str(&format!(
            "[[agents]]\nid = \"a{i}\"\ncapacity = {{ chat = 0, voice = {PER_AGENT} }}\n"
        ));
    }
    let server = TestServer::start(&config).await;
    let token = warmline::gateway::auth::mint_media(SECRET, "load", 3600).unwrap();

    let heard_by_agents = Arc::new(AtomicU64::new(0));
    let heard_by_providers = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(SECONDS + 5);

    // Agents: accept every offer, then echo every frame they hear.
    let mut agent_clients = Vec::new();
    for i in 0..agents {
        agent_clients.push(server.available_agent(&format!("a{i}")).await);
    }
    // Calls: start them all; the agents accept.
    let mut providers = Vec::new();
    for i in 0..CALLS {
        let url = server.ws_url(&format!("/ws/media?token={token}"));
        let mut p = Client::connect(url.into_client_request().unwrap())
            .await
            .expect("provider connects");
        let sid = format!("MZ{i:032}");
        p.send(json!({"event":"start","sequenceNumber":"1","streamSid":sid,
            "start":{"accountSid":"AC0","streamSid":sid,"callSid":format!("CA{i}"),"tracks":["inbound"],
            "customParameters":{"queue":"support"},
            "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}))
            .await;
        providers.push((p, sid));
    }
    let mut accepted = 0;
    while accepted < CALLS {
        for agent in &mut agent_clients {
            while accepted < CALLS {
                let v = tokio::time::timeout(Duration::from_millis(50), agent.json()).await;
                let Ok(v) = v else { break };
                if v["type"] == "offer" {
                    agent
                        .send(json!({"type":"accept","offer_id":v["offer_id"]}))
                        .await;
                    accepted += 1;
                }
            }
        }
    }
    for agent in agent_clients {
        let heard = heard_by_agents.clone();
        let (mut out, mut inp) = agent.ws.split();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = inp.next().await {
                if let Message::Binary(frame) = msg {
                    heard.fetch_add(1, Ordering::Relaxed);
                    if out.send(Message::Binary(frame)).await.is_err() {
                        break;
                    }
                }
            }
        });
    }

    let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0x55u8; 160]);
    let cpu_before = cpu_seconds(server.pid());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, sid) in providers {
        let heard = heard_by_providers.clone();
        let (mut out, mut inp) = p.ws.split();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(stop.into(), inp.next()).await {
                if let Message::Text(t) = msg
                    && t.contains("\"media\"")
                {
                    heard.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let end = Instant::now() + Duration::from_secs(SECONDS);
            let mut chunk = 0u64;
            while Instant::now() < end {
                pace.tick().await;
                chunk += 1;
                let event = format!(
                    r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{}","payload":"{payload}"}}}}"#,
                    chunk + 1,
                    chunk * 20
                );
                if out.send(Message::Text(event.into())).await.is_err() {
                    break;
                }
            }
            // Keep the stream open until the listeners stop.
            tokio::time::sleep_until(stop.into()).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let to_agents = heard_by_agents.load(Ordering::Relaxed) as f64;
    let to_providers = heard_by_providers.load(Ordering::Relaxed) as f64;
    let relayed = to_agents + to_providers;
    let dropped_agent = server
        .metric(r#"warmline_audio_frames_total{direction="to_agent_dropped"}"#)
        .await;
    let dropped_provider = server
        .metric(r#"warmline_audio_frames_total{direction="to_provider_dropped"}"#)
        .await;
    let sent = (CALLS as u64 * SECONDS * 50) as f64;
    println!(
        "{CALLS} calls for {SECONDS} s: {to_agents} frames to agents ({:.0}/s), {to_providers} back to providers ({:.0}/s), of ~{sent} sent; dropped: {dropped_agent} to agents, {dropped_provider} to providers",
        to_agents / SECONDS as f64,
        to_providers / SECONDS as f64,
    );
    println!(
        "gateway CPU: {cpu:.2} s over {elapsed:.1} s ({:.0}% of one core), {:.1} us per relayed frame",
        cpu / elapsed * 100.0,
        cpu / relayed * 1e6
    );
    assert!(to_agents > 0.0 && to_providers > 0.0, "nothing was relayed");
}

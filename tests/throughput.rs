//! A measurement, not a test of speed: how many acked chat messages per second one
//! gateway sustains with the default durable store (synchronous=FULL), and the ack
//! latency clients see. Ignored by default; run it in release and read the output:
//!
//!   cargo nextest run --release --run-ignored only -E 'binary(throughput)' --no-capture
//!
//! The figures go in docs/benchmarks.md.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer, accept_next_offer};

const AGENTS: usize = 10;
const PER_AGENT: usize = 5;
const MESSAGES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run explicitly in release"]
async fn measure_acked_message_throughput() {
    let mut config = common::base_config();
    config.push_str("[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n");
    for i in 0..AGENTS {
        config.push_str(&format!(
            "[[agents]]\nid = \"a{i}\"\ncapacity = {{ chat = {PER_AGENT}, voice = 0 }}\n"
        ));
    }
    let server = TestServer::start(&config).await;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push(server.available_agent(&format!("a{i}")).await);
    }
    let mut customers = Vec::new();
    for _ in 0..AGENTS * PER_AGENT {
        let (mut c, _) = server.customer_hello(None).await;
        let conversation_id = c.start().await;
        customers.push((c, conversation_id));
    }
    for agent in &mut agents {
        for _ in 0..PER_AGENT {
            accept_next_offer(agent).await;
        }
    }
    // Agents keep reading so their queues never overflow.
    for mut agent in agents {
        tokio::spawn(async move { while let common::Frame::Json(_) = agent.next().await {} });
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut c, conversation_id) in customers {
        c.until("assigned").await;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(MESSAGES);
            for i in 0..MESSAGES {
                let t = Instant::now();
                c.say(
                    &conversation_id,
                    &format!("message {i} of a realistic length, about sixty bytes"),
                )
                .await;
                latencies.push(t.elapsed());
            }
            Client::close(c).await;
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let batches = server.metric("warmline_store_batch_records_count").await;
    let records = server.metric("warmline_store_batch_records_sum").await;
    println!(
        "{} acked messages from {} concurrent customers in {:.2?}: {:.0} msg/s; ack latency p50 {:.2?} p99 {:.2?} max {:.2?}; {:.0} commits, {:.1} records per commit",
        latencies.len(),
        AGENTS * PER_AGENT,
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1],
        batches,
        records / batches.max(1.0),
    );
}

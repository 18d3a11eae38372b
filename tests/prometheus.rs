//! What Prometheus sees: after real traffic (a served and surveyed conversation, a
//! transfer, an abandonment, a coaching flag), the scrape passes `promtool check
//! metrics` without a warning, and no metric family has more series than its label
//! sets allow (labels come only from queues, closed sets and configured codes).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::{TestServer, accept_next_offer, base_config};
use serde_json::json;

fn config() -> String {
    let mut config = base_config();
    config.push_str(
        "[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n\
         [[queues]]\nname = \"billing\"\nwrap_up_ms = 0\n\
         [[agents]]\nid = \"alice\"\ncapacity = { chat = 2, voice = 0 }\n\
         [[agents]]\nid = \"bob\"\ncapacity = { chat = 2, voice = 0 }\n",
    );
    config
}

/// Series per family, from the text exposition.
fn series(scrape: &str) -> HashMap<String, usize> {
    let mut families: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // Longest first, so `x_bucket` lines count for family `x`, not a shorter prefix.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let metric = line.split(['{', ' ']).next().unwrap_or_default();
        if let Some(family) = names.iter().find(|n| {
            metric == n.as_str()
                || metric
                    .strip_prefix(n.as_str())
                    .is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))
        }) {
            *families.entry(family.clone()).or_default() += 1;
        }
    }
    families
}

#[tokio::test]
async fn the_scrape_passes_promtool_and_stays_within_its_label_sets() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    let mut bob = server.available_agent("bob").await;

    // Served, flagged, surveyed.
    let (mut customer, _) = server.customer_hello(None).await;
    let served = customer.start().await;
    let (_, _) = accept_next_offer(&mut alice).await;
    customer.say(&served, "my invoice is wrong").await;
    alice.say(&served, "I'm sorry, it's our policy.").await;
    alice
        .request(json!({"type":"transfer","conversation_id": served,"to":{"queue":"billing"},"mode":"cold"}))
        .await;
    let (_, _) = accept_next_offer(&mut bob).await;
    bob.request(json!({"type":"close","conversation_id": served,"resolution":"resolved"}))
        .await;
    customer.until("survey_request").await;
    customer
        .request(json!({"type":"survey","conversation_id": served,"csat": 4}))
        .await;
    // Abandoned: both agents away, the customer leaves.
    for agent in [&mut alice, &mut bob] {
        agent.request(json!({"type":"status","state":"away"})).await;
    }
    let (mut leaver, _) = server.customer_hello(None).await;
    let left = leaver.start().await;
    leaver
        .request(json!({"type":"end","conversation_id": left}))
        .await;

    let (status, scrape) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(scrape.contains("warmline_conversations_abandoned_total{queue=\"support\"} 1"));

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );

    // Cardinality: each family's bound from its label sets (2 queues here; coaching
    // codes: 6 built-in + 2 effort; histograms: 10-12 buckets + sum + count per series).
    let queues = 2;
    let bounds: &[(&str, usize)] = &[
        ("warmline_connections", 2),
        ("warmline_ws_frames_total", 4),
        ("warmline_chat_messages_total", 3),
        ("warmline_errors_total", 12),
        ("warmline_disconnects_total", 7),
        ("warmline_conversations_waiting", queues),
        ("warmline_offers_declined_total", queues * 2),
        ("warmline_audio_frames_total", 4),
        ("warmline_conversations_closed_total", queues * 4),
        ("warmline_conversations_abandoned_total", queues),
        ("warmline_conversations_ended_on_bad_terms_total", queues),
        ("warmline_conversation_wait_seconds", queues * 13),
        ("warmline_conversation_handle_seconds", queues * 13),
        ("warmline_transfers_total", 2),
        ("warmline_coaching_flags_total", 8),
        ("warmline_csat_responses_total", 5),
        ("warmline_customer_sentiment_end", 12),
        ("warmline_agents", 4),
        ("warmline_offers_total", 4),
        ("warmline_build_info", 1),
    ];
    let families = series(&scrape);
    for (family, bound) in bounds {
        let n = families.get(*family).copied().unwrap_or(0);
        assert!(n > 0, "{family} has no series");
        assert!(
            n <= *bound,
            "{family} has {n} series, its label sets allow {bound}"
        );
    }
    // No family may carry an id: no label value looks like one of ours.
    for id in [served.as_str(), left.as_str(), "alice", "bob"] {
        assert!(!scrape.contains(id), "an id in the metrics: {id}");
    }
}

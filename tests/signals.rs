//! Satisfaction signals seen live: coaching flags from the agent's own words reach
//! that agent (and only them) with the message's seq and a hint.

mod common;

use common::{TestServer, accept_next_offer, config_with};
use serde_json::json;

#[tokio::test]
async fn an_agent_quoting_policy_is_coached_live_and_an_apology_is_noticed() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    accept_next_offer(&mut alice).await;
    customer
        .say(&conversation_id, "I was charged twice, please refund one")
        .await;

    let seq = alice
        .say(&conversation_id, "Sorry, it's our policy. I can't do that.")
        .await;
    let signals = alice.signals_with("flags").await;
    assert_eq!(signals["conversation_id"], conversation_id);
    let flags = signals["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 1, "{signals}");
    assert_eq!(flags[0]["code"], "policy");
    assert_eq!(flags[0]["seq"], seq);
    assert_eq!(flags[0]["positive"], false);
    assert!(flags[0]["hint"].as_str().unwrap().contains("policy"));

    let seq = alice
        .say(
            &conversation_id,
            "I'm sorry about that. Let me refund the second charge now.",
        )
        .await;
    let signals = alice.signals_with("flags").await;
    let codes: Vec<&str> = signals["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["apology", "next_step"], "{signals}");
    assert_eq!(signals["flags"][0]["seq"], seq);
    assert_eq!(signals["flags"][0]["positive"], true);

    // The customer never sees coaching: their next frame is the agent's message.
    let m = customer.until("message").await;
    assert_eq!(m["text"], "Sorry, it's our policy. I can't do that.");
    let next = customer.json().await;
    assert_eq!(next["type"], "message", "{next}");
    assert_eq!(
        next["text"],
        "I'm sorry about that. Let me refund the second charge now."
    );
}

const ADMIN: &str = "admin-token-0123456789abcdef-0123";

async fn csv(server: &TestServer, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {ADMIN}\r\nAccept: text/csv\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// One agent quotes policy and leaves the customer unresolved; another apologises,
/// fixes it and is rated 5: the report tells them apart, per agent, in JSON and CSV.
#[tokio::test]
async fn the_satisfaction_report_tells_a_bad_conversation_from_a_good_one() {
    let config = config_with(&[("alice", 1), ("bob", 1)], "")
        .replace("[auth]\n", &format!("[auth]\nadmin_token = \"{ADMIN}\"\n"));
    let server = TestServer::start(&config).await;

    // alice: policy, unresolved, rated 1.
    let mut alice = server.available_agent("alice").await;
    let (mut angry, _) = server.customer_hello(None).await;
    let bad = angry.start().await;
    accept_next_offer(&mut alice).await;
    angry.say(&bad, "You charged me twice!").await;
    alice
        .say(&bad, "It's our policy, there's nothing more I can do.")
        .await;
    angry
        .say(&bad, "This is ridiculous. Terrible service.")
        .await;
    alice
        .request(
            serde_json::json!({"type":"close","conversation_id": bad,"resolution":"unresolved"}),
        )
        .await;
    angry.until("survey_request").await;
    angry
        .request(serde_json::json!({"type":"survey","conversation_id": bad,"csat":1,"effort":7}))
        .await;
    alice
        .request(serde_json::json!({"type":"status","state":"away"}))
        .await;

    // bob: apology and a next step, resolved, rated 5.
    let mut bob = server.available_agent("bob").await;
    let (mut happy, _) = server.customer_hello(None).await;
    let good = happy.start().await;
    accept_next_offer(&mut bob).await;
    happy.say(&good, "You charged me twice!").await;
    bob.say(
        &good,
        "I'm sorry about that. I've refunded the second charge.",
    )
    .await;
    happy.say(&good, "Great, thank you!").await;
    bob.request(
        serde_json::json!({"type":"close","conversation_id": good,"resolution":"resolved"}),
    )
    .await;
    happy.until("survey_request").await;
    happy
        .request(serde_json::json!({"type":"survey","conversation_id": good,"csat":5,"effort":1}))
        .await;

    let (status, report) = server
        .http(
            "GET",
            "/api/v1/reports/satisfaction?group_by=agent",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let group = |key: &str| {
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key} in {report}"))
    };
    let (a, b) = (group("alice"), group("bob"));
    assert_eq!(a["csat"]["mean"], 1.0);
    assert_eq!(a["csat"]["distribution"]["1"], 1);
    assert_eq!(a["resolved_rate"], 0.0);
    assert_eq!(a["fcr_rate"], 0.0);
    assert_eq!(a["coaching_flags_per_100"]["negative"], 200.0, "{a}");
    assert_eq!(b["csat"]["mean"], 5.0);
    assert_eq!(b["resolved_rate"], 1.0);
    assert_eq!(b["fcr_rate"], 1.0);
    assert_eq!(b["coaching_flags_per_100"]["positive"], 200.0, "{b}");
    assert_eq!(b["effort_mean"], 1.0);
    // Unresolved and angry at the end: ended on bad terms; the other did not.
    assert_eq!(a["ended_on_bad_terms_rate"], 1.0, "{a}");
    assert_eq!(b["ended_on_bad_terms_rate"], 0.0, "{b}");

    // Prometheus sees the same story, without an id in any label.
    let closed = |resolution: &str| {
        format!(
            r#"warmline_conversations_closed_total{{queue="support",resolution="{resolution}"}}"#
        )
    };
    assert_eq!(server.metric(&closed("resolved")).await, 1.0);
    assert_eq!(server.metric(&closed("unresolved")).await, 1.0);
    assert_eq!(
        server
            .metric(r#"warmline_conversations_ended_on_bad_terms_total{queue="support"}"#)
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric(r#"warmline_coaching_flags_total{code="policy"}"#)
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric(r#"warmline_csat_responses_total{score="5"}"#)
            .await,
        1.0
    );
    assert_eq!(
        server.metric("warmline_customer_sentiment_end_count").await,
        2.0
    );
    assert_eq!(server.metric("warmline_build_info").await, 1.0);
    assert_eq!(
        server
            .metric(r#"warmline_routing_decisions_total{reason="skill"}"#)
            .await,
        2.0
    );
    assert_eq!(
        server
            .metric(r#"warmline_offers_total{outcome="accepted"}"#)
            .await,
        2.0
    );

    let (status, body) = csv(&server, "/api/v1/reports/satisfaction?group_by=queue").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines[0].starts_with("key,conversations,csat_mean"),
        "{body}"
    );
    assert!(
        lines[1].starts_with("support,2,3.0,2,1.0,1,0,0,0,1,4.0,0.5,0.5,"),
        "{body}"
    );

    for bad in [
        "/api/v1/reports/satisfaction?group_by=customer",
        "/api/v1/reports/satisfaction?from=yesterday",
        "/api/v1/reports/satisfaction?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z",
    ] {
        let (status, body) = server.http("GET", bad, Some(ADMIN), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["field"].is_string(), "{bad}: {body}");
    }
}

/// The customer growing angry shows as a falling trend and a low estimate, live.
#[tokio::test]
async fn an_angry_customer_shows_as_a_falling_mood() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    accept_next_offer(&mut alice).await;
    customer
        .say(
            &conversation_id,
            "Hi, thanks for helping, my parcel is late",
        )
        .await;
    let first = alice.signals_with("sentiment").await;
    assert!(
        first["sentiment"]["last"].as_f64().unwrap() > 0.0,
        "{first}"
    );
    alice
        .say(&conversation_id, "It's our policy, I can't do that.")
        .await;
    let seq = customer
        .say(
            &conversation_id,
            "No, that is NOT acceptable. This is the worst service ever, I'm furious.",
        )
        .await;
    let later = alice.signals_with("sentiment").await;
    let s = &later["sentiment"];
    assert_eq!(s["seq"], seq);
    assert_eq!(s["label"], "negative", "{later}");
    assert_eq!(s["direction"], "worsening", "{later}");
    assert!(s["last"].as_f64().unwrap() < -0.5, "{later}");
    assert!(s["trend"].as_f64().unwrap() < -0.5, "{later}");
    assert!(s["estimate"].as_f64().unwrap() < 2.5, "{later}");
    assert_eq!(s["before"], first["sentiment"]["estimate"], "{later}");
    assert!(!s["cues"].as_array().unwrap().is_empty(), "{later}");
}

/// What the customer said while waiting reaches the agent who accepts: the angry
/// opening (issue 20: it once showed no mood at all) and the message after it, whose
/// mood the agent gets right after the `conversation` frame. A plain question after
/// them says nothing, so the mood stays the angry one's.
#[tokio::test]
async fn the_agent_who_accepts_gets_the_mood_of_what_was_said_while_waiting() {
    let server = TestServer::start(&config_with(&[("alice", 2)], "")).await;
    let (mut customer, _) = server.customer_hello(None).await;
    let ack = customer
        .request(json!({"type":"start","queue":"support",
            "text":"This is absolutely ridiculous... Terrible service."}))
        .await;
    let conversation_id = ack["conversation_id"].as_str().unwrap().to_owned();
    let angry = customer
        .say(
            &conversation_id,
            "I am furious. Nobody answers my emails and I want a refund NOW",
        )
        .await;
    assert_eq!(angry, 2);
    customer
        .say(&conversation_id, "Can you check my UPS tracking?")
        .await;

    let mut alice = server.available_agent("alice").await;
    let (id, conversation) = accept_next_offer(&mut alice).await;
    assert_eq!(id, conversation_id);
    let said = conversation["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message")
        .count();
    assert_eq!(said, 3, "{conversation}");
    // Nothing else comes between the conversation and its mood.
    let frame = alice.json().await;
    assert_eq!(frame["type"], "signals", "{frame}");
    assert_eq!(frame["conversation_id"], conversation_id.as_str());
    let s = &frame["sentiment"];
    assert_eq!(s["seq"], angry, "{frame}");
    assert_eq!(s["label"], "negative", "{frame}");
    // Angry, then angry: steady, compared with the opening's estimate.
    assert_eq!(s["direction"], "steady", "{frame}");
    assert!(s["before"].as_f64().unwrap() < 2.5, "{frame}");
    assert!(s["last"].as_f64().unwrap() < -0.45, "{frame}");

    // The opening alone: its own mood, with nothing before it.
    let (mut other, _) = server.customer_hello(None).await;
    let ack = other
        .request(json!({"type":"start","queue":"support",
            "text":"This is absolutely ridiculous... Terrible service."}))
        .await;
    let (id, _) = accept_next_offer(&mut alice).await;
    assert_eq!(json!(id), ack["conversation_id"]);
    let frame = alice.json().await;
    assert_eq!(frame["type"], "signals", "{frame}");
    assert_eq!(frame["conversation_id"], json!(id));
    let s = &frame["sentiment"];
    assert_eq!(s["seq"], 1, "{frame}");
    assert_eq!(s["label"], "negative", "{frame}");
    assert_eq!(s["direction"], "steady", "{frame}");
    assert!(s.get("before").is_none(), "{frame}");
}

/// With `routing.prefer_satisfied_agents`, the agent customers rated better for the
/// queue gets the next conversation though the other idled longer.
#[tokio::test]
async fn routing_can_prefer_the_agent_customers_rated_better() {
    let config = config_with(
        &[("alice", 1), ("bob", 1)],
        "prefer_satisfied_agents = true",
    );
    let mut server = TestServer::start(&config).await;
    // Three rated conversations each: alice 1, bob 5.
    for (agent, csat) in [("alice", 1), ("bob", 5)] {
        let mut a = server.available_agent(agent).await;
        for _ in 0..3 {
            let (mut c, _) = server.customer_hello(None).await;
            let id = c.start().await;
            accept_next_offer(&mut a).await;
            a.request(
                serde_json::json!({"type":"close","conversation_id": id,"resolution":"resolved"}),
            )
            .await;
            c.until("survey_request").await;
            c.request(serde_json::json!({"type":"survey","conversation_id": id,"csat": csat}))
                .await;
        }
        a.request(serde_json::json!({"type":"status","state":"away"}))
            .await;
    }
    // Records load at start, before the first decision (then every few minutes).
    server.terminate().await;
    server.restart().await;
    let mut alice = server.available_agent("alice").await;
    let mut bob = server.available_agent("bob").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let id = customer.start().await;
    let offer = bob.until("offer").await;
    assert_eq!(offer["conversation_id"], id, "bob, rated 5, is preferred");
    alice
        .request(serde_json::json!({"type":"status","state":"available"}))
        .await;
}

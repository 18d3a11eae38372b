//! Live chat end to end: the real server, real WebSocket clients.

mod common;

use common::{TestServer, accept_next_offer, config_with};
use serde_json::json;

#[tokio::test]
async fn a_conversation_flows_both_ways_in_seq_order_and_closes_with_a_resolution() {
    let server = TestServer::start(&config_with(&[("alice", 2)], "")).await;
    let (mut customer, welcome) = server.customer_hello(None).await;
    assert!(
        welcome["visitor_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(welcome["open_conversations"], json!([]));

    let conversation_id = customer.start().await;
    let queued = customer.expect("queued").await;
    assert_eq!(queued["conversation_id"], json!(conversation_id));
    assert_eq!(queued["position"], 1);

    let (mut agent, agent_welcome) = server.agent("alice").await;
    assert_eq!(agent_welcome["agent"]["id"], "alice");
    assert_eq!(agent_welcome["state"], "away");
    agent
        .request(json!({"type":"status","state":"available"}))
        .await;
    let offer = agent.until("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    assert_eq!(offer["queue"], "support");
    assert_eq!(offer["reason"], "skill");
    assert_eq!(offer["customer"]["returning"], false);
    agent
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = agent.expect("conversation").await;
    assert_eq!(conversation["conversation_id"], json!(conversation_id));
    assert_eq!(conversation["transcript"][0]["type"], "assigned");
    let assigned = customer.expect("assigned").await;
    assert_eq!(assigned["seq"], 1);
    assert_eq!(
        assigned["agent"],
        json!({"id":"alice","display_name":"Agent alice"})
    );

    // Messages both ways: acked with seq, delivered in order, no gaps.
    let mut expected_seq = 2;
    for round in 0..3 {
        let text = format!("customer says {round}");
        let seq = customer.say(&conversation_id, &text).await;
        assert_eq!(seq, expected_seq);
        let got = agent.expect("message").await;
        assert_eq!(got["seq"], seq);
        assert_eq!(got["text"], json!(text));
        assert_eq!(got["sender"]["role"], "customer");
        expected_seq += 1;

        let text = format!("agent says {round}");
        let seq = agent.say(&conversation_id, &text).await;
        assert_eq!(seq, expected_seq);
        let got = customer.expect("message").await;
        assert_eq!(got["seq"], seq);
        assert_eq!(got["text"], json!(text));
        assert_eq!(
            got["sender"],
            json!({"role":"agent","id":"alice","display_name":"Agent alice"})
        );
        assert!(got["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
        expected_seq += 1;
    }

    // Typing is relayed to the other side only.
    customer
        .send(json!({"type":"typing","conversation_id":conversation_id,"on":true}))
        .await;
    let typing = agent.expect("typing").await;
    assert_eq!(
        typing,
        json!({"type":"typing","conversation_id":conversation_id,"role":"customer","on":true})
    );

    // The agent closes with a resolution; both sides get `closed`.
    agent
        .request(json!({"type":"close","conversation_id":conversation_id,"resolution":"resolved"}))
        .await;
    let closed = customer.expect("closed").await;
    assert_eq!(closed["by"], "agent");
    assert_eq!(closed["resolution"], "resolved");
    assert_eq!(closed["seq"], expected_seq);
    let closed = agent.until("closed").await;
    assert_eq!(closed["seq"], expected_seq);

    // The customer is asked how it went, and answers once.
    let request = customer.expect("survey_request").await;
    assert_eq!(request["conversation_id"], json!(conversation_id));
    customer
        .request(json!({"type":"survey","conversation_id":conversation_id,"csat":5,"effort":2,"resolved":true,"comment":"quick, thanks"}))
        .await;
    // The agent who had it sees the customer's own answer.
    let answer = agent.until("survey").await;
    assert_eq!(
        answer,
        json!({"type":"survey","conversation_id":conversation_id,"csat":5,"effort":2,"resolved":true,"comment":"quick, thanks"})
    );
    customer
        .send(json!({"type":"survey","id":"again","conversation_id":conversation_id,"csat":1}))
        .await;
    let err = customer.expect("error").await;
    assert_eq!(
        (err["id"].clone(), err["code"].clone()),
        (json!("again"), json!("conflict"))
    );

    // After closing, the conversation takes no more messages.
    customer
        .send(
            json!({"type":"message","id":"late","conversation_id":conversation_id,"text":"hello?"}),
        )
        .await;
    let err = customer.expect("error").await;
    assert_eq!(err["id"], "late");
    assert_eq!(err["code"], "not_found");
}

#[tokio::test]
async fn the_same_client_msg_id_twice_yields_one_message_with_one_seq() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let (mut customer, welcome) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    let mut agent = server.available_agent("alice").await;
    accept_next_offer(&mut agent).await;
    customer.until("assigned").await;

    let frame = json!({"type":"message","conversation_id":conversation_id,"text":"refund please","client_msg_id":"c-1"});
    let first = customer.request(frame.clone()).await;
    let second = customer.request(frame).await;
    assert_eq!(first["seq"], second["seq"]);
    let after = customer.say(&conversation_id, "marker").await;
    assert_eq!(
        after,
        first["seq"].as_u64().unwrap() + 1,
        "no seq was spent on the duplicate"
    );

    // The agent sees the message once, then the marker.
    // (Live `signals` about the customer's mood may come between messages.)
    let got = agent.take("message").await;
    assert_eq!(got["text"], "refund please");
    let got = agent.take("message").await;
    assert_eq!(got["text"], "marker");

    // The transcript (read back through resume from 0) has one row for it.
    let token = welcome["visitor_token"].as_str().unwrap();
    let (mut other_tab, _) = server.customer_hello(Some(token)).await;
    other_tab
        .send(json!({"type":"resume","conversation_id":conversation_id,"last_seq":0}))
        .await;
    let mut texts = Vec::new();
    loop {
        let v = other_tab.json().await;
        match v["type"].as_str() {
            Some("resumed") => break,
            Some("message") => texts.push(v["text"].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
    assert_eq!(texts, ["refund please", "marker"]);
}

#[tokio::test]
async fn a_customer_who_drops_gets_exactly_what_they_missed_on_resume() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let (mut customer, welcome) = server.customer_hello(None).await;
    let token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let conversation_id = customer.start().await;
    let mut agent = server.available_agent("alice").await;
    accept_next_offer(&mut agent).await;
    let assigned = customer.until("assigned").await;
    let last_seq = assigned["seq"].as_u64().unwrap();
    customer.close().await;

    let mut sent = Vec::new();
    for i in 0..5 {
        let text = format!("while you were away {i}");
        sent.push((agent.say(&conversation_id, &text).await, text));
    }

    let (mut back, welcome) = server.customer_hello(Some(&token)).await;
    assert_eq!(welcome["customer_id"], welcome["customer_id"]);
    let open = &welcome["open_conversations"][0];
    assert_eq!(open["conversation_id"], json!(conversation_id));
    assert_eq!(open["state"], "active");
    assert_eq!(open["last_seq"], sent.last().unwrap().0);

    back.send(json!({"type":"resume","conversation_id":conversation_id,"last_seq":last_seq}))
        .await;
    for (seq, text) in &sent {
        let got = back.expect("message").await;
        assert_eq!(got["seq"], *seq);
        assert_eq!(got["text"], json!(text));
    }
    let resumed = back.expect("resumed").await;
    assert_eq!(resumed["last_seq"], sent.last().unwrap().0);

    // And the conversation goes on live.
    let seq = agent.say(&conversation_id, "welcome back").await;
    let got = back.expect("message").await;
    assert_eq!(got["seq"], seq);
}

#[tokio::test]
async fn an_unanswered_offer_goes_to_the_next_agent() {
    let routing = "offer_timeout_ms = 300\nreoffer_delay_ms = 60000";
    let server = TestServer::start(&config_with(&[("alice", 1), ("bob", 1)], routing)).await;
    let mut alice = server.available_agent("alice").await;
    let mut bob = server.available_agent("bob").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;

    // alice became available first, so she has idled longest and gets the offer.
    let offer = alice.until("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    assert_eq!(offer["expires_in_ms"], 300);
    let revoked = alice.until("offer_revoked").await;
    assert_eq!(revoked["offer_id"], offer["offer_id"]);
    assert_eq!(revoked["reason"], "timeout");

    let (_, _) = accept_next_offer(&mut bob).await;
    let assigned = customer.until("assigned").await;
    assert_eq!(assigned["agent"]["id"], "bob");
    let missed = r#"warmline_offers_declined_total{how="missed",queue="support"}"#;
    assert_eq!(server.metric(missed).await, 1.0);
    let declines = server.declines().await;
    assert_eq!(declines.len(), 1);
    assert_eq!((declines[0].1.as_str(), declines[0].2), ("alice", true));

    // Accepting the expired offer now fails clearly.
    alice
        .send(json!({"type":"accept","id":"late","offer_id":offer["offer_id"]}))
        .await;
    let err = alice.until("error").await;
    assert_eq!(err["id"], "late");
    assert_eq!(err["code"], "not_found");
}

#[tokio::test]
async fn a_rejected_offer_goes_to_the_next_agent() {
    let server = TestServer::start(&config_with(&[("alice", 1), ("bob", 1)], "")).await;
    let mut alice = server.available_agent("alice").await;
    let mut bob = server.available_agent("bob").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;

    let offer = alice.until("offer").await;
    alice
        .request(json!({"type":"reject","offer_id":offer["offer_id"],"reason":"busy"}))
        .await;
    let (taken, _) = accept_next_offer(&mut bob).await;
    assert_eq!(taken, conversation_id);
    customer.until("assigned").await;

    // The decline and its reason are kept (for coaching) and counted.
    let declines = server.declines().await;
    assert_eq!(
        declines,
        vec![(
            offer["offer_id"].as_str().unwrap().to_owned(),
            "alice".to_owned(),
            false,
            Some("busy".to_owned())
        )]
    );
    let rejected = r#"warmline_offers_declined_total{how="rejected",queue="support"}"#;
    assert_eq!(server.metric(rejected).await, 1.0);
}

#[tokio::test]
async fn missed_offers_in_a_row_set_the_agent_away() {
    let routing = "offer_timeout_ms = 200\nmax_missed_offers = 2\nreoffer_delay_ms = 1";
    let server = TestServer::start(&config_with(&[("alice", 1)], routing)).await;
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = server.customer_hello(None).await;
    customer.start().await;
    alice.until("offer_revoked").await;
    alice.until("offer_revoked").await;
    let status = alice.until("status").await;
    assert_eq!(
        status,
        json!({"type":"status","state":"away","reason":"missed_offers"})
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_pages_are_served() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    assert_eq!(server.get("/healthz").await.0, 200);
    let (status, body) = server.get("/readyz").await;
    assert_eq!((status, body.contains("ready")), (200, true));
    let (status, page) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    let (status, page) = server.get("/agent/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    let (status, body) = server.get("/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"code\":\"not_found\""), "{body}");

    // A real exchange moves the metrics.
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    let mut agent = server.available_agent("alice").await;
    accept_next_offer(&mut agent).await;
    customer.until("assigned").await;
    customer.say(&conversation_id, "one").await;
    agent.say(&conversation_id, "two").await;
    assert_eq!(server.metric("warmline_messages_total").await, 2.0);
    assert_eq!(
        server
            .metric(r#"warmline_messages_total{channel="chat",sender="customer"}"#)
            .await,
        1.0
    );
    assert!(
        server
            .metric("warmline_message_delivery_seconds_count")
            .await
            >= 2.0
    );
    assert_eq!(server.metric("warmline_connections").await, 2.0);
    assert!(server.metric("warmline_message_ack_seconds_count").await >= 2.0);
    assert!(server.metric("warmline_store_commit_seconds_count").await >= 1.0);
}

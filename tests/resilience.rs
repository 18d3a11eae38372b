//! Agents who drop, clients who read too slowly: nobody loses their conversation.

mod common;

use common::{Frame, TestServer, accept_next_offer, config_with};
use serde_json::json;

#[tokio::test]
async fn an_agent_who_reconnects_within_the_grace_period_keeps_the_conversation() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    let mut alice = server.available_agent("alice").await;
    accept_next_offer(&mut alice).await;
    customer.until("assigned").await;
    alice.close().await;

    let seq = customer.say(&conversation_id, "are you there?").await;
    let (mut alice, welcome) = server.agent("alice").await;
    assert_eq!(
        welcome["conversations"][0]["conversation_id"],
        json!(conversation_id)
    );
    assert_eq!(welcome["conversations"][0]["last_seq"], seq);
    alice
        .send(json!({"type":"resume","conversation_id":conversation_id,"last_seq":seq - 1}))
        .await;
    assert_eq!(alice.expect("message").await["text"], "are you there?");
    alice.expect("resumed").await;
    let reply = alice.say(&conversation_id, "yes, sorry").await;
    assert_eq!(customer.expect("message").await["seq"], reply);
}

#[tokio::test]
async fn after_the_grace_period_the_conversation_goes_to_another_agent_with_its_transcript() {
    let routing = "agent_grace_ms = 300";
    let server = TestServer::start(&config_with(&[("alice", 1), ("bob", 1)], routing)).await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    let mut alice = server.available_agent("alice").await;
    accept_next_offer(&mut alice).await;
    customer.until("assigned").await;
    customer
        .say(&conversation_id, "my card was charged twice")
        .await;
    alice.close().await;

    // bob comes online; alice's conversation is not his until her grace runs out.
    let mut bob = server.available_agent("bob").await;
    let notice = customer.expect("message").await;
    assert_eq!(notice["sender"]["role"], "system");
    let (taken, conversation) = accept_next_offer(&mut bob).await;
    assert_eq!(taken, conversation_id);
    let texts: Vec<&str> = conversation["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"my card was charged twice"),
        "{conversation}"
    );
    let assigned = customer.until("assigned").await;
    assert_eq!(assigned["agent"]["id"], "bob");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_resumes_without_loss() {
    let mut config = config_with(&[("alice", 1)], "");
    config = config.replace(
        "[customer]\n",
        "[limits]\noutbound_queue = 4\nwrite_timeout_ms = 500\n[customer]\n",
    );
    let server = TestServer::start(&config).await;
    let (mut customer, welcome) = server.customer_hello(None).await;
    let token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let conversation_id = customer.start().await;
    let mut alice = server.available_agent("alice").await;
    accept_next_offer(&mut alice).await;
    let mut highest = customer.until("assigned").await["seq"].as_u64().unwrap();

    // The customer stops reading while the agent sends far more than socket buffers hold.
    let chunk = "x".repeat(60 * 1024);
    let mut last = 0;
    for i in 0..300 {
        last = alice.say(&conversation_id, &format!("{i} {chunk}")).await;
    }

    // Reading again, the customer gets what was buffered, then the connection ends.
    let mut cut = false;
    loop {
        match customer.next().await {
            Frame::Json(v) => {
                if let Some(seq) = v["seq"].as_u64() {
                    assert_eq!(seq, highest + 1, "in order, no gaps");
                    highest = seq;
                }
            }
            Frame::Closed(close) => {
                if let Some((code, _)) = close {
                    assert_eq!(code, 4001);
                }
                cut = true;
                break;
            }
        }
        if highest == last {
            break;
        }
    }
    assert!(
        cut,
        "the gateway should have cut a client that stopped reading"
    );
    assert!(highest < last);

    // It resumes and gets exactly the rest.
    let (mut back, _) = server.customer_hello(Some(&token)).await;
    back.send(json!({"type":"resume","conversation_id":conversation_id,"last_seq":highest}))
        .await;
    for seq in highest + 1..=last {
        assert_eq!(back.expect("message").await["seq"], seq);
    }
    assert_eq!(back.expect("resumed").await["last_seq"], last);
    assert!(
        server
            .metric(r#"warmline_connections_closed_total{reason="slow_consumer",role="customer"}"#)
            .await
            >= 1.0
    );
}

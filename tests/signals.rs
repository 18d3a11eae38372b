//! Satisfaction signals seen live: coaching flags from the agent's own words reach
//! that agent (and only them) with the message's seq and a hint.

mod common;

use common::{TestServer, accept_next_offer, config_with};

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
    let signals = alice.until("signals").await;
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
    let signals = alice.until("signals").await;
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

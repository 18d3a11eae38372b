//! "You never call": an agent closes with `follow_up`; when it falls due, an outbound
//! conversation opens for the customer, offered to that agent first, and reaches the
//! customer at once if they are connected, or at their next hello, restarts included.

mod common;

use std::time::Duration;

use common::{
    Client, IDENTITY_SECRET, TestServer, accept_next_offer, config_with, identity_token as identity,
};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789abcdef-0123";

fn config() -> String {
    config_with(&[("alice", 2), ("bob", 2)], "affinity_wait_ms = 60000").replace(
        "[auth]\n",
        &format!("[auth]\nadmin_token = \"{ADMIN}\"\nidentity_secret = \"{IDENTITY_SECRET}\"\n"),
    )
}

async fn identified(server: &TestServer, sub: &str) -> (Client, Value) {
    let mut c = server.customer().await;
    c.send(json!({"type":"hello","identity": identity(sub)}))
        .await;
    let welcome = c.expect("welcome").await;
    (c, welcome)
}

fn in_ms(ms: u64) -> String {
    let at = std::time::SystemTime::now() + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// The customer chats with alice, who closes promising to get back in `ms`.
async fn promise(server: &TestServer, alice: &mut Client, sub: &str, ms: u64) -> String {
    let (mut customer, _) = identified(server, sub).await;
    let first = customer.start().await;
    accept_next_offer(alice).await;
    customer.say(&first, "the refund has not arrived").await;
    alice
        .request(
            json!({"type":"close","conversation_id": first,"resolution":"follow_up",
            "note":"check the refund with finance","follow_up_at": in_ms(ms)}),
        )
        .await;
    first
}

async fn follow_ups(server: &TestServer, status: &str) -> Vec<Value> {
    let (code, body) = server
        .http(
            "GET",
            &format!("/api/v1/follow-ups?status={status}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body["follow_ups"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_due_follow_up_goes_to_the_same_agent_and_waits_for_the_customer() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    let mut bob = server.available_agent("bob").await;
    let first = promise(&server, &mut alice, "cust-1", 1_500).await;
    let scheduled = follow_ups(&server, "scheduled").await;
    assert_eq!(scheduled.len(), 1);
    assert_eq!(scheduled[0]["conversation_id"], first);
    assert_eq!(scheduled[0]["agent_id"], "alice");

    // The customer is offline when it falls due; alice is offered it (bob idled
    // longer and would be next by the queue's strategy).
    let offer = alice.until("offer").await;
    assert_eq!(offer["reason"], "history", "{offer}");
    alice
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = alice.until("conversation").await;
    let follow_up = conversation["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(conversation["attributes"]["follow_up_of"], first);
    assert_eq!(conversation["repeat_of"]["conversation_id"], first);
    let due = follow_ups(&server, "due").await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0]["opened_as"], follow_up.as_str());
    alice
        .say(&follow_up, "Good news: finance sent the refund today.")
        .await;

    // The customer comes back: the follow-up is waiting, with alice's message.
    let (mut customer, welcome) = identified(&server, "cust-1").await;
    let open: Vec<&str> = welcome["open_conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["conversation_id"].as_str())
        .collect();
    assert_eq!(open, vec![follow_up.as_str()]);
    customer
        .send(json!({"type":"resume","conversation_id": follow_up,"last_seq": 0}))
        .await;
    let mut said = Vec::new();
    loop {
        let f = customer.json().await;
        match f["type"].as_str() {
            Some("message") => said.push(f["text"].as_str().unwrap().to_owned()),
            Some("resumed") => break,
            _ => {}
        }
    }
    assert!(
        said[0].contains("check the refund with finance"),
        "{said:?}"
    );
    assert_eq!(
        said.last().unwrap(),
        "Good news: finance sent the refund today."
    );
    // bob, also available, was never offered it.
    bob.request(json!({"type":"status","state":"available"}))
        .await;
}

#[tokio::test]
async fn an_online_customer_gets_the_follow_up_at_once() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    promise(&server, &mut alice, "cust-2", 1_000).await;
    let (mut customer, _) = identified(&server, "cust-2").await;
    let opened = customer.until("follow_up").await;
    assert!(opened["note"].as_str().unwrap().contains("finance"));
    let line = customer.until("message").await;
    assert_eq!(line["conversation_id"], opened["conversation_id"]);
    assert_eq!(line["sender"]["role"], "system");
}

#[tokio::test]
async fn follow_ups_survive_a_restart() {
    let mut server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    promise(&server, &mut alice, "cust-3", 2_000).await;
    drop(alice);
    server.terminate().await;
    server.restart().await;
    let mut alice = server.available_agent("alice").await;
    let offer = alice.until("offer").await;
    assert_eq!(offer["reason"], "history");
    assert_eq!(offer["customer"]["id"], "cust-3");
    // alice takes it and writes; the customer finds it at their next hello.
    alice
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = alice.until("conversation").await;
    // Exactly one conversation opened for it (the offer may leave before the opening
    // is committed; the accept is answered only after it).
    let all = follow_ups(&server, "all").await;
    assert_eq!(all.len(), 1);
    assert!(all[0]["opened_as"].is_string());
    let follow_up = conversation["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(Some(follow_up.as_str()), all[0]["opened_as"].as_str());
    alice
        .say(&follow_up, "The refund went out this morning.")
        .await;
    let (_, welcome) = identified(&server, "cust-3").await;
    let open: Vec<&str> = welcome["open_conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["conversation_id"].as_str())
        .collect();
    assert_eq!(open, vec![follow_up.as_str()]);
}

#[tokio::test]
async fn a_follow_up_needs_a_sensible_time() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = identified(&server, "cust-4").await;
    let first = customer.start().await;
    accept_next_offer(&mut alice).await;
    for (body, why) in [
        (json!({"resolution":"follow_up"}), "follow_up_at"),
        (
            json!({"resolution":"follow_up","follow_up_at":"tomorrow"}),
            "RFC 3339",
        ),
        (
            json!({"resolution":"follow_up","follow_up_at":"2001-01-01T00:00:00Z"}),
            "future",
        ),
        (
            json!({"resolution":"resolved","follow_up_at": in_ms(60_000)}),
            "follow_up",
        ),
    ] {
        let mut frame = body.clone();
        frame["type"] = json!("close");
        frame["id"] = json!("c");
        frame["conversation_id"] = json!(first);
        alice.send(frame).await;
        let e = alice.until("error").await;
        assert_eq!(e["code"], "invalid_field", "{body}: {e}");
        assert!(e["message"].as_str().unwrap().contains(why), "{body}: {e}");
    }
    // Nothing was closed or scheduled.
    assert!(follow_ups(&server, "all").await.is_empty());
    customer.say(&first, "still here").await;
}

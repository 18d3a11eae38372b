//! Warm and cold transfers on the real server: the conversation is never left alone.

mod common;

use common::{Client, TestServer, accept_next_offer};
use serde_json::json;

fn config() -> String {
    let mut config = common::base_config();
    config.push_str(
        "[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n\
         [[queues]]\nname = \"billing\"\nskills = { billing = 3 }\nwrap_up_ms = 0\n",
    );
    for (id, skills) in [("alice", ""), ("bob", ""), ("carol", "billing = 6")] {
        config.push_str(&format!(
            "[[agents]]\nid = \"{id}\"\ndisplay_name = \"{id}\"\nskills = {{ {skills} }}\ncapacity = {{ chat = 1, voice = 0 }}\n"
        ));
    }
    config
}

/// A customer talking with alice.
async fn with_alice(server: &TestServer) -> (Client, Client, String) {
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    accept_next_offer(&mut alice).await;
    customer.until("assigned").await;
    customer.say(&conversation_id, "I was charged twice").await;
    alice.until("message").await;
    (customer, alice, conversation_id)
}

#[tokio::test]
async fn a_warm_transfer_keeps_the_first_agent_until_the_target_accepts() {
    let server = TestServer::start(&config()).await;
    let (mut customer, mut alice, conversation_id) = with_alice(&server).await;
    let mut bob = server.available_agent("bob").await;
    alice
        .request(json!({"type":"transfer","conversation_id":conversation_id,"to":{"agent":"bob"},"mode":"warm","note":"refund approved"}))
        .await;
    let offer = bob.take("offer").await;
    assert_eq!(offer["reason"], "transfer");
    assert_eq!(offer["note"], "refund approved");

    // Until bob accepts, alice is still there for the customer.
    let seq = alice.say(&conversation_id, "bringing in a colleague").await;
    assert_eq!(customer.expect("message").await["seq"], seq);

    bob.request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = bob.take("conversation").await;
    let texts: Vec<&str> = conversation["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(texts, ["I was charged twice", "bringing in a colleague"]);
    let done = alice.take("transferred").await;
    assert_eq!(done["mode"], "warm");
    assert_eq!(done["to"], json!({"agent":"bob"}));
    assert_eq!(customer.expect("assigned").await["agent"]["id"], "bob");

    // alice has left; bob carries on.
    alice
        .send(json!({"type":"message","id":"late","conversation_id":conversation_id,"text":"hi"}))
        .await;
    assert_eq!(alice.take("error").await["code"], "forbidden");
    let seq = bob.say(&conversation_id, "refund is on its way").await;
    assert_eq!(customer.expect("message").await["seq"], seq);
}

#[tokio::test]
async fn a_warm_transfer_nobody_takes_stays_with_the_first_agent() {
    let server = TestServer::start(&config()).await;
    let (mut customer, mut alice, conversation_id) = with_alice(&server).await;
    let mut bob = server.available_agent("bob").await;
    alice
        .request(json!({"type":"transfer","conversation_id":conversation_id,"to":{"agent":"bob"},"mode":"warm"}))
        .await;
    let offer = bob.take("offer").await;
    bob.request(json!({"type":"reject","offer_id":offer["offer_id"],"reason":"not my area"}))
        .await;
    let failed = alice.take("transfer_failed").await;
    assert_eq!(failed["conversation_id"], json!(conversation_id));
    let seq = alice.say(&conversation_id, "still with you").await;
    assert_eq!(customer.expect("message").await["seq"], seq);

    // To a queue where nobody can take it: told at once.
    alice
        .request(json!({"type":"transfer","conversation_id":conversation_id,"to":{"queue":"billing"},"mode":"warm"}))
        .await;
    assert_eq!(
        alice.take("transfer_failed").await["conversation_id"],
        json!(conversation_id)
    );
}

#[tokio::test]
async fn a_cold_transfer_goes_ahead_of_the_others_in_the_target_queue() {
    let server = TestServer::start(&config()).await;
    // Someone already waits in billing (carol is away).
    let (mut carol, _) = server.agent("carol").await;
    let (mut waiting, _) = server.customer_hello(None).await;
    waiting
        .request(json!({"type":"start","queue":"billing"}))
        .await;
    let (mut customer, mut alice, conversation_id) = with_alice(&server).await;
    alice
        .request(json!({"type":"transfer","conversation_id":conversation_id,"to":{"queue":"billing"},"mode":"cold","note":"double charge"}))
        .await;
    let done = alice.take("transferred").await;
    assert_eq!(
        (done["mode"].clone(), done["to"].clone()),
        (json!("cold"), json!({"queue":"billing"}))
    );
    let notice = customer.expect("message").await;
    assert_eq!(notice["sender"]["role"], "system");

    carol
        .request(json!({"type":"status","state":"available"}))
        .await;
    let offer = carol.take("offer").await;
    assert_eq!(
        offer["conversation_id"],
        json!(conversation_id),
        "the transferred one first"
    );
    assert_eq!(
        (offer["reason"].clone(), offer["note"].clone()),
        (json!("transfer"), json!("double charge"))
    );
    assert_eq!(offer["queue"], "billing");
    carol
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    assert_eq!(customer.until("assigned").await["agent"]["id"], "carol");

    // Bad transfers are refused with a reason.
    carol
        .send(json!({"type":"transfer","id":"t1","conversation_id":conversation_id,"to":{"queue":"nope"},"mode":"cold"}))
        .await;
    assert_eq!(carol.take("error").await["code"], "not_found");
    carol
        .send(json!({"type":"transfer","id":"t2","conversation_id":conversation_id,"to":{"agent":"carol"},"mode":"cold"}))
        .await;
    assert_eq!(carol.take("error").await["code"], "conflict");
    carol
        .send(json!({"type":"transfer","id":"t3","conversation_id":conversation_id,"to":{"team":"x"},"mode":"cold"}))
        .await;
    assert_eq!(carol.take("error").await["code"], "invalid_field");
}

#[tokio::test]
async fn a_cold_transfer_is_never_offered_back_to_the_agent_who_made_it() {
    let server = TestServer::start(&config()).await;
    let (mut customer, mut alice, conversation_id) = with_alice(&server).await;
    let mut bob = server.available_agent("bob").await;
    // alice has idled longer than bob and has room again once she lets go.
    alice
        .request(json!({"type":"transfer","conversation_id":conversation_id,"to":{"queue":"support"},"mode":"cold"}))
        .await;
    let offer = bob.take("offer").await;
    assert_eq!(
        (offer["conversation_id"].clone(), offer["reason"].clone()),
        (json!(conversation_id), json!("transfer"))
    );
    bob.request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    assert_eq!(customer.until("assigned").await["agent"]["id"], "bob");
}

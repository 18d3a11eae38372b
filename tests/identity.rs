//! Verified customer identity: `hello.identity` (a JWT from the business's backend),
//! bad tokens refused clearly, and an anonymous visitor's conversations following them
//! once they identify, never anyone else.

mod common;

use common::{
    Client, IDENTITY_SECRET, TestServer, accept_next_offer, config_with, identity_token as identity,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn config() -> String {
    config_with(&[("alice", 2)], "").replace(
        "[auth]\n",
        &format!("[auth]\nidentity_secret = \"{IDENTITY_SECRET}\"\n"),
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn identity_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn hello(server: &TestServer, frame: Value) -> (Client, Value) {
    let mut c = server.customer().await;
    c.send(frame).await;
    let reply = c.json().await;
    (c, reply)
}

#[tokio::test]
async fn bad_identity_tokens_are_refused_clearly() {
    let server = TestServer::start(&config()).await;
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg":"none","typ":"JWT"})),
        b64(json!({"sub":"mallory","exp": now() + 600}))
    );
    let cases = [
        (
            "wrong signature",
            identity_with(
                json!({"sub":"c1","exp": now() + 600}),
                "another-secret-another-secret-000",
            ),
        ),
        ("alg none", unsigned),
        (
            "expired",
            identity_with(json!({"sub":"c1","exp": now() - 3600}), IDENTITY_SECRET),
        ),
        (
            "no sub",
            identity_with(json!({"exp": now() + 600}), IDENTITY_SECRET),
        ),
        (
            "empty sub",
            identity_with(json!({"sub":" ","exp": now() + 600}), IDENTITY_SECRET),
        ),
        ("not a JWT", "hello".to_owned()),
    ];
    for (what, token) in cases {
        let (mut c, reply) =
            hello(&server, json!({"type":"hello","id":"h","identity": token})).await;
        assert_eq!(reply["type"], "error", "{what}: {reply}");
        assert_eq!(reply["code"], "unauthorized", "{what}: {reply}");
        assert_eq!(reply["id"], "h");
        assert!(
            reply["message"].as_str().unwrap().contains("identity"),
            "{what}: {reply}"
        );
        // The connection is still usable: an anonymous hello works.
        c.send(json!({"type":"hello"})).await;
        let welcome = c.expect("welcome").await;
        assert!(welcome["customer_id"].as_str().is_some());
    }
}

#[tokio::test]
async fn identity_is_refused_where_it_is_not_configured() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let (_, reply) = hello(&server, json!({"type":"hello","identity": identity("c1")})).await;
    assert_eq!(reply["code"], "invalid_field", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("identity_secret")
    );
}

#[tokio::test]
async fn a_visitor_who_identifies_brings_their_conversations_and_nobody_else_sees_them() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;

    // An anonymous visitor has a closed conversation and an open one.
    let (mut visitor, welcome) = server.customer_hello(None).await;
    let visitor_token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let first = visitor.start().await;
    accept_next_offer(&mut alice).await;
    visitor.say(&first, "is my order shipped?").await;
    visitor
        .request(json!({"type":"end","conversation_id": first}))
        .await;
    let open = visitor.start().await;
    accept_next_offer(&mut alice).await;
    visitor.say(&open, "and can I change the address?").await;

    // They log in: hello with the visitor token and an identity.
    let (mut customer, welcome) = hello(
        &server,
        json!({"type":"hello","visitor_token": visitor_token, "identity": identity("cust-42")}),
    )
    .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["customer_id"], "cust-42");
    let listed: Vec<&str> = welcome["open_conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["conversation_id"].as_str())
        .collect();
    assert_eq!(listed, vec![open.as_str()]);
    // The customer reads and writes it.
    customer
        .request(json!({"type":"resume","conversation_id": open, "last_seq": 0}))
        .await;
    let seq = customer.say(&open, "I'm logged in now").await;
    let got = loop {
        let m = alice.until("message").await;
        if m["text"] == "I'm logged in now" {
            break m;
        }
    };
    assert_eq!(got["seq"], seq);

    // The merge is kept: the closed conversation counts in the customer's history.
    let next = customer.start().await;
    let offer = alice.until("offer").await;
    assert_eq!(offer["conversation_id"], next);
    assert_eq!(offer["customer"]["id"], "cust-42");
    assert_eq!(offer["customer"]["display_name"], "Customer cust-42");
    assert!(
        offer["customer"]["previous_conversations"].as_u64() >= Some(1),
        "{offer}"
    );

    // Another customer cannot read it, nor can the old anonymous token alone.
    let (mut other, welcome) = hello(
        &server,
        json!({"type":"hello","identity": identity("cust-7")}),
    )
    .await;
    assert_eq!(welcome["customer_id"], "cust-7");
    other
        .send(json!({"type":"resume","id":"r","conversation_id": open, "last_seq": 0}))
        .await;
    let e = other.until("error").await;
    assert_eq!(e["code"], "forbidden", "{e}");
    let (mut anon, welcome) = hello(
        &server,
        json!({"type":"hello","visitor_token": visitor_token}),
    )
    .await;
    assert_eq!(welcome["open_conversations"], json!([]), "{welcome}");
    anon.send(json!({"type":"message","id":"m","conversation_id": open, "text":"hi"}))
        .await;
    assert_eq!(anon.until("error").await["code"], "forbidden");

    // Identifying again with the same visitor token changes nothing (idempotent).
    let (_, welcome) = hello(
        &server,
        json!({"type":"hello","visitor_token": visitor_token, "identity": identity("cust-42")}),
    )
    .await;
    assert_eq!(welcome["open_conversations"].as_array().unwrap().len(), 2);
}

/// An IVR that verified the caller passes their identity: the call is theirs.
#[tokio::test]
async fn a_phone_call_with_a_verified_identity_belongs_to_that_customer() {
    let config = config()
        .replace(
            "[auth]\n",
            &format!("[auth]\nmedia_secret = \"{}\"\n", common::SECRET),
        )
        .replace(
            "capacity = { chat = 2, voice = 0 }",
            "capacity = { chat = 2, voice = 1 }",
        );
    let server = TestServer::start(&config).await;
    let mut alice = server.available_agent("alice").await;
    let token = warmline::gateway::auth::mint_media(common::SECRET, "ivr", 600).unwrap();
    let start = |params: Value| {
        json!({"event":"start","sequenceNumber":"1","streamSid":"MZ1",
            "start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],
            "customParameters": params,
            "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}})
    };
    let url = server.ws_url(&format!("/ws/media?token={token}"));
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut call = Client::connect(url.clone().into_client_request().unwrap())
        .await
        .unwrap();
    call.send(start(
        json!({"queue":"support","from":"+15550002222","identity": identity("cust-9")}),
    ))
    .await;
    let offer = alice.until("offer").await;
    assert_eq!(offer["customer"]["id"], "cust-9", "{offer}");

    // A forged identity ends the call's stream with a clear error.
    let mut forged = Client::connect(url.into_client_request().unwrap())
        .await
        .unwrap();
    let bad = identity_with(
        json!({"sub":"cust-9","exp": now() + 600}),
        "not-the-shop-secret-not-the-shop-000",
    );
    forged
        .send(start(json!({"queue":"support","identity": bad})))
        .await;
    assert_eq!(forged.json().await["code"], "unauthorized");
    assert_eq!(forged.closed().await.map(|c| c.0), Some(1008));
}

/// A returning identified customer sees their past conversations (and can read one);
/// the agent sees the history with the new conversation; so do operators.
#[tokio::test]
async fn a_returning_customer_and_their_agent_see_the_history() {
    const ADMIN: &str = "admin-token-0123456789abcdef-0123";
    let config = config().replace("[auth]\n", &format!("[auth]\nadmin_token = \"{ADMIN}\"\n"));
    let server = TestServer::start(&config).await;
    let mut alice = server.available_agent("alice").await;

    // A first contact, resolved and rated.
    let (mut customer, _) = hello(
        &server,
        json!({"type":"hello","identity": identity("cust-42")}),
    )
    .await;
    let first = customer.start().await;
    accept_next_offer(&mut alice).await;
    customer.say(&first, "the app crashes on login").await;
    alice
        .request(json!({"type":"close","conversation_id": first,"resolution":"resolved"}))
        .await;
    customer.until("survey_request").await;
    customer
        .request(json!({"type":"survey","conversation_id": first,"csat": 5,"effort": 2}))
        .await;
    drop(customer);

    // They come back on another device.
    let (mut back, _) = hello(
        &server,
        json!({"type":"hello","identity": identity("cust-42")}),
    )
    .await;
    back.send(json!({"type":"history","id":"h1"})).await;
    let history = back.expect("history").await;
    assert_eq!(history["id"], "h1");
    let past = history["conversations"].as_array().unwrap();
    assert_eq!(past.len(), 1, "{history}");
    assert_eq!(past[0]["conversation_id"], first);
    assert_eq!(past[0]["resolution"], "resolved");
    assert_eq!(past[0]["csat"], 5);
    assert_eq!(past[0]["agent_id"], "alice");
    assert_eq!(back.expect("ack").await["id"], "h1");
    // And read what was said.
    back.send(json!({"type":"resume","conversation_id": first,"last_seq": 0}))
        .await;
    let said = back.until("message").await;
    assert_eq!(said["text"], "the app crashes on login");

    // The agent's new conversation carries the history.
    let second = back.start().await;
    let (_, conversation) = accept_next_offer(&mut alice).await;
    assert_eq!(conversation["conversation_id"], second);
    let history = conversation["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{conversation}");
    assert_eq!(history[0]["conversation_id"], first);
    assert_eq!(history[0]["csat"], 5);
    assert_eq!(history[0]["effort"], 2);

    // Operators see the customer; an unknown one is a 404 that says so.
    let (status, body) = server
        .http("GET", "/api/v1/customers/cust-42", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let profile = body;
    assert_eq!(profile["id"], "cust-42");
    assert_eq!(profile["name"], "Customer cust-42");
    assert_eq!(profile["conversations"].as_array().unwrap().len(), 2);
    let (status, body) = server
        .http("GET", "/api/v1/customers/nobody", Some(ADMIN), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    assert!(
        body["message"].as_str().unwrap().contains("nobody"),
        "{body}"
    );
    let (status, _) = server
        .http("GET", "/api/v1/customers/cust-42", None, None)
        .await;
    assert_eq!(status, 401);
}

//! Context follows the customer: what an IVR or a bot learned (posted through the
//! operator API) routes the customer's next conversation and is shown to the agent,
//! so nobody asks for the account number twice.

mod common;

use common::{
    Client, IDENTITY_SECRET, TestServer, accept_next_offer, base_config, identity_token as identity,
};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789abcdef-0123";

fn config() -> String {
    let mut config = base_config().replace(
        "[auth]\n",
        &format!("[auth]\nadmin_token = \"{ADMIN}\"\nidentity_secret = \"{IDENTITY_SECRET}\"\n"),
    );
    config.push_str(
        "[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n\
         [[queues.rules]]\nattribute = \"intent\"\nequals = \"billing\"\nskills = { billing = 1 }\n\
         [[queues]]\nname = \"sales\"\nwrap_up_ms = 0\n\
         [[agents]]\nid = \"alice\"\ncapacity = { chat = 2, voice = 0 }\n\
         [[agents]]\nid = \"bob\"\nskills = { billing = 5 }\ncapacity = { chat = 2, voice = 0 }\n",
    );
    config
}

async fn identified(server: &TestServer, sub: &str) -> Client {
    let mut c = server.customer().await;
    c.send(json!({"type":"hello","identity": identity(sub)}))
        .await;
    c.expect("welcome").await;
    c
}

async fn post_context(server: &TestServer, customer: &str, body: Value) -> (u16, Value) {
    server
        .http(
            "POST",
            &format!("/api/v1/customers/{customer}/context"),
            Some(ADMIN),
            Some(&body),
        )
        .await
}

#[tokio::test]
async fn ivr_context_routes_the_chat_and_the_agent_sees_it() {
    let server = TestServer::start(&config()).await;
    // alice has idled longest, but has no billing skill.
    let mut alice = server.available_agent("alice").await;
    let mut bob = server.available_agent("bob").await;
    // The customer is known (they logged in once).
    drop(identified(&server, "cust-5").await);

    // The IVR learned their account number and why they call.
    let (status, reply) = post_context(
        &server,
        "cust-5",
        json!({"attributes": {"account_number": "12345678", "intent": "billing"}, "ttl_seconds": 600}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["attributes"]["account_number"], "12345678");

    // They chat: the intent made billing a requirement, so bob gets it.
    let mut customer = identified(&server, "cust-5").await;
    let conversation_id = customer.start().await;
    let offer = bob.until("offer").await;
    assert_eq!(offer["conversation_id"], conversation_id);
    bob.request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = bob.until("conversation").await;
    assert_eq!(conversation["attributes"]["account_number"], "12345678");
    assert_eq!(conversation["attributes"]["intent"], "billing");
    // (alice idled longest: without the rule she would have had the offer, and one
    // conversation has one offer at a time.)

    // A customer's own client cannot claim the intent: their attributes do not route.
    let mut other = identified(&server, "cust-6").await;
    let ack = other
        .request(json!({"type":"start","queue":"support","attributes":{"intent":"billing"}}))
        .await;
    let offer = alice.until("offer").await;
    assert_eq!(offer["conversation_id"], ack["conversation_id"]);
}

#[tokio::test]
async fn bad_context_is_refused_and_nothing_is_stored() {
    let server = TestServer::start(&config()).await;
    drop(identified(&server, "cust-5").await);
    let cases = [
        (
            "cust-404",
            json!({"attributes": {"intent": "billing"}}),
            404,
            None,
        ),
        (
            "cust-5",
            json!({"attributes": {"note": "x".repeat(2000)}}),
            400,
            Some("attributes.note"),
        ),
        (
            "cust-5",
            json!({"attributes": {"Bad Key": "1"}}),
            400,
            Some("attributes.Bad Key"),
        ),
        (
            "cust-5",
            json!({"attributes": {"intent": {"nested": true}}}),
            400,
            Some("attributes.intent"),
        ),
        (
            "cust-5",
            json!({"attributes": {"intent": "billing"}, "ttl_seconds": 0}),
            400,
            Some("ttl_seconds"),
        ),
        ("cust-5", json!({"attributes": {}}), 400, Some("attributes")),
        ("cust-5", json!({"attrs": {"intent": "billing"}}), 400, None),
    ];
    for (customer, body, status, field) in cases {
        let (got, reply) = post_context(&server, customer, body.clone()).await;
        assert_eq!(got, status, "{body} -> {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
        if let Some(field) = field {
            assert_eq!(reply["field"], field, "{reply}");
        }
    }
    // Nothing was stored: the next conversation carries no context.
    let mut alice = server.available_agent("alice").await;
    let mut customer = identified(&server, "cust-5").await;
    customer.start().await;
    let offer = alice.until("offer").await;
    alice
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = alice.until("conversation").await;
    assert_eq!(conversation["attributes"], json!({}), "{conversation}");
    // Without the admin token: 401.
    let (status, _) = server
        .http(
            "POST",
            "/api/v1/customers/cust-5/context",
            None,
            Some(&json!({"attributes": {"intent": "billing"}})),
        )
        .await;
    assert_eq!(status, 401);
}

/// A customer back within the repeat window on the same queue: the new conversation
/// names the earlier one, and its agent gets it with what was said.
#[tokio::test]
async fn a_repeat_contact_carries_the_earlier_conversation() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    let mut customer = identified(&server, "cust-8").await;
    let first = customer.start().await;
    accept_next_offer(&mut alice).await;
    customer.say(&first, "my router keeps rebooting").await;
    alice
        .request(json!({"type":"close","conversation_id": first,"resolution":"resolved"}))
        .await;

    // Another queue: not a repeat.
    let ack = customer
        .request(json!({"type":"start","queue":"sales"}))
        .await;
    let (_, other) = accept_next_offer(&mut alice).await;
    assert_eq!(other["conversation_id"], ack["conversation_id"]);
    assert!(other.get("repeat_of").is_none(), "{other}");

    // Same queue, within the window: a repeat of the first.
    let second = customer.start().await;
    let (_, conversation) = accept_next_offer(&mut alice).await;
    assert_eq!(conversation["conversation_id"], second);
    let repeat = &conversation["repeat_of"];
    assert_eq!(repeat["conversation_id"], first, "{conversation}");
    assert_eq!(repeat["resolution"], "resolved");
    let said: Vec<&str> = repeat["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(said, vec!["my router keeps rebooting"]);

    // The customer's history shows it too.
    customer.send(json!({"type":"history"})).await;
    let history = customer.until("history").await;
    let newest = &history["conversations"][0];
    assert_eq!(newest["conversation_id"], second);
    assert_eq!(newest["repeat_of"], first);
}

/// A console that loads again (or an agent who signs in again) mid-conversation gets
/// the context, the history and the repeat contact in the welcome, exactly as the
/// accept gave them; the offer shows what the customer wrote first.
#[tokio::test]
async fn a_reconnecting_agent_gets_the_context_history_and_repeat_contact_again() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    let mut customer = identified(&server, "cust-9").await;
    let first = customer.start().await;
    accept_next_offer(&mut alice).await;
    customer.say(&first, "my router keeps rebooting").await;
    alice
        .request(json!({"type":"close","conversation_id": first,"resolution":"unresolved"}))
        .await;
    let (status, _) = post_context(
        &server,
        "cust-9",
        json!({"attributes":{"account_number":"12345678"}}),
    )
    .await;
    assert_eq!(status, 200);

    let text = format!(
        "It is rebooting again,\n\tevery   hour. {}",
        "x".repeat(300)
    );
    customer
        .request(json!({"type":"start","queue":"support","attributes":{"page_url":"https://shop.example/help"},"text": text}))
        .await;
    let offer = alice.take("offer").await;
    let preview = offer["preview"].as_str().expect("the offer has a preview");
    assert!(
        preview.starts_with("It is rebooting again, every hour. x"),
        "{offer}"
    );
    assert!(
        preview.ends_with('…') && preview.chars().count() <= 160,
        "{preview}"
    );
    alice
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = alice.take("conversation").await;
    assert_eq!(conversation["attributes"]["account_number"], "12345678");
    assert_eq!(
        conversation["attributes"]["page_url"],
        "https://shop.example/help"
    );
    assert_eq!(conversation["repeat_of"]["conversation_id"], first);
    assert_eq!(conversation["history"].as_array().map(Vec::len), Some(1));

    // The console reloads: a second connection of the same agent.
    let (_again, welcome) = server.agent("alice").await;
    let listed = welcome["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation_id"] == conversation["conversation_id"])
        .cloned()
        .expect("the open conversation is listed");
    for field in ["attributes", "history", "repeat_of", "customer"] {
        assert_eq!(listed[field], conversation[field], "`{field}` in {welcome}");
    }
}

/// The customer had to repeat what the IVR already told us, and the agent asked for
/// it: both are flagged to the agent live and counted on the conversation.
#[tokio::test]
async fn repeating_known_information_is_effort_and_is_flagged() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    drop(identified(&server, "cust-9").await);
    let (status, _) = post_context(
        &server,
        "cust-9",
        json!({"attributes": {"account_number": "55512345"}}),
    )
    .await;
    assert_eq!(status, 200);
    let mut customer = identified(&server, "cust-9").await;
    let conversation_id = customer.start().await;
    accept_next_offer(&mut alice).await;

    let asked = alice
        .say(&conversation_id, "Hello! What is your account number?")
        .await;
    let signals = alice.signals_with("flags").await;
    assert_eq!(signals["flags"][0]["code"], "asked_known", "{signals}");
    assert_eq!(signals["flags"][0]["seq"], asked);
    let repeated = customer
        .say(
            &conversation_id,
            "It's 555-123-45, I already typed it in the phone menu",
        )
        .await;
    let signals = alice.signals_with("flags").await;
    assert_eq!(
        signals["flags"][0]["code"], "customer_repeated",
        "{signals}"
    );
    assert_eq!(signals["flags"][0]["seq"], repeated);
    alice
        .request(json!({"type":"close","conversation_id": conversation_id,"resolution":"resolved"}))
        .await;

    // Kept with the conversation.
    let row = loop {
        if let Some(row) = conversation_signals(&server, &conversation_id).await {
            break row;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(row, (1, 1, false, 1, 1));

    // A customer who gives up while waiting abandoned.
    let mut leaver = identified(&server, "cust-10").await;
    let left = leaver.start().await;
    leaver
        .request(json!({"type":"end","conversation_id": left}))
        .await;
    let row = conversation_signals(&server, &left).await.expect("kept");
    assert!(row.2, "abandoned");
}

/// (repeated_info, asked_known, abandoned, customer_messages, agent_messages)
async fn conversation_signals(
    server: &TestServer,
    conversation_id: &str,
) -> Option<(i64, i64, bool, i64, i64)> {
    use sqlx::Connection;
    let path = server.dir.path().join("data").join("warmline.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut db = sqlx::SqliteConnection::connect_with(&options).await.ok()?;
    sqlx::query_as(
        "SELECT repeated_info, asked_known, abandoned, customer_messages, agent_messages
         FROM conversation_signals WHERE conversation_id = ?1",
    )
    .bind(conversation_id)
    .fetch_optional(&mut db)
    .await
    .ok()?
}

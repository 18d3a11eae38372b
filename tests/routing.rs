//! Routing scenarios on the real server: skills and levels, bullseye steps,
//! overflow, last-agent affinity, avoiding poorly rated agents, queue positions.

mod common;

use common::{Client, TestServer, accept_next_offer};
use serde_json::{Value, json};

fn config(queues: &str, agents: &[(&str, &str)]) -> String {
    let mut config = common::base_config();
    config.push_str(queues);
    for (id, skills) in agents {
        config.push_str(&format!(
            "[[agents]]\nid = \"{id}\"\nskills = {{ {skills} }}\ncapacity = {{ chat = 1, voice = 0 }}\n"
        ));
    }
    config
}

async fn start_in(customer: &mut Client, queue: &str) -> String {
    let ack = customer
        .request(json!({"type":"start","queue":queue}))
        .await;
    ack["conversation_id"].as_str().unwrap().to_owned()
}

/// A customer whose first conversation `agent` resolved, rated `csat`.
async fn returning_customer(server: &TestServer, agent: &mut Client, csat: u8) -> (Client, String) {
    let (mut customer, welcome) = server.customer_hello(None).await;
    let token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let first = start_in(&mut customer, "support").await;
    accept_next_offer(agent).await;
    customer.until("assigned").await;
    agent
        .request(json!({"type":"close","conversation_id":first,"resolution":"resolved"}))
        .await;
    customer.until("survey_request").await;
    customer
        .request(json!({"type":"survey","conversation_id":first,"csat":csat}))
        .await;
    customer.close().await;
    let (customer, _) = server.customer_hello(Some(&token)).await;
    (customer, token)
}

/// Frames the client has already been sent, up to the ack of a fresh `status` request.
async fn pending_frames(client: &mut Client) -> Vec<Value> {
    let id = client.next_id();
    client
        .send(json!({"type":"status","id":id,"state":"away"}))
        .await;
    let mut frames = Vec::new();
    loop {
        let v = client.json().await;
        if v["id"] == json!(id) {
            return frames;
        }
        frames.push(v);
    }
}

#[tokio::test]
async fn skill_and_level_decide_who_is_offered() {
    // `general` is the junior's queue: an agent qualified for no queue at all is a
    // config error (`warmline check-config`).
    let queues = "[[queues]]\nname = \"billing\"\nskills = { billing = 5 }\n\
                  [[queues]]\nname = \"general\"\n";
    let server = TestServer::start(&config(
        queues,
        &[("junior", "billing = 3"), ("senior", "billing = 7")],
    ))
    .await;
    let mut junior = server.available_agent("junior").await;
    let mut senior = server.available_agent("senior").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = start_in(&mut customer, "billing").await;
    let offer = senior.take("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    assert_eq!(offer["reason"], "skill");
    let frames = pending_frames(&mut junior).await;
    assert!(
        frames.iter().all(|f| f["type"] != "offer"),
        "junior lacks the level: {frames:?}"
    );
}

#[tokio::test]
async fn a_routing_step_lowers_the_level_after_its_timeout() {
    let queues = "[[queues]]\nname = \"billing\"\nskills = { billing = 5 }\n\
                  [[queues.steps]]\nafter_ms = 300\nmin_levels = { billing = 2 }\n";
    let server = TestServer::start(&config(queues, &[("junior", "billing = 3")])).await;
    let mut junior = server.available_agent("junior").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = start_in(&mut customer, "billing").await;
    let offer = junior.take("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    assert_eq!(
        offer["reason"], "expanded",
        "offered only once the step relaxed the level"
    );
}

#[tokio::test]
async fn a_routing_step_widens_to_another_queue_and_max_wait_overflows() {
    let queues = "[[queues]]\nname = \"billing\"\nskills = { billing = 5 }\n\
                  [[queues.steps]]\nafter_ms = 200\nwiden_to = [\"sales\"]\n\
                  [[queues]]\nname = \"sales\"\nskills = { sales = 1 }\n\
                  [[queues]]\nname = \"vip\"\nskills = { vip = 1 }\nmax_wait_ms = 200\noverflow_to = \"sales\"\n";
    let server = TestServer::start(&config(queues, &[("seller", "sales = 4")])).await;
    let mut seller = server.available_agent("seller").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let widened = start_in(&mut customer, "billing").await;
    let offer = seller.take("offer").await;
    assert_eq!(
        (offer["conversation_id"].clone(), offer["reason"].clone()),
        (json!(widened), json!("expanded"))
    );
    seller
        .request(json!({"type":"reject","offer_id":offer["offer_id"]}))
        .await;

    let (mut other, _) = server.customer_hello(None).await;
    let overflowed = start_in(&mut other, "vip").await;
    let offer = seller.take("offer").await;
    assert_eq!(offer["conversation_id"], json!(overflowed));
    assert_eq!(offer["queue"], "sales", "moved to the overflow queue");
}

#[tokio::test]
async fn the_last_agent_is_waited_for_within_the_affinity_wait() {
    let queues = "[[queues]]\nname = \"support\"\nwrap_up_ms = 500\naffinity_wait_ms = 30000\n";
    let server = TestServer::start(&config(queues, &[("alice", ""), ("bob", "")])).await;
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = returning_customer(&server, &mut alice, 5).await;
    // alice is in wrap-up; bob is free. The customer comes back.
    let mut bob = server.available_agent("bob").await;
    let conversation_id = start_in(&mut customer, "support").await;
    let offer = alice.take("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    assert_eq!(offer["reason"], "history");
    assert_eq!(offer["customer"]["returning"], true);
    assert_eq!(offer["customer"]["previous_conversations"], 1);
    let frames = pending_frames(&mut bob).await;
    assert!(
        frames.iter().all(|f| f["type"] != "offer"),
        "bob must not get it: {frames:?}"
    );
}

#[tokio::test]
async fn after_the_affinity_wait_another_agent_takes_it() {
    let queues = "[[queues]]\nname = \"support\"\nwrap_up_ms = 60000\naffinity_wait_ms = 300\n";
    let server = TestServer::start(&config(queues, &[("alice", ""), ("bob", "")])).await;
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = returning_customer(&server, &mut alice, 5).await;
    let mut bob = server.available_agent("bob").await;
    let conversation_id = start_in(&mut customer, "support").await;
    let offer = bob.take("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    assert_eq!(offer["reason"], "skill");
}

#[tokio::test]
async fn an_agent_the_customer_rated_poorly_is_avoided_while_another_qualifies() {
    let queues = "[[queues]]\nname = \"support\"\nwrap_up_ms = 0\naffinity_wait_ms = 30000\n";
    let server = TestServer::start(&config(queues, &[("alice", ""), ("bob", "")])).await;
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = returning_customer(&server, &mut alice, 1).await;
    // alice has idled longer than bob, so she would be next, but the customer rated her 1.
    let mut bob = server.available_agent("bob").await;
    let conversation_id = start_in(&mut customer, "support").await;
    let offer = bob.take("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    assert_eq!(offer["reason"], "skill");
    let frames = pending_frames(&mut alice).await;
    assert!(frames.iter().all(|f| f["type"] != "offer"), "{frames:?}");
}

#[tokio::test]
async fn waiting_customers_learn_their_place_and_an_estimate() {
    let mut cfg = config(
        "[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n",
        &[("alice", "")],
    );
    cfg = cfg.replace(
        "[routing]\n",
        "[routing]\nqueued_update_interval_ms = 200\n",
    );
    let server = TestServer::start(&cfg).await;
    let mut customers = Vec::new();
    for expected in 1..=3 {
        let (mut c, _) = server.customer_hello(None).await;
        let id = start_in(&mut c, "support").await;
        let queued = c.expect("queued").await;
        assert_eq!(queued["position"], expected);
        assert_eq!(
            queued["eta_seconds"],
            Value::Null,
            "no agent online: no estimate"
        );
        customers.push((c, id));
    }
    let mut alice = server.available_agent("alice").await;
    let (taken, _) = accept_next_offer(&mut alice).await;
    assert_eq!(taken, customers[0].1, "first come, first served");
    for (place, (c, _)) in customers.iter_mut().enumerate().skip(1) {
        let queued = c.until("queued").await;
        assert_eq!(queued["position"], place, "moved up one");
        assert!(
            queued["eta_seconds"].as_u64().is_some_and(|s| s > 0),
            "{queued}"
        );
    }
}

/// An estimate counts only agents who can take the conversation: nobody online speaks
/// French, so a French conversation gets no estimate (rather than one nobody keeps).
#[tokio::test]
async fn no_estimate_when_no_online_agent_speaks_the_language() {
    let mut cfg = config("[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n", &[]);
    cfg.push_str(
        "[[agents]]\nid = \"alice\"\nlanguages = [\"en\"]\ncapacity = { chat = 1, voice = 0 }\n",
    );
    let server = TestServer::start(&cfg).await;
    // Online but away: she counts for the estimate, and takes no offer.
    let (_alice, welcome) = server.agent("alice").await;
    assert_eq!(welcome["state"], "away");

    let (mut english, _) = server.customer_hello(None).await;
    english
        .request(json!({"type":"start","queue":"support","language":"en"}))
        .await;
    let queued = english.expect("queued").await;
    assert!(queued["eta_seconds"].as_u64().is_some(), "{queued}");

    let (mut french, _) = server.customer_hello(None).await;
    french
        .request(json!({"type":"start","queue":"support","language":"fr"}))
        .await;
    let queued = french.expect("queued").await;
    assert_eq!(queued["eta_seconds"], Value::Null, "{queued}");
}

#[tokio::test]
async fn a_closed_queue_takes_messages_and_routes_them_when_it_opens() {
    // Open from two seconds from now (UTC) to the end of that day.
    let opens = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let secs = opens
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = ["thu", "fri", "sat", "sun", "mon", "tue", "wed"][((secs / 86_400) % 7) as usize];
    let of_day = secs % 86_400;
    let start = format!(
        "{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    let queues = format!(
        "[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n\
         [queues.hours]\ntime_zone = \"UTC\"\nopen = [\"{day} {start}-24:00\"]\n"
    );
    let server = TestServer::start(&config(&queues, &[("alice", "")])).await;
    let mut alice = server.available_agent("alice").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let ack = customer
        .request(json!({"type":"start","queue":"support","text":"my order 123 never came"}))
        .await;
    let conversation_id = ack["conversation_id"].as_str().unwrap().to_owned();
    let queued = customer.expect("queued").await;
    let opens_at = queued["opens_at"]
        .as_str()
        .expect("opens_at while closed")
        .to_owned();
    assert!(
        queued["eta_seconds"].as_u64().is_some_and(|s| s <= 3),
        "{queued}"
    );
    assert_eq!(
        customer.expect("message").await["text"],
        "my order 123 never came"
    );
    let notice = customer.expect("message").await;
    assert_eq!(notice["sender"]["role"], "system");
    assert!(
        notice["text"].as_str().unwrap().contains("closed"),
        "{notice}"
    );

    let offer = alice.take("offer").await;
    let offered_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    assert!(
        offered_at >= opens_at,
        "offered at {offered_at}, before opening at {opens_at}"
    );
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    alice
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = alice.take("conversation").await;
    assert_eq!(
        conversation["transcript"][0]["text"],
        "my order 123 never came"
    );
}

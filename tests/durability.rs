//! Nothing acknowledged is lost: SIGKILL in the middle of traffic, SIGTERM, restart.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{Client, Frame, TestServer, accept_next_offer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const CONVERSATIONS: usize = 20;
const AGENTS: usize = 4;
const PER_AGENT: usize = CONVERSATIONS / AGENTS;
const WARM_UP: usize = 5;

fn config() -> String {
    let mut config = common::base_config();
    config.push_str("[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n");
    for i in 0..AGENTS {
        config.push_str(&format!(
            "[[agents]]\nid = \"a{i}\"\ncapacity = {{ chat = {PER_AGENT}, voice = 0 }}\n"
        ));
    }
    config.push_str("[[agents]]\nid = \"spare\"\ncapacity = { chat = 1, voice = 0 }\n");
    config
}

/// What one client saw: its acked messages (seq -> text) per conversation, and the
/// highest seq it was sent per conversation.
#[derive(Default, Debug)]
struct Seen {
    acked: HashMap<String, BTreeMap<u64, String>>,
    highest: HashMap<String, u64>,
}

impl Seen {
    fn saw(&mut self, conversation_id: &str, seq: u64) {
        let h = self.highest.entry(conversation_id.to_owned()).or_default();
        *h = (*h).max(seq);
    }
}

/// Sends messages round-robin over `conversations`, each awaiting its ack, until
/// the connection dies. Signals `warm` after `WARM_UP` acks per conversation.
async fn chatter(
    mut client: Client,
    name: String,
    conversations: Vec<String>,
    mut seen: Seen,
    warm: mpsc::Sender<()>,
) -> Seen {
    let mut n = 0usize;
    let mut warmed = false;
    'outer: loop {
        for conversation_id in &conversations {
            let id = format!("m{n}");
            let text = format!("{name} #{n} in {conversation_id}");
            n += 1;
            let frame =
                json!({"type":"message","id":id,"conversation_id":conversation_id,"text":text});
            if !client.try_send(frame).await {
                break 'outer;
            }
            loop {
                let v = match client.next().await {
                    Frame::Json(v) => v,
                    Frame::Closed(_) => break 'outer,
                };
                if let (Some(c), Some(seq)) = (v["conversation_id"].as_str(), v["seq"].as_u64()) {
                    seen.saw(c, seq);
                }
                if v["id"] == json!(id) {
                    assert_eq!(v["type"], "ack", "{v}");
                    let seq = v["seq"].as_u64().unwrap();
                    seen.acked
                        .entry(conversation_id.clone())
                        .or_default()
                        .insert(seq, text.clone());
                    break;
                }
            }
        }
        if !warmed && n >= WARM_UP * conversations.len() {
            warmed = true;
            let _ = warm.send(()).await;
        }
    }
    seen
}

/// Every event of a conversation, read back through `resume` from 0.
async fn transcript(
    server: &TestServer,
    token: &str,
    conversation_id: &str,
) -> BTreeMap<u64, Value> {
    let (mut c, _) = server.customer_hello(Some(token)).await;
    c.send(json!({"type":"resume","conversation_id":conversation_id,"last_seq":0}))
        .await;
    let mut events = BTreeMap::new();
    loop {
        let v = c.json().await;
        if v["type"] == "resumed" {
            assert_eq!(
                v["last_seq"].as_u64(),
                events.keys().last().copied().or(Some(0))
            );
            return events;
        }
        let seq = v["seq"].as_u64().expect("replayed events have seq");
        assert!(events.insert(seq, v).is_none(), "seq {seq} replayed twice");
    }
}

/// Resumes from `last_seq` and checks the client gets exactly the events after it.
async fn check_resume(
    client: &mut Client,
    conversation_id: &str,
    last_seq: u64,
    truth: &BTreeMap<u64, Value>,
) {
    client
        .send(json!({"type":"resume","conversation_id":conversation_id,"last_seq":last_seq}))
        .await;
    let mut expected = truth.range(last_seq + 1..);
    loop {
        let v = client.json().await;
        if v["type"] == "resumed" && v["conversation_id"] == json!(conversation_id) {
            assert!(
                expected.next().is_none(),
                "resume ended early in {conversation_id}"
            );
            assert_eq!(v["last_seq"].as_u64(), truth.keys().last().copied());
            return;
        }
        if v["conversation_id"] != json!(conversation_id) || v.get("seq").is_none() {
            continue;
        }
        let (seq, want) = expected.next().expect("resume sent more than was missed");
        assert_eq!(&v, want, "resume of {conversation_id} at seq {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_traffic_loses_no_acked_message_and_keeps_the_queue_order() {
    let mut server = TestServer::start(&config()).await;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push(server.available_agent(&format!("a{i}")).await);
    }
    let mut customers = Vec::new();
    for _ in 0..CONVERSATIONS {
        let (mut c, welcome) = server.customer_hello(None).await;
        let conversation_id = c.start().await;
        let token = welcome["visitor_token"].as_str().unwrap().to_owned();
        customers.push((c, token, conversation_id));
    }
    let mut held: Vec<Vec<String>> = vec![Vec::new(); AGENTS];
    let mut agent_seen: Vec<Seen> = Vec::new();
    for (i, agent) in agents.iter_mut().enumerate() {
        let mut seen = Seen::default();
        for _ in 0..PER_AGENT {
            let (conversation_id, conversation) = accept_next_offer(agent).await;
            seen.saw(&conversation_id, conversation["last_seq"].as_u64().unwrap());
            held[i].push(conversation_id);
        }
        agent_seen.push(seen);
    }
    let mut customer_seen = Vec::new();
    for (c, _, conversation_id) in &mut customers {
        let assigned = c.until("assigned").await;
        let mut seen = Seen::default();
        seen.saw(conversation_id, assigned["seq"].as_u64().unwrap());
        customer_seen.push(seen);
    }
    // Three more wait in the queue, in this order.
    let mut waiting = Vec::new();
    for expected_position in 1..=3 {
        let (mut c, welcome) = server.customer_hello(None).await;
        let conversation_id = c.start().await;
        let queued = c.until("queued").await;
        assert_eq!(queued["position"], expected_position);
        waiting.push((
            welcome["visitor_token"].as_str().unwrap().to_owned(),
            conversation_id,
        ));
    }

    let customer_tokens: Vec<(String, String)> = customers
        .iter()
        .map(|(_, token, conversation_id)| (token.clone(), conversation_id.clone()))
        .collect();

    // Everyone talks at once; once each has had WARM_UP acks, kill -9.
    let (warm_tx, mut warm_rx) = mpsc::channel(64);
    let mut tasks = Vec::new();
    for ((client, _, conversation_id), seen) in customers.drain(..).zip(customer_seen) {
        let name = format!("customer of {conversation_id}");
        tasks.push(tokio::spawn(chatter(
            client,
            name,
            vec![conversation_id],
            seen,
            warm_tx.clone(),
        )));
    }
    for (i, (agent, seen)) in agents.drain(..).zip(agent_seen).enumerate() {
        tasks.push(tokio::spawn(chatter(
            agent,
            format!("a{i}"),
            held[i].clone(),
            seen,
            warm_tx.clone(),
        )));
    }
    drop(warm_tx);
    for _ in 0..tasks.len() {
        warm_rx.recv().await.expect("every client warms up");
    }
    server.kill().await;
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("chatter task"));
    }
    let (customer_results, agent_results) = results.split_at(CONVERSATIONS);

    server.restart().await;

    // Every acked message is in the transcript exactly once, at its seq.
    let mut truth: HashMap<String, BTreeMap<u64, Value>> = HashMap::new();
    for (token, conversation_id) in &customer_tokens {
        let events = transcript(&server, token, conversation_id).await;
        let mut texts: Vec<&str> = events
            .values()
            .filter(|v| v["type"] == "message")
            .map(|v| v["text"].as_str().unwrap())
            .collect();
        let count = texts.len();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(
            texts.len(),
            count,
            "a message is in {conversation_id} twice"
        );
        assert_eq!(
            events.keys().copied().collect::<Vec<_>>(),
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "seq has gaps in {conversation_id}"
        );
        truth.insert(conversation_id.clone(), events);
    }
    let mut acked_total = 0;
    for seen in customer_results.iter().chain(agent_results) {
        for (conversation_id, acked) in &seen.acked {
            let events = &truth[conversation_id];
            for (seq, text) in acked {
                let event = events
                    .get(seq)
                    .unwrap_or_else(|| panic!("acked seq {seq} lost in {conversation_id}"));
                assert_eq!(event["text"], json!(text), "seq {seq} in {conversation_id}");
                acked_total += 1;
            }
        }
    }
    assert!(
        acked_total >= (CONVERSATIONS + AGENTS * PER_AGENT) * WARM_UP,
        "{acked_total}"
    );

    // Every customer resumes from what it saw and gets exactly what it missed.
    for ((token, conversation_id), seen) in customer_tokens.iter().zip(customer_results) {
        let (mut c, welcome) = server.customer_hello(Some(token)).await;
        assert_eq!(welcome["open_conversations"][0]["state"], "active");
        check_resume(
            &mut c,
            conversation_id,
            seen.highest[conversation_id],
            &truth[conversation_id],
        )
        .await;
    }
    // So does every agent, for each conversation it held (kept through the grace period).
    for (i, seen) in agent_results.iter().enumerate() {
        let (mut agent, welcome) = server.agent(&format!("a{i}")).await;
        let listed: Vec<&str> = welcome["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["conversation_id"].as_str().unwrap())
            .collect();
        assert_eq!(listed.len(), PER_AGENT, "{welcome}");
        for conversation_id in &held[i] {
            assert!(listed.contains(&conversation_id.as_str()));
            check_resume(
                &mut agent,
                conversation_id,
                seen.highest[conversation_id],
                &truth[conversation_id],
            )
            .await;
        }
    }

    // The waiting conversations are still waiting, in the same order.
    for (position, (token, conversation_id)) in waiting.iter().enumerate() {
        let (_, welcome) = server.customer_hello(Some(token)).await;
        let open = &welcome["open_conversations"][0];
        assert_eq!(open["conversation_id"], json!(conversation_id));
        assert_eq!(open["state"], "queued");
        assert_eq!(open["position"], position + 1);
    }
    let mut spare = server.available_agent("spare").await;
    let offer = spare.until("offer").await;
    assert_eq!(
        offer["conversation_id"],
        json!(waiting[0].1),
        "the first in line is served first"
    );
}

#[tokio::test]
async fn sigterm_says_going_away_and_a_restart_loses_nothing() {
    let mut server = TestServer::start(&config()).await;
    let (mut customer, welcome) = server.customer_hello(None).await;
    let token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let conversation_id = customer.start().await;
    let mut agent = server.available_agent("a0").await;
    accept_next_offer(&mut agent).await;
    customer.until("assigned").await;
    let seq = customer.say(&conversation_id, "my order is late").await;
    assert_eq!(agent.expect("message").await["seq"], seq);
    let mut last_seen_by_customer = seq;
    let reply = agent.say(&conversation_id, "let me look").await;
    last_seen_by_customer =
        last_seen_by_customer.max(customer.expect("message").await["seq"].as_u64().unwrap());
    assert_eq!(reply, last_seen_by_customer);
    let mut last_acked_by_agent = reply;

    // The customer steps away; the agent writes twice more.
    customer.close().await;
    for text in ["found it", "it ships today"] {
        last_acked_by_agent = agent.say(&conversation_id, text).await;
    }
    // With the only agent away, a new conversation waits in the queue.
    agent.request(json!({"type":"status","state":"away"})).await;
    let (mut waiting_customer, welcome) = server.customer_hello(None).await;
    let waiting_token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let waiting_conversation = waiting_customer.start().await;
    waiting_customer.until("queued").await;

    let exit = server.terminate().await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(agent.closed().await.map(|c| c.0), Some(1001));
    assert_eq!(waiting_customer.closed().await.map(|c| c.0), Some(1001));

    server.restart().await;
    let (mut back, welcome) = server.customer_hello(Some(&token)).await;
    assert_eq!(
        welcome["open_conversations"][0]["last_seq"],
        last_acked_by_agent
    );
    back.send(
        json!({"type":"resume","conversation_id":conversation_id,"last_seq":last_seen_by_customer}),
    )
    .await;
    assert_eq!(back.expect("message").await["text"], "found it");
    assert_eq!(back.expect("message").await["text"], "it ships today");
    assert_eq!(
        back.expect("resumed").await["last_seq"],
        last_acked_by_agent
    );

    let (mut agent, welcome) = server.agent("a0").await;
    assert_eq!(
        welcome["conversations"][0]["conversation_id"],
        json!(conversation_id)
    );
    agent
        .send(json!({"type":"resume","conversation_id":conversation_id,"last_seq":last_acked_by_agent}))
        .await;
    assert_eq!(
        agent.expect("resumed").await["last_seq"],
        last_acked_by_agent
    );
    let seq = agent.say(&conversation_id, "still with you").await;
    assert_eq!(back.expect("message").await["seq"], seq);

    let (_, welcome) = server.customer_hello(Some(&waiting_token)).await;
    let open = &welcome["open_conversations"][0];
    assert_eq!(open["conversation_id"], json!(waiting_conversation));
    assert_eq!(open["state"], "queued");
}

/// Sockets that have not said who they are (customers before `hello`, a media stream
/// before `start`) are told 1001 at once on SIGTERM, and shutdown does not wait for
/// them: with a handshake timeout and a grace period of minutes, the process is gone
/// in seconds.
#[tokio::test]
async fn sigterm_says_going_away_at_once_to_sockets_that_have_not_said_hello() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    const GRACE: Duration = Duration::from_secs(120);
    let config = config()
        .replace(
            "shutdown_grace_ms = 5000",
            &format!("shutdown_grace_ms = {}", GRACE.as_millis()),
        )
        .replace(
            "[auth]\n",
            &format!("[auth]\nmedia_secret = \"{}\"\n", common::SECRET),
        )
        + "[limits]\nhandshake_timeout_ms = 600000\n";
    let mut server = TestServer::start(&config).await;

    let mut customers = Vec::new();
    for _ in 0..4 {
        customers.push(server.customer().await);
    }
    // One of them shows that its connection waits for `hello`: anything else is refused.
    customers[0]
        .send(json!({"type":"start","id":"s","queue":"support"}))
        .await;
    assert_eq!(customers[0].expect("error").await["code"], "hello_required");
    let token = warmline::gateway::auth::mint_media(common::SECRET, "test-provider", 3600).unwrap();
    let url = server.ws_url(&format!("/ws/media?token={token}"));
    let mut stream = Client::connect(url.into_client_request().unwrap())
        .await
        .expect("provider connects");
    // Twilio's first event, then one that needs `start` first.
    stream
        .send(json!({"event":"connected","protocol":"Call","version":"1.0.0"}))
        .await;
    stream
        .send(json!({"event":"mark","sequenceNumber":"2","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","mark":{"name":"m"}}))
        .await;
    assert_eq!(stream.expect("error").await["code"], "hello_required");

    let terminated = Instant::now();
    server.send_sigterm();
    for customer in &mut customers {
        assert_eq!(customer.closed().await.map(|c| c.0), Some(1001));
    }
    assert_eq!(stream.closed().await.map(|c| c.0), Some(1001));
    let exit = server.exited(GRACE / 4).await;
    assert!(exit.success(), "{exit:?}");
    assert!(
        terminated.elapsed() < GRACE / 4,
        "shutdown took {:?} (grace {GRACE:?})",
        terminated.elapsed()
    );
}

//! Abuse limits, revocation, authorization of every frame and the audit log, on the
//! real server with real WebSocket clients. The common test config turns rates off;
//! each test here turns on the one it proves.

mod common;

use std::time::Duration;

use common::{Client, ORIGIN, SECRET, TestServer, WAIT, accept_next_offer, config_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http};

const ADMIN: &str = "admin-token-0123456789abcdef-0123";

/// One queue `support`, the given agents, the admin token, and `rate_limits` lines
/// that replace the common config's (which turns rates off).
fn config(agents: &[(&str, u32)], rate_limits: &str) -> String {
    let config = config_with(agents, "");
    let start = config
        .find("[rate_limits]")
        .expect("the common config has rate_limits");
    let end = config[start..].find("[customer]").expect("then [customer]") + start;
    let mut config = format!(
        "{}[rate_limits]\n{rate_limits}\n{}",
        &config[..start],
        &config[end..]
    );
    config = config.replace("[auth]\n", &format!("[auth]\nadmin_token = \"{ADMIN}\"\n"));
    config
}

/// An HTTP refusal of a WebSocket upgrade: (status, headers, JSON body).
fn refusal(result: Result<Client, WsError>) -> (u16, http::HeaderMap, Value) {
    match result {
        Err(WsError::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            let json = serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("refusal body is not JSON ({e}): {body:?}"));
            (response.status().as_u16(), response.headers().clone(), json)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

async fn customer_connect(server: &TestServer) -> Result<Client, WsError> {
    let mut request = server.ws_url("/ws/customer").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", http::HeaderValue::from_static(ORIGIN));
    Client::connect(request).await
}

async fn agent_connect(server: &TestServer, token: &str) -> Result<Client, WsError> {
    let url = server.ws_url(&format!("/ws/agent?token={token}"));
    Client::connect(url.into_client_request().unwrap()).await
}

/// Lines of the server log written by the audit trail.
fn audit_lines(server: &TestServer) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|l| l.contains("warmline::audit"))
        .map(str::to_owned)
        .collect()
}

/// The audit lines once `enough` holds for them (the log is written by a thread of
/// its own, so a line may land a moment after the refusal it records).
async fn audit_until(server: &TestServer, enough: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let lines = audit_lines(server);
        if enough(&lines) {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the audit log never had what was expected: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `warmline_connections{role}` reads `n` (a closed socket frees its
/// place when the server notices it).
async fn connections_settle(server: &TestServer, role: &str, n: f64) {
    let series = format!("warmline_connections{{role=\"{role}\"}}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.metric(&series).await != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_flooding_customer_gets_rate_limited_with_a_retry_hint_then_1008() {
    let server = TestServer::start(&config(
        &[("alice", 1)],
        "customer_frames_per_minute = 60\ncustomer_frame_burst = 6\nstrikes_before_close = 3",
    ))
    .await;
    let (mut customer, _) = server.customer_hello(None).await; // frame 1
    let conversation = customer.start().await; // frame 2
    customer.until("queued").await;
    // Frames 3-6 are within the burst; 7 on are over it (one a second comes back).
    let mut acked = Vec::new();
    for i in 0..4 {
        acked.push(customer.say(&conversation, &format!("within {i}")).await);
    }
    for strike in 1..=3 {
        let id = format!("over-{strike}");
        customer
            .send(json!({"type":"message","id":id,"conversation_id":conversation,"text":"flood"}))
            .await;
        let e = customer.take("error").await;
        assert_eq!(e["code"], "rate_limited", "{e}");
        assert_eq!(e["id"], json!(id), "the refusal names the request: {e}");
        let retry = e["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!(
            (1..=1000).contains(&retry),
            "60 a minute: one a second: {e}"
        );
    }
    customer
        .send(json!({"type":"message","id":"over-4","conversation_id":conversation,"text":"flood"}))
        .await;
    let e = customer.take("error").await;
    assert_eq!(e["id"], "over-4");
    let (code, reason) = customer.closed().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("rate limit"), "{reason}");

    // What was acknowledged is kept; what was refused was never processed.
    let mut db = server.store().await;
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT text FROM events WHERE conversation_id = ?1 AND kind = 'message'",
    )
    .bind(&conversation)
    .fetch_all(&mut db)
    .await
    .expect("read events");
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(texts.iter().all(|t| t.starts_with("within")), "{texts:?}");
    assert_eq!(acked, vec![1, 2, 3, 4]);

    let rate_limited = |a: &[String]| a.iter().filter(|l| l.contains("rate_limited")).count();
    let audit = audit_until(&server, |a| rate_limited(a) >= 2).await;
    assert_eq!(
        rate_limited(&audit),
        2,
        "the first refusal of the minute and the close: {audit:#?}"
    );
    let refused = server
        .metric("warmline_denials_total{reason=\"rate_limited\",role=\"customer\"}")
        .await;
    assert_eq!(refused, 4.0);
}

#[tokio::test]
async fn reconnecting_does_not_refill_a_customers_frame_budget() {
    // Six a minute, all at once: nothing comes back during the test.
    let server = TestServer::start(&config(
        &[("alice", 1)],
        "customer_frames_per_minute = 6\ncustomer_frame_burst = 6\nstrikes_before_close = 3",
    ))
    .await;
    let (mut customer, welcome) = server.customer_hello(None).await; // frame 1
    let token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let conversation = customer.start().await; // frame 2
    for i in 0..4 {
        customer.say(&conversation, &format!("within {i}")).await; // frames 3-6
    }
    customer.close().await;
    // The same visitor on a new connection: hello is answered, but the budget is the
    // customer's, and it is spent.
    let (mut again, _) = server.customer_hello(Some(&token)).await;
    again
        .send(json!({"type":"message","id":"more","conversation_id":conversation,"text":"more"}))
        .await;
    let e = again.take("error").await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    assert_eq!(e["id"], "more", "{e}");
    // Another customer has a budget of their own.
    let (mut other, _) = server.customer_hello(None).await;
    other.start().await;
}

/// Floods `conversation` until the gateway closes the connection for it (1008): after
/// `hello` and `start`, 4 frames are within the burst of 6 and the 4th strike over it
/// closes (a few more in case the budget refills meanwhile).
async fn flood_until_closed(customer: &mut Client, conversation: &str) {
    for i in 0..12 {
        customer
            .send(json!({"type":"message","id":format!("f{i}"),"conversation_id":conversation,"text":"flood"}))
            .await;
    }
    let (code, reason) = customer.closed().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("rate limit"), "{reason}");
}

/// Checks a 429 refusal for cooling off: JSON body, a retry hint of about a minute.
fn assert_cooling_429(result: Result<Client, WsError>) {
    let (status, headers, body) = refusal(result);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("abuse"),
        "{body}"
    );
    let ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((50_000..=60_000).contains(&ms), "{body}");
    let secs: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((50..=60).contains(&secs), "{secs}");
}

const COOLDOWN: &str = "customer_frames_per_minute = 60\ncustomer_frame_burst = 6\n\
    agent_frames_per_minute = 60\nagent_frame_burst = 6\nstrikes_before_close = 3\n\
    cooldown_seconds = 60\nabuse_closes_per_ip = 3";

#[tokio::test]
async fn a_customer_closed_for_flooding_cools_off_then_their_address_is_shut_out() {
    let server = TestServer::start(&config(&[("alice", 1)], COOLDOWN)).await;
    let (mut flooder, welcome) = server.customer_hello(None).await;
    let token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let conversation = flooder.start().await;
    flood_until_closed(&mut flooder, &conversation).await; // abuse close 1 from 127.0.0.1

    // Back at once with the same visitor token: refused at hello, told when to retry.
    let mut back = server.customer().await;
    back.send(json!({"type":"hello","visitor_token":token}))
        .await;
    let e = back.expect("error").await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    let retry = e["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((50_000..=60_000).contains(&retry), "about a minute: {e}");
    let (code, _) = back.closed().await.expect("a close frame");
    assert_eq!(code, 1008);
    audit_until(&server, |a| {
        a.iter()
            .any(|l| l.contains("cooling off") && l.contains("hello"))
    })
    .await;

    // Another customer from the same address is still welcome (two abuse closes so far).
    let (mut other, _) = server.customer_hello(None).await;
    let others = other.start().await;

    // The flooder keeps coming back: the third abuse close shuts out the address for
    // new customer connections (429 before the upgrade)...
    let mut again = server.customer().await;
    again
        .send(json!({"type":"hello","visitor_token":token}))
        .await;
    assert_eq!(again.expect("error").await["code"], "rate_limited");
    assert_cooling_429(customer_connect(&server).await);
    // ...only those: the open one goes on, and agents connect.
    assert_eq!(other.say(&others, "still here").await, 1);
    let token = warmline::gateway::auth::mint_agent(SECRET, "alice", 60).unwrap();
    agent_connect(&server, &token)
        .await
        .expect("an agent from the shut-out address connects");
}

#[tokio::test]
async fn a_flooder_who_comes_back_as_a_new_visitor_each_time_is_shut_out_by_address() {
    let server = TestServer::start(&config(&[("alice", 1)], COOLDOWN)).await;
    for _ in 0..3 {
        // A new anonymous visitor each time: fresh budgets, no cooldown of its own.
        let (mut flooder, _) = server.customer_hello(None).await;
        let conversation = flooder.start().await;
        flood_until_closed(&mut flooder, &conversation).await;
    }
    assert_cooling_429(customer_connect(&server).await);
    let closes = server
        .metric("warmline_denials_total{reason=\"rate_limited\",role=\"customer\"}")
        .await;
    assert!(closes >= 3.0, "{closes}");
}

#[tokio::test]
async fn an_agent_closed_for_flooding_cools_off_and_customers_at_that_address_do_not() {
    let server = TestServer::start(&config(&[("alice", 1), ("bob", 1)], COOLDOWN)).await;
    let (mut alice, _) = server.agent("alice").await;
    // 6 within the burst, the 4th strike over it closes (and a few more).
    for i in 0..14 {
        alice
            .send(json!({"type":"status","id":format!("s{i}"),"state":"available"}))
            .await;
    }
    let (code, reason) = alice.closed().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    let token = warmline::gateway::auth::mint_agent(SECRET, "alice", 60).unwrap();
    assert_cooling_429(agent_connect(&server, &token).await);
    // Another agent, and customers, from the same address are not shut out.
    server.agent("bob").await;
    let (mut customer, _) = server.customer_hello(None).await;
    customer.start().await;
}

#[tokio::test]
async fn new_connections_per_address_over_the_rate_get_429_with_retry_after() {
    let server = TestServer::start(&config(
        &[("alice", 1)],
        "connections_per_ip_per_second = 1\nconnections_per_ip_burst = 3",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(customer_connect(&server).await.expect("within the burst"));
    }
    let (status, headers, body) = refusal(customer_connect(&server).await);
    assert_eq!(status, 429);
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms >= 1));
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry_after), "{retry_after}");
    // Agents come from the same address: the same budget.
    let token = warmline::gateway::auth::mint_agent(SECRET, "alice", 60).unwrap();
    let (status, _, _) = refusal(agent_connect(&server, &token).await);
    assert_eq!(status, 429);
    // The connections already open are untouched.
    let mut first = held.remove(0);
    first.send(json!({"type":"hello"})).await;
    first.expect("welcome").await;
    audit_until(&server, |a| {
        a.iter()
            .any(|l| l.contains("connect") && l.contains("rate_limited") && l.contains("127.0.0.1"))
    })
    .await;
}

#[tokio::test]
async fn connections_per_customer_and_per_agent_are_capped() {
    let server = TestServer::start(&config(
        &[("alice", 1)],
        "connections_per_customer = 2\nconnections_per_agent = 2",
    ))
    .await;
    // A customer recognised by their visitor token, on a third device.
    let (one, welcome) = server.customer_hello(None).await;
    let token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let (_two, _) = server.customer_hello(Some(&token)).await;
    let mut three = server.customer().await;
    three
        .send(json!({"type":"hello","visitor_token":token}))
        .await;
    let e = three.expect("error").await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    assert_eq!(three.closed().await.map(|c| c.0), Some(1008));
    // Closing one gives its place back.
    one.close().await;
    connections_settle(&server, "customer", 1.0).await;
    let (_again, welcome) = server.customer_hello(Some(&token)).await;
    assert_eq!(welcome["customer_id"].as_str().map(str::len), Some(32));

    let token = warmline::gateway::auth::mint_agent(SECRET, "alice", 60).unwrap();
    let a = agent_connect(&server, &token).await.expect("first");
    let _b = agent_connect(&server, &token).await.expect("second");
    let (status, _, body) = refusal(agent_connect(&server, &token).await);
    assert_eq!((status, body["code"].clone()), (429, json!("rate_limited")));
    a.close().await;
    connections_settle(&server, "agent", 1.0).await;
    agent_connect(&server, &token).await.expect("a freed place");
}

#[tokio::test]
async fn starts_per_customer_per_hour_are_capped_but_messages_go_on() {
    let server =
        TestServer::start(&config(&[("alice", 1)], "starts_per_customer_per_hour = 2")).await;
    let (mut customer, _) = server.customer_hello(None).await;
    let first = customer.start().await;
    customer.start().await;
    customer
        .send(json!({"type":"start","id":"third","queue":"support"}))
        .await;
    let e = customer.take("error").await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!("third"), json!("rate_limited"))
    );
    // Two an hour: the next in about half an hour.
    let retry = e["retry_after_ms"].as_u64().unwrap();
    assert!((1_700_000..=1_800_000).contains(&retry), "{retry}");
    assert_eq!(customer.say(&first, "still talking").await, 1);
    // Another customer has their own allowance.
    let (mut other, _) = server.customer_hello(None).await;
    other.start().await;
}

#[tokio::test]
async fn revoking_an_agent_closes_every_socket_at_once_and_refuses_their_tokens() {
    let mut server = TestServer::start(&config(&[("alice", 1), ("bob", 1)], "")).await;
    let (mut desk, _) = server.agent("alice").await;
    let (mut phone, _) = server.agent("alice").await;
    let mut bob = server.available_agent("bob").await;
    let old_token = warmline::gateway::auth::mint_agent(SECRET, "alice", 3600).unwrap();

    let path = "/api/v1/agents/alice/revoke";
    let (status, body) = server.http("POST", path, None, None).await;
    assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")));
    let (status, body) = server
        .http("POST", "/api/v1/agents/mallory/revoke", Some(ADMIN), None)
        .await;
    assert_eq!((status, body["code"].clone()), (404, json!("not_found")));
    let (status, body) = server.http("POST", path, Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agent_id"], "alice");
    assert_eq!(body["closed"], 2);
    let revoked_at = body["revoked_at"].as_u64().unwrap();
    for socket in [&mut desk, &mut phone] {
        let (code, reason) = socket.closed().await.expect("a close frame");
        assert_eq!(code, 4004, "{reason}");
    }
    // Bob carries on.
    bob.request(json!({"type":"status","state":"away"})).await;

    // The old token is refused, saying why; a token issued after the revocation works.
    let (status, _, body) = refusal(agent_connect(&server, &old_token).await);
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    let fresh = fresh_agent_token("alice", revoked_at + 1);
    let mut back = agent_connect(&server, &fresh).await.expect("a newer token");
    back.expect("welcome").await;

    // The revocation is durable: after a restart the old token is still refused.
    drop(back);
    server.terminate().await;
    server.restart().await;
    let (status, _, _) = refusal(agent_connect(&server, &old_token).await);
    assert_eq!(status, 401);
    agent_connect(&server, &fresh)
        .await
        .expect("the newer token still works");
    audit_until(&server, |a| a.iter().any(|l| l.contains("revoked"))).await;
}

/// An agent token issued at `iat` (seconds), valid for an hour.
fn fresh_agent_token(agent: &str, iat: u64) -> String {
    let claims = warmline::protocol::tokens::AgentClaims {
        sub: agent.into(),
        exp: iat + 3600,
        iat,
        aud: warmline::protocol::tokens::AGENT_AUDIENCE.into(),
        iss: None,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn every_action_on_another_customers_conversation_is_denied_and_audited() {
    let server = TestServer::start(&config(&[("alice", 1), ("bob", 1)], "")).await;
    let mut alice = server.available_agent("alice").await;
    let (mut owner, _) = server.customer_hello(None).await;
    let theirs = owner.start().await;
    accept_next_offer(&mut alice).await;
    owner.until("assigned").await;
    owner.say(&theirs, "my account number is 12345678").await;

    let (mut intruder, _) = server.customer_hello(None).await;
    let customer_cases = [
        json!({"type":"message","conversation_id":theirs,"text":"mine now"}),
        json!({"type":"resume","conversation_id":theirs,"last_seq":0}),
        json!({"type":"end","conversation_id":theirs}),
        json!({"type":"switch","conversation_id":theirs,"channel":"voice"}),
        json!({"type":"rtc","conversation_id":theirs,"payload":{"sdp":"x"}}),
    ];
    for (i, frame) in customer_cases.iter().enumerate() {
        let mut frame = frame.clone();
        frame["id"] = json!(format!("c{i}"));
        intruder.send(frame.clone()).await;
        let e = intruder.take("error").await;
        assert_eq!(e["code"], "forbidden", "{frame} -> {e}");
        assert_eq!(e["id"], frame["id"]);
    }
    // Typing has no answer: dropped, and audited.
    intruder
        .send(json!({"type":"typing","conversation_id":theirs,"on":true}))
        .await;

    // An agent who does not hold the conversation.
    let (mut bob, _) = server.agent("bob").await;
    let agent_cases = [
        json!({"type":"message","conversation_id":theirs,"text":"hello from bob"}),
        json!({"type":"close","conversation_id":theirs,"resolution":"resolved"}),
        json!({"type":"transfer","conversation_id":theirs,"to":{"agent":"bob"},"mode":"cold"}),
        json!({"type":"resume","conversation_id":theirs,"last_seq":0}),
    ];
    for (i, frame) in agent_cases.iter().enumerate() {
        let mut frame = frame.clone();
        frame["id"] = json!(format!("a{i}"));
        bob.send(frame.clone()).await;
        let e = bob.take("error").await;
        assert_eq!(e["code"], "forbidden", "{frame} -> {e}");
    }
    bob.send(json!({"type":"typing","conversation_id":theirs,"on":true}))
        .await;

    // Nothing leaked: the owner saw no frame from anyone else and still talks to alice.
    let seq = owner.say(&theirs, "still just us?").await;
    let mut seen = Vec::new();
    while seen.last() != Some(&seq) {
        let m = alice.json().await;
        assert_ne!(
            m["type"], "typing",
            "the intruder's typing reached the agent"
        );
        if m["type"] != "message" {
            continue;
        }
        assert_eq!(
            m["sender"]["role"], "customer",
            "only the customer wrote: {m}"
        );
        seen.push(m["seq"].as_u64().unwrap());
    }
    assert_eq!(
        seen,
        vec![2, 3],
        "the opening, then this: nothing from the intruders"
    );

    // One audit line per denial, naming who and why (never the text they sent).
    let expected = customer_cases.len() + agent_cases.len() + 2; // and the two typings
    let audit = audit_until(&server, |a| {
        a.iter().filter(|l| l.contains("forbidden")).count() >= expected
    })
    .await;
    let forbidden: Vec<_> = audit.iter().filter(|l| l.contains("forbidden")).collect();
    assert_eq!(forbidden.len(), expected, "{audit:#?}");
    assert_eq!(
        forbidden.iter().filter(|l| l.contains("bob")).count(),
        agent_cases.len() + 1
    );
    assert_eq!(
        forbidden.iter().filter(|l| l.contains("typing")).count(),
        2,
        "{audit:#?}"
    );
    assert!(
        !audit
            .iter()
            .any(|l| l.contains("mine now") || l.contains("12345678"))
    );
    let counted = server
        .metric("warmline_denials_total{reason=\"forbidden\",role=\"customer\"}")
        .await
        + server
            .metric("warmline_denials_total{reason=\"forbidden\",role=\"agent\"}")
            .await;
    assert_eq!(counted as usize, forbidden.len());
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_upgrade_is_dropped() {
    let config = config(&[("alice", 1)], "").replace(
        "[customer]\n",
        "[limits]\nhandshake_timeout_ms = 300\n[customer]\n",
    );
    let server = TestServer::start(&config).await;
    // Slowloris: half a request line and headers, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    slow.write_all(b"GET /ws/customer HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    // And one that says nothing at all.
    let mut silent = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    for (what, stream) in [("slow", &mut slow), ("silent", &mut silent)] {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(WAIT, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue, // a 408 before the close is fine
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the {what} connection was not dropped");
    }
    // Meanwhile a well-behaved client is served.
    server.customer_hello(None).await;
}

#[tokio::test]
async fn tokens_in_query_strings_never_reach_the_log() {
    let config =
        config(&[("alice", 1)], "").replace("level = \"warn,warmline=info\"", "level = \"trace\"");
    let server = TestServer::start(&config).await;
    let good = warmline::gateway::auth::mint_agent(SECRET, "alice", 3600).unwrap();
    let mut alice = agent_connect(&server, &good).await.expect("connects");
    alice.expect("welcome").await;
    alice
        .request(json!({"type":"status","state":"available"}))
        .await;
    let forged =
        warmline::gateway::auth::mint_agent("another-secret-another-secret-xx", "alice", 60)
            .unwrap();
    let (status, _, _) = refusal(agent_connect(&server, &forged).await);
    assert_eq!(status, 401);
    let url = server.ws_url("/ws/media?token=not.a.valid-media-token");
    let refused = Client::connect(url.into_client_request().unwrap()).await;
    assert_eq!(refusal(refused).0, 401);
    let (mut customer, welcome) = server.customer_hello(None).await;
    let visitor = welcome["visitor_token"].as_str().unwrap().to_owned();
    customer.start().await;
    accept_next_offer(&mut alice).await;
    drop(customer);
    drop(alice);
    let log = server.log();
    assert!(log.lines().count() > 20, "trace logging is on: {log}");
    for (what, token) in [("agent", &good), ("forged", &forged), ("visitor", &visitor)] {
        let signature = token.rsplit('.').next().unwrap();
        let leaks: Vec<_> = log.lines().filter(|l| l.contains(signature)).collect();
        assert!(
            leaks.is_empty(),
            "the {what} token reached the log: {leaks:#?}"
        );
    }
    assert!(!log.contains("not.a.valid-media-token"));
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (openssl), in `dir`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian package openssl) makes the test certificate");
    assert!(status.success());
    (cert, key)
}

#[tokio::test]
async fn tls_in_the_process_serves_websockets_and_refuses_plain_text() {
    use futures_util::{SinkExt, StreamExt};
    use rustls::pki_types::pem::PemObject;
    use tokio_tungstenite::tungstenite::Message;

    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let config = config(&[("alice", 1)], "").replace(
        "[server]\n",
        &format!(
            "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let server = TestServer::start(&config).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let provider = warmline::gateway::tls::ring_provider();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let mut request = "wss://localhost/ws/customer".into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", http::HeaderValue::from_static(ORIGIN));
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("a WebSocket over TLS");
    ws.send(Message::text(json!({"type":"hello"}).to_string()))
        .await
        .unwrap();
    let welcome = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let welcome: Value = serde_json::from_str(welcome.to_text().unwrap()).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    // Plain HTTP on the TLS port gets no HTTP answer: the connection just ends.
    let mut plain = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer))
        .await
        .expect("the plain connection ends");
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "no plain-text service"
    );
}

#[tokio::test]
async fn an_agent_token_that_expires_mid_session_closes_4003_asking_for_a_fresh_one() {
    let server = TestServer::start(&config(&[("alice", 1)], "")).await;
    let now = warmline::gateway::auth::unix_now();
    let claims = warmline::protocol::tokens::AgentClaims {
        sub: "alice".into(),
        exp: now + 2,
        iat: now,
        aud: warmline::protocol::tokens::AGENT_AUDIENCE.into(),
        iss: None,
    };
    let short = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut alice = agent_connect(&server, &short).await.expect("valid for now");
    alice.expect("welcome").await;
    let (code, reason) = alice.closed().await.expect("a close frame at expiry");
    assert_eq!(code, 4003, "{reason}");
    assert!(reason.contains("fresh"), "{reason}");
    // A fresh token gets back in.
    let fresh = warmline::gateway::auth::mint_agent(SECRET, "alice", 3600).unwrap();
    let mut again = agent_connect(&server, &fresh).await.expect("a fresh token");
    again.expect("welcome").await;
}

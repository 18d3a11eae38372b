//! Bad input gets its documented error frame, close code or HTTP status, and other
//! connections carry on untouched.

mod common;

use common::{Client, ORIGIN, SECRET, TestServer, accept_next_offer, config_with};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http};

fn status_and_body(result: Result<Client, WsError>) -> (u16, String) {
    match result {
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_carries_on() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    // A bystander conversation that must not notice anything.
    let (mut bystander, _) = server.customer_hello(None).await;
    let bystander_conversation = bystander.start().await;
    let mut agent = server.available_agent("alice").await;
    accept_next_offer(&mut agent).await;
    bystander.until("assigned").await;

    let (mut customer, _) = server.customer_hello(None).await;
    let mine = customer.start().await;
    customer.until("queued").await;

    let cases = [
        (r#"{"type":"message", oops"#.to_owned(), "bad_json", None),
        ("[1,2,3]".to_owned(), "bad_json", None),
        (r#"{"type":"teleport","id":"t1"}"#.to_owned(), "unknown_type", Some("t1")),
        (r#"{"type":"accept","id":"t2","offer_id":"x"}"#.to_owned(), "unknown_type", Some("t2")),
        (r#"{"type":"message","id":"t3","text":"hi"}"#.to_owned(), "invalid_field", Some("t3")),
        (r#"{"type":"message","id":"t4","conversation_id":"c","text":""}"#.to_owned(), "invalid_field", Some("t4")),
        (r#"{"type":"resume","id":"t5","conversation_id":"c","last_seq":-1}"#.to_owned(), "invalid_field", Some("t5")),
        (r#"{"type":"hello","id":"t6"}"#.to_owned(), "conflict", Some("t6")),
        (
            json!({"type":"message","id":"t7","conversation_id":bystander_conversation,"text":"mine now"}).to_string(),
            "forbidden",
            Some("t7"),
        ),
        (
            json!({"type":"resume","id":"t8","conversation_id":bystander_conversation,"last_seq":0}).to_string(),
            "forbidden",
            Some("t8"),
        ),
        (
            json!({"type":"message","id":"t9","conversation_id":"no-such-conversation","text":"hi"}).to_string(),
            "not_found",
            Some("t9"),
        ),
        (json!({"type":"start","id":"t10","queue":"nope"}).to_string(), "not_found", Some("t10")),
    ];
    for (frame, code, id) in cases {
        customer.send_raw(&frame).await;
        let err = customer.expect("error").await;
        assert_eq!(err["code"], code, "{frame} -> {err}");
        assert!(
            err["message"].as_str().is_some_and(|m| m.len() > 10),
            "{err}"
        );
        match id {
            Some(id) => assert_eq!(err["id"], id, "{frame} -> {err}"),
            None => assert!(err.get("id").is_none(), "{err}"),
        }
    }
    // The same connection still works.
    let seq = customer.say(&mine, "still here").await;
    assert_eq!(seq, 1);

    // Agents get the same treatment.
    agent.send_raw("not json").await;
    assert_eq!(agent.expect("error").await["code"], "bad_json");
    agent
        .send(json!({"type":"close","id":"a1","conversation_id":mine,"resolution":"resolved"}))
        .await;
    let err = agent.expect("error").await;
    assert_eq!(
        (err["id"].clone(), err["code"].clone()),
        (json!("a1"), json!("forbidden"))
    );
    agent
        .send(json!({"type":"close","id":"a2","conversation_id":bystander_conversation,"resolution":"sort_of"}))
        .await;
    assert_eq!(agent.expect("error").await["code"], "invalid_field");

    // The bystanders never noticed.
    let seq = bystander.say(&bystander_conversation, "all good?").await;
    assert_eq!(agent.expect("message").await["seq"], seq);
    agent.say(&bystander_conversation, "all good").await;
    assert_eq!(bystander.expect("message").await["text"], "all good");
}

#[tokio::test]
async fn a_frame_before_hello_is_refused_and_hello_still_works() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let mut customer = server.customer().await;
    customer
        .send(json!({"type":"start","id":"s1","queue":"support"}))
        .await;
    let err = customer.expect("error").await;
    assert_eq!(
        (err["code"].clone(), err["id"].clone()),
        (json!("hello_required"), json!("s1"))
    );
    customer
        .send(json!({"type":"hello","visitor_token":"forged.token.value"}))
        .await;
    assert_eq!(customer.expect("error").await["code"], "unauthorized");
    customer.send(json!({"type":"hello"})).await;
    customer.expect("welcome").await;
}

#[tokio::test]
async fn an_oversized_frame_is_answered_too_large_and_close_1009() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let (mut other, _) = server.customer_hello(None).await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    let text = "x".repeat(70 * 1024);
    customer
        .send(json!({"type":"message","id":"big","conversation_id":conversation_id,"text":text}))
        .await;
    let err = customer.until("error").await;
    assert_eq!(err["code"], "too_large");
    let (code, _) = customer.closed().await.expect("a close frame");
    assert_eq!(code, 1009);
    // Others carry on.
    other.start().await;
}

#[tokio::test]
async fn too_many_bad_frames_close_with_1008() {
    let mut config = config_with(&[("alice", 1)], "");
    config = config.replace(
        "[customer]\n",
        "[limits]\nbad_frames_per_minute = 3\n[customer]\n",
    );
    let server = TestServer::start(&config).await;
    let (mut customer, _) = server.customer_hello(None).await;
    for _ in 0..4 {
        customer.send_raw("{").await;
    }
    let (code, reason) = customer.closed().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
}

#[tokio::test]
async fn forged_expired_and_missing_agent_tokens_get_401() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let connect = |token: Option<String>| {
        let url = match token {
            Some(t) => server.ws_url(&format!("/ws/agent?token={t}")),
            None => server.ws_url("/ws/agent"),
        };
        Client::connect(url.into_client_request().unwrap())
    };
    let forged =
        warmline::gateway::auth::mint_agent("not-the-secret-not-the-secret-xx", "alice", 60)
            .unwrap();
    let (status, body) = status_and_body(connect(Some(forged)).await);
    assert_eq!(status, 401);
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");

    let expired = warmline::gateway::auth::mint_agent(SECRET, "alice", 0).unwrap();
    // exp = now; the gateway allows 5 s of clock skew, so age it past that.
    let expired = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let _ = expired;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({"sub":"alice","exp":now - 60,"iat":now - 3600,"aud":"warmline-agent"});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let (status, body) = status_and_body(connect(Some(expired)).await);
    assert_eq!(status, 401);
    assert!(body.contains("expired"), "{body}");

    let (status, _) = status_and_body(connect(None).await);
    assert_eq!(status, 401);

    let stranger = warmline::gateway::auth::mint_agent(SECRET, "mallory", 60).unwrap();
    let (status, _) = status_and_body(connect(Some(stranger)).await);
    assert_eq!(status, 401);

    // The bearer header works as well as the query parameter.
    let token = warmline::gateway::auth::mint_agent(SECRET, "alice", 60).unwrap();
    let mut request = server.ws_url("/ws/agent").into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let mut agent = Client::connect(request).await.expect("bearer accepted");
    agent.expect("welcome").await;
}

#[tokio::test]
async fn a_disallowed_or_missing_origin_gets_403_before_the_upgrade() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let mut request = server.ws_url("/ws/customer").into_client_request().unwrap();
    request.headers_mut().insert(
        "Origin",
        http::HeaderValue::from_static("https://evil.example"),
    );
    let (status, body) = status_and_body(Client::connect(request).await);
    assert_eq!(status, 403);
    assert!(body.contains("\"code\":\"forbidden\""), "{body}");

    let request = server.ws_url("/ws/customer").into_client_request().unwrap();
    let (status, _) = status_and_body(Client::connect(request).await);
    assert_eq!(status, 403, "no Origin is refused unless configured");

    let mut request = server.ws_url("/ws/customer").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", http::HeaderValue::from_static(ORIGIN));
    assert!(Client::connect(request).await.is_ok());
}

#[tokio::test]
async fn a_customer_who_never_says_hello_is_closed_with_1008() {
    let mut config = config_with(&[("alice", 1)], "");
    config = config.replace(
        "[customer]\n",
        "[limits]\nhandshake_timeout_ms = 200\n[customer]\n",
    );
    let server = TestServer::start(&config).await;
    let mut silent = server.customer().await;
    let (code, reason) = silent.closed().await.expect("a close frame");
    assert_eq!((code, reason.as_str()), (1008, "no hello in time"));
}

#[tokio::test]
async fn a_plain_http_request_to_a_websocket_endpoint_gets_a_json_error() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    for path in ["/ws/customer", "/ws/agent"] {
        let (status, body) = server.get(path).await;
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(
            body.contains("\"code\":\"invalid_field\""),
            "{path}: {body}"
        );
        assert!(body.contains("WebSocket upgrade"), "{path}: {body}");
    }
}

/// A WebSocket spoken by hand, to send what no client library would: reserved bits,
/// reserved opcodes, stray continuations, text that is not UTF-8, a close.
struct RawWs {
    stream: tokio::net::TcpStream,
}

impl RawWs {
    async fn customer(server: &TestServer) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let request = format!(
            "GET /ws/customer HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {ORIGIN}\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.expect("handshake reply");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawWs { stream }
    }

    /// One client frame: `first` is FIN, RSV and opcode; the payload is masked.
    async fn frame(&mut self, first: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![first];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        // The server may close before it reads everything: a failed write is fine.
        let _ = self.stream.write_all(&frame).await;
    }

    async fn text(&mut self, text: &str) {
        self.frame(0x81, text.as_bytes()).await;
    }

    /// Reads server frames until its close: (close code, texts before it). `None`
    /// for the code: the connection ended without a close frame.
    async fn close(&mut self) -> (Option<u16>, Vec<String>) {
        use tokio::io::AsyncReadExt;
        let mut texts = Vec::new();
        let read = async {
            loop {
                let mut head = [0u8; 2];
                if self.stream.read_exact(&mut head).await.is_err() {
                    return None;
                }
                let mut len = u64::from(head[1] & 0x7f);
                if len == 126 {
                    let mut ext = [0u8; 2];
                    self.stream.read_exact(&mut ext).await.ok()?;
                    len = u64::from(u16::from_be_bytes(ext));
                } else if len == 127 {
                    let mut ext = [0u8; 8];
                    self.stream.read_exact(&mut ext).await.ok()?;
                    len = u64::from_be_bytes(ext);
                }
                let mut payload = vec![0u8; len as usize];
                self.stream.read_exact(&mut payload).await.ok()?;
                match head[0] & 0x0f {
                    0x8 => return Some(u16::from_be_bytes([payload[0], payload[1]])),
                    0x1 => texts.push(String::from_utf8_lossy(&payload).into_owned()),
                    _ => {}
                }
            }
        };
        let code = tokio::time::timeout(common::WAIT, read)
            .await
            .expect("the server neither closed nor hung up");
        (code, texts)
    }
}

#[tokio::test]
async fn protocol_violations_close_1002_and_text_that_is_not_utf8_closes_1007() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let not_utf8: &[u8] = &[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xed, 0xa0, 0x80];
    let cases: [(&str, u8, &[u8], u16); 6] = [
        ("reserved bits set", 0x80 | 0x40 | 0x1, b"{}", 1002),
        ("a reserved data opcode", 0x80 | 0x3, b"", 1002),
        ("a reserved control opcode", 0x80 | 0xb, b"", 1002),
        ("a continuation with nothing to continue", 0x80, b"x", 1002),
        ("a fragmented ping", 0x09, b"", 1002),
        ("a text frame that is not UTF-8", 0x81, not_utf8, 1007),
    ];
    for hello_first in [false, true] {
        for (what, first, payload, want) in cases {
            let mut ws = RawWs::customer(&server).await;
            if hello_first {
                ws.text(r#"{"type":"hello"}"#).await;
            }
            ws.frame(first, payload).await;
            let (code, texts) = ws.close().await;
            assert_eq!(
                code,
                Some(want),
                "{what} (after hello: {hello_first}); frames before: {texts:?}"
            );
        }
    }
    // The gateway is fine.
    let (mut customer, _) = server.customer_hello(None).await;
    customer.start().await;
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_with_a_close() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    for hello_first in [false, true] {
        let mut ws = RawWs::customer(&server).await;
        if hello_first {
            ws.text(r#"{"type":"hello"}"#).await;
        }
        ws.frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']).await;
        let (code, texts) = ws.close().await;
        assert_eq!(
            code,
            Some(1000),
            "the closing handshake completes (after hello: {hello_first}); frames: {texts:?}"
        );
    }
}

#[tokio::test]
async fn an_oversized_fragmented_message_ends_in_too_large_and_a_clean_1009() {
    let server = TestServer::start(&config_with(&[("alice", 1)], "")).await;
    let mut ws = RawWs::customer(&server).await;
    ws.text(r#"{"type":"hello"}"#).await;
    // 5 x 16 KiB fragments of one text message: over the 64 KiB limit, each small.
    let chunk = vec![b'x'; 16 * 1024];
    ws.frame(0x01, &chunk).await;
    for _ in 0..3 {
        ws.frame(0x00, &chunk).await;
    }
    ws.frame(0x80, &chunk).await;
    let (code, texts) = ws.close().await;
    assert_eq!(code, Some(1009), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("\"too_large\"")),
        "an error too_large before the close: {texts:?}"
    );
}

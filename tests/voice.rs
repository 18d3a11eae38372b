//! Phone calls over `/ws/media` (Twilio Media Streams format), end to end: a test
//! provider streams real speech (made with espeak-ng, converted to mu-law 8 kHz with
//! sox) at real-time pace; an agent client takes the call, gets the caller's audio as
//! binary frames and talks back; the voice signals are checked against the audio.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Client, SECRET, TestServer, accept_next_offer, base_config};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FRAME: usize = 160; // 20 ms of mu-law at 8 kHz
const STREAM: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

fn config() -> String {
    let mut config = base_config().replace(
        "[auth]\n",
        &format!("[auth]\nmedia_secret = \"{SECRET}\"\n"),
    );
    config.push_str(
        "[media]\nsignals_interval_ms = 500\n\
         [[queues]]\nname = \"support\"\nwrap_up_ms = 0\n\
         [[agents]]\nid = \"alice\"\ndisplay_name = \"Alice\"\ncapacity = { chat = 0, voice = 1 }\n\
         [[agents]]\nid = \"bob\"\ndisplay_name = \"Bob\"\ncapacity = { chat = 0, voice = 1 }\n\
         [[agents]]\nid = \"carol\"\ndisplay_name = \"Carol\"\ncapacity = { chat = 2, voice = 1 }\n\
         [[agents]]\nid = \"dave\"\ndisplay_name = \"Dave\"\ncapacity = { chat = 2, voice = 0 }\n",
    );
    config
}

fn media_token() -> String {
    warmline::gateway::auth::mint_media(SECRET, "test-provider", 3600).unwrap()
}

/// Speech for `text` as mu-law 8 kHz mono, silence trimmed from both ends (so its
/// length is the length of the speech itself).
fn speech(dir: &Path, name: &str, text: &str) -> Vec<u8> {
    let wav = dir.join(format!("{name}.wav"));
    let raw = dir.join(format!("{name}.ul"));
    let status = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng runs (apt-get install espeak-ng; .ci/run installs it)");
    assert!(status.success(), "espeak-ng failed");
    let status = Command::new("sox")
        .arg(&wav)
        .args(["-r", "8000", "-c", "1", "-e", "mu-law", "-t", "raw"])
        .arg(&raw)
        .args([
            "silence", "1", "0.02", "-40d", "reverse", "silence", "1", "0.02", "-40d", "reverse",
        ])
        .status()
        .expect("sox runs (apt-get install sox; .ci/run installs it)");
    assert!(status.success(), "sox failed");
    std::fs::read(raw).expect("converted speech")
}

fn ms(bytes: usize) -> u64 {
    (bytes / 8) as u64
}

fn start_event(params: Value) -> Value {
    json!({
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": STREAM,
        "start": {
            "accountSid": "AC00000000000000000000000000000000",
            "streamSid": STREAM,
            "callSid": "CA00000000000000000000000000000001",
            "tracks": ["inbound"],
            "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    })
}

fn media_event(stream: &str, seq: usize, chunk: usize, payload: &[u8]) -> Value {
    json!({
        "event": "media",
        "sequenceNumber": seq.to_string(),
        "streamSid": stream,
        "media": {
            "track": "inbound",
            "chunk": chunk.to_string(),
            "timestamp": (chunk * 20).to_string(),
            "payload": B64.encode(payload),
        }
    })
}

async fn provider(server: &TestServer, query: &str) -> Client {
    let url = server.ws_url(&format!("/ws/media{query}"));
    Client::connect(url.into_client_request().unwrap())
        .await
        .expect("provider connects")
}

/// The agent accepts the next offer; returns the `conversation` frame.
async fn take_call(agent: &mut Client) -> Value {
    let offer = agent.until("offer").await;
    assert_eq!(offer["channel"], "voice");
    agent
        .request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    agent.until("conversation").await
}

/// The stored voice signals of a conversation (read from the SQLite file).
async fn stored_signals(server: &TestServer, conversation_id: &str) -> Option<Value> {
    use sqlx::{Connection, Row};
    let path = server.dir.path().join("data").join("warmline.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut db = sqlx::SqliteConnection::connect_with(&options).await.ok()?;
    let row = sqlx::query(
        "SELECT caller_talk_ms, agent_talk_ms, crosstalk_ms, silence_ms, silences,
                longest_silence_ms, duration_ms, agent_id
         FROM voice_signals WHERE conversation_id = ?1",
    )
    .bind(conversation_id)
    .fetch_optional(&mut db)
    .await
    .ok()??;
    Some(json!({
        "caller_talk_ms": row.get::<i64, _>(0),
        "agent_talk_ms": row.get::<i64, _>(1),
        "crosstalk_ms": row.get::<i64, _>(2),
        "silence_ms": row.get::<i64, _>(3),
        "silences": row.get::<i64, _>(4),
        "longest_silence_ms": row.get::<i64, _>(5),
        "duration_ms": row.get::<i64, _>(6),
        "agent_id": row.get::<Option<String>, _>(7),
    }))
}

#[tokio::test]
async fn a_phone_call_streams_both_ways_and_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let first = speech(
        dir.path(),
        "first",
        "Hello, I am calling about my order. It has not arrived yet.",
    );
    let second = speech(
        dir.path(),
        "second",
        "Could you please check where it is? Thank you.",
    );
    let reply = speech(
        dir.path(),
        "reply",
        "Let me look that up for you right away.",
    );
    const GAP_MS: usize = 5_000;
    let mut caller_audio = first.clone();
    caller_audio.extend(std::iter::repeat_n(0xFFu8, GAP_MS * 8)); // mu-law silence
    caller_audio.extend(&second);

    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    let mut call = provider(&server, &format!("?token={}", media_token())).await;
    call.send(json!({"event":"connected","protocol":"Call","version":"1.0.0"}))
        .await;
    call.send(start_event(
        json!({"queue": "support", "from": "+15550001111", "order": "A-1234"}),
    ))
    .await;

    let conversation = take_call(&mut alice).await;
    assert_eq!(conversation["channel"], "voice");
    assert_eq!(conversation["attributes"]["order"], "A-1234");
    assert_eq!(conversation["customer"]["id"], "tel:+15550001111");
    let handle = conversation["media"]["handle"]
        .as_u64()
        .expect("a media handle") as u16;
    assert_eq!(conversation["media"]["codec"], "pcmu");
    let conversation_id = conversation["conversation_id"].as_str().unwrap().to_owned();

    // The provider streams the caller at real-time pace and reads what comes back.
    let (mut to_gateway, mut from_gateway) = call.ws.split();
    let frames: Vec<Vec<u8>> = caller_audio.chunks(FRAME).map(<[u8]>::to_vec).collect();
    let sent = frames.clone();
    let caller = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for (i, frame) in sent.iter().enumerate() {
            pace.tick().await;
            let event = media_event(STREAM, i + 2, i + 1, frame);
            to_gateway
                .send(Message::Text(event.to_string().into()))
                .await
                .expect("stream media");
        }
        let stop = json!({"event":"stop","sequenceNumber": (sent.len() + 2).to_string(),
            "streamSid": STREAM,
            "stop": {"accountSid":"AC00000000000000000000000000000000","callSid":"CA00000000000000000000000000000001"}});
        to_gateway
            .send(Message::Text(stop.to_string().into()))
            .await
            .expect("stop");
        to_gateway
    });
    let expected_back = reply.len();
    let listener = tokio::spawn(async move {
        let mut heard = Vec::new();
        let mut other = Vec::new();
        while heard.len() < expected_back {
            let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_secs(30), from_gateway.next()).await
            else {
                break;
            };
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["event"] == "media" {
                assert_eq!(v["streamSid"], STREAM);
                heard.extend(B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap());
            } else {
                other.push(v);
            }
        }
        (heard, other)
    });

    // The agent talks over the caller's first sentence (crosstalk), at real-time pace,
    // and collects the caller's audio.
    let (mut agent_out, mut agent_in) = alice.ws.split();
    let reply_frames: Vec<Vec<u8>> = reply.chunks(FRAME).map(<[u8]>::to_vec).collect();
    let talker = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for frame in reply_frames {
            pace.tick().await;
            let mut bytes = vec![1u8, 0, (handle >> 8) as u8, handle as u8];
            bytes.extend(frame);
            agent_out
                .send(Message::Binary(bytes.into()))
                .await
                .expect("agent audio");
        }
        agent_out
    });
    let mut received = Vec::new();
    let mut live_signals = Vec::new();
    let mut closed = None;
    while closed.is_none() {
        let msg = tokio::time::timeout(Duration::from_secs(30), agent_in.next())
            .await
            .expect("the agent hears the call")
            .expect("open")
            .expect("frame");
        match msg {
            Message::Binary(b) => {
                assert_eq!(&b[..4], &[1, 0, (handle >> 8) as u8, handle as u8]);
                received.push(b[4..].to_vec());
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("signals") => live_signals.push(v),
                    Some("closed") => closed = Some(v),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let _ = caller.await.unwrap();
    let _ = talker.await.unwrap();
    let (heard, _) = listener.await.unwrap();

    // Every caller frame reached the agent, in order, byte for byte.
    assert_eq!(received.len(), frames.len(), "frames lost or added");
    assert!(received == frames, "the agent got different audio");
    // And the agent's audio reached the provider the same way.
    assert_eq!(heard, reply, "the provider got different agent audio");
    // The caller hung up: the conversation closed by the customer.
    let closed = closed.unwrap();
    assert_eq!(closed["conversation_id"], conversation_id);
    assert_eq!(closed["by"], "customer");

    // Live signals reached the agent while the call went on.
    assert!(
        live_signals
            .iter()
            .any(|s| s["voice"]["caller_talk_ms"].as_u64() > Some(0)),
        "no live voice signals: {live_signals:?}"
    );

    // The kept signals match the audio. Tolerances: talk time within 15% of the
    // speech's length (espeak's pauses between phrases are longer than the hangover,
    // and the hangover adds 200 ms per spurt); the 5 s gap is dead air.
    let stored = loop {
        if let Some(s) = stored_signals(&server, &conversation_id).await {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let speech_ms = ms(first.len() + second.len()) as f64;
    let caller_talk = stored["caller_talk_ms"].as_i64().unwrap() as f64;
    println!(
        "speech {speech_ms} ms, measured caller talk {caller_talk} ms; reply {} ms; stored {stored}",
        ms(reply.len())
    );
    assert!(
        (caller_talk - speech_ms).abs() <= speech_ms * 0.15,
        "caller talk {caller_talk} ms vs speech {speech_ms} ms"
    );
    let agent_talk = stored["agent_talk_ms"].as_i64().unwrap() as f64;
    let reply_ms = ms(reply.len()) as f64;
    assert!(
        (agent_talk - reply_ms).abs() <= reply_ms * 0.15,
        "agent talk {agent_talk} ms vs reply {reply_ms} ms"
    );
    assert!(stored["crosstalk_ms"].as_i64().unwrap() > 500, "{stored}");
    assert_eq!(stored["silences"], 1, "one stretch of dead air: {stored}");
    let longest = stored["longest_silence_ms"].as_i64().unwrap();
    assert!(
        (4_400..=5_400).contains(&longest),
        "the 5 s gap measured as {longest} ms"
    );
    assert_eq!(stored["agent_id"], "alice");
}

/// Bad input on one stream gets a clear error and leaves it (and other calls) working.
#[tokio::test]
async fn bad_media_input_gets_clear_errors_and_disturbs_no_call() {
    let server = TestServer::start(&config()).await;

    // A bad token in the URL is refused at the handshake.
    let url = server.ws_url("/ws/media?token=not-a-token");
    let Err(err) = Client::connect(url.into_client_request().unwrap()).await else {
        panic!("a bad media token was accepted");
    };
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
        panic!("expected an HTTP refusal, got {err:?}");
    };
    assert_eq!(response.status(), 401);

    // A good call is going on with bob.
    let mut bob = server.available_agent("bob").await;
    let mut good = provider(&server, &format!("?token={}", media_token())).await;
    good.send(start_event(json!({"queue": "support"}))).await;
    let conversation = take_call(&mut bob).await;
    let handle = conversation["media"]["handle"].as_u64().unwrap();

    // Another stream sends every kind of bad input.
    let mut bad = provider(&server, "").await;
    bad.send_raw("not json").await;
    assert_eq!(bad.json().await["code"], "bad_json");
    bad.ws
        .send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    let e = bad.json().await;
    assert_eq!(e["code"], "invalid_field");
    assert!(e["message"].as_str().unwrap().contains("media"), "{e}");
    bad.send(json!({"event":"hangup"})).await;
    assert_eq!(bad.json().await["code"], "unknown_type");
    bad.send(media_event(STREAM, 2, 1, &[0xFF; FRAME])).await;
    let e = bad.json().await;
    assert_eq!(e["code"], "hello_required", "{e}");
    // A start without a token: refused, then closed with 1008.
    bad.send(start_event(json!({"queue": "support"}))).await;
    let e = bad.json().await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert_eq!(bad.closed().await.map(|c| c.0), Some(1008));

    // A stream with its token in customParameters works; then more bad input on it.
    let mut second = provider(&server, "").await;
    second
        .send(start_event(
            json!({"queue": "support", "token": media_token()}),
        ))
        .await;
    let mut other = media_event("MZ-someone-else", 2, 1, &[0xFF; FRAME]);
    second.send(other.clone()).await;
    let e = second.json().await;
    assert_eq!(e["code"], "not_found", "{e}");
    other["streamSid"] = json!(STREAM);
    other["media"]["payload"] = json!("%%% not base64 %%%");
    second.send(other).await;
    let e = second.json().await;
    assert_eq!(e["code"], "invalid_field", "{e}");
    assert!(e["message"].as_str().unwrap().contains("base64"), "{e}");

    // Bob's call still flows: a frame sent now reaches bob.
    good.send(media_event(STREAM, 2, 1, &[0x7F; FRAME])).await;
    let frame = loop {
        if let Some(frame) = bob.audio.pop_front() {
            break frame;
        }
        let _ = bob.next().await;
    };
    assert_eq!(&frame[..4], &[1, 0, (handle >> 8) as u8, handle as u8]);
    assert_eq!(&frame[4..], &[0x7F; FRAME]);

    // An agent sending audio for a call that is not theirs is refused.
    let (mut carol, _) = server.agent("alice").await;
    let mut bytes = vec![1u8, 0, (handle >> 8) as u8, handle as u8];
    bytes.extend([0xFF; FRAME]);
    carol.ws.send(Message::Binary(bytes.into())).await.unwrap();
    assert_eq!(carol.until("error").await["code"], "forbidden");
    carol
        .ws
        .send(Message::Binary(vec![9u8, 0, 0, 1, 0xFF].into()))
        .await
        .unwrap();
    assert_eq!(carol.until("error").await["code"], "invalid_field");
}

/// chat -> voice -> chat in one conversation: the customer chats with carol, then
/// phones in naming the conversation; the call joins it (same agent, same transcript,
/// carol gets the audio), and when the call ends the chat goes on.
#[tokio::test]
async fn a_chat_becomes_a_call_and_back_with_the_same_agent() {
    let server = TestServer::start(&config()).await;
    let mut carol = server.available_agent("carol").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    let (_, _) = accept_next_offer(&mut carol).await;
    customer.until("assigned").await;
    customer
        .say(&conversation_id, "my parcel is lost, can I call you?")
        .await;
    carol.until("message").await;

    // The customer phones; the provider names the conversation.
    let mut call = provider(&server, &format!("?token={}", media_token())).await;
    call.send(start_event(json!({"conversation_id": conversation_id})))
        .await;
    let switched = carol.take("switched").await;
    assert_eq!(switched["conversation_id"], conversation_id);
    assert_eq!(switched["channel"], "voice");
    assert_eq!(switched["agent_kept"], true);
    let handle = switched["media"]["handle"]
        .as_u64()
        .expect("the call's handle") as u16;
    let seen = customer.until("switched").await;
    assert_eq!(seen["channel"], "voice");
    let line = carol.until("message").await;
    assert_eq!(line["sender"]["role"], "system", "{line}");

    // Audio flows to carol.
    call.send(media_event(STREAM, 2, 1, &[0x55; FRAME])).await;
    let frame = loop {
        if let Some(frame) = carol.audio.pop_front() {
            break frame;
        }
        let _ = carol.next().await;
    };
    assert_eq!(&frame[..4], &[1, 0, (handle >> 8) as u8, handle as u8]);

    // The call ends: back to chat, still with carol, and the chat goes on.
    call.send(json!({"event":"stop","sequenceNumber":"3","streamSid":STREAM,
        "stop":{"accountSid":"AC00000000000000000000000000000000","callSid":"CA00000000000000000000000000000001"}}))
        .await;
    let back = carol.until("switched").await;
    assert_eq!(back["channel"], "chat");
    assert_eq!(back["agent_kept"], true);
    assert_eq!(customer.until("switched").await["channel"], "chat");
    let seq = customer.say(&conversation_id, "thanks, that helped").await;
    let got = carol.until("message").await;
    assert_eq!(got["seq"], seq);
    assert_eq!(got["text"], "thanks, that helped");

    // A call naming a conversation that does not exist is refused clearly.
    let mut stray = provider(&server, &format!("?token={}", media_token())).await;
    stray
        .send(start_event(json!({"conversation_id": "nope"})))
        .await;
    assert_eq!(stray.json().await["code"], "not_found");
    assert_eq!(stray.closed().await.map(|c| c.0), Some(1008));
}

/// An agent without voice capacity: the switch re-routes the conversation ahead of
/// the queue to someone who has it, with the transcript; the first agent is told.
#[tokio::test]
async fn a_switch_to_voice_goes_to_an_agent_with_room_for_it() {
    let server = TestServer::start(&config()).await;
    let mut dave = server.available_agent("dave").await;
    let (mut customer, _) = server.customer_hello(None).await;
    let conversation_id = customer.start().await;
    let (_, _) = accept_next_offer(&mut dave).await;
    customer.until("assigned").await;
    customer
        .say(&conversation_id, "order 991 arrived broken")
        .await;
    dave.until("message").await;
    let mut bob = server.available_agent("bob").await;

    customer
        .request(json!({"type":"switch","conversation_id":conversation_id,"channel":"voice"}))
        .await;
    let told = dave.until("switched").await;
    assert_eq!(
        told["agent_kept"], false,
        "dave has no voice capacity: {told}"
    );
    let seen = customer.until("switched").await;
    assert_eq!(seen["agent_kept"], false);

    let offer = bob.until("offer").await;
    assert_eq!(offer["conversation_id"], conversation_id);
    assert_eq!(offer["channel"], "voice");
    bob.request(json!({"type":"accept","offer_id":offer["offer_id"]}))
        .await;
    let conversation = bob.until("conversation").await;
    let said: Vec<&str> = conversation["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(said.contains(&"order 991 arrived broken"), "{said:?}");
    let assigned = customer.until("assigned").await;
    assert_eq!(assigned["agent"]["id"], "bob");
    // The store keeps the new channel.
    customer.send(json!({"type":"history"})).await;
    let history = customer.until("history").await;
    assert_eq!(history["conversations"][0]["channel"], "voice", "{history}");

    // Browser-call signalling goes between the two parties, and only them.
    let sdp = json!({"type":"offer","sdp":"v=0 ..."});
    customer
        .request(json!({"type":"rtc","conversation_id":conversation_id,"payload":sdp}))
        .await;
    let rtc = bob.until("rtc").await;
    assert_eq!(rtc["payload"], sdp);
    assert_eq!(rtc["from"], "customer");
    bob.send(json!({"type":"rtc","conversation_id":conversation_id,"payload":{"type":"answer"}}))
        .await;
    assert_eq!(customer.until("rtc").await["payload"]["type"], "answer");
    let (mut stranger, _) = server.customer_hello(None).await;
    stranger
        .send(json!({"type":"rtc","id":"x","conversation_id":conversation_id,"payload":{}}))
        .await;
    let e = stranger.until("error").await;
    assert_eq!(e["code"], "forbidden");
    dave.send(json!({"type":"rtc","id":"y","conversation_id":conversation_id,"payload":{}}))
        .await;
    assert_eq!(dave.until("error").await["code"], "forbidden");
}

/// The agent ends a call while the provider is still streaming: the stream is closed
/// with a proper close frame (1000), not dropped.
#[tokio::test]
async fn an_agent_ending_a_live_call_closes_the_stream_cleanly() {
    let server = TestServer::start(&config()).await;
    let mut alice = server.available_agent("alice").await;
    let call = provider(&server, &format!("?token={}", media_token())).await;
    let (mut to_gateway, mut from_gateway) = call.ws.split();
    to_gateway
        .send(Message::Text(
            start_event(json!({"queue":"support"})).to_string().into(),
        ))
        .await
        .unwrap();
    let conversation = take_call(&mut alice).await;
    let conversation_id = conversation["conversation_id"].as_str().unwrap().to_owned();
    // The provider streams without pause, as a real call does.
    let streaming = tokio::spawn(async move {
        let mut chunk = 0;
        loop {
            chunk += 1;
            let event = media_event(STREAM, chunk + 1, chunk, &[0xFF; FRAME]);
            if to_gateway
                .send(Message::Text(event.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice
        .request(json!({"type":"close","conversation_id": conversation_id,"resolution":"resolved"}))
        .await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), from_gateway.next())
            .await
            .expect("the stream ends")
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("the stream was dropped without a close frame: {other:?}"),
        }
    };
    assert_eq!(closed, Some(1000));
    streaming.abort();
}

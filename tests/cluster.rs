//! Several nodes (features `postgres` and `redis`; issue 10): three real `warmline`
//! processes sharing one PostgreSQL schema and one Redis key prefix, driven by real
//! WebSocket clients that connect to different nodes. One node owns routing; the
//! others relay. The protocol is the single-node protocol, whichever node a client
//! is on; when the owner dies or Redis restarts, clients are closed (1012, or the
//! socket simply drops when their own node dies), reconnect to a live node and
//! resume, and nothing acknowledged is lost or stored twice.
//!
//! Needs PostgreSQL (`WARMLINE_TEST_POSTGRES_URL`, see `common/pg.rs`), Redis
//! (`WARMLINE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) and, for the Redis
//! restart, the `redis-server` binary.
#![cfg(all(feature = "postgres", feature = "redis"))]

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cluster::{
    Nodes, Peer, PrivateRedis, READY, RECONNECT, RedisKeys, STEP, complete, delivered_once,
    load_from_assignments, load_from_events, node_config, redis_url, stored_once,
};
use common::{SECRET, base_config, config_with};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Barrier, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

// ---------------------------------------------------------------------------
// 1. The protocol across nodes.

const FRAME: usize = 160; // 20 ms of mu-law at 8 kHz
const STREAM: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

/// One queue; alice and bob chat (one at a time), carol takes calls.
fn protocol_config() -> String {
    let mut config = base_config().replace(
        "[auth]\n",
        &format!("[auth]\nmedia_secret = \"{SECRET}\"\n"),
    );
    config.push_str(
        "[media]\nsignals_interval_ms = 500\n\
         [[queues]]\nname = \"support\"\nwrap_up_ms = 0\n\
         [[agents]]\nid = \"alice\"\ndisplay_name = \"Alice\"\ncapacity = { chat = 1, voice = 0 }\n\
         [[agents]]\nid = \"bob\"\ndisplay_name = \"Bob\"\ncapacity = { chat = 1, voice = 0 }\n\
         [[agents]]\nid = \"carol\"\ndisplay_name = \"Carol\"\ncapacity = { chat = 0, voice = 1 }\n",
    );
    config
}

/// G.711 mu-law of one 16-bit sample.
fn mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// A tone of `ms` milliseconds at -12 dBov, mu-law 8 kHz: speech to the gateway's
/// energy-based voice activity detection.
fn tone(hz: f64, ms: usize) -> Vec<u8> {
    (0..ms * 8)
        .map(|n| {
            let t = n as f64 / 8000.0;
            mulaw((8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16)
        })
        .collect()
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

fn media_event(seq: usize, chunk: usize, payload: &[u8]) -> Value {
    json!({
        "event": "media",
        "sequenceNumber": seq.to_string(),
        "streamSid": STREAM,
        "media": {
            "track": "inbound",
            "chunk": chunk.to_string(),
            "timestamp": (chunk * 20).to_string(),
            "payload": B64.encode(payload),
        }
    })
}

/// The texts of the messages (not system lines) of a `conversation` transcript.
fn said(conversation: &Value) -> Vec<String> {
    conversation["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter(|e| e["type"] == "message" && e["sender"]["role"] != "system")
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_on_one_node_is_served_by_an_agent_on_another() {
    let schema = pg::Schema::create().await;
    let keys = RedisKeys::new(&redis_url()).await;
    let config = node_config(&protocol_config(), &schema.url, &keys.url, &keys.prefix);
    let mut nodes = Nodes::start(&config, 3).await;
    nodes.wait_ready(READY).await;
    let owner = nodes.owner(READY).await;
    let o = owner.index;
    let edges: Vec<usize> = (0..3).filter(|&i| i != o).collect();
    let (x, y) = (edges[0], edges[1]);
    println!("owner: node {o} ({}), edges: {x}, {y}", owner.node_id);

    // The customer is on an edge, alice on the other edge.
    let mut alice = Peer::agent("alice", &nodes.roster, &[y]);
    alice.connect_available().await;
    assert_eq!(alice.node, Some(y), "alice is on node {y}");
    let mut customer = Peer::customer("customer", &nodes.roster, &[x]);
    customer.connect().await;
    assert_eq!(customer.node, Some(x), "the customer is on node {x}");
    let conversation_id = customer.start("support").await;
    let queued = customer.take("queued").await;
    assert_eq!(queued["conversation_id"], json!(conversation_id));
    let offer = alice.take("offer").await;
    assert_eq!(
        offer["conversation_id"],
        json!(conversation_id),
        "the offer crossed from the customer's node to alice's"
    );
    let conversation = alice.accept(&offer).await;
    let assigned = customer.take("assigned").await;
    assert_eq!(assigned["agent"]["id"], "alice", "{assigned}");
    assert_eq!(
        conversation["last_seq"], assigned["seq"],
        "alice's transcript ends with the `assigned` the customer got"
    );

    // Messages both ways: the sender's ack and the other side's event carry one seq.
    let mut texts = Vec::new();
    for i in 0..3 {
        let text = format!("customer line {i}");
        let seq = customer.say(&conversation_id, &text).await;
        let got = alice.take_text(&conversation_id, &text).await;
        assert_eq!(
            got["seq"], seq,
            "alice got {text:?} with another seq: {got}"
        );
        assert_eq!(got["sender"]["role"], "customer");
        texts.push(text);
        let text = format!("alice line {i}");
        let seq = alice.say(&conversation_id, &text).await;
        let got = customer.take_text(&conversation_id, &text).await;
        assert_eq!(
            got["seq"], seq,
            "the customer got {text:?} with another seq: {got}"
        );
        assert_eq!(got["sender"]["id"], "alice");
        texts.push(text);
    }

    // Typing crosses nodes, both ways.
    customer
        .send(json!({"type":"typing","conversation_id":conversation_id,"on":true}))
        .await;
    let typing = alice.take("typing").await;
    assert_eq!(
        (&typing["conversation_id"], &typing["role"], &typing["on"]),
        (&json!(conversation_id), &json!("customer"), &json!(true)),
        "{typing}"
    );
    alice
        .send(json!({"type":"typing","conversation_id":conversation_id,"on":true}))
        .await;
    let typing = customer.take("typing").await;
    assert_eq!(
        (&typing["conversation_id"], &typing["role"], &typing["on"]),
        (&json!(conversation_id), &json!("agent"), &json!(true)),
        "{typing}"
    );

    // A warm transfer to bob, on the third node (the owner).
    let mut bob = Peer::agent("bob", &nodes.roster, &[o]);
    bob.connect_available().await;
    assert_eq!(bob.node, Some(o), "bob is on node {o}");
    alice
        .request(json!({"type":"transfer","conversation_id":conversation_id,
            "to":{"agent":"bob"},"mode":"warm","note":"refund approved"}))
        .await;
    let offer = bob.take("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversation_id));
    assert_eq!(
        (&offer["reason"], &offer["note"]),
        (&json!("transfer"), &json!("refund approved")),
        "{offer}"
    );
    // Until bob accepts, alice is still there for the customer.
    let text = "bringing in a colleague";
    let seq = alice.say(&conversation_id, text).await;
    assert_eq!(customer.take_text(&conversation_id, text).await["seq"], seq);
    texts.push(text.to_owned());
    let conversation = bob.accept(&offer).await;
    assert_eq!(
        said(&conversation),
        texts,
        "bob sees everything said so far"
    );
    let done = alice.take("transferred").await;
    assert_eq!(
        (&done["conversation_id"], &done["mode"], &done["to"]),
        (
            &json!(conversation_id),
            &json!("warm"),
            &json!({"agent":"bob"})
        ),
        "{done}"
    );
    let assigned = customer
        .take_where("`assigned` to bob", STEP, |v| {
            v["type"] == "assigned" && v["agent"]["id"] == "bob"
        })
        .await;
    assert_eq!(assigned["conversation_id"], json!(conversation_id));
    // alice has left; bob carries on, both ways.
    let refused = alice
        .try_request(
            json!({"type":"message","conversation_id":conversation_id,"text":"still here?"}),
        )
        .await
        .expect_err("alice may no longer write in the conversation she handed over");
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let text = "refund is on its way";
    let seq = bob.say(&conversation_id, text).await;
    assert_eq!(customer.take_text(&conversation_id, text).await["seq"], seq);
    let text = "thank you bob";
    let seq = customer.say(&conversation_id, text).await;
    assert_eq!(bob.take_text(&conversation_id, text).await["seq"], seq);
    customer
        .send(json!({"type":"typing","conversation_id":conversation_id,"on":false}))
        .await;
    let typing = bob.take("typing").await;
    assert_eq!(
        (&typing["role"], &typing["on"]),
        (&json!("customer"), &json!(false))
    );

    // Every seq reached each side once, and the store has every message once.
    customer.sync(STEP).await;
    bob.sync(STEP).await;
    complete(&customer, &conversation_id).unwrap();
    complete(&bob, &conversation_id).unwrap();
    let mut problems = delivered_once(&conversation_id, &customer, &bob);
    problems.extend(delivered_once(&conversation_id, &bob, &customer));
    problems.extend(delivered_once(&conversation_id, &alice, &customer));
    for peer in [&customer, &alice, &bob] {
        problems.extend(peer.conflicts.iter().cloned());
    }
    problems.extend(stored_once(&schema.url, &[&customer, &alice, &bob]).await);
    assert!(problems.is_empty(), "{problems:#?}");

    // Voice: the call streams into node x, carol answers on node y.
    let mut carol = Peer::agent("carol", &nodes.roster, &[y]);
    carol.connect_available().await;
    assert_eq!(carol.node, Some(y));
    let token = warmline::gateway::auth::mint_media(SECRET, "test-provider", 3600).unwrap();
    let url = format!("ws://{}/ws/media?token={token}", nodes.addr(x));
    let (mut call, _) = tokio_tungstenite::connect_async(url.into_client_request().unwrap())
        .await
        .expect("the provider connects to node x");
    for event in [
        json!({"event":"connected","protocol":"Call","version":"1.0.0"}),
        start_event(json!({"queue": "support", "from": "+15550001111", "order": "A-1234"})),
    ] {
        call.send(Message::Text(event.to_string().into()))
            .await
            .expect("send to the media stream");
    }
    let offer = carol.take("offer").await;
    assert_eq!(offer["channel"], "voice", "{offer}");
    let conversation = carol.accept(&offer).await;
    assert_eq!(conversation["channel"], "voice");
    assert_eq!(conversation["attributes"]["order"], "A-1234");
    assert_eq!(conversation["customer"]["id"], "tel:+15550001111");
    assert_eq!(conversation["media"]["codec"], "pcmu");
    let handle = conversation["media"]["handle"]
        .as_u64()
        .expect("a media handle") as u16;
    let call_id = conversation["conversation_id"].as_str().unwrap().to_owned();
    let header = [1u8, 0, (handle >> 8) as u8, handle as u8];

    // The caller speaks 2 s at real-time pace, then hangs up; carol answers over
    // the first second. Both directions are read to the end.
    let caller_audio = tone(440.0, 2_000);
    let reply = tone(660.0, 1_000);
    let frames: Vec<Vec<u8>> = caller_audio.chunks(FRAME).map(<[u8]>::to_vec).collect();
    let (mut to_gateway, mut from_gateway) = call.split();
    let sent = frames.clone();
    let caller = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for (i, frame) in sent.iter().enumerate() {
            pace.tick().await;
            let event = media_event(i + 2, i + 1, frame);
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
    let listener = tokio::spawn(async move {
        let mut heard = Vec::new();
        let close = loop {
            let msg = tokio::time::timeout(STEP, from_gateway.next())
                .await
                .expect("the media stream heard nothing for 10 s and was not closed");
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["event"] == "media" {
                        assert_eq!(v["streamSid"], STREAM, "{v}");
                        heard.extend(B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap());
                    }
                }
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("the media stream dropped without a close frame: {other:?}"),
            }
        };
        (heard, close)
    });
    let mut agent_ws = carol.ws.take().expect("carol is connected");
    let mut received: Vec<Vec<u8>> = carol.audio.drain(..).map(|b| b[4..].to_vec()).collect();
    let reply_frames: Vec<Vec<u8>> = reply.chunks(FRAME).map(<[u8]>::to_vec).collect();
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut to_send = reply_frames.into_iter();
    let mut live_signals = Vec::new();
    let mut closed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while closed.is_none() {
        tokio::select! {
            _ = pace.tick(), if to_send.len() > 0 => {
                let mut bytes = header.to_vec();
                bytes.extend(to_send.next().unwrap());
                agent_ws.send(Message::Binary(bytes.into())).await.expect("carol's audio");
            }
            msg = tokio::time::timeout_at(deadline, agent_ws.next()) => {
                let msg = msg
                    .expect("the call did not end within 20 s")
                    .expect("carol's connection is open")
                    .expect("a frame");
                match msg {
                    Message::Binary(b) => {
                        assert_eq!(&b[..4], &header, "audio for another handle");
                        received.push(b[4..].to_vec());
                    }
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        match v["type"].as_str() {
                            Some("signals") if v.get("voice").is_some() => live_signals.push(v),
                            Some("closed") => closed = Some(v),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = caller.await.unwrap();
    let (heard, provider_close) = listener.await.unwrap();

    assert_eq!(
        received.len(),
        frames.len(),
        "caller frames lost or added between node {x} and node {y}"
    );
    assert!(
        received == frames,
        "carol got different audio than the caller sent"
    );
    assert_eq!(
        heard.len(),
        reply.len(),
        "agent audio lost or added on its way back"
    );
    assert!(
        heard == reply,
        "the provider got different audio than carol sent"
    );
    let closed = closed.unwrap();
    assert_eq!(
        (&closed["conversation_id"], &closed["by"]),
        (&json!(call_id), &json!("customer")),
        "the caller hung up: {closed}"
    );
    assert_eq!(
        provider_close,
        Some(1000),
        "the stream ends with a clean close"
    );
    assert!(
        live_signals
            .iter()
            .any(|s| s["voice"]["caller_talk_ms"].as_u64() > Some(0)),
        "no live voice signals reached carol: {live_signals:?}"
    );

    // The call's signals are kept in the shared store. Tolerances: the caller's
    // timeline is the stream's own; carol's audio is placed by the gateway's clock
    // after a hop through Redis, so it gets more room.
    let mut db = pg::connect(&schema.url).await;
    let deadline = Instant::now() + STEP;
    let (caller_talk, agent_talk, agent_id) = loop {
        let row: Option<(i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT caller_talk_ms, agent_talk_ms, agent_id FROM voice_signals
             WHERE conversation_id = $1",
        )
        .bind(&call_id)
        .fetch_optional(&mut db)
        .await
        .expect("read voice_signals");
        if let Some(row) = row {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "no voice signals stored for the call"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("caller talk {caller_talk} ms (2000 sent), agent talk {agent_talk} ms (1000 sent)");
    assert_eq!(agent_id.as_deref(), Some("carol"));
    assert!(
        (1_500..=2_500).contains(&caller_talk),
        "caller talk measured {caller_talk} ms for 2000 ms of tone"
    );
    assert!(
        (700..=1_600).contains(&agent_talk),
        "agent talk measured {agent_talk} ms for 1000 ms of tone"
    );
    drop(db);
    nodes.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Capacity under concurrent starts.

/// What one customer saw.
struct Visit {
    conversation_id: String,
    agent: String,
    peer: Peer,
}

/// A customer: hello, wait for everyone, start, be assigned, say hello, hear the
/// answer, see the agent close.
async fn visit(mut customer: Peer, start: Arc<Barrier>, deadline: Instant) -> Visit {
    let left = || deadline.saturating_duration_since(Instant::now());
    customer.connect().await;
    tokio::time::timeout_at(deadline, start.wait())
        .await
        .expect("every customer connected in time");
    let conversation_id = customer.start("support").await;
    let assigned = customer
        .take_where("`assigned`", left(), |v| {
            v["type"] == "assigned" && v["conversation_id"] == json!(conversation_id)
        })
        .await;
    let agent = assigned["agent"]["id"]
        .as_str()
        .expect("agent id")
        .to_owned();
    let text = format!("{} says hello", customer.name);
    let seq = customer.say_within(&conversation_id, &text, left()).await;
    let answer = customer
        .take_where("the agent's answer", left(), |v| {
            v["type"] == "message"
                && v["conversation_id"] == json!(conversation_id)
                && v["sender"]["role"] == "agent"
        })
        .await;
    assert!(answer["seq"].as_u64() > Some(seq), "{answer}");
    assert_eq!(answer["sender"]["id"], json!(agent), "{answer}");
    let closed = customer
        .take_where("`closed`", left(), |v| {
            v["type"] == "closed" && v["conversation_id"] == json!(conversation_id)
        })
        .await;
    assert_eq!(closed["by"], "agent", "{closed}");
    Visit {
        conversation_id,
        agent,
        peer: customer,
    }
}

/// What one agent did.
struct Shift {
    peer: Peer,
    /// Conversations accepted (`conversation` frames).
    accepted: BTreeSet<String>,
    closed: usize,
    /// The most conversations held at once, as the client counts them.
    most: usize,
}

/// An agent: accepts every offer, answers the customer's first message and closes.
async fn work(mut agent: Peer, mut stop: watch::Receiver<bool>, deadline: Instant) -> Shift {
    let mut open = BTreeSet::new();
    let (mut accepted, mut closed, mut most) = (BTreeSet::new(), 0, 0);
    let mut answered = BTreeSet::new();
    // Told to stop (every customer saw its conversation closed): the agent still
    // reads until it has seen the close of everything it holds.
    let mut stopping = false;
    loop {
        if stopping && open.is_empty() {
            break;
        }
        let frame = tokio::select! {
            biased;
            _ = stop.changed(), if !stopping => {
                stopping = true;
                continue;
            }
            frame = agent.next_before(deadline) => frame,
        };
        let Some(v) = frame else {
            panic!(
                "{}: the deadline passed (holding {open:?}, answered {} of {} accepted)",
                agent.name,
                answered.len(),
                accepted.len()
            );
        };
        let conversation_id = v["conversation_id"].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str().unwrap_or_default() {
            "offer" => {
                let id = format!("accept-{}", v["offer_id"].as_str().unwrap_or_default());
                agent
                    .send(json!({"type":"accept","id":id,"offer_id":v["offer_id"]}))
                    .await;
            }
            "conversation" => {
                open.insert(conversation_id.clone());
                accepted.insert(conversation_id.clone());
                most = most.max(open.len());
                // The customer may have spoken before the transcript was read: then
                // the message is in it and is not sent again as an event.
                let spoke = v["transcript"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["type"] == "message" && e["sender"]["role"] == "customer");
                if spoke && answered.insert(conversation_id.clone()) {
                    answer_and_close(&mut agent, &conversation_id).await;
                }
            }
            "message"
                if v["sender"]["role"] == "customer"
                    && answered.insert(conversation_id.clone()) =>
            {
                answer_and_close(&mut agent, &conversation_id).await;
            }
            "closed" => {
                open.remove(&conversation_id);
                closed += 1;
            }
            _ => {}
        }
    }
    Shift {
        peer: agent,
        accepted,
        closed,
        most,
    }
}

/// One answer, then the close (in that order on the one connection).
async fn answer_and_close(agent: &mut Peer, conversation_id: &str) {
    let text = format!("{} answers in {conversation_id}", agent.name);
    agent.say_nowait(conversation_id, &text).await;
    let id = format!("close-{conversation_id}");
    agent
        .send(
            json!({"type":"close","id":id,"conversation_id":conversation_id,
            "resolution":"resolved"}),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_starts_never_exceed_agent_capacity() {
    const AGENTS: usize = 20;
    const CUSTOMERS: usize = 200;
    const CAPACITY: usize = 2;
    let schema = pg::Schema::create().await;
    let keys = RedisKeys::new(&redis_url()).await;
    let ids: Vec<String> = (0..AGENTS).map(|i| format!("agent{i:02}")).collect();
    let agents: Vec<(&str, u32)> = ids
        .iter()
        .map(|id| (id.as_str(), CAPACITY as u32))
        .collect();
    let config = node_config(
        &config_with(&agents, ""),
        &schema.url,
        &keys.url,
        &keys.prefix,
    );
    let mut nodes = Nodes::start(&config, 3).await;
    nodes.wait_ready(READY).await;
    let owner = nodes.owner(READY).await;
    println!("owner: node {} ({})", owner.index, owner.node_id);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(45);

    // Agent i on node i % 3, all available before the first start.
    let (stop, stopped) = watch::channel(false);
    let mut shifts = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut agent = Peer::agent(id, &nodes.roster, &[i % 3]);
        agent.connect_available().await;
        assert_eq!(agent.node, Some(i % 3));
        shifts.push(tokio::spawn(work(agent, stopped.clone(), deadline)));
    }
    // Customer i on node i % 3; all start at once.
    let start = Arc::new(Barrier::new(CUSTOMERS));
    let visits: Vec<_> = (0..CUSTOMERS)
        .map(|i| {
            let customer = Peer::customer(&format!("c{i:03}"), &nodes.roster, &[i % 3]);
            tokio::spawn(visit(customer, start.clone(), deadline))
        })
        .collect();
    let mut seen = Vec::new();
    for v in visits {
        seen.push(
            v.await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        );
    }
    println!(
        "{CUSTOMERS} conversations assigned, answered and closed in {:?}",
        began.elapsed()
    );
    stop.send(true).expect("agents listen");
    let mut done = Vec::new();
    for s in shifts {
        let mut shift = s
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        // Their last answers' acks.
        let closes = shift.peer.closes.len();
        shift.peer.settle(closes, STEP).await;
        done.push(shift);
    }

    // Client side: every conversation assigned once, to an agent who accepted it,
    // and no agent ever held more than its capacity.
    let by_customer: BTreeMap<&str, &str> = seen
        .iter()
        .map(|v| (v.conversation_id.as_str(), v.agent.as_str()))
        .collect();
    assert_eq!(
        by_customer.len(),
        CUSTOMERS,
        "one conversation per customer"
    );
    let mut by_agent: BTreeMap<&str, &str> = BTreeMap::new();
    for shift in &done {
        assert!(
            shift.most <= CAPACITY,
            "{} held {} conversations at once (capacity {CAPACITY})",
            shift.peer.name,
            shift.most
        );
        assert_eq!(
            shift.closed,
            shift.accepted.len(),
            "{} closed what it accepted",
            shift.peer.name
        );
        assert!(
            shift.peer.refusals().is_empty(),
            "{} was refused: {:?}",
            shift.peer.name,
            shift.peer.refusals()
        );
        for c in &shift.accepted {
            if let Some(other) = by_agent.insert(c.as_str(), shift.peer.name.as_str()) {
                panic!("{c} accepted by {other} and by {}", shift.peer.name);
            }
        }
    }
    assert_eq!(
        by_agent, by_customer,
        "the agent each customer was assigned to is the one that accepted"
    );
    let per_agent: BTreeMap<&str, usize> = by_agent.values().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(*a).or_default() += 1;
        m
    });
    println!("conversations per agent: {per_agent:?}");

    // Store side: each conversation assigned once and closed once; nobody ever held
    // more than the capacity, from the assignments and from the transcripts.
    let mut db = pg::connect(&schema.url).await;
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM conversations GROUP BY state")
            .fetch_all(&mut db)
            .await
            .expect("read conversations");
    assert_eq!(states, [("closed".to_owned(), CUSTOMERS as i64)]);
    let counts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT conversation_id,
                COUNT(*) FILTER (WHERE kind = 'assigned'),
                COUNT(*) FILTER (WHERE kind = 'closed')
         FROM events GROUP BY conversation_id
         HAVING COUNT(*) FILTER (WHERE kind = 'assigned') <> 1
             OR COUNT(*) FILTER (WHERE kind = 'closed') <> 1",
    )
    .fetch_all(&mut db)
    .await
    .expect("read events");
    assert!(
        counts.is_empty(),
        "conversations not assigned exactly once and closed exactly once \
         (conversation, assigned, closed): {counts:?}"
    );
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM assignments WHERE ended_at IS NULL")
        .fetch_one(&mut db)
        .await
        .expect("read assignments");
    assert_eq!(open, 0, "every assignment ended");
    drop(db);
    for (source, load) in [
        ("assignments", load_from_assignments(&schema.url).await),
        ("events", load_from_events(&schema.url).await),
    ] {
        assert_eq!(load.len(), per_agent.len(), "{source}: {load:?}");
        for (agent, (most, at)) in &load {
            assert!(
                *most <= CAPACITY as i64,
                "the store's {source} say {agent} held {most} conversations at once (at {at} ms)"
            );
        }
    }
    let mut peers: Vec<&Peer> = seen.iter().map(|v| &v.peer).collect();
    peers.extend(done.iter().map(|s| &s.peer));
    let problems = stored_once(&schema.url, &peers).await;
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "took {:?}",
        began.elapsed()
    );
    nodes.stop().await;
}

// ---------------------------------------------------------------------------
// 3. The owner dies.

/// The closes `peer` saw since `from` are what its node's fate says: the socket
/// dropped (its node was killed) then only 1012s, or only 1012s.
fn assert_closes(peer: &Peer, from: usize, node_killed: bool) {
    let codes = peer.close_codes(from);
    assert!(!codes.is_empty(), "{} saw no close", peer.name);
    let rest = if node_killed {
        assert_eq!(
            codes[0], None,
            "{}'s node was killed: its socket drops without a close frame ({:?})",
            peer.name, peer.closes
        );
        &codes[1..]
    } else {
        &codes[..]
    };
    assert!(
        rest.iter().all(|c| *c == Some(1012)),
        "{} was closed with {codes:?} ({:?}); the cluster changing closes with 1012",
        peer.name,
        peer.closes
    );
}

/// Every acked message of every pair delivered once each way, every transcript
/// complete, nothing conflicting, nothing refused, every message stored once.
async fn assert_nothing_lost(store_url: &str, pairs: &[(&Peer, &Peer, &str)], all: &[&Peer]) {
    let mut problems = Vec::new();
    for (customer, agent, conversation_id) in pairs {
        problems.extend(delivered_once(conversation_id, customer, agent));
        problems.extend(delivered_once(conversation_id, agent, customer));
        for peer in [customer, agent] {
            if let Err(e) = complete(peer, conversation_id) {
                problems.push(e);
            }
        }
    }
    for peer in all {
        problems.extend(peer.conflicts.iter().cloned());
        problems.extend(
            peer.refusals()
                .iter()
                .map(|e| format!("{} was refused: {e}", peer.name)),
        );
    }
    problems.extend(stored_once(store_url, all).await);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_owner_loses_nothing() {
    let schema = pg::Schema::create().await;
    let keys = RedisKeys::new(&redis_url()).await;
    let config = node_config(
        &config_with(&[("b1", 2), ("c1", 2), ("c2", 2)], ""),
        &schema.url,
        &keys.url,
        &keys.prefix,
    );
    let mut nodes = Nodes::start(&config, 3).await;
    nodes.wait_ready(READY).await;
    let first = nodes.owner(READY).await;
    let a = first.index;
    let others: Vec<usize> = (0..3).filter(|&i| i != a).collect();
    let (b, c) = (others[0], others[1]);
    println!(
        "owner: node {a} ({}, fence {}); B = {b}, C = {c}",
        first.node_id, first.fence
    );
    let roster = nodes.roster.clone();

    // Agents on B and C (c1 away for now); customers on A and B.
    let mut agents = vec![
        Peer::agent("b1", &roster, &[b]).resilient(),
        Peer::agent("c1", &roster, &[c]).resilient(),
    ];
    const B1: usize = 0;
    const C1: usize = 1;
    agents[B1].connect_available().await;
    agents[C1].connect().await;
    let names = ["ca0", "cb0", "ca1", "cb1", "ca2", "cb2"];
    let mut customers: Vec<Peer> = names
        .iter()
        .map(|name| {
            let prefer = if name.starts_with("ca") {
                vec![a, c, b]
            } else {
                vec![b, c]
            };
            Peer::customer(name, &roster, &prefer).resilient()
        })
        .collect();
    for (k, customer) in customers.iter_mut().enumerate() {
        customer.connect().await;
        let want = if k % 2 == 0 { a } else { b };
        assert_eq!(
            customer.node,
            Some(want),
            "{} is on node {want}",
            customer.name
        );
    }
    let mut conversations = Vec::new();
    // b1 takes ca0 and cb0, c1 (now available) ca1 and cb1.
    for (k, agent) in [(0, B1), (1, B1), (2, C1), (3, C1)] {
        if k == 2 {
            agents[C1].available().await;
        }
        let conversation_id = customers[k].start("support").await;
        let offer = agents[agent].take("offer").await;
        assert_eq!(offer["conversation_id"], json!(conversation_id), "{offer}");
        agents[agent].accept(&offer).await;
        let assigned = customers[k].take("assigned").await;
        assert_eq!(assigned["agent"]["id"], json!(agents[agent].name));
        conversations.push(conversation_id);
    }
    // Nobody has room for ca2 and cb2: they wait, in that order.
    for k in [4, 5] {
        let conversation_id = customers[k].start("support").await;
        let queued = customers[k].take("queued").await;
        assert_eq!(queued["position"], k - 3, "{}: {queued}", names[k]);
        conversations.push(conversation_id);
    }
    let mut holder = [B1, B1, C1, C1, usize::MAX, usize::MAX];

    // Acked both ways, then one message each way still unacked as the owner dies.
    for (k, conversation_id) in conversations.iter().enumerate().take(4) {
        let agent = &mut agents[holder[k]];
        let customer = &mut customers[k];
        for r in 0..2 {
            let text = format!("{} before {r}", customer.name);
            let seq = customer.say(conversation_id, &text).await;
            assert_eq!(agent.take_text(conversation_id, &text).await["seq"], seq);
            let text = format!("{} to {} before {r}", agent.name, customer.name);
            let seq = agent.say(conversation_id, &text).await;
            assert_eq!(customer.take_text(conversation_id, &text).await["seq"], seq);
        }
    }
    for k in [4, 5] {
        let text = format!("{} waiting", names[k]);
        customers[k].say(&conversations[k], &text).await;
    }
    for (k, conversation_id) in conversations.iter().enumerate() {
        let text = format!("{} in flight", names[k]);
        customers[k].say_nowait(conversation_id, &text).await;
        if k < 4 {
            let agent = &mut agents[holder[k]];
            let text = format!("{} to {} in flight", agent.name, names[k]);
            agent.say_nowait(conversation_id, &text).await;
        }
    }

    // SIGKILL the owner.
    let marks: Vec<usize> = customers
        .iter()
        .chain(agents.iter())
        .map(|p| p.closes.len())
        .collect();
    nodes.kill(a).await;
    let second = nodes.owner(READY).await;
    nodes.wait_ready(READY).await;
    println!(
        "new owner: node {} ({}, fence {})",
        second.index, second.node_id, second.fence
    );
    assert_ne!(second.index, a);
    assert!(
        second.fence > first.fence,
        "the new owner's fencing token ({}) is above the dead one's ({})",
        second.fence,
        first.fence
    );
    // Everyone reconnects (the customers of A to C), resumes and resends.
    futures_util::future::join_all(
        customers
            .iter_mut()
            .chain(agents.iter_mut())
            .zip(&marks)
            .map(|(p, mark)| p.settle(mark + 1, RECONNECT)),
    )
    .await;
    for (p, mark) in customers.iter().chain(agents.iter()).zip(&marks) {
        println!(
            "{}: now on node {:?}, closes {:?}, resent {}",
            p.name,
            p.node,
            p.close_codes(*mark),
            p.resent
        );
        let on_a = p.name.starts_with("ca");
        assert_closes(p, *mark, on_a);
        assert_ne!(p.node, Some(a));
    }
    for k in [4, 5] {
        let open = &customers[k].welcome["open_conversations"];
        let it = open
            .as_array()
            .and_then(|o| {
                o.iter()
                    .find(|c| c["conversation_id"] == json!(conversations[k]))
            })
            .unwrap_or_else(|| panic!("{}'s welcome lists its conversation: {open}", names[k]));
        assert_eq!(it["state"], "queued", "{} still waits: {it}", names[k]);
    }

    // The survivors carry on, both ways.
    for (k, conversation_id) in conversations.iter().enumerate().take(4) {
        let agent = &mut agents[holder[k]];
        let customer = &mut customers[k];
        let text = format!("{} after", customer.name);
        let seq = customer.say(conversation_id, &text).await;
        assert_eq!(agent.take_text(conversation_id, &text).await["seq"], seq);
        let text = format!("{} to {} after", agent.name, customer.name);
        let seq = agent.say(conversation_id, &text).await;
        assert_eq!(customer.take_text(conversation_id, &text).await["seq"], seq);
    }

    // Room frees: b1 closes ca0's conversation and gets ca2's, first in line.
    agents[B1]
        .request(json!({"type":"close","conversation_id":conversations[0],"resolution":"resolved"}))
        .await;
    customers[0]
        .take_where("`closed`", STEP, |v| {
            v["type"] == "closed" && v["conversation_id"] == json!(conversations[0])
        })
        .await;
    let offer = agents[B1].take("offer").await;
    assert_eq!(
        offer["conversation_id"],
        json!(conversations[4]),
        "the first in line goes first: {offer}"
    );
    let conversation = agents[B1].accept(&offer).await;
    let texts = said(&conversation);
    for text in ["ca2 waiting", "ca2 in flight"] {
        assert_eq!(
            texts.iter().filter(|t| *t == text).count(),
            1,
            "{text:?} once in {texts:?}"
        );
    }
    let assigned = customers[4].take("assigned").await;
    assert_eq!(assigned["agent"]["id"], "b1");
    holder[4] = B1;
    // A new agent on a survivor takes cb2's.
    let mut c2 = Peer::agent("c2", &roster, &[c]).resilient();
    c2.connect_available().await;
    agents.push(c2);
    const C2: usize = 2;
    let offer = agents[C2].take("offer").await;
    assert_eq!(offer["conversation_id"], json!(conversations[5]), "{offer}");
    let conversation = agents[C2].accept(&offer).await;
    let texts = said(&conversation);
    for text in ["cb2 waiting", "cb2 in flight"] {
        assert_eq!(
            texts.iter().filter(|t| *t == text).count(),
            1,
            "{text:?} once in {texts:?}"
        );
    }
    assert_eq!(customers[5].take("assigned").await["agent"]["id"], "c2");
    holder[5] = C2;
    for k in [4, 5] {
        let agent = &mut agents[holder[k]];
        let customer = &mut customers[k];
        let conversation_id = &conversations[k];
        let text = format!("{} served", customer.name);
        let seq = customer.say(conversation_id, &text).await;
        assert_eq!(agent.take_text(conversation_id, &text).await["seq"], seq);
        let text = format!("{} to {} served", agent.name, customer.name);
        let seq = agent.say(conversation_id, &text).await;
        assert_eq!(customer.take_text(conversation_id, &text).await["seq"], seq);
    }

    // Everyone resyncs: every acked message once, each side, in the store too.
    futures_util::future::join_all(
        customers
            .iter_mut()
            .chain(agents.iter_mut())
            .map(|p| p.sync(STEP)),
    )
    .await;
    let pairs: Vec<(&Peer, &Peer, &str)> = (0..6)
        .map(|k| (&customers[k], &agents[holder[k]], conversations[k].as_str()))
        .collect();
    let all: Vec<&Peer> = customers.iter().chain(agents.iter()).collect();
    assert_nothing_lost(&schema.url, &pairs, &all).await;
    for (source, load) in [
        ("assignments", load_from_assignments(&schema.url).await),
        ("events", load_from_events(&schema.url).await),
    ] {
        for (agent, (most, at)) in &load {
            assert!(
                *most <= 2,
                "the store's {source} say {agent} held {most} conversations at once (at {at} ms)"
            );
        }
    }
    nodes.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Redis restarts.

/// Says a line every 25 ms, each acked before the next, until told to stop;
/// reports how many were acked.
async fn chatter(
    mut peer: Peer,
    conversation_id: String,
    stop: watch::Receiver<bool>,
    progress: watch::Sender<usize>,
) -> Peer {
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    let mut n = 0;
    loop {
        let stopped = *stop.borrow();
        if stopped {
            break;
        }
        pace.tick().await;
        n += 1;
        let text = format!("{} line {n}", peer.name);
        peer.say_within(&conversation_id, &text, Duration::from_secs(30))
            .await;
        // Events are kept in the transcripts; the rest is not needed.
        peer.stash.clear();
        progress.send_replace(n);
    }
    peer
}

/// Waits until every progress counter meets `want(i)`.
async fn progress_reaches(
    progress: &mut [watch::Receiver<usize>],
    want: impl Fn(usize) -> usize,
    within: Duration,
    what: &str,
) {
    let deadline = Instant::now() + within;
    for (i, p) in progress.iter_mut().enumerate() {
        let target = want(i);
        let reached = tokio::time::timeout_at(deadline, p.wait_for(|n| *n >= target))
            .await
            .map(|r| r.map(|_| ()));
        match reached {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => panic!("chatter {i} ended before {what}"),
            Err(_) => panic!("chatter {i} has {} acks, not {target}, {what}", *p.borrow()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_loses_and_duplicates_nothing() {
    let schema = pg::Schema::create().await;
    let mut redis = PrivateRedis::start().await;
    // The Redis is the test's own and dies with it: its keys need no cleanup.
    let prefix = format!("wl_test_{:016x}", rand::random::<u64>());
    let config = node_config(
        &config_with(&[("ag0", 1), ("ag1", 1), ("ag2", 1)], ""),
        &schema.url,
        &redis.url(),
        &prefix,
    );
    let mut nodes = Nodes::start(&config, 3).await;
    nodes.wait_ready(READY).await;
    let first = nodes.owner(READY).await;
    println!(
        "redis on port {}; owner: node {} ({}, fence {})",
        redis.port, first.index, first.node_id, first.fence
    );
    let roster = nodes.roster.clone();

    // Agent i on node i serves customer i, who is on node i + 1.
    let mut peers = Vec::new();
    let mut conversations = Vec::new();
    for i in 0..3 {
        let mut agent = Peer::agent(&format!("ag{i}"), &roster, &[i]).resilient();
        agent.connect().await;
        let mut customer = Peer::customer(&format!("cu{i}"), &roster, &[(i + 1) % 3]).resilient();
        customer.connect().await;
        let conversation_id = customer.start("support").await;
        agent.available().await;
        let offer = agent.take("offer").await;
        assert_eq!(offer["conversation_id"], json!(conversation_id), "{offer}");
        agent.accept(&offer).await;
        assert_eq!(
            customer.take("assigned").await["agent"]["id"],
            json!(agent.name)
        );
        peers.push(customer);
        peers.push(agent);
        conversations.push(conversation_id.clone());
        conversations.push(conversation_id);
    }

    // Everyone talks continuously.
    let (stop, stopped) = watch::channel(false);
    let mut progress = Vec::new();
    let mut chatters = Vec::new();
    for (peer, conversation_id) in peers.into_iter().zip(conversations.iter().cloned()) {
        let (tx, rx) = watch::channel(0usize);
        progress.push(rx);
        chatters.push(tokio::spawn(chatter(
            peer,
            conversation_id,
            stopped.clone(),
            tx,
        )));
    }
    progress_reaches(&mut progress, |_| 10, STEP, "before the restart").await;

    // Redis dies and comes back empty, on the same port, mid-traffic.
    redis.kill().await;
    redis.restart().await;
    let second = nodes.owner(READY).await;
    nodes.wait_ready(READY).await;
    println!(
        "after the restart: owner node {} ({}, fence {})",
        second.index, second.node_id, second.fence
    );
    assert!(
        second.fence > first.fence,
        "fencing tokens keep rising when Redis forgets ({} then {})",
        first.fence,
        second.fence
    );
    let now: Vec<usize> = progress.iter().map(|p| *p.borrow()).collect();
    progress_reaches(
        &mut progress,
        |i| now[i] + 10,
        RECONNECT + STEP,
        "after the restart",
    )
    .await;
    stop.send(true).expect("chatters listen");
    let mut peers = Vec::new();
    for c in chatters {
        peers.push(
            c.await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        );
    }

    // Every client was told (1012) and came back.
    for peer in &peers {
        assert_closes(peer, 0, false);
        println!(
            "{}: {} acked, closes {:?}, resent {}",
            peer.name,
            peer.acked.len(),
            peer.close_codes(0),
            peer.resent
        );
    }
    futures_util::future::join_all(peers.iter_mut().map(|p| p.sync(STEP))).await;
    let pairs: Vec<(&Peer, &Peer, &str)> = (0..3)
        .map(|i| {
            (
                &peers[2 * i],
                &peers[2 * i + 1],
                conversations[2 * i].as_str(),
            )
        })
        .collect();
    let all: Vec<&Peer> = peers.iter().collect();
    assert_nothing_lost(&schema.url, &pairs, &all).await;
    nodes.stop().await;
}

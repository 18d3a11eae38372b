//! Warmline on PostgreSQL (feature `postgres`): the real binary with `store.url`
//! pointing at a schema of the test's own, driven by real WebSocket clients. The
//! store's own contract is in `store.rs`; this checks the gateway is wired to it.
#![cfg(feature = "postgres")]

mod common;
#[path = "common/pg.rs"]
mod pg;

use common::{TestServer, accept_next_offer, config_with};
use serde_json::json;

#[tokio::test]
async fn a_conversation_kept_in_postgresql_survives_sigkill_and_resumes() {
    let schema = pg::Schema::create().await;
    let config = format!(
        "{}\n[store]\nurl = \"{}\"\n",
        config_with(&[("alice", 1)], ""),
        schema.url
    );
    let mut server = TestServer::start(&config).await;
    let (mut customer, welcome) = server.customer_hello(None).await;
    let token = welcome["visitor_token"].as_str().unwrap().to_owned();
    let conversation_id = customer.start().await;
    let mut agent = server.available_agent("alice").await;
    accept_next_offer(&mut agent).await;
    let assigned = customer.until("assigned").await;
    let after = assigned["seq"].as_u64().unwrap();

    // Acked both ways, then the process is killed without warning.
    let mut acked = Vec::new();
    for i in 0..3 {
        let text = format!("customer line {i}");
        acked.push((customer.say(&conversation_id, &text).await, text));
        let text = format!("agent line {i}");
        acked.push((agent.say(&conversation_id, &text).await, text));
    }
    server.kill().await;
    server.restart().await;

    let (mut back, welcome) = server.customer_hello(Some(&token)).await;
    let open = &welcome["open_conversations"][0];
    assert_eq!(open["conversation_id"], json!(conversation_id));
    assert_eq!(open["state"], "active");
    assert_eq!(open["last_seq"], acked.last().unwrap().0);
    back.send(json!({"type":"resume","conversation_id":conversation_id,"last_seq":after}))
        .await;
    for (seq, text) in &acked {
        let got = back.expect("message").await;
        assert_eq!(got["seq"], *seq);
        assert_eq!(got["text"], json!(text));
    }
    back.expect("resumed").await;

    // The transcript is in PostgreSQL, in this test's schema, once each.
    let mut conn = pg::connect(&schema.url).await;
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, text FROM events WHERE conversation_id = $1 AND kind = 'message' ORDER BY seq",
    )
    .bind(&conversation_id)
    .fetch_all(&mut conn)
    .await
    .expect("read the events");
    let expected: Vec<(i64, String)> = acked
        .iter()
        .map(|(seq, text)| (i64::try_from(*seq).unwrap(), text.clone()))
        .collect();
    assert_eq!(rows, expected);
    drop(conn);
    server.kill().await;
}

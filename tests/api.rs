//! The operator API on the real server: validation that names the field, changes
//! that take effect at once and survive a restart, and live queue state.

mod common;

use common::{TestServer, accept_next_offer};
use serde_json::json;

const ADMIN: &str = "admin-token-0123456789abcdef-0123";

fn config() -> String {
    let mut config = common::base_config();
    config = config.replace("[auth]\n", &format!("[auth]\nadmin_token = \"{ADMIN}\"\n"));
    config = format!("skills = [\"billing\", \"support\", \"spanish\"]\n{config}");
    config.push_str("[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n");
    config.push_str("[[agents]]\nid = \"alice\"\nskills = { support = 5 }\n");
    config
}

#[tokio::test]
async fn the_api_refuses_bad_input_with_the_field_named() {
    let server = TestServer::start(&config()).await;
    let (status, body) = server.http("GET", "/api/v1/queues", None, None).await;
    assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")));
    let (status, _) = server
        .http("GET", "/api/v1/queues", Some("wrong"), None)
        .await;
    assert_eq!(status, 401);

    let cases = [
        (
            "/api/v1/queues",
            json!({"name":"b","skills":{"juggling":3}}),
            "skills.juggling",
        ),
        (
            "/api/v1/queues",
            json!({"name":"b","overflow_to":"b","max_wait_ms":1000}),
            "overflow_to",
        ),
        (
            "/api/v1/queues",
            json!({"name":"b","skills":{"billing":11}}),
            "skills.billing",
        ),
        (
            "/api/v1/queues",
            json!({"name":"b","strategy":"fastest"}),
            "strategy",
        ),
        ("/api/v1/queues", json!({"skills":{}}), "."),
        (
            "/api/v1/agents",
            json!({"id":"bob","capacity":{"chat":-1}}),
            "capacity.chat",
        ),
        (
            "/api/v1/agents",
            json!({"id":"bob","capacity":{"chat":500}}),
            "capacity",
        ),
        ("/api/v1/agents", json!({"id":"b o b"}), "id"),
    ];
    for (path, body, field) in cases {
        let (status, reply) = server.http("POST", path, Some(ADMIN), Some(&body)).await;
        assert_eq!(status, 400, "{body} -> {reply}");
        if field == "." {
            assert!(
                reply["message"].as_str().unwrap().contains("name"),
                "{reply}"
            );
        } else {
            assert_eq!(reply["field"], field, "{body} -> {reply}");
        }
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, reply) = server
        .http(
            "POST",
            "/api/v1/queues",
            Some(ADMIN),
            Some(&json!({"name":"support"})),
        )
        .await;
    assert_eq!((status, reply["code"].clone()), (409, json!("conflict")));
    let (status, reply) = server
        .http(
            "PUT",
            "/api/v1/queues/support",
            Some(ADMIN),
            Some(&json!({"name":"support","priority":3})),
        )
        .await;
    assert_eq!(
        status, 409,
        "the file's queues are changed in the file: {reply}"
    );
}

#[tokio::test]
async fn queues_and_agents_made_through_the_api_route_at_once_and_survive_a_restart() {
    let mut server = TestServer::start(&config()).await;
    let queue = json!({"name":"billing","skills":{"billing":4},"wrap_up_ms":0});
    let (status, created) = server
        .http("POST", "/api/v1/queues", Some(ADMIN), Some(&queue))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["source"], "api");
    let agent = json!({"id":"bob","display_name":"Bob","skills":{"billing":6},"capacity":{"chat":2,"voice":0}});
    let (status, created) = server
        .http("POST", "/api/v1/agents", Some(ADMIN), Some(&agent))
        .await;
    assert_eq!(status, 201, "{created}");

    // bob can connect at once and gets billing conversations.
    let (mut customer, _) = server.customer_hello(None).await;
    customer
        .request(json!({"type":"start","queue":"billing"}))
        .await;
    let (_, state) = server
        .http("GET", "/api/v1/queues/billing/state", Some(ADMIN), None)
        .await;
    assert_eq!(state["waiting"], 1, "{state}");
    assert_eq!(state["agents"]["offline"], 1, "{state}");
    let mut bob = server.available_agent("bob").await;
    accept_next_offer(&mut bob).await;
    let (_, state) = server
        .http("GET", "/api/v1/queues/billing/state", Some(ADMIN), None)
        .await;
    assert_eq!(
        (state["waiting"].clone(), state["active"].clone()),
        (json!(0), json!(1)),
        "{state}"
    );
    assert_eq!(state["agents"]["available"], 1, "{state}");

    // In use: not removable.
    let (status, reply) = server
        .http("DELETE", "/api/v1/queues/billing", Some(ADMIN), None)
        .await;
    assert_eq!(status, 409, "{reply}");
    let (status, reply) = server
        .http("DELETE", "/api/v1/agents/bob", Some(ADMIN), None)
        .await;
    assert_eq!(status, 409, "{reply}");

    // A change through PUT, then a restart: still there.
    let changed = json!({"name":"billing","skills":{"billing":4},"priority":2,"wrap_up_ms":0});
    let (status, reply) = server
        .http("PUT", "/api/v1/queues/billing", Some(ADMIN), Some(&changed))
        .await;
    assert_eq!(
        (status, reply["priority"].clone()),
        (200, json!(2)),
        "{reply}"
    );
    server.terminate().await;
    server.restart().await;
    let (status, queues) = server
        .http("GET", "/api/v1/queues", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["support", "billing"]);
    assert_eq!(queues[1]["priority"], 2);
    let (status, _) = server
        .http("GET", "/api/v1/agents/bob", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);

    // An unused API queue can go.
    let (status, _) = server
        .http(
            "POST",
            "/api/v1/queues",
            Some(ADMIN),
            Some(&json!({"name":"spare"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = server
        .http("DELETE", "/api/v1/queues/spare", Some(ADMIN), None)
        .await;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    let (status, _) = server
        .http("GET", "/api/v1/queues/spare", Some(ADMIN), None)
        .await;
    assert_eq!(status, 404);
}

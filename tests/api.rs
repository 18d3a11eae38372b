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

/// The document is served to anyone, and every operation it lists is routed: a
/// request without the token gets 401 (the public ones answer), never the 404 or
/// 405 of a path or method nobody serves.
#[tokio::test]
async fn the_openapi_document_is_served_without_a_token_and_every_operation_in_it_is_routed() {
    let server = TestServer::start(&config()).await;
    let (status, doc) = server.http("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let public = ["/api/v1/openapi.json", "/healthz", "/readyz", "/metrics"];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{name}", "support").replace("{id}", "alice");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let (status, body) = if public.contains(&path.as_str()) {
                let (status, body) = server.get(&concrete).await;
                (status, serde_json::Value::String(body))
            } else {
                server.http(&method, &concrete, None, None).await
            };
            if public.contains(&path.as_str()) {
                assert_eq!(status, 200, "{method} {path}: {body}");
            } else {
                assert_eq!(
                    (status, body["code"].clone()),
                    (401, json!("unauthorized")),
                    "{method} {path}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 19, "{checked} operations");
}

/// Found by schemathesis and by reading the handler: a report bound past year 9999
/// panicked the handler (the client saw the connection drop, no status), and an RFC
/// 3339 time with an offset was refused.
#[tokio::test]
async fn report_bounds_take_any_rfc3339_offset_and_refuse_times_past_9999_with_400() {
    let server = TestServer::start(&config()).await;
    let report = |query: &str| format!("/api/v1/reports/satisfaction?{query}");
    for query in [
        "to=99999999999999999",
        "to=18446744073709551615",
        "from=1&to=253402300800000",
        "from=10000-01-01T00:00:00Z",
        "from=yesterday",
        "from=",
    ] {
        let (status, body) = server.http("GET", &report(query), Some(ADMIN), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], "invalid_field", "{query}: {body}");
        assert!(
            ["from", "to"].contains(&body["field"].as_str().unwrap()),
            "{body}"
        );
    }
    let (status, body) = server
        .http(
            "GET",
            &report("from=2026-01-01T00:00:00%2B02:00&to=253402300799999"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from"], "2025-12-31T22:00:00.000Z");
    assert_eq!(body["to"], "9999-12-31T23:59:59.999Z");
    // The server is still there.
    let (status, _) = server
        .http("GET", "/api/v1/queues", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
}

/// A method a path does not take: 405 with `Allow` and a JSON body (axum's own 405
/// has an empty body).
#[tokio::test]
async fn a_method_a_path_does_not_take_gets_405_with_allow_and_a_json_error() {
    let server = TestServer::start(&config()).await;
    for (method, path, allow) in [
        ("PATCH", "/api/v1/queues", "GET,HEAD,POST"),
        ("POST", "/api/v1/queues/support/state", "GET,HEAD"),
        ("DELETE", "/api/v1/follow-ups", "GET,HEAD"),
        ("PUT", "/healthz", "GET,HEAD"),
        ("POST", "/api/v1/cluster", "GET,HEAD"),
    ] {
        let (status, head, body) = raw(&server, method, path).await;
        assert_eq!(status, 405, "{method} {path}: {head}{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("allow: {}", allow.to_ascii_lowercase())),
            "{method} {path}: {head}"
        );
        let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(body["code"], "invalid_field", "{body}");
        assert!(body["message"].as_str().unwrap().contains(path), "{body}");
    }
}

/// `/api/v1/cluster` on a node that runs alone: 401 without the token like the rest
/// of the API, then 404 saying why.
#[tokio::test]
async fn the_cluster_status_of_a_node_running_alone_is_404_behind_the_token() {
    let server = TestServer::start(&config()).await;
    let (status, body) = server.http("GET", "/api/v1/cluster", None, None).await;
    assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")));
    let (status, body) = server
        .http("GET", "/api/v1/cluster", Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("not_found")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("alone"),
        "{body}"
    );
}

/// One request, raw: (status, head, body).
async fn raw(server: &TestServer, method: &str, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 0\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head[9..12].parse().unwrap(),
        head.to_owned(),
        body.to_owned(),
    )
}

//! What Prometheus and Grafana see, checked with the real tools:
//! - after real traffic (a served and surveyed conversation, a transfer, an
//!   abandonment, a coaching flag), the scrape passes `promtool check metrics` without
//!   a warning, and no metric family has more series than its label sets allow;
//! - `grafana/prometheus.yml` and `grafana/alerts.yml` pass `promtool check`, and the
//!   alert unit tests pass;
//! - a real Prometheus scraping Warmline returns data for every expression of both
//!   dashboards and every alert rule (a panel whose query returns nothing fails).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{TestServer, WAIT, accept_next_offer, base_config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

fn config() -> String {
    let mut config = base_config();
    config.push_str(
        "[[queues]]\nname = \"support\"\nwrap_up_ms = 0\n\
         [[queues]]\nname = \"billing\"\nwrap_up_ms = 0\nservice_level_ms = 30000\nservice_level_percent = 90\n\
         [[agents]]\nid = \"alice\"\ncapacity = { chat = 2, voice = 0 }\n\
         [[agents]]\nid = \"bob\"\ncapacity = { chat = 2, voice = 0 }\n",
    );
    config
}

/// A file of this checkout (read at run time: a test binary shared by two clones
/// through one target directory must read the files of the one that runs it).
fn repo(path: &str) -> PathBuf {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    Path::new(&root).join(path)
}

/// The traffic every metric needs: a conversation served, flagged, transferred,
/// resolved and surveyed; another abandoned. Returns the ids used (none may show up
/// in the metrics).
async fn drive(server: &TestServer) -> Vec<String> {
    let mut alice = server.available_agent("alice").await;
    let mut bob = server.available_agent("bob").await;

    let (mut customer, _) = server.customer_hello(None).await;
    let served = customer.start().await;
    let (_, _) = accept_next_offer(&mut alice).await;
    customer
        .say(&served, "my invoice is wrong, this is awful")
        .await;
    alice.say(&served, "I'm sorry, it's our policy.").await;
    alice
        .request(json!({"type":"transfer","conversation_id": served,"to":{"queue":"billing"},"mode":"cold"}))
        .await;
    let (_, _) = accept_next_offer(&mut bob).await;
    bob.say(&served, "I have fixed the invoice.").await;
    customer.say(&served, "great, thanks!").await;
    bob.request(json!({"type":"close","conversation_id": served,"resolution":"resolved"}))
        .await;
    customer.until("survey_request").await;
    customer
        .request(json!({"type":"survey","conversation_id": served,"csat": 4,"effort": 2}))
        .await;
    // Abandoned: both agents away, the customer leaves.
    for agent in [&mut alice, &mut bob] {
        agent.request(json!({"type":"status","state":"away"})).await;
    }
    let (mut leaver, _) = server.customer_hello(None).await;
    let left = leaver.start().await;
    leaver
        .request(json!({"type":"end","conversation_id": left}))
        .await;
    vec![served, left, "alice".into(), "bob".into()]
}

/// Series per family, from the text exposition.
fn series(scrape: &str) -> HashMap<String, usize> {
    let mut families: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // Longest first, so `x_bucket` lines count for family `x`, not a shorter prefix.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let metric = line.split(['{', ' ']).next().unwrap_or_default();
        if let Some(family) = names.iter().find(|n| {
            metric == n.as_str()
                || metric
                    .strip_prefix(n.as_str())
                    .is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))
        }) {
            *families.entry(family.clone()).or_default() += 1;
        }
    }
    families
}

/// Runs promtool; what it printed, and whether it succeeded.
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus; .ci/run installs it)");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test]
async fn the_scrape_passes_promtool_and_stays_within_its_label_sets() {
    let server = TestServer::start(&config()).await;
    let ids = drive(&server).await;

    let (status, scrape) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(scrape.contains("warmline_conversations_abandoned_total{queue=\"support\"} 1"));
    assert!(scrape.contains("warmline_effort_responses_total{score=\"2\"} 1"));
    assert!(scrape.contains("warmline_queue_service_level_target{queue=\"billing\"} 0.9"));
    // Served (and closed) in billing after the transfer, well within 30 s.
    assert!(scrape.contains(
        "warmline_conversations_answered_total{queue=\"billing\",within_service_level=\"true\"} 1"
    ));

    let (ok, said) = promtool(&["check", "metrics"], Some(&scrape));
    assert!(ok && said.trim().is_empty(), "promtool: {said}");

    // Cardinality: each family's bound from its label sets (2 queues here, 2 channels,
    // 3 roles; coaching codes: 6 built-in + 2 effort; a histogram series is its
    // buckets + `+Inf` + sum + count).
    let queues = 2;
    let latency = 12 + 3;
    let waits = 11 + 3;
    let bounds: &[(&str, usize)] = &[
        ("warmline_build_info", 1),
        ("warmline_connections", 3),
        ("warmline_connections_opened_total", 3),
        ("warmline_connections_closed_total", 3 * 14),
        ("warmline_ws_frames_total", 2 * 2),
        ("warmline_messages_total", 3 * 2),
        ("warmline_message_ack_seconds", latency),
        ("warmline_message_delivery_seconds", latency),
        ("warmline_errors_total", 12),
        ("warmline_denials_total", 4 * 5),
        ("warmline_store_commit_seconds", 10 + 3),
        ("warmline_store_batch_records", 10 + 3),
        ("warmline_store_wal_bytes_total", 1),
        ("warmline_store_failures_total", 2),
        ("warmline_store_commit_failing", 1),
        ("warmline_log_lines_dropped_total", 1),
        ("warmline_conversations_waiting", queues * 2),
        ("warmline_queue_longest_wait_seconds", queues * 2),
        ("warmline_queue_service_level_seconds", queues),
        ("warmline_queue_service_level_target", queues),
        ("warmline_conversations_open", 1),
        ("warmline_agents", 4),
        ("warmline_routing_decisions_total", 4),
        ("warmline_offers_total", 4),
        ("warmline_offers_declined_total", queues * 2),
        ("warmline_audio_frames_total", 4),
        ("warmline_calls", 1),
        ("warmline_conversations_closed_total", queues * 4),
        ("warmline_conversations_abandoned_total", queues),
        ("warmline_conversations_answered_total", queues * 2),
        ("warmline_conversation_wait_seconds", queues * 2 * waits),
        ("warmline_conversation_handle_seconds", queues * waits),
        ("warmline_transfers_total", 2),
        ("warmline_transfer_bounces_total", 1),
        ("warmline_repeat_contacts_total", queues),
        ("warmline_coaching_flags_total", 8),
        ("warmline_conversations_ended_on_bad_terms_total", queues),
        ("warmline_customer_sentiment_end", 9 + 3),
        ("warmline_csat_responses_total", 5),
        ("warmline_effort_responses_total", 7),
        ("warmline_customer_repeated_info_total", 1),
    ];
    let families = series(&scrape);
    for (family, bound) in bounds {
        let n = families.get(*family).copied().unwrap_or(0);
        assert!(n > 0, "{family} has no series");
        assert!(
            n <= *bound,
            "{family} has {n} series, its label sets allow {bound}"
        );
    }
    // Every warmline family has a bound here (a new one must say its bound).
    for family in families.keys().filter(|f| f.starts_with("warmline_")) {
        assert!(
            bounds.iter().any(|(name, _)| name == family),
            "{family} has no stated cardinality bound"
        );
    }
    // No family may carry an id: no label value looks like one of ours.
    for id in ids {
        assert!(!scrape.contains(&id), "an id in the metrics: {id}");
    }
}

#[test]
fn the_prometheus_config_and_alert_rules_pass_promtool() {
    let config = repo("grafana/prometheus.yml");
    let (ok, said) = promtool(&["check", "config", config.to_str().unwrap()], None);
    assert!(ok, "promtool check config: {said}");
    let rules = repo("grafana/alerts.yml");
    let (ok, said) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "promtool check rules: {said}");
    // The alerts' own unit tests: quiet, busy and unwell, too little volume.
    let tests = repo("grafana/alerts.test.yml");
    let (ok, said) = promtool(&["test", "rules", tests.to_str().unwrap()], None);
    assert!(ok, "promtool test rules: {said}");
}

#[test]
fn the_dashboards_are_provisionable_as_they_are() {
    for (file, uid) in [
        ("gateway-operations.json", "warmline-gateway"),
        ("customer-experience.json", "warmline-experience"),
    ] {
        let text = std::fs::read_to_string(repo("grafana/dashboards").join(file)).unwrap();
        assert!(
            !text.contains("${DS_") && !text.contains("__inputs"),
            "{file}: export-for-sharing inputs do not provision"
        );
        let dashboard: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(dashboard["uid"], uid, "{file}: a fixed uid");
        assert!(dashboard["id"].is_null(), "{file}: id must be null");
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(
            variables
                .iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{file}: a datasource variable"
        );
        let panels = panels(&dashboard);
        assert!(panels.len() >= 10, "{file}: {} panels", panels.len());
        for panel in panels {
            let title = &panel["title"];
            let unit = &panel["fieldConfig"]["defaults"]["unit"];
            assert!(
                unit.as_str().is_some_and(|u| !u.is_empty()),
                "{file}: panel {title} has no unit"
            );
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{file}: panel {title} must use the datasource variable"
            );
            assert!(
                !panel["targets"].as_array().is_none_or(Vec::is_empty),
                "{file}: panel {title} has no query"
            );
        }
    }
    let datasource =
        std::fs::read_to_string(repo("grafana/provisioning/datasources/prometheus.yml")).unwrap();
    assert!(
        datasource.contains("uid: warmline-prometheus"),
        "{datasource}"
    );
}

/// Every panel but rows, nested ones included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            if panel["type"] != "row" {
                out.push(panel);
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// A Prometheus server on a loopback port, killed when dropped.
struct Prometheus {
    addr: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `grafana/prometheus.yml` and `grafana/alerts.yml`, the
    /// target pointed at `target` and the intervals shortened to a second.
    async fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::fs::read_to_string(repo("grafana/prometheus.yml")).unwrap();
        let mut config = shipped.clone();
        for (from, to) in [
            ("127.0.0.1:8080", target),
            ("scrape_interval: 15s", "scrape_interval: 1s"),
            ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ] {
            assert_eq!(
                shipped.matches(from).count(),
                1,
                "grafana/prometheus.yml has `{from}` once"
            );
            config = config.replace(from, to);
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::copy(repo("grafana/alerts.yml"), dir.path().join("alerts.yml")).unwrap();
        // A free port: bind, note it, release, start. Another process taking it in
        // between makes Prometheus exit, and we try again.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let mut child = Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("prometheus runs (Debian package prometheus; .ci/run installs it)");
            let ready = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    if let Ok(Some(_)) = child.try_wait() {
                        return false;
                    }
                    if matches!(http_get(&addr, "/-/ready").await, Some((200, _))) {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .expect("Prometheus ready within 30 s");
            if ready {
                return Prometheus {
                    addr,
                    _child: child,
                    _dir: dir,
                };
            }
        }
        panic!("Prometheus did not start (5 tries)");
    }

    /// An instant query; the `data` of a successful answer, or the error.
    async fn query(&self, expr: &str) -> Result<Value, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = http_get(&self.addr, &path)
            .await
            .ok_or("Prometheus did not answer")?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        if answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!("{status}: {}", answer["error"]))
        }
    }

    /// Polls (Prometheus has no event to await) until `expr` has a sample `>= at_least`.
    async fn until(&self, expr: &str, at_least: f64) {
        let waited = tokio::time::timeout(WAIT * 3, async {
            loop {
                if let Ok(data) = self.query(expr).await
                    && values(&data).iter().any(|v| *v >= at_least)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "Prometheus never saw {expr} >= {at_least}");
    }
}

/// The sample values of a query's `data` (vector or scalar).
fn values(data: &Value) -> Vec<f64> {
    let value = |v: &Value| v[1].as_str().and_then(|s| s.parse::<f64>().ok());
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| value(&s["value"]))
            .collect(),
        Some("scalar") => value(&data["result"]).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// HTTP/1.0, so the answer is not chunked and ends when the connection does.
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Grafana's variables as the test picks them: every node and queue, windows that
/// cover the whole run (it began less than a minute ago).
fn substitute(expr: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "5s")
        .replace("$__range", "5m");
    for var in ["instance", "queue"] {
        for form in [
            format!("${{{var}:regex}}"),
            format!("${{{var}:pipe}}"),
            format!("${{{var}}}"),
            format!("${var}"),
        ] {
            out = out.replace(&form, ".*");
        }
    }
    assert!(
        !out.contains('$'),
        "a variable the test does not know: {out}"
    );
    out
}

/// An alert expression cut at its top-level comparisons and set operators (`>`,
/// `==`, `and`...), with vector-matching modifiers (`on (...)`, `group_left`...)
/// dropped: the quantities it compares. Numbers are left out.
fn operands(expr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    let chars: Vec<(usize, char)> = expr.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if let Some(q) = quote {
            if c == '\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            _ if depth == 0 => {
                let rest = &expr[at..];
                let op_len = ["==", "!=", ">=", "<=", ">", "<"]
                    .iter()
                    .find(|op| rest.starts_with(**op))
                    .map(|op| op.len())
                    .or_else(|| {
                        let before_ok = at == 0
                            || !expr[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
                        ["and", "or", "unless"]
                            .iter()
                            .find(|w| {
                                before_ok
                                    && rest.starts_with(**w)
                                    && !rest[w.len()..]
                                        .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                            })
                            .map(|w| w.len())
                    });
                if let Some(len) = op_len {
                    parts.push(expr[start..at].to_owned());
                    start = at + len;
                    i += expr[at..at + len].chars().count();
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(expr[start..].to_owned());
    parts
        .into_iter()
        .map(|p| strip_modifiers(p.trim()))
        .filter(|p| !p.is_empty() && p.parse::<f64>().is_err())
        .collect()
}

/// `bool on (instance) group_left (x) rest` -> `rest`.
fn strip_modifiers(mut s: &str) -> String {
    loop {
        let before = s;
        for word in ["bool", "on", "ignoring", "group_left", "group_right"] {
            if let Some(rest) = s.strip_prefix(word)
                && !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                s = rest.trim_start();
                // A label list after the modifier.
                if s.starts_with('(')
                    && let Some(end) = s.find(')')
                {
                    s = s[end + 1..].trim_start();
                }
            }
        }
        if s == before {
            return s.to_owned();
        }
    }
}

#[test]
fn alert_expressions_split_into_their_quantities() {
    assert_eq!(
        operands("sum by (a) (x{le=\"0.25\"}) / clamp_min(y, 1) > 0.01 and on (a) z >= 20"),
        ["sum by (a) (x{le=\"0.25\"}) / clamp_min(y, 1)", "z"]
    );
    assert_eq!(
        operands("max by (i, q) (w) > on (i, q) group_left max by (i, q) (s)"),
        ["max by (i, q) (w)", "max by (i, q) (s)"]
    );
    assert_eq!(
        operands("up{job=\"warmline\"} == 0"),
        ["up{job=\"warmline\"}"]
    );
    assert_eq!(operands("sum(operand_x) > 1"), ["sum(operand_x)"]);
}

#[tokio::test]
async fn every_dashboard_and_alert_expression_returns_data_from_a_real_prometheus() {
    let server = TestServer::start(&config()).await;
    let target = server.addr.clone();
    let prometheus = Prometheus::start(&target).await;
    // A first scrape before any traffic, so rates see counters start from their zeros.
    prometheus
        .until(&format!("up{{instance=\"{target}\"}}"), 1.0)
        .await;
    drive(&server).await;
    prometheus
        .until("sum(warmline_csat_responses_total)", 1.0)
        .await;
    prometheus
        .until("sum(warmline_conversations_abandoned_total)", 1.0)
        .await;

    let mut failures = Vec::new();
    let mut checked = 0;
    for file in ["gateway-operations.json", "customer-experience.json"] {
        let text = std::fs::read_to_string(repo("grafana/dashboards").join(file)).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap();
        let mut exprs: Vec<(String, String)> = Vec::new();
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                exprs.push((format!("panel {}", panel["title"]), expr.to_owned()));
            }
        }
        // Variables' `label_values(metric, label)`: the metric must have the label.
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .unwrap_or_default();
            if let Some(args) = query
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
            {
                let (metric, label) = args.rsplit_once(',').unwrap();
                exprs.push((
                    format!("variable {}", variable["name"]),
                    format!("count by ({}) ({})", label.trim(), metric.trim()),
                ));
            }
        }
        for (what, expr) in exprs {
            checked += 1;
            match prometheus.query(&substitute(&expr)).await {
                Err(e) => failures.push(format!("{file} {what}: {expr}: {e}")),
                Ok(data) => {
                    let values = values(&data);
                    if values.is_empty() {
                        failures.push(format!("{file} {what}: no data: {expr}"));
                    } else if values.iter().all(|v| v.is_nan()) {
                        failures.push(format!("{file} {what}: only NaN: {expr}"));
                    }
                }
            }
        }
    }

    // The rules as Prometheus loaded them: every one evaluated without error, and each
    // quantity an alert compares returns data (the whole condition, rightly, does not
    // hold on a healthy test gateway).
    let rules = tokio::time::timeout(WAIT * 3, async {
        loop {
            let (_, body) = http_get(&prometheus.addr, "/api/v1/rules").await.unwrap();
            let answer: Value = serde_json::from_str(&body).unwrap();
            let rules: Vec<Value> = answer["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            if !rules.is_empty()
                && rules.iter().all(|r| {
                    r["health"] != "unknown" && r["lastEvaluation"] != "0001-01-01T00:00:00Z"
                })
            {
                return rules;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("Prometheus evaluates the rules");
    assert!(rules.len() >= 10, "{} alert rules", rules.len());
    for rule in &rules {
        let name = rule["name"].as_str().unwrap_or_default();
        let query = rule["query"].as_str().unwrap_or_default();
        if rule["health"] != "ok" {
            failures.push(format!("alert {name}: {}: {query}", rule["lastError"]));
        }
        if let Err(e) = prometheus.query(query).await {
            failures.push(format!("alert {name}: {e}: {query}"));
        }
        for quantity in operands(query) {
            checked += 1;
            match prometheus.query(&quantity).await {
                Err(e) => failures.push(format!("alert {name}: {quantity}: {e}")),
                Ok(data) if values(&data).iter().all(|v| v.is_nan()) => {
                    failures.push(format!("alert {name}: no data: {quantity}"));
                }
                Ok(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} expressions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 100, "only {checked} expressions checked");
}

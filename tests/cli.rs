//! The command line: config checking and token minting.

mod common;

use std::process::Command;

use common::{TestServer, config_with};

fn warmline() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warmline"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn check_config_explains_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"here\"\n[[agents]]\nid = \"a b\"\ncapacity = { chat = 500 }\n",
    )
    .unwrap();
    let out = warmline().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["server.listen", "agents[0].id", "agents[0].capacity"] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }

    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("warmline.example.toml");
    let out = warmline().arg("check-config").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Five mistakes of five kinds in one file: all are named in one run, each with
/// `file:line:col`, its key path, its value and, for a typo, the key meant.
const FIVE_MISTAKES: &str = r#"[routing]
offer_timout_ms = 5000
wrap_up_ms = "soon"

[[queues]]
name = "support"
skills = { support = 3 }

[[queues]]
name = "billing"
skills = { billing = 1 }
language = "english"
max_wait_ms = 60000
overflow_to = "suport"

[[agents]]
id = "alice"
skills = { support = 4 }

[[agents]]
id = "bob"
skills = { billng = 5 }
"#;

#[test]
fn check_config_names_every_mistake_with_its_place_value_and_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warmline.toml");
    std::fs::write(&file, FIVE_MISTAKES).unwrap();
    let out = warmline()
        .arg("check-config")
        .arg("warmline.toml")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        "warmline.toml:2:1: routing.offer_timout_ms = 5000: unknown key; did you mean `offer_timeout_ms`?",
        "warmline.toml:3:14: routing.wrap_up_ms = \"soon\": invalid type: string \"soon\", expected u64",
        "warmline.toml:12:12: queues[1].language = \"english\": is not a language code",
        "warmline.toml:14:15: queues[1].overflow_to = \"suport\": names no queue (did you mean `support`?); queues are: support, billing",
        "warmline.toml:22:10: warning: agents[1].skills = { billng = 5 }: match no queue's requirements (even relaxed by its steps)",
    ] {
        assert!(err.contains(line), "{line}\nmissing from:\n{err}");
    }
    assert!(err.contains("did you mean `en` (English)?"), "{err}");
    assert!(
        err.starts_with("the configuration has 5 problems:\n"),
        "{err}"
    );
    // The table's keys, once.
    assert_eq!(err.matches("valid keys of [routing]:").count(), 1, "{err}");

    // `serve` reads config the same way: the same report, before binding.
    let out = warmline()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "warmline.toml",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let serve_err = String::from_utf8_lossy(&out.stderr);
    assert!(
        serve_err.contains("warmline.toml:14:15: queues[1].overflow_to"),
        "{serve_err}"
    );
    assert!(!serve_err.contains("listening"), "{serve_err}");
}

#[test]
fn check_config_names_an_unknown_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warmline.toml");
    std::fs::write(&file, "[[queues]]\nname = \"support\"\n").unwrap();
    let out = warmline()
        .arg("check-config")
        .arg(&file)
        .env("WARMLINE_ROUTING__OFFER_TIMOUT_MS", "5000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "environment variable WARMLINE_ROUTING__OFFER_TIMOUT_MS: routing.offer_timout_ms = 5000: \
             unknown key (set by the environment); did you mean `offer_timeout_ms` \
             (WARMLINE_ROUTING__OFFER_TIMEOUT_MS)?"
        ),
        "{err}"
    );

    // Without it the same file is fine.
    let out = warmline().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = String::from_utf8_lossy(&out.stdout);
    assert!(ok.ends_with(": ok (1 queues, 1 agents)\n"), "{ok}");
}

#[tokio::test]
async fn a_minted_agent_token_opens_the_agent_endpoint() {
    let config = config_with(&[("alice", 1)], "");
    let server = TestServer::start(&config).await;
    let config_path = server.dir.path().join("warmline.toml");
    let out = warmline()
        .args(["token", "agent", "alice", "--ttl-hours", "1", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(server.dir.path().join("token-data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let claims = warmline::gateway::Keys::new(common::SECRET, common::SECRET, common::SECRET)
        .verify_agent(&token)
        .unwrap();
    assert_eq!(claims.sub, "alice");

    let out = warmline()
        .args(["token", "agent", "nobody", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(server.dir.path().join("token-data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}

#[test]
fn score_rates_past_conversations_and_names_bad_lines() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    for (id, role, text) in [
        ("bad", "customer", "My order never arrived."),
        (
            "bad",
            "agent",
            "It's our policy, there's nothing more I can do.",
        ),
        ("good", "customer", "My order never arrived."),
        ("bad", "customer", "This is ridiculous, terrible service!"),
        (
            "good",
            "agent",
            "I'm sorry! I've sent a new one, it arrives tomorrow.",
        ),
        ("good", "customer", "Great, thank you so much!"),
    ] {
        let line = serde_json::json!({"conversation_id": id, "role": role, "text": text});
        writeln!(f, "{line}").unwrap();
    }
    drop(f);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warmline"))
        .arg("score")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let (bad, good) = (&lines[0], &lines[1]);
    assert_eq!(bad["conversation_id"], "bad");
    assert_eq!(bad["flags"]["policy"], 1);
    assert_eq!(good["flags"]["apology"], 1);
    assert!(
        bad["estimate"].as_f64() < good["estimate"].as_f64(),
        "{bad} {good}"
    );
    assert_eq!(bad["turns"].as_array().unwrap().len(), 2);
    assert!(bad["turns"][1]["estimate"].as_f64().unwrap() < 2.5, "{bad}");

    // A bad line: a clear message naming it, exit 65, nothing half-written.
    std::fs::write(
        &file,
        "{\"conversation_id\":\"x\",\"role\":\"customer\",\"text\":\"hi\"}\nnot json\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warmline"))
        .arg("score")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    assert!(out.stdout.is_empty());
}

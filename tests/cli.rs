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

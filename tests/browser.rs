//! The customer widget and the agent console in a real browser: Debian's headless
//! Chromium driven by playwright-core (`tests/browser/e2e.mjs`), against the real
//! binary. The script checks what people see; this test then checks the store: every
//! message the script sent is there exactly once (nothing lost or doubled by the
//! network drop).
//!
//! Needs `chromium` (Debian) and `npm ci --prefix tests/browser`; `.ci/run` does both.
//! Screenshots go to `<target>/tmp/browser-artifacts/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{ORIGIN, SECRET, TestServer, base_config};
use serde_json::{Value, json};
use tokio::process::Command;

fn config() -> String {
    let mut config = base_config().replace(
        &format!("allowed_origins = [\"{ORIGIN}\"]"),
        &format!("allowed_origins = [\"self\", \"{ORIGIN}\"]"),
    );
    config.push_str(
        "[[queues]]\nname = \"demo\"\nwrap_up_ms = 5000\n\
         [[queues]]\nname = \"billing\"\nwrap_up_ms = 5000\n\
         [[agents]]\nid = \"alice\"\ndisplay_name = \"Alice Moreau\"\ncapacity = { chat = 3, voice = 1 }\n\
         [[agents]]\nid = \"bob\"\ndisplay_name = \"Bob Okafor\"\ncapacity = { chat = 3, voice = 1 }\n",
    );
    config
}

/// A file of this checkout (read at run time: a test binary shared by two clones
/// through one target directory must read the files of the one that runs it).
fn repo(path: &str) -> PathBuf {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    Path::new(&root).join(path)
}

/// Texts of the customer and agent messages in the store, with how often each is there.
async fn stored_messages(server: &TestServer) -> Vec<(String, String, i64)> {
    let mut db = server.store().await;
    sqlx::query_as(
        "SELECT role, text, COUNT(*) FROM events WHERE kind = 'message' AND role != 'system'
         GROUP BY role, text",
    )
    .fetch_all(&mut db)
    .await
    .expect("read events")
}

#[tokio::test]
async fn the_widget_and_the_console_work_in_a_real_browser() {
    assert!(
        repo("tests/browser/node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (and `apt-get install chromium`); .ci/run does both"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (.ci/run installs it) or set CHROMIUM"
    );
    let server = TestServer::start(&config()).await;
    let tokens = json!({
        "alice": warmline::gateway::auth::mint_agent(SECRET, "alice", 3600).unwrap(),
        "bob": warmline::gateway::auth::mint_agent(SECRET, "bob", 3600).unwrap(),
    });
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    let run = Command::new("node")
        .arg(repo("tests/browser/e2e.mjs"))
        .env("WARMLINE_URL", format!("http://{}", server.addr))
        .env("WARMLINE_TOKENS", tokens.to_string())
        .env("WARMLINE_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser tests finish within 5 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );

    // What the script sent, as the store holds it: each message exactly once.
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT is JSON"))
        .expect("the script reports a RESULT line");
    let stored = stored_messages(&server).await;
    let sent = result["sent"].as_array().expect("RESULT.sent");
    assert!(sent.len() >= 8, "{result}");
    for message in sent {
        let (role, text) = (message["role"].as_str(), message["text"].as_str());
        let copies: Vec<_> = stored
            .iter()
            .filter(|(r, t, _)| Some(r.as_str()) == role && Some(t.as_str()) == text)
            .collect();
        assert_eq!(
            copies.iter().map(|(_, _, n)| n).sum::<i64>(),
            1,
            "{message} is stored {copies:?} times"
        );
    }
    for screenshot in result["screenshots"]
        .as_array()
        .expect("RESULT.screenshots")
    {
        let path = Path::new(screenshot.as_str().unwrap());
        assert!(
            std::fs::metadata(path).is_ok_and(|m| m.len() > 10_000),
            "screenshot {} missing or empty",
            path.display()
        );
    }
}

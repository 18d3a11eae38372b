//! Every load-test scenario at a tiny size against a Warmline it starts (and the bare
//! relay baseline, and the Node one, which needs `npm ci --prefix loadtest/node`;
//! `scripts/test` runs it, and this test fails rather than skip the baseline):
//! correctness only. Every sent message is delivered and acked once, every call frame
//! heard, no connection dropped, no error frame. Speed is measured by
//! `scripts/bench.sh`, not here.

use std::process::Command;

#[test]
fn every_scenario_runs_small_and_loses_nothing() {
    let exe = env!("CARGO_BIN_EXE_warmline-loadtest");
    let out = Command::new(exe)
        .arg("smoke")
        .output()
        .expect("warmline-loadtest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "smoke failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("smoke: chat/node"),
        "the Node relay baseline did not run: `npm ci --prefix loadtest/node` (scripts/test does it)\n{stderr}"
    );
    assert!(
        stdout.contains(" 0 failed"),
        "no summary line:\n{stdout}\n{stderr}"
    );
}

/// A Warmline started by hand with the config `warmline-loadtest config` prints.
struct ByHand {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl ByHand {
    fn start(loadtest: &str) -> ByHand {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Command::new(loadtest)
            .args(["config", "--chat-agents", "8", "--voice-agents", "0"])
            .output()
            .expect("warmline-loadtest config runs");
        assert!(config.status.success(), "{config:?}");
        let path = dir.path().join("warmline.toml");
        std::fs::write(&path, &config.stdout).expect("write the config");
        let warmline = std::path::Path::new(loadtest).with_file_name("warmline");
        let mut child = Command::new(&warmline)
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", warmline.display()));
        // Its address, from the banner (read on a thread so a silent server fails the test).
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("Warmline listening on http://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("warmline did not say where it listens");
        ByHand {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for ByHand {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chat --target` against a node started by hand with the printed config: it runs
/// (twice: a run leaves nothing open that the next would trip over), and a run that
/// asks for another capacity than the target's fails at once, saying how to fix it.
#[test]
fn chat_runs_against_a_node_started_with_the_printed_config() {
    let loadtest = env!("CARGO_BIN_EXE_warmline-loadtest");
    let node = ByHand::start(loadtest);
    let chat = |extra: &[&str]| {
        Command::new(loadtest)
            .args(["chat", "--target", &node.addr, "--conversations", "8"])
            .args([
                "--rate",
                "80",
                "--duration",
                "1",
                "--drain",
                "10",
                "--quiet",
            ])
            .args(extra)
            .output()
            .expect("warmline-loadtest chat runs")
    };
    let wrong = chat(&["--per-agent", "2"]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success(),
        "a capacity mismatch ran:\n{stderr}"
    );
    assert!(
        stderr.contains("has chat capacity 1 on the target") && stderr.contains("--per-agent 1"),
        "the mismatch is not explained:\n{stderr}"
    );
    for run in 1..=2 {
        let out = chat(&[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "run {run} failed:\n{stdout}\n{stderr}"
        );
        // The step's line: "offered 80/s  delivered N/s  sent S acked A delivered D dup 0 ...".
        let counts: Vec<u64> = ["sent ", "acked ", "delivered "]
            .iter()
            .map(|label| {
                let line = stdout.lines().find(|l| l.contains(" dup ")).unwrap_or("");
                let at = line.rfind(label).map_or(line.len(), |i| i + label.len());
                line[at..]
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        assert!(
            counts[0] > 0 && counts.iter().all(|&n| n == counts[0]),
            "run {run}: sent, acked, delivered = {counts:?}:\n{stdout}\n{stderr}"
        );
    }
}

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

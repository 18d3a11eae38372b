//! Every command a newcomer is shown works when copied as shown: each command in the
//! README's `sh` blocks, each command the start-up banner prints, and each command the
//! demo page and the console's sign-in screen show.
//!
//! `cargo run --release -- ARGS` runs as this build's `warmline ARGS` (the test cannot
//! build a release binary); it runs in a fresh directory holding the repository files
//! the command names, as a fresh clone would. The environment is the one `cargo run`
//! gives a program (so the banner writes its commands as `cargo run ...`), plus
//! `WARMLINE_SERVER__LISTEN=127.0.0.1:0`: the README's commands listen on port 8080
//! and a test may not hold a fixed port. The scripts the README shows run the tests
//! themselves or take many minutes: this test checks that each exists, is executable,
//! parses, and (for those CI runs) that `.ci/run` runs it exactly as shown.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A file of this checkout (read at run time, not compiled in).
fn repo(path: &str) -> PathBuf {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    Path::new(&root).join(path)
}

/// The commands of the README's `sh` blocks, without their trailing comments.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let command = trimmed.split(" #").next().unwrap_or(trimmed).trim();
        commands.push(command.to_owned());
    }
    commands
}

/// `cargo run [--release] [--features F] [-- ARGS]` (or `warmline ARGS`): the ARGS.
fn warmline_args(command: &str) -> Option<Vec<String>> {
    let words: Vec<String> = split_words(command);
    if words.first().map(String::as_str) == Some("warmline") {
        return Some(words[1..].to_vec());
    }
    if words.len() < 2 || words[0] != "cargo" || words[1] != "run" {
        return None;
    }
    let mut rest = words[2..].iter();
    let mut args = Vec::new();
    while let Some(word) = rest.next() {
        match word.as_str() {
            "--release" => {}
            "--features" => {
                rest.next();
            }
            "--" => {
                args.extend(rest.by_ref().cloned());
            }
            other => panic!("`{command}`: `{other}` is not a cargo run flag this test knows"),
        }
    }
    Some(args)
}

/// Words as a POSIX shell splits them (spaces, single quotes, `'\''`).
fn split_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            '\\' if !quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => word.push(c),
        }
    }
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}

/// A fresh directory standing in for a fresh clone: it holds each repository file
/// the commands name, at the same relative path.
fn fresh_dir(commands: &[Vec<String>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for word in commands.iter().flatten() {
        let source = repo(word);
        if !word.starts_with('-') && source.is_file() {
            let target = dir.path().join(word);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&source, &target).unwrap();
        }
    }
    dir
}

/// The environment `cargo run` gives the program it runs.
fn warmline(cwd: &Path, args: &[String]) -> Command {
    let mut command = Command::new(common::binary());
    command
        .args(args)
        .current_dir(cwd)
        .env("CARGO", "cargo")
        .env("CARGO_PKG_NAME", "warmline")
        .env("WARMLINE_SERVER__LISTEN", "127.0.0.1:0")
        .env_remove("WARMLINE_CONFIG")
        .env_remove("RUST_LOG");
    command
}

fn run_ok(cwd: &Path, args: &[String], shown: &str) -> String {
    let out = warmline(cwd, args).output().expect("run warmline");
    assert!(
        out.status.success(),
        "`{shown}` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A running `warmline` started as shown, with the banner it printed.
struct Running {
    child: tokio::process::Child,
    addr: String,
    banner: Vec<String>,
}

async fn start(cwd: &Path, args: &[String], shown: &str) -> Running {
    let mut child = tokio::process::Command::from(warmline(cwd, args))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn warmline");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let mut addr = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(rest) = line.strip_prefix("Warmline listening on http://") {
                addr = rest.trim().to_owned();
            }
            let last = line.trim_start().starts_with("operator API:");
            banner.push(line);
            if last {
                return;
            }
        }
        panic!("`{shown}` exited before its banner was complete:\n{banner:#?}");
    })
    .await
    .unwrap_or_else(|_| panic!("`{shown}` printed no banner in 30 s"));
    assert!(
        !addr.is_empty(),
        "`{shown}`: no listening line in {banner:#?}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running {
        child,
        addr,
        banner,
    }
}

impl Running {
    async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        common::http_get(&self.addr, path, bearer).await
    }

    /// The agent token opens `/ws/agent` on this gateway: a `welcome` comes back.
    async fn assert_agent_token(&self, token: &str, shown: &str) {
        let url = format!("ws://{}/ws/agent?token={token}", self.addr);
        let mut agent = Client::connect(url.into_client_request().unwrap())
            .await
            .unwrap_or_else(|e| panic!("the token of `{shown}` opens no agent socket: {e}"));
        agent.expect("welcome").await;
    }

    /// The media token is accepted for `/ws/media` (a bad one gets 401).
    async fn assert_media_token(&self, token: &str, shown: &str) {
        let url = format!("ws://{}/ws/media?token={token}", self.addr);
        Client::connect(url.into_client_request().unwrap())
            .await
            .unwrap_or_else(|e| panic!("the token of `{shown}` opens no media socket: {e}"));
    }

    /// Runs a command shown to a person while this gateway runs, and checks that what
    /// it printed works here.
    async fn check_shown(&self, cwd: &Path, shown: &str) {
        let args = warmline_args(shown)
            .unwrap_or_else(|| panic!("`{shown}` is shown but does not run warmline"));
        assert!(
            !args.iter().any(|a| a.contains("ID") || a.contains("NAME")),
            "`{shown}` holds a placeholder: it fails when copied as shown"
        );
        let out = run_ok(cwd, &args, shown);
        let token = out.trim();
        match args.get(..2).map(|a| [a[0].as_str(), a[1].as_str()]) {
            Some(["token", "agent"]) => self.assert_agent_token(token, shown).await,
            Some(["token", "media"]) => self.assert_media_token(token, shown).await,
            _ => {}
        }
    }

    /// Every command the banner shows works against this gateway, and so do the
    /// console link and the operator token it prints.
    async fn check_banner(&self, cwd: &Path) {
        for command in banner_commands(&self.banner) {
            assert!(
                command.starts_with("cargo run "),
                "under `cargo run` the banner shows `cargo run` commands, not `{command}`"
            );
            self.check_shown(cwd, &command).await;
        }
        let console = self
            .banner
            .iter()
            .find_map(|l| l.trim().strip_prefix("agent console:"))
            .expect("the banner links the agent console")
            .trim()
            .to_owned();
        let token = console
            .split_once("/agent/?token=")
            .expect("the console link carries a token")
            .1;
        self.assert_agent_token(token, "the console link").await;
        let admin = self
            .banner
            .iter()
            .find_map(|l| l.split_once("Authorization: Bearer "))
            .map(|(_, t)| t.trim_end_matches(')').to_owned())
            .expect("the banner gives the operator token");
        assert_eq!(self.get("/api/v1/queues", Some(&admin)).await.0, 200);
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("warmline stops on SIGTERM")
            .unwrap();
        assert!(status.success(), "warmline exited with {status} on SIGTERM");
    }
}

/// The commands between backticks in the banner.
fn banner_commands(banner: &[String]) -> Vec<String> {
    banner
        .iter()
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .filter(|quoted| quoted.contains(' '))
        .map(str::to_owned)
        .collect()
}

/// The commands a page shows in `<code>`, unescaped.
fn page_commands(html: &str) -> Vec<String> {
    html.split("<code")
        .skip(1)
        .filter_map(|rest| rest.split_once('>').map(|(_, after)| after))
        .filter_map(|rest| rest.split_once("</code>").map(|(code, _)| code))
        .map(|code| {
            code.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
        })
        .filter(|code| code.starts_with("cargo ") || code.starts_with("warmline "))
        .collect()
}

#[tokio::test]
async fn every_command_shown_to_a_newcomer_works_as_shown() {
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let ci = std::fs::read_to_string(repo(".ci/run")).expect(".ci/run");
    let commands = readme_commands(&readme);
    assert!(
        commands.first().map(String::as_str) == Some("cargo run --release"),
        "the README's first command runs Warmline: {commands:?}"
    );
    assert!(
        commands.iter().any(|c| c == "scripts/test"),
        "the README's second command runs the tests: {commands:?}"
    );
    let runnable: Vec<Vec<String>> = commands.iter().filter_map(|c| warmline_args(c)).collect();
    let dir = fresh_dir(&runnable);
    let cwd = dir.path();

    // The first command: Warmline with its defaults. Everything it shows must work
    // against it, and so must what the pages it serves tell a person to run.
    let first = start(cwd, &[], "cargo run --release").await;
    assert!(
        banner_commands(&first.banner)
            .iter()
            .any(|c| c.contains("token agent demo")),
        "the banner shows how to mint an agent token: {:#?}",
        first.banner
    );
    first.check_banner(cwd).await;
    for page in ["/", "/agent/"] {
        let (status, html) = first.get(page, None).await;
        assert_eq!(status, 200, "{page}");
        for command in page_commands(&html) {
            first.check_shown(cwd, &command).await;
        }
    }
    first.stop().await;

    // The other README commands, in order, as a newcomer would try them. A token is
    // checked against a gateway running on the same directory, as the README's first
    // command starts it.
    let mut gateway: Option<Running> = None;
    for command in commands.iter().skip(1) {
        let words = split_words(command);
        if let Some(args) = warmline_args(command) {
            assert!(
                !args.iter().any(|a| a == "--listen"),
                "`{command}`: keep --listen out of the README's commands (this test cannot hold a fixed port)"
            );
            match args.first().map(String::as_str) {
                Some("serve") | None => {
                    if let Some(running) = gateway.take() {
                        running.stop().await;
                    }
                    let running = start(cwd, &args, command).await;
                    running.check_banner(cwd).await;
                    running.stop().await;
                }
                Some("token") => {
                    if gateway.is_none() {
                        gateway = Some(start(cwd, &[], "cargo run --release").await);
                    }
                    gateway.as_ref().unwrap().check_shown(cwd, command).await;
                }
                Some(_) => {
                    let out = run_ok(cwd, &args, command);
                    if args[0] == "score" {
                        assert!(
                            out.lines().count() >= 2
                                && out
                                    .lines()
                                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
                            "`{command}` prints a JSON line per conversation:\n{out}"
                        );
                    }
                }
            }
        } else if words[0].starts_with("scripts/") {
            let script = repo(&words[0]);
            let mode = std::fs::metadata(&script)
                .unwrap_or_else(|_| panic!("`{command}`: no {}", script.display()))
                .permissions();
            assert!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111 != 0,
                "`{command}`: {} is not executable",
                script.display()
            );
            let parse = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .status()
                .unwrap();
            assert!(parse.success(), "`{command}`: bash cannot parse it");
            if words[0] != "scripts/test" && words[0] != "scripts/chaos.sh" {
                assert!(
                    ci.lines()
                        .any(|l| l.trim() == command || l.trim() == format!("bash {command}")),
                    "`{command}` is said to be what CI runs, but .ci/run does not run it as shown"
                );
            }
        } else {
            panic!("the README shows `{command}`, which this test does not know how to check");
        }
    }
    if let Some(running) = gateway {
        running.stop().await;
    }
    assert!(
        ci.lines().any(|l| l.trim().starts_with("scripts/test ")),
        ".ci/run runs the README's test command"
    );
}

#[test]
fn the_command_parsers_read_what_a_shell_would() {
    assert_eq!(
        readme_commands(
            "x\n```sh\ncargo run --release\n# no\nscripts/test   # tests\n```\n```\nnot me\n```\n"
        ),
        ["cargo run --release", "scripts/test"]
    );
    assert_eq!(
        warmline_args(
            "cargo run --release --features postgres -- token agent 'a b' --data-dir ./d"
        ),
        Some(vec![
            "token".into(),
            "agent".into(),
            "a b".into(),
            "--data-dir".into(),
            "./d".into()
        ])
    );
    assert_eq!(warmline_args("cargo run --release"), Some(vec![]));
    assert_eq!(warmline_args("npm ci"), None);
    assert_eq!(split_words(r"a 'it'\''s' b"), ["a", "it's", "b"]);
    assert_eq!(
        page_commands(
            "<p>run <code>cargo run --release -- token agent demo</code>, or <code>/agent/</code></p>"
        ),
        ["cargo run --release -- token agent demo"]
    );
}

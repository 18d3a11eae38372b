//! `warmline score FILE`: the satisfaction signals of past conversations, through the
//! same core code as the live path (a quality team runs it on an export).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::json;
use warmline::config::{Config, Overrides};
use warmline::core::Role;
use warmline::core::signals::coaching::Coaching;
use warmline::core::signals::score::score;

/// sysexits: the input data was wrong.
const EX_DATAERR: u8 = 65;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    conversation_id: String,
    role: String,
    text: String,
    #[serde(default)]
    #[allow(dead_code)]
    ts: Option<serde_json::Value>,
}

pub fn run(file: &Path, config: Option<&Path>) -> ExitCode {
    let coaching = match config {
        None => Coaching::default(),
        Some(path) => match Config::load(Some(path), &Overrides::default()) {
            Ok(config) => config.signals.coaching(),
            Err(errors) => {
                for e in errors {
                    eprintln!("warmline score: {e}");
                }
                return ExitCode::from(64);
            }
        },
    };
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("warmline score: cannot read {}: {e}", file.display());
                return ExitCode::from(66);
            }
        }
    };
    // Conversations in order of first appearance, each its messages in order.
    let mut order: Vec<String> = Vec::new();
    let mut messages: HashMap<String, Vec<(Role, String)>> = HashMap::new();
    for (n, line) in input.lines().enumerate() {
        let n = n + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("warmline score: line {n}: cannot read: {e}");
                return ExitCode::from(EX_DATAERR);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = match serde_json::from_str(&line) {
            Ok(parsed) => parsed,
            Err(e) => {
                eprintln!(
                    "warmline score: line {n}: {e}; expected {{\"conversation_id\",\"role\":\"customer\"|\"agent\",\"text\",\"ts\"?}}"
                );
                return ExitCode::from(EX_DATAERR);
            }
        };
        let role = match parsed.role.as_str() {
            "customer" => Role::Customer,
            "agent" => Role::Agent,
            "system" => Role::System,
            other => {
                eprintln!(
                    "warmline score: line {n}: role `{other}` is not customer, agent or system"
                );
                return ExitCode::from(EX_DATAERR);
            }
        };
        if !messages.contains_key(&parsed.conversation_id) {
            order.push(parsed.conversation_id.clone());
        }
        messages
            .entry(parsed.conversation_id)
            .or_default()
            .push((role, parsed.text));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for id in order {
        let conversation = &messages[&id];
        let borrowed: Vec<(Role, &str)> =
            conversation.iter().map(|(r, t)| (*r, t.as_str())).collect();
        let scored = score(&borrowed, &coaching);
        let round = |v: f32| (f64::from(v) * 1000.0).round() / 1000.0;
        let line = json!({
            "conversation_id": id,
            "customer_messages": scored.customer_messages,
            "agent_messages": scored.agent_messages,
            "estimate": round(scored.estimate),
            "sentiment_start": scored.sentiment_start.map(round),
            "sentiment_end": scored.sentiment_end.map(round),
            "flags": scored.flags.iter().filter(|(_, n)| *n > 0).map(|(c, n)| (c.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "turns": scored.turns.iter().map(|t| json!({
                "index": t.index,
                "sentiment": round(t.sentiment),
                "estimate": round(t.estimate),
                "cues": t.cues,
            })).collect::<Vec<_>>(),
        });
        if writeln!(out, "{line}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

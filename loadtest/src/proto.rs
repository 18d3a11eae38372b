//! Speaking Warmline's protocol (docs/protocol.md): agents, customers, conversations.

use std::borrow::Cow;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Ws, ws_connect};
use crate::target::Target;

/// The fields of a server frame the load generator looks at.
#[derive(Deserialize, Debug)]
pub struct In<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub conversation_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub offer_id: Option<Cow<'a, str>>,
    /// An `error`'s code, and its retry hint (`rate_limited`).
    #[serde(borrow, default)]
    pub code: Option<Cow<'a, str>>,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

impl In<'_> {
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("")
    }
}

pub const SETUP_WAIT: Duration = Duration::from_secs(30);

pub async fn send(ws: &mut Ws, v: Value) -> Result<()> {
    ws.send(Message::text(v.to_string())).await?;
    Ok(())
}

/// The next JSON frame (skipping binary and control frames).
pub async fn next_json(ws: &mut Ws) -> Result<Value> {
    loop {
        let m = tokio::time::timeout(SETUP_WAIT, ws.next())
            .await
            .context("no frame within 30 s")?;
        match m {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(c))) => bail!("closed by the server: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection closed"),
        }
    }
}

/// Reads until a frame of `kind` (an `error` fails).
pub async fn until(ws: &mut Ws, kind: &str) -> Result<Value> {
    loop {
        let v = next_json(ws).await?;
        if v["type"] == kind {
            return Ok(v);
        }
        if v["type"] == "error" {
            bail!("error while waiting for `{kind}`: {v}");
        }
    }
}

/// What an agent's `welcome` says about them.
#[derive(Clone, Copy, Debug)]
pub struct Agent {
    pub chat_capacity: u32,
    pub voice_capacity: u32,
    /// Conversations the agent already holds (an earlier run's, on a `--target`).
    pub holding: usize,
}

/// An agent connected and `available`, and what its welcome said.
pub async fn agent(target: &Target, id: &str) -> Result<(Ws, Agent)> {
    let mut ws = ws_connect(target.addr, &target.agent_path(id))
        .await
        .with_context(|| {
            format!(
                "agent {id} could not connect (a --target needs the agents `warmline-loadtest config` prints, and its --agent-secret)"
            )
        })?;
    let welcome = until(&mut ws, "welcome").await?;
    let capacity = &welcome["agent"]["capacity"];
    let count = |v: &Value| {
        v.as_u64()
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    let agent = Agent {
        chat_capacity: count(&capacity["chat"]),
        voice_capacity: count(&capacity["voice"]),
        holding: welcome["conversations"].as_array().map_or(0, Vec::len),
    };
    send(
        &mut ws,
        json!({"type":"status","id":"s","state":"available"}),
    )
    .await?;
    until(&mut ws, "ack").await?;
    Ok((ws, agent))
}

/// For scenarios that give each agent exactly `want` conversations of `channel`:
/// fails at once, saying how to fix it, when agent `id` could not take exactly that
/// many (routing would spread the conversations otherwise, and some agents would wait
/// for ever), or already holds some.
pub fn check_agent(id: &str, agent: &Agent, channel: &str, want: usize) -> Result<()> {
    let have = match channel {
        "voice" => agent.voice_capacity,
        _ => agent.chat_capacity,
    };
    if have as usize != want {
        bail!(
            "agent {id} has {channel} capacity {have} on the target, but this run gives each agent {want} {channel} conversation(s): \
             pass --per-agent {have}, or start the target with the config `warmline-loadtest config --{channel}-capacity {want}` prints"
        );
    }
    if agent.holding > 0 {
        bail!(
            "agent {id} already holds {} conversation(s) on the target (left open by a run that did not finish?): \
             start the target on a fresh data directory",
            agent.holding
        );
    }
    Ok(())
}

/// A customer who said hello.
pub async fn customer(target: &Target) -> Result<Ws> {
    let mut ws = ws_connect(target.addr, "/ws/customer").await?;
    send(&mut ws, json!({"type":"hello"})).await?;
    until(&mut ws, "welcome").await?;
    Ok(ws)
}

/// A customer's new conversation on queue `load`: its id.
pub async fn start(ws: &mut Ws) -> Result<String> {
    send(ws, json!({"type":"start","id":"st","queue":"load"})).await?;
    loop {
        let v = next_json(ws).await?;
        if v["type"] == "ack" && v["id"] == "st" {
            return Ok(v["conversation_id"]
                .as_str()
                .context("conversation_id")?
                .to_owned());
        }
        if v["type"] == "error" {
            bail!("start refused: {v}");
        }
    }
}

/// An agent takes offers until it has `n` conversations: their ids (and the
/// `conversation` frames).
pub async fn accept(ws: &mut Ws, n: usize) -> Result<Vec<Value>> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = next_json(ws).await?;
        match v["type"].as_str() {
            Some("offer") => {
                send(
                    ws,
                    json!({"type":"accept","id":"acc","offer_id":v["offer_id"]}),
                )
                .await?
            }
            Some("conversation") => got.push(v),
            Some("error") => bail!("while accepting: {v}"),
            _ => {}
        }
    }
    Ok(got)
}

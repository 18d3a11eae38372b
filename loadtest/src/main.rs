//! `warmline-loadtest`: simulated customers, agents and phone calls speaking
//! Warmline's real protocol, with open-loop arrivals and HDR histograms; a bare
//! tokio + tungstenite relay as the physical limit of the stack; and a side-by-side
//! comparison. Loopback targets only. See docs/loadtest.md.

// Frame handling reads best as one match per frame kind; tungstenite's handshake
// callback fixes the error type.
#![allow(clippy::collapsible_match, clippy::result_large_err)]

mod chat;
mod common;
mod compare;
mod flood;
mod idle;
mod proto;
mod relay;
mod restore;
mod routing;
mod setup;
mod smoke;
mod target;
mod voice;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;

use clap::{Parser, Subcommand};
use serde_json::json;

/// Filler so a chat message's text is `--size` bytes long.
pub static PAD: AtomicUsize = AtomicUsize::new(50);

/// Load tests for Warmline (loopback only).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N connections held; server memory per connection (slope over the steps).
    Idle(idle::IdleArgs),
    /// P conversations at a fixed offered rate of messages (or --find-max).
    Chat(chat::ChatArgs),
    /// Conversations arriving at a fixed rate; agents accept and close.
    Routing(routing::RoutingArgs),
    /// New connections per second and handshake latency.
    Setup(setup::SetupArgs),
    /// C concurrent phone calls, 20 ms frames each way.
    Voice(voice::VoiceArgs),
    /// Some agents stop reading: server memory stays bounded, others unaffected.
    Slow(smoke::SlowArgs),
    /// One customer floods frames (reconnecting when closed) while others chat:
    /// their latency against normal, and what the flooder got through.
    Flood(flood::FloodArgs),
    /// A contact-centre hour, compressed: arrivals, chats, calls, idle visitors.
    Mixed(smoke::MixedArgs),
    /// N conversations waiting, the server SIGKILLed and started again: time to ready,
    /// and every conversation back in its place.
    Restore(restore::RestoreArgs),
    /// Run the bare tokio + tungstenite relay baseline server.
    Relay {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Warmline vs the bare relay vs Node `ws`, interleaved, same load; ratios.
    Compare(compare::CompareArgs),
    /// Every scenario at a small size against a started Warmline; fails on any lost,
    /// unacked or duplicated message, dropped frame or error.
    Smoke(smoke::SmokeArgs),
    /// Print a Warmline config with the agents the scenarios use (for --target).
    /// Capacities are those of the scenarios' defaults: chat, slow and flood give each
    /// agent one conversation (as the relays pair two sockets), voice ten calls;
    /// routing and mixed take whatever capacity the target has.
    Config {
        /// Chat agents c0.. (chat uses one per conversation).
        #[arg(long, default_value_t = 200)]
        chat_agents: usize,
        /// Conversations per chat agent: must equal the --per-agent of chat, slow and flood.
        #[arg(long, default_value_t = 1)]
        chat_capacity: u32,
        /// Voice agents v0..
        #[arg(long, default_value_t = 50)]
        voice_agents: usize,
        /// Calls per voice agent: must equal the --per-agent of voice.
        #[arg(long, default_value_t = 10)]
        voice_capacity: u32,
        /// Keep the default abuse limits but the per-address one (as `flood` does).
        #[arg(long)]
        abuse_limits: bool,
    },
    /// (internal) hold idle connections for `idle`, driven over stdin.
    #[command(hide = true)]
    IdleWorker(idle::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::epoch();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let result = match cli.command {
            Cmd::Relay { listen } => {
                return match relay::run(listen).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("relay: {e:#}");
                        ExitCode::FAILURE
                    }
                };
            }
            Cmd::IdleWorker(args) => {
                return match idle::worker(args).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("idle worker: {e:#}");
                        ExitCode::FAILURE
                    }
                };
            }
            Cmd::Config {
                chat_agents,
                chat_capacity,
                voice_agents,
                voice_capacity,
                abuse_limits,
            } => {
                let plan = target::Plan {
                    chat_agents,
                    chat_capacity,
                    voice_agents,
                    voice_capacity,
                    abuse_limits,
                    ..target::Plan::default()
                };
                print!(
                    "{}",
                    target::warmline_config(&plan, &target::Common::default())
                );
                return ExitCode::SUCCESS;
            }
            Cmd::Compare(args) => return compare::run(args).await,
            Cmd::Smoke(args) => return smoke::run(args).await,
            Cmd::Idle(args) => (idle::run(&args).await, args.common.json),
            Cmd::Chat(args) => (chat::run(&args).await, args.common.json),
            Cmd::Routing(args) => (routing::run(&args).await, args.common.json),
            Cmd::Setup(args) => (setup::run(&args).await, args.common.json),
            Cmd::Voice(args) => (voice::run(&args).await, args.common.json),
            Cmd::Slow(args) => (smoke::run_slow(&args).await, args.chat.common.json),
            Cmd::Flood(args) => (flood::run(&args).await, args.common.json),
            Cmd::Mixed(args) => (smoke::run_mixed(&args).await, args.common.json),
            Cmd::Restore(args) => (restore::run(&args).await, args.common.json),
        };
        finish(result.0, result.1)
    })
}

fn finish(result: anyhow::Result<common::Outcome>, json_path: Option<PathBuf>) -> ExitCode {
    match result {
        Ok(outcome) => {
            outcome.print();
            if let Some(path) = json_path {
                let v = json!({ "scenarios": [outcome.json()] });
                if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()) {
                    eprintln!("cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if outcome.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

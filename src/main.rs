//! The `warmline` command: parses arguments, validates config before binding, and
//! hands over to the library. Exit 64 on a bad config.

mod command_line;
mod score;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use command_line::Invocation;
use tokio_util::sync::CancellationToken;
use warmline::Gateway;
use warmline::config::{Config, ConfigError, Overrides};
use warmline::gateway::auth::{mint_agent_from, mint_media};

/// Warmline: a real-time gateway for customer contact.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(clap::Args, Clone, Default)]
struct Common {
    /// TOML config file (see warmline.example.toml).
    #[arg(long, short, env = "WARMLINE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded store lives (overrides server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (the default).
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0: any free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Mint a token.
    Token {
        #[command(subcommand)]
        kind: TokenKind,
    },
    /// Create or upgrade the store's schema, then exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Check a config file and explain every problem found.
    CheckConfig { file: PathBuf },
    /// Score past conversations with the live path's signals. Reads JSON lines, one
    /// message each: {"conversation_id","role":"customer"|"agent","text","ts"?}, a
    /// conversation's messages in order. Writes one JSON line per conversation: its
    /// signals and a satisfaction estimate (1-5) for each customer message.
    Score {
        /// The input file (`-` for standard input).
        file: PathBuf,
        /// A config whose `[[signals.coaching]]` rules to use (default: built-in).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenKind {
    /// An agent token (JWT HS256) signed with the configured or stored secret.
    Agent {
        /// The agent id, as configured.
        id: String,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 12)]
        ttl_hours: u64,
        #[command(flatten)]
        common: Common,
    },
    /// A media stream token (JWT HS256) for a telephony provider streaming calls to
    /// /ws/media: in the stream URL (`?token=`) or as `customParameters.token`.
    Media {
        /// A name for the provider or trunk (shown in logs).
        name: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = 365)]
        ttl_days: u64,
        #[command(flatten)]
        common: Common,
    },
}

const EX_CONFIG: u8 = 64;

/// mimalloc rather than the system allocator: the message path allocates small,
/// short-lived buffers on every worker thread (frames, events, batches), where glibc's
/// malloc spent ~8 % of the gateway's samples at 20,000 messages a second, with
/// consolidation and cross-thread frees; see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Cmd::Serve {
        common: Common::default(),
        listen: None,
    });
    if let Cmd::Score { file, config } = &command {
        return score::run(file, config.as_deref());
    }
    if let Cmd::CheckConfig { file } = &command {
        return match Config::load_with_warnings(Some(file), &Overrides::default()) {
            Ok((config, warnings)) => {
                println!(
                    "{}: ok ({} queues, {} agents){}",
                    file.display(),
                    config.queues.len(),
                    config.agents.len(),
                    match warnings.len() {
                        0 => String::new(),
                        1 => ", 1 warning".to_owned(),
                        n => format!(", {n} warnings"),
                    }
                );
                for warning in warnings {
                    eprintln!("{warning}");
                }
                ExitCode::SUCCESS
            }
            Err(errors) => report(&errors),
        };
    }
    let (common, listen) = match &command {
        Cmd::Serve { common, listen } => (common.clone(), listen.clone()),
        Cmd::Migrate { common }
        | Cmd::Token {
            kind: TokenKind::Agent { common, .. } | TokenKind::Media { common, .. },
        } => (common.clone(), None),
        Cmd::CheckConfig { .. } | Cmd::Score { .. } => unreachable!("handled above"),
    };
    let overrides = Overrides {
        listen,
        data_dir: common.data_dir.clone(),
    };
    let config = match Config::load(common.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(errors) => return report(&errors),
    };
    // Held to the end of `main`: dropping it flushes the lines still queued.
    let _log = init_logs(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shown = Invocation::current(common.config.as_deref(), common.data_dir.as_deref());
    match runtime.block_on(run(command, config, shown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warmline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(errors: &[ConfigError]) -> ExitCode {
    eprint!("{}", warmline::config::report(errors));
    ExitCode::from(EX_CONFIG)
}

fn init_logs(config: &Config) -> tracing_appender::non_blocking::WorkerGuard {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // The WebSocket library traces whole frames (message text, visitor tokens) at
    // debug and trace: whatever level is asked for, it logs no more than info.
    for quiet in ["tungstenite=info", "tokio_tungstenite=info"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    // Lines go to stderr from a thread of their own, through a bounded queue: a write
    // that blocks (a pipe nobody drains fast enough, a file behind a journal commit)
    // must not stall a worker thread and every connection on it. Under a flood of
    // refusals the audit log would otherwise slow down everyone else. When the queue
    // is full, lines are dropped and counted (`warmline_log_lines_dropped_total`).
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("warmline-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    warmline::gateway::metrics::count_log_lines_dropped_with(move || {
        dropped.dropped_lines() as u64
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    // A panic (in a spawned task too, which tokio catches and the process survives)
    // goes to the log like any error, in the log's format.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let backtrace = std::backtrace::Backtrace::capture();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %backtrace,
            "{info}"
        );
    }));
    guard
}

async fn run(command: Cmd, config: Config, shown: Invocation) -> anyhow::Result<()> {
    match command {
        Cmd::Migrate { .. } => {
            Gateway::open(config).await?;
            println!("the store is migrated");
            Ok(())
        }
        Cmd::Token {
            kind: TokenKind::Agent { id, ttl_hours, .. },
        } => {
            if !config.agents.iter().any(|a| a.id == id) {
                let known: Vec<&str> = config.agents.iter().map(|a| a.id.as_str()).collect();
                anyhow::bail!(
                    "no agent `{id}` in the configuration; agents are: {}",
                    known.join(", ")
                );
            }
            let issuer = config.auth.agent_issuer.clone();
            let gateway = Gateway::open(config).await?;
            let token = mint_agent_from(
                gateway.agent_secret(),
                &id,
                ttl_hours * 3600,
                issuer.as_deref(),
            )
            .map_err(anyhow::Error::msg)?;
            println!("{token}");
            Ok(())
        }
        Cmd::Token {
            kind: TokenKind::Media { name, ttl_days, .. },
        } => {
            let gateway = Gateway::open(config).await?;
            let token = mint_media(gateway.media_secret(), &name, ttl_days * 86_400)
                .map_err(anyhow::Error::msg)?;
            println!("{token}");
            Ok(())
        }
        Cmd::Serve { .. } => serve(config, shown).await,
        Cmd::CheckConfig { .. } | Cmd::Score { .. } => Ok(()),
    }
}

async fn serve(config: Config, shown: Invocation) -> anyhow::Result<()> {
    let listen = config.listen_addr();
    let tls = warmline::gateway::tls::acceptor(&config.server).map_err(anyhow::Error::msg)?;
    let gateway = Gateway::open(config).await?.with_tls(tls);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let first_agent = gateway.config().agents[0].id.clone();
    let token = mint_agent_from(
        gateway.agent_secret(),
        &first_agent,
        12 * 3600,
        gateway.config().auth.agent_issuer.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let (http, ws) = if gateway.serves_tls() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!("Warmline listening on {http}://{addr}");
    println!("  customer demo:  {http}://{addr}/");
    println!("  agent console:  {http}://{addr}/agent/?token={token}");
    println!(
        "  (agent `{first_agent}`, token valid 12 h; a new one: `{}`)",
        shown.with_store(&format!("token agent {first_agent}"))
    );
    println!(
        "  phone calls:    {ws}://{addr}/ws/media  (Twilio Media Streams; token: `{}`)",
        shown.with_store("token media twilio")
    );
    println!("  metrics:        {http}://{addr}/metrics");
    println!(
        "  operator API:   {http}://{addr}/api/v1/queues  (Authorization: Bearer {})",
        gateway.admin_token()
    );
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    gateway.serve(listener, shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

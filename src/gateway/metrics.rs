//! The Prometheus registry. Labels come only from closed enums and configured queue
//! names; never an id.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::protocol::{CloseCode, ErrorCode};

pub struct Metrics {
    registry: Registry,
    pub connections: IntGaugeVec,
    pub frames: IntCounterVec,
    pub chat_messages: IntCounterVec,
    pub ack_seconds: Histogram,
    pub errors: IntCounterVec,
    pub disconnects: IntCounterVec,
    pub commit_seconds: Histogram,
    pub batch_records: Histogram,
    pub store_failures: IntCounterVec,
    pub waiting: IntGaugeVec,
    pub open_conversations: IntGauge,
    pub offers_declined: IntCounterVec,
    pub audio_frames: IntCounterVec,
    /// `audio_frames` by direction, resolved once: the per-frame path does no lookup.
    pub audio: AudioCounters,
    pub calls: IntGauge,
    /// What the customers lived through: closes, waits, transfers, flags, mood.
    pub experience: Experience,
    pub agents: IntGaugeVec,
    pub offers: IntCounterVec,
}

/// Customer-experience metrics, counted from the records the hub commits.
pub struct Experience {
    pub closed: IntCounterVec,
    pub abandoned: IntCounterVec,
    pub wait_seconds: HistogramVec,
    pub handle_seconds: HistogramVec,
    pub transfers: IntCounterVec,
    pub bounces: IntCounter,
    pub coaching_flags: IntCounterVec,
    pub ended_on_bad_terms: IntCounterVec,
    pub sentiment_end: Histogram,
    pub csat: IntCounterVec,
    pub repeated_info: IntCounter,
}

impl Experience {
    fn new(registry: &Registry, queues: &[String], coaching_codes: &[String]) -> Experience {
        fn reg<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
            must(registry.register(Box::new(c.clone())));
            c
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                registry,
                must(IntCounterVec::new(Opts::new(name, help), labels)),
            )
        };
        let waits = vec![
            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
        ];
        let experience = Experience {
            closed: counter(
                "warmline_conversations_closed_total",
                "Conversations closed, by queue and resolution (none: closed by the customer).",
                &["queue", "resolution"],
            ),
            abandoned: counter(
                "warmline_conversations_abandoned_total",
                "Conversations the customer left before any agent took them, by queue.",
                &["queue"],
            ),
            wait_seconds: reg(
                registry,
                must(HistogramVec::new(
                    HistogramOpts::new(
                        "warmline_conversation_wait_seconds",
                        "Time from a conversation's start to an agent accepting it (or to its end when none did), by queue.",
                    )
                    .buckets(waits.clone()),
                    &["queue"],
                )),
            ),
            handle_seconds: reg(
                registry,
                must(HistogramVec::new(
                    HistogramOpts::new(
                        "warmline_conversation_handle_seconds",
                        "Time from an agent accepting a conversation to its close, by queue. One figure among the satisfaction signals, not a target.",
                    )
                    .buckets(waits),
                    &["queue"],
                )),
            ),
            transfers: counter(
                "warmline_transfers_total",
                "Transfers agents asked for, by mode (cold, warm).",
                &["mode"],
            ),
            bounces: reg(
                registry,
                must(IntCounter::new(
                    "warmline_transfer_bounces_total",
                    "Transfers within 60 s of the agent accepting: the customer was passed on before anyone tried.",
                )),
            ),
            coaching_flags: counter(
                "warmline_coaching_flags_total",
                "Coaching flags raised by agents' messages, and customer-effort flags, by code.",
                &["code"],
            ),
            ended_on_bad_terms: counter(
                "warmline_conversations_ended_on_bad_terms_total",
                "Conversations closed unresolved with a negative last customer message, by queue.",
                &["queue"],
            ),
            sentiment_end: reg(
                registry,
                must(Histogram::with_opts(
                    HistogramOpts::new(
                        "warmline_customer_sentiment_end",
                        "Sentiment of the customer's last message in a conversation (-1 to 1).",
                    )
                    .buckets(vec![-0.75, -0.5, -0.25, -0.05, 0.05, 0.25, 0.5, 0.75, 1.0]),
                )),
            ),
            csat: counter(
                "warmline_csat_responses_total",
                "Survey answers, by CSAT score (1-5).",
                &["score"],
            ),
            repeated_info: reg(
                registry,
                must(IntCounter::new(
                    "warmline_customer_repeated_info_total",
                    "Customer messages that repeated information Warmline already had.",
                )),
            ),
        };
        for q in queues {
            for resolution in ["resolved", "unresolved", "follow_up", "none"] {
                experience.closed.with_label_values(&[q, resolution]);
            }
            experience.abandoned.with_label_values(&[q]);
            experience.wait_seconds.with_label_values(&[q]);
            experience.handle_seconds.with_label_values(&[q]);
            experience.ended_on_bad_terms.with_label_values(&[q]);
        }
        for mode in ["cold", "warm"] {
            experience.transfers.with_label_values(&[mode]);
        }
        for code in coaching_codes
            .iter()
            .map(String::as_str)
            .chain(["asked_known", "customer_repeated"])
        {
            experience.coaching_flags.with_label_values(&[code]);
        }
        for score in ["1", "2", "3", "4", "5"] {
            experience.csat.with_label_values(&[score]);
        }
        experience
    }

    /// Counts what a record says about the customers' experience.
    pub fn record(&self, record: &crate::core::Record) {
        use crate::core::Record;
        match record {
            Record::ConversationSummary {
                queue,
                resolution,
                summary,
                ..
            } => {
                let resolution = resolution.map_or("none", |r| r.as_str());
                self.closed.with_label_values(&[queue, resolution]).inc();
                if summary.abandoned {
                    self.abandoned.with_label_values(&[queue]).inc();
                }
                self.wait_seconds
                    .with_label_values(&[queue])
                    .observe(summary.wait_ms as f64 / 1000.0);
                if let Some(ms) = summary.handle_ms {
                    self.handle_seconds
                        .with_label_values(&[queue])
                        .observe(ms as f64 / 1000.0);
                }
                if let Some(end) = summary.sentiment_end {
                    self.sentiment_end.observe(f64::from(end) / 1000.0);
                    if resolution != "resolved" && end < -50 {
                        self.ended_on_bad_terms.with_label_values(&[queue]).inc();
                    }
                }
                self.transfers
                    .with_label_values(&["cold"])
                    .inc_by(u64::from(summary.transfers_cold));
                self.transfers
                    .with_label_values(&["warm"])
                    .inc_by(u64::from(summary.transfers_warm));
                self.bounces.inc_by(u64::from(summary.bounces));
                self.repeated_info.inc_by(u64::from(summary.repeated_info));
            }
            Record::CoachingFlags { codes, .. } => {
                for code in codes {
                    self.coaching_flags.with_label_values(&[code]).inc();
                }
            }
            _ => {}
        }
    }
}

pub struct AudioCounters {
    pub to_agent: IntCounter,
    pub to_agent_dropped: IntCounter,
    pub to_provider: IntCounter,
    pub to_provider_dropped: IntCounter,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; a failure here is a programming error found by
    // the first test run, not something a client can cause.
    r.expect("static metric definition")
}

impl Metrics {
    pub fn new(queues: &[String], coaching_codes: &[String]) -> Metrics {
        let registry = Registry::new();
        let build = must(IntGaugeVec::new(
            Opts::new("warmline_build_info", "The running build (always 1)."),
            &["version"],
        ));
        must(registry.register(Box::new(build.clone())));
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let experience = Experience::new(&registry, queues, coaching_codes);
        let agents = must(IntGaugeVec::new(
            Opts::new(
                "warmline_agents",
                "Agents by state (offline: not connected).",
            ),
            &["state"],
        ));
        must(registry.register(Box::new(agents.clone())));
        for state in ["available", "away", "wrap_up", "offline"] {
            agents.with_label_values(&[state]);
        }
        let offers = must(IntCounterVec::new(
            Opts::new(
                "warmline_offers_total",
                "Offers made to agents, by why the agent was chosen (skill, history, expanded, transfer).",
            ),
            &["reason"],
        ));
        must(registry.register(Box::new(offers.clone())));
        for reason in ["skill", "history", "expanded", "transfer"] {
            offers.with_label_values(&[reason]);
        }
        let connections = must(IntGaugeVec::new(
            Opts::new(
                "warmline_connections",
                "Open WebSocket connections, by role.",
            ),
            &["role"],
        ));
        let frames = must(IntCounterVec::new(
            Opts::new(
                "warmline_ws_frames_total",
                "WebSocket text frames, by role and direction (in: from clients, out: to clients).",
            ),
            &["role", "direction"],
        ));
        let chat_messages = must(IntCounterVec::new(
            Opts::new(
                "warmline_chat_messages_total",
                "Chat messages made durable, by sender role.",
            ),
            &["sender"],
        ));
        let ack_seconds = must(Histogram::with_opts(
            HistogramOpts::new(
                "warmline_message_ack_seconds",
                "From a message frame read to its ack written (includes the durable commit).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        ));
        let errors = must(IntCounterVec::new(
            Opts::new("warmline_errors_total", "Error frames sent, by code."),
            &["code"],
        ));
        let disconnects = must(IntCounterVec::new(
            Opts::new(
                "warmline_disconnects_total",
                "Connections the gateway closed, by reason.",
            ),
            &["reason"],
        ));
        let commit_seconds = must(Histogram::with_opts(
            HistogramOpts::new(
                "warmline_store_commit_seconds",
                "Time to make one batch durable.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        ));
        let batch_records = must(Histogram::with_opts(
            HistogramOpts::new(
                "warmline_store_batch_records",
                "Records per committed batch (group commit).",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0,
            ]),
        ));
        let store_failures = must(IntCounterVec::new(
            Opts::new(
                "warmline_store_failures_total",
                "Failed store operations, by operation.",
            ),
            &["op"],
        ));
        let waiting = must(IntGaugeVec::new(
            Opts::new(
                "warmline_conversations_waiting",
                "Conversations waiting for an agent, by queue.",
            ),
            &["queue"],
        ));
        let open_conversations = must(IntGauge::new(
            "warmline_conversations_open",
            "Conversations not closed (waiting, offered or active).",
        ));
        let offers_declined = must(IntCounterVec::new(
            Opts::new(
                "warmline_offers_declined_total",
                "Offers agents let go, by queue and how (rejected: with a reason; missed: not answered in time).",
            ),
            &["queue", "how"],
        ));
        let audio_frames = must(IntCounterVec::new(
            Opts::new(
                "warmline_audio_frames_total",
                "Call audio frames relayed, by direction; `_dropped`: a queue was full and the frame was dropped (late audio is useless).",
            ),
            &["direction"],
        ));
        let calls = must(IntGauge::new(
            "warmline_calls",
            "Live calls (media streams attached to a conversation).",
        ));
        for c in [
            Box::new(offers_declined.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(audio_frames.clone()),
            Box::new(calls.clone()),
            Box::new(connections.clone()),
            Box::new(frames.clone()),
            Box::new(chat_messages.clone()),
            Box::new(ack_seconds.clone()),
            Box::new(errors.clone()),
            Box::new(disconnects.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(batch_records.clone()),
            Box::new(store_failures.clone()),
            Box::new(waiting.clone()),
            Box::new(open_conversations.clone()),
        ] {
            must(registry.register(c));
        }
        #[cfg(target_os = "linux")]
        must(registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        // Expose every series from the start, so dashboards and alerts see zeros.
        for role in ["customer", "agent"] {
            connections.with_label_values(&[role]);
            for dir in ["in", "out"] {
                frames.with_label_values(&[role, dir]);
            }
        }
        for sender in ["customer", "agent", "system"] {
            chat_messages.with_label_values(&[sender]);
        }
        for code in ErrorCode::ALL {
            errors.with_label_values(&[code.as_str()]);
        }
        for code in [
            CloseCode::GoingAway,
            CloseCode::Policy,
            CloseCode::TooLarge,
            CloseCode::Internal,
            CloseCode::KeepaliveTimeout,
            CloseCode::SlowConsumer,
            CloseCode::TokenExpired,
        ] {
            disconnects.with_label_values(&[code.label()]);
        }
        for q in queues {
            waiting.with_label_values(&[q.as_str()]);
            for how in ["rejected", "missed"] {
                offers_declined.with_label_values(&[q.as_str(), how]);
            }
        }
        let audio = AudioCounters {
            to_agent: audio_frames.with_label_values(&["to_agent"]),
            to_agent_dropped: audio_frames.with_label_values(&["to_agent_dropped"]),
            to_provider: audio_frames.with_label_values(&["to_provider"]),
            to_provider_dropped: audio_frames.with_label_values(&["to_provider_dropped"]),
        };
        store_failures.with_label_values(&["commit"]);
        store_failures.with_label_values(&["read"]);
        Metrics {
            registry,
            connections,
            frames,
            chat_messages,
            ack_seconds,
            errors,
            disconnects,
            commit_seconds,
            batch_records,
            store_failures,
            waiting,
            open_conversations,
            offers_declined,
            audio_frames,
            audio,
            calls,
            experience,
            agents,
            offers,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    pub fn disconnect(&self, code: CloseCode) {
        self.disconnects.with_label_values(&[code.label()]).inc();
    }
}

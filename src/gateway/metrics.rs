//! The Prometheus registry. Labels come only from closed sets and configured queue
//! names; never an id. Every series a dashboard or alert reads exists (at zero) from
//! the start, so rates and ratios have data before the first event. What each metric
//! means, and the bound on each family's series, is in docs/operations.md.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::{Channel, Record, WaitingLine};
use crate::protocol::ErrorCode;

/// How many log lines the process's log writer has dropped (set once by the binary,
/// which owns the writer; unset, nothing is counted).
static LOG_LINES_DROPPED: std::sync::OnceLock<Box<dyn Fn() -> u64 + Send + Sync>> =
    std::sync::OnceLock::new();

/// Tells `warmline_log_lines_dropped_total` where to read its count.
pub fn count_log_lines_dropped_with(dropped: impl Fn() -> u64 + Send + Sync + 'static) {
    let _ = LOG_LINES_DROPPED.set(Box::new(dropped));
}

/// Connection roles (`warmline_connections{role}` and friends).
pub const ROLES: [&str; 3] = ["customer", "agent", "media"];
/// Why a connection ended: the client closed it, it was lost (no close frame), or
/// the gateway closed it with one of its close codes.
pub const CLOSE_REASONS: [&str; 14] = [
    "client",
    "lost",
    "normal",
    "going_away",
    "protocol_error",
    "invalid_data",
    "policy",
    "too_large",
    "internal",
    "keepalive_timeout",
    "slow_consumer",
    "token_expired",
    "revoked",
    "service_restart",
];
const CHANNELS: [Channel; 2] = [Channel::Chat, Channel::Voice];
const SENDERS: [&str; 3] = ["customer", "agent", "system"];
const RESOLUTIONS: [&str; 4] = ["resolved", "unresolved", "follow_up", "none"];
const OFFER_OUTCOMES: [&str; 4] = ["accepted", "rejected", "missed", "withdrawn"];
const ROUTING_REASONS: [&str; 4] = ["skill", "history", "expanded", "transfer"];
const AGENT_STATES: [&str; 4] = ["available", "away", "wrap_up", "offline"];

/// Buckets for latencies measured in milliseconds (0.5 ms to 2.5 s).
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Buckets for waits and handle times (1 s to 1 h); 20 s is the default service level.
const WAIT_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
];

pub struct Metrics {
    registry: Registry,
    pub connections: IntGaugeVec,
    pub connections_opened: IntCounterVec,
    pub connections_closed: IntCounterVec,
    pub frames: IntCounterVec,
    pub messages: IntCounterVec,
    /// `messages` by sender and channel, resolved once: counting a message does no
    /// label lookup.
    message_counters: [[IntCounter; 2]; 3],
    pub ack_seconds: Histogram,
    pub delivery_seconds: Histogram,
    pub errors: IntCounterVec,
    /// Refusals the audit log records, by role and reason.
    pub denials: IntCounterVec,
    pub commit_seconds: Histogram,
    pub batch_records: Histogram,
    /// Bytes appended to SQLite's write-ahead log (set from the store's count).
    pub store_wal_bytes: IntCounter,
    pub store_failures: IntCounterVec,
    /// 1 from a failed commit until a commit (or write probe) succeeds; `/readyz`
    /// answers 503 meanwhile.
    pub store_commit_failing: IntGauge,
    /// Log lines dropped because the log writer fell behind (read at each scrape).
    log_lines_dropped: IntCounter,
    pub waiting: IntGaugeVec,
    pub longest_wait: prometheus::GaugeVec,
    pub service_level_seconds: prometheus::GaugeVec,
    pub service_level_target: prometheus::GaugeVec,
    pub open_conversations: IntGauge,
    pub offers_declined: IntCounterVec,
    pub offers: IntCounterVec,
    pub routing_decisions: IntCounterVec,
    pub audio_frames: IntCounterVec,
    /// `audio_frames` by direction, resolved once: the per-frame path does no lookup.
    pub audio: AudioCounters,
    pub calls: IntGauge,
    pub agents: IntGaugeVec,
    /// What the customers lived through: closes, waits, transfers, flags, mood.
    pub experience: Experience,
}

/// Customer-experience metrics, counted from the records the hub commits (and the
/// survey answers the store keeps).
pub struct Experience {
    pub closed: IntCounterVec,
    pub abandoned: IntCounterVec,
    pub answered: IntCounterVec,
    pub wait_seconds: HistogramVec,
    pub handle_seconds: HistogramVec,
    pub transfers: IntCounterVec,
    pub bounces: IntCounter,
    pub repeat_contacts: IntCounterVec,
    pub coaching_flags: IntCounterVec,
    pub ended_on_bad_terms: IntCounterVec,
    pub sentiment_end: Histogram,
    pub csat: IntCounterVec,
    pub effort: IntCounterVec,
    pub repeated_info: IntCounter,
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

/// Registers metrics as they are made.
struct Maker<'a>(&'a Registry);

impl Maker<'_> {
    fn reg<C: Collector + Clone + 'static>(&self, c: prometheus::Result<C>) -> C {
        let c = must(c);
        must(self.0.register(Box::new(c.clone())));
        c
    }
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.reg(IntCounter::new(name, help))
    }
    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.reg(IntCounterVec::new(Opts::new(name, help), labels))
    }
    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.reg(IntGauge::new(name, help))
    }
    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.reg(IntGaugeVec::new(Opts::new(name, help), labels))
    }
    fn float_gauges(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
        self.reg(prometheus::GaugeVec::new(Opts::new(name, help), labels))
    }
    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.reg(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        ))
    }
    fn histograms(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
        self.reg(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ))
    }
}

impl Experience {
    fn new(make: &Maker<'_>, coaching_codes: &[String]) -> Experience {
        let experience = Experience {
            closed: make.counters(
                "warmline_conversations_closed_total",
                "Conversations closed, by queue and resolution (none: closed by the customer).",
                &["queue", "resolution"],
            ),
            abandoned: make.counters(
                "warmline_conversations_abandoned_total",
                "Conversations the customer left before any agent took them, by queue.",
                &["queue"],
            ),
            answered: make.counters(
                "warmline_conversations_answered_total",
                "Closed conversations an agent took, by queue and whether the wait was within the queue's service level.",
                &["queue", "within_service_level"],
            ),
            wait_seconds: make.histograms(
                "warmline_conversation_wait_seconds",
                "Time from a conversation's start to an agent accepting it (or to its end when none did), by queue and channel.",
                &WAIT_BUCKETS,
                &["queue", "channel"],
            ),
            handle_seconds: make.histograms(
                "warmline_conversation_handle_seconds",
                "Time from an agent accepting a conversation to its close, by queue. One figure among the satisfaction signals, not a target.",
                &WAIT_BUCKETS,
                &["queue"],
            ),
            transfers: make.counters(
                "warmline_transfers_total",
                "Transfers agents made, by mode (cold, warm).",
                &["mode"],
            ),
            bounces: make.counter(
                "warmline_transfer_bounces_total",
                "Transfers within 60 s of the agent accepting: the customer was passed on before anyone tried.",
            ),
            repeat_contacts: make.counters(
                "warmline_repeat_contacts_total",
                "Closed conversations that were a repeat contact (the same customer and queue within routing.repeat_window_ms of the previous close), by queue.",
                &["queue"],
            ),
            coaching_flags: make.counters(
                "warmline_coaching_flags_total",
                "Coaching flags raised by agents' messages, and customer-effort flags, by code.",
                &["code"],
            ),
            ended_on_bad_terms: make.counters(
                "warmline_conversations_ended_on_bad_terms_total",
                "Conversations closed unresolved with a negative last customer message, by queue.",
                &["queue"],
            ),
            sentiment_end: make.histogram(
                "warmline_customer_sentiment_end",
                "Sentiment of the customer's last message in a conversation (-1 to 1).",
                &[-0.75, -0.5, -0.25, -0.05, 0.05, 0.25, 0.5, 0.75, 1.0],
            ),
            csat: make.counters(
                "warmline_csat_responses_total",
                "Survey answers, by CSAT score (1-5).",
                &["score"],
            ),
            effort: make.counters(
                "warmline_effort_responses_total",
                "Survey answers with a customer effort score, by score (1: very easy, 7: very hard).",
                &["score"],
            ),
            repeated_info: make.counter(
                "warmline_customer_repeated_info_total",
                "Customer messages that repeated information Warmline already had.",
            ),
        };
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
        for score in ["1", "2", "3", "4", "5", "6", "7"] {
            experience.effort.with_label_values(&[score]);
        }
        experience
    }

    fn define_queue(&self, queue: &str) {
        for resolution in RESOLUTIONS {
            self.closed.with_label_values(&[queue, resolution]);
        }
        for within in ["true", "false"] {
            self.answered.with_label_values(&[queue, within]);
        }
        for channel in CHANNELS {
            self.wait_seconds
                .with_label_values(&[queue, channel.as_str()]);
        }
        self.abandoned.with_label_values(&[queue]);
        self.handle_seconds.with_label_values(&[queue]);
        self.repeat_contacts.with_label_values(&[queue]);
        self.ended_on_bad_terms.with_label_values(&[queue]);
    }

    fn forget_queue(&self, queue: &str) {
        for resolution in RESOLUTIONS {
            let _ = self.closed.remove_label_values(&[queue, resolution]);
        }
        for within in ["true", "false"] {
            let _ = self.answered.remove_label_values(&[queue, within]);
        }
        for channel in CHANNELS {
            let _ = self
                .wait_seconds
                .remove_label_values(&[queue, channel.as_str()]);
        }
        let _ = self.abandoned.remove_label_values(&[queue]);
        let _ = self.handle_seconds.remove_label_values(&[queue]);
        let _ = self.repeat_contacts.remove_label_values(&[queue]);
        let _ = self.ended_on_bad_terms.remove_label_values(&[queue]);
    }

    /// Counts what a record says about the customers' experience.
    pub fn record(&self, record: &Record) {
        match record {
            Record::ConversationSummary {
                queue,
                resolution,
                summary,
                channel,
                repeat,
                within_service_level,
                ..
            } => {
                let resolution = resolution.map_or("none", |r| r.as_str());
                self.closed.with_label_values(&[queue, resolution]).inc();
                if summary.abandoned {
                    self.abandoned.with_label_values(&[queue]).inc();
                }
                if let Some(within) = within_service_level {
                    let within = if *within { "true" } else { "false" };
                    self.answered.with_label_values(&[queue, within]).inc();
                }
                if *repeat {
                    self.repeat_contacts.with_label_values(&[queue]).inc();
                }
                self.wait_seconds
                    .with_label_values(&[queue, channel.as_str()])
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

    /// Counts a stored survey answer.
    pub fn survey(&self, csat: u8, effort: Option<u8>) {
        let csat = csat.clamp(1, 5).to_string();
        self.csat.with_label_values(&[&csat]).inc();
        if let Some(effort) = effort {
            let effort = effort.clamp(1, 7).to_string();
            self.effort.with_label_values(&[&effort]).inc();
        }
    }
}

impl Metrics {
    pub fn new(coaching_codes: &[String]) -> Metrics {
        let registry = Registry::new();
        let make = Maker(&registry);
        let build = make.gauges(
            "warmline_build_info",
            "The running build (always 1).",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let audio_frames = make.counters(
            "warmline_audio_frames_total",
            "Call audio frames relayed, by direction; `_dropped`: a queue was full and the frame was dropped (late audio is useless).",
            &["direction"],
        );
        let messages = make.counters(
            "warmline_messages_total",
            "Transcript messages made durable, by sender (customer: inbound, agent: outbound, system) and channel.",
            &["sender", "channel"],
        );
        let message_counters = SENDERS.map(|sender| {
            CHANNELS.map(|channel| messages.with_label_values(&[sender, channel.as_str()]))
        });
        let metrics = Metrics {
            connections: make.gauges(
                "warmline_connections",
                "Open WebSocket connections, by role.",
                &["role"],
            ),
            connections_opened: make.counters(
                "warmline_connections_opened_total",
                "WebSocket connections accepted, by role.",
                &["role"],
            ),
            connections_closed: make.counters(
                "warmline_connections_closed_total",
                "WebSocket connections ended, by role and reason (client: the client closed; lost: no close frame; otherwise the close code the gateway sent).",
                &["role", "reason"],
            ),
            frames: make.counters(
                "warmline_ws_frames_total",
                "WebSocket text frames, by role and direction (in: from clients, out: to clients).",
                &["role", "direction"],
            ),
            messages,
            ack_seconds: make.histogram(
                "warmline_message_ack_seconds",
                "From a message frame read to its ack written (includes the durable commit).",
                &LATENCY_BUCKETS,
            ),
            delivery_seconds: make.histogram(
                "warmline_message_delivery_seconds",
                "From a transcript event made durable to its frame written to each connection following the conversation.",
                &LATENCY_BUCKETS,
            ),
            errors: make.counters(
                "warmline_errors_total",
                "Errors answered (error frames and API error responses), by code.",
                &["code"],
            ),
            denials: make.counters(
                "warmline_denials_total",
                "Requests refused and written to the audit log, by role (customer, agent, media, operator) and reason (unauthorized, forbidden, revoked, rate_limited, too_many_connections).",
                &["role", "reason"],
            ),
            commit_seconds: make.histogram(
                "warmline_store_commit_seconds",
                "Time to make one batch durable.",
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            ),
            batch_records: make.histogram(
                "warmline_store_batch_records",
                "Records per committed batch (group commit).",
                &[
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0,
                ],
            ),
            store_wal_bytes: make.counter(
                "warmline_store_wal_bytes_total",
                "Bytes the store's commits appended to SQLite's write-ahead log (pages and frame headers; 0 on PostgreSQL). Per stored message, the write amplification of the message path.",
            ),
            store_failures: make.counters(
                "warmline_store_failures_total",
                "Failed store operations, by operation.",
                &["op"],
            ),
            store_commit_failing: make.gauge(
                "warmline_store_commit_failing",
                "1 while the store refuses commits (from a failed commit until a commit or write probe succeeds): nothing is acknowledged meanwhile and /readyz answers 503.",
            ),
            log_lines_dropped: make.counter(
                "warmline_log_lines_dropped_total",
                "Log lines dropped because the log writer fell behind (the log is written off the request path, by a thread of its own, through a bounded queue).",
            ),
            waiting: make.gauges(
                "warmline_conversations_waiting",
                "Conversations waiting for an agent (not on offer), by queue and channel.",
                &["queue", "channel"],
            ),
            longest_wait: make.float_gauges(
                "warmline_queue_longest_wait_seconds",
                "How long the conversation waiting longest has waited, by queue and channel (0: none waiting).",
                &["queue", "channel"],
            ),
            service_level_seconds: make.float_gauges(
                "warmline_queue_service_level_seconds",
                "The queue's service level: conversations should be answered within this long.",
                &["queue"],
            ),
            service_level_target: make.float_gauges(
                "warmline_queue_service_level_target",
                "The share of conversations the queue should answer within its service level (0-1).",
                &["queue"],
            ),
            open_conversations: make.gauge(
                "warmline_conversations_open",
                "Conversations not closed (waiting, offered or active).",
            ),
            offers_declined: make.counters(
                "warmline_offers_declined_total",
                "Offers agents let go, by queue and how (rejected: with a reason; missed: not answered in time).",
                &["queue", "how"],
            ),
            offers: make.counters(
                "warmline_offers_total",
                "Offers to agents by outcome (accepted, rejected, missed: not answered in time, withdrawn: the customer left or the agent went away).",
                &["outcome"],
            ),
            routing_decisions: make.counters(
                "warmline_routing_decisions_total",
                "Routing decisions (offers made), by why the agent was chosen (skill, history, expanded, transfer).",
                &["reason"],
            ),
            audio: AudioCounters {
                to_agent: audio_frames.with_label_values(&["to_agent"]),
                to_agent_dropped: audio_frames.with_label_values(&["to_agent_dropped"]),
                to_provider: audio_frames.with_label_values(&["to_provider"]),
                to_provider_dropped: audio_frames.with_label_values(&["to_provider_dropped"]),
            },
            audio_frames,
            message_counters,
            calls: make.gauge(
                "warmline_calls",
                "Live calls (media streams attached to a conversation).",
            ),
            agents: make.gauges(
                "warmline_agents",
                "Agents by state (offline: not connected).",
                &["state"],
            ),
            experience: Experience::new(&make, coaching_codes),
            registry,
        };
        #[cfg(target_os = "linux")]
        must(metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        metrics.zero();
        metrics
    }

    /// Every series of the closed label sets, at zero.
    fn zero(&self) {
        for role in ROLES {
            self.connections.with_label_values(&[role]);
            self.connections_opened.with_label_values(&[role]);
            for reason in CLOSE_REASONS {
                self.connections_closed.with_label_values(&[role, reason]);
            }
        }
        for role in super::audit::ROLES {
            for why in super::audit::Denial::ALL {
                self.denials.with_label_values(&[role, why.as_str()]);
            }
        }
        for role in ["customer", "agent"] {
            for dir in ["in", "out"] {
                self.frames.with_label_values(&[role, dir]);
            }
        }
        for sender in SENDERS {
            for channel in CHANNELS {
                self.messages.with_label_values(&[sender, channel.as_str()]);
            }
        }
        for code in ErrorCode::ALL {
            self.errors.with_label_values(&[code.as_str()]);
        }
        for op in ["commit", "read"] {
            self.store_failures.with_label_values(&[op]);
        }
        for outcome in OFFER_OUTCOMES {
            self.offers.with_label_values(&[outcome]);
        }
        for reason in ROUTING_REASONS {
            self.routing_decisions.with_label_values(&[reason]);
        }
        for state in AGENT_STATES {
            self.agents.with_label_values(&[state]);
        }
    }

    /// A queue's series, at zero, and its service level (`percent` of conversations
    /// answered within `service_level_ms`). Called for each queue at start and when
    /// the operator API defines one.
    pub fn define_queue(&self, queue: &str, service_level_ms: u64, percent: u8) {
        for channel in CHANNELS {
            self.waiting.with_label_values(&[queue, channel.as_str()]);
            self.longest_wait
                .with_label_values(&[queue, channel.as_str()]);
        }
        for how in ["rejected", "missed"] {
            self.offers_declined.with_label_values(&[queue, how]);
        }
        self.service_level_seconds
            .with_label_values(&[queue])
            .set(service_level_ms as f64 / 1000.0);
        self.service_level_target
            .with_label_values(&[queue])
            .set(f64::from(percent) / 100.0);
        self.experience.define_queue(queue);
    }

    /// A removed queue's series go, so no alert watches a queue that is not there.
    pub fn forget_queue(&self, queue: &str) {
        for channel in CHANNELS {
            let _ = self.waiting.remove_label_values(&[queue, channel.as_str()]);
            let _ = self
                .longest_wait
                .remove_label_values(&[queue, channel.as_str()]);
        }
        for how in ["rejected", "missed"] {
            let _ = self.offers_declined.remove_label_values(&[queue, how]);
        }
        let _ = self.service_level_seconds.remove_label_values(&[queue]);
        let _ = self.service_level_target.remove_label_values(&[queue]);
        self.experience.forget_queue(queue);
    }

    /// The waiting lines' gauges (every queue and channel).
    pub fn waiting_lines(&self, lines: &[WaitingLine<'_>]) {
        for line in lines {
            let labels = [&**line.queue, line.channel.as_str()];
            self.waiting
                .with_label_values(&labels)
                .set(i64::from(line.waiting));
            self.longest_wait
                .with_label_values(&labels)
                .set(line.longest_wait_ms as f64 / 1000.0);
        }
    }

    pub fn render(&self) -> String {
        if let Some(dropped) = LOG_LINES_DROPPED.get() {
            let (now, seen) = (dropped(), self.log_lines_dropped.get());
            if now > seen {
                self.log_lines_dropped.inc_by(now - seen);
            }
        }
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// A transcript message made durable.
    pub fn message(&self, sender: crate::core::Role, channel: Channel) {
        let sender = match sender {
            crate::core::Role::Customer => 0,
            crate::core::Role::Agent => 1,
            crate::core::Role::System => 2,
        };
        self.message_counters[sender][crate::core::routing::channel_index(channel)].inc();
    }

    pub fn denied(&self, role: &str, why: super::audit::Denial) {
        self.denials.with_label_values(&[role, why.as_str()]).inc();
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    pub fn connection_opened(&self, role: &str) {
        self.connections.with_label_values(&[role]).inc();
        self.connections_opened.with_label_values(&[role]).inc();
    }

    /// `reason`: one of [`CLOSE_REASONS`].
    pub fn connection_closed(&self, role: &str, reason: &str) {
        self.connections.with_label_values(&[role]).dec();
        self.connections_closed
            .with_label_values(&[role, reason])
            .inc();
    }
}

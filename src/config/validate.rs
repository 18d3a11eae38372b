//! What makes a config valid beyond its types: the rules `warmline check-config`,
//! `warmline serve` and the operator API (`gateway::definitions`) share.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use super::{
    AgentConfig, Config, ConfigError, HoursConfig, QueueConfig, StepConfig, language, suggest,
};
use crate::core::StepSettings;
use crate::core::routing::{qualified, relaxed};

impl Config {
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |key: String, message: &str| errors.push(ConfigError::new(&key, message));
        if self.server.listen.parse::<SocketAddr>().is_err() {
            err(
                "server.listen".into(),
                "must be an IP address and port, such as 127.0.0.1:8080",
            );
        }
        if let Some(url) = &self.store.url {
            let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !postgres {
                err(
                    "store.url".into(),
                    "must be a postgres:// URL (leave it unset for the embedded SQLite store)",
                );
            } else if !cfg!(feature = "postgres") {
                err(
                    "store.url".into(),
                    "this build has no PostgreSQL support; build with `--features postgres`",
                );
            }
        }
        let c = &self.cluster;
        if let Some(url) = &c.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                err("cluster.redis_url".into(), "must be a redis:// URL");
            } else if !cfg!(feature = "redis") {
                err(
                    "cluster.redis_url".into(),
                    "this build has no Redis support; build with `--features redis,postgres`",
                );
            }
            if self.store.url.is_none() {
                err(
                    "cluster.redis_url".into(),
                    "several nodes need a shared store: set store.url to a postgres:// URL",
                );
            }
        }
        if c.prefix.is_empty()
            || !c
                .prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch))
        {
            err(
                "cluster.prefix".into(),
                "must be letters, digits, `_`, `-` or `.`, and not empty",
            );
        }
        if c.heartbeat_ms < 50 || c.expiry_ms < c.heartbeat_ms * 3 {
            err(
                "cluster.expiry_ms".into(),
                "heartbeat_ms must be at least 50 and expiry_ms at least three heartbeats",
            );
        }
        if let Some(id) = &c.node_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch)))
        {
            err(
                "cluster.node_id".into(),
                "must be 1 to 64 letters, digits, `_` or `-`",
            );
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            err("log.format".into(), "must be `text` or `json`");
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                for (name, path) in [("server.tls_cert", cert), ("server.tls_key", key)] {
                    if !path.is_file() {
                        err(
                            name.into(),
                            "names no readable file (a PEM file is expected)",
                        );
                    }
                }
            }
            _ => err(
                "server.tls_cert".into(),
                "server.tls_cert and server.tls_key go together: set both or neither",
            ),
        }
        let r = &self.rate_limits;
        for proxy in &r.trusted_proxies {
            if proxy.parse::<std::net::IpAddr>().is_err() {
                err(
                    "rate_limits.trusted_proxies".into(),
                    "each entry must be an IP address (v4 or v6), such as \"10.0.0.1\"",
                );
            }
        }
        for (key, rate, burst) in [
            (
                "rate_limits.customer_frame_burst",
                r.customer_frames_per_minute,
                r.customer_frame_burst,
            ),
            (
                "rate_limits.agent_frame_burst",
                r.agent_frames_per_minute,
                r.agent_frame_burst,
            ),
            (
                "rate_limits.connections_per_ip_burst",
                r.connections_per_ip_per_second,
                r.connections_per_ip_burst,
            ),
        ] {
            if rate != 0 && burst == 0 {
                err(
                    key.into(),
                    "must be at least 1 while its rate is set (0 turns off the rate instead)",
                );
            }
        }
        let l = &self.limits;
        if !(1024..=16 * 1024 * 1024).contains(&l.max_message_bytes) {
            err(
                "limits.max_message_bytes".into(),
                "must be between 1024 and 16777216",
            );
        }
        if !(1024..=1024 * 1024).contains(&l.read_buffer_bytes) {
            err(
                "limits.read_buffer_bytes".into(),
                "must be between 1024 and 1048576",
            );
        }
        if l.write_buffer_bytes == 0 || l.max_write_buffer_bytes <= l.write_buffer_bytes {
            err(
                "limits.max_write_buffer_bytes".into(),
                "must be larger than limits.write_buffer_bytes, which must not be 0",
            );
        }
        for (key, value) in [
            ("limits.outbound_queue", l.outbound_queue as u64),
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.write_timeout_ms", l.write_timeout_ms),
            ("limits.ping_interval_ms", l.ping_interval_ms),
            ("limits.core_queue", l.core_queue as u64),
            ("store.max_batch", self.store.max_batch as u64),
            ("routing.offer_timeout_ms", self.routing.offer_timeout_ms),
            ("routing.service_level_ms", self.routing.service_level_ms),
            ("routing.dedupe_window", self.routing.dedupe_window as u64),
            (
                "routing.queued_update_interval_ms",
                self.routing.queued_update_interval_ms,
            ),
            (
                "media.audio_queue_frames",
                self.media.audio_queue_frames as u64,
            ),
            ("media.signals_interval_ms", self.media.signals_interval_ms),
            ("media.dead_air_ms", self.media.dead_air_ms),
        ] {
            if value == 0 {
                err(key.into(), "must be greater than 0");
            }
        }
        for origin in &self.customer.allowed_origins {
            let ok = origin == "self"
                || origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/'));
            if !ok {
                err(
                    "customer.allowed_origins".into(),
                    "each entry is \"self\", \"*\" or an origin such as https://shop.example (scheme and host, no path or trailing slash)",
                );
            }
        }
        for (key, secret) in [
            ("auth.agent_secret", &self.auth.agent_secret),
            ("auth.visitor_secret", &self.auth.visitor_secret),
            ("auth.media_secret", &self.auth.media_secret),
            ("auth.identity_secret", &self.auth.identity_secret),
            ("auth.admin_token", &self.auth.admin_token),
        ] {
            if secret.as_ref().is_some_and(|s| s.len() < 32) {
                err(key.into(), "must be at least 32 characters");
            }
        }
        if !(1..=100).contains(&self.routing.service_level_percent) {
            err("routing.service_level_percent".to_owned(), "must be 1-100");
        }
        let mut names = HashSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            let key = format!("queues[{i}]");
            if !valid_name(&q.name) {
                err(
                    format!("{key}.name"),
                    "1-64 characters: letters, digits, `-`, `_`, `.`",
                );
            }
            if !names.insert(&q.name) {
                err(format!("{key}.name"), "another queue has this name");
            }
            check_skills(&q.skills, &self.skills, &format!("{key}.skills"), &mut err);
            if q.offer_timeout_ms == Some(0) {
                err(format!("{key}.offer_timeout_ms"), "must be greater than 0");
            }
            if q.service_level_ms == Some(0) {
                err(format!("{key}.service_level_ms"), "must be greater than 0");
            }
            if q.service_level_percent
                .is_some_and(|p| !(1..=100).contains(&p))
            {
                err(format!("{key}.service_level_percent"), "must be 1-100");
            }
            let known = |name: &String| self.queues.iter().any(|other| other.name == *name);
            if let Some(target) = &q.overflow_to {
                if *target == q.name {
                    err(
                        format!("{key}.overflow_to"),
                        "a queue cannot overflow into itself",
                    );
                } else if !known(target) {
                    err(
                        format!("{key}.overflow_to"),
                        &no_queue(target, &self.queues),
                    );
                }
                if q.max_wait_ms.is_none() {
                    err(format!("{key}.max_wait_ms"), "is needed with overflow_to");
                }
            }
            for (j, rule) in q.rules.iter().enumerate() {
                let key = format!("{key}.rules[{j}]");
                if !valid_attribute(&rule.attribute) {
                    err(
                        format!("{key}.attribute"),
                        "must be 1-64 characters: lowercase letters, digits, `_`",
                    );
                }
                if rule.equals.is_empty() || rule.equals.len() > 256 {
                    err(format!("{key}.equals"), "must be 1-256 bytes");
                }
                if !(-100..=100).contains(&rule.priority) {
                    err(format!("{key}.priority"), "must be between -100 and 100");
                }
                check_skills(
                    &rule.skills,
                    &self.skills,
                    &format!("{key}.skills"),
                    &mut err,
                );
            }
            if let Some(l) = &q.language
                && !language::valid(l)
            {
                err(format!("{key}.language"), &language::problem(l));
            }
            if let Some(Err((field, message))) = q.hours.as_ref().map(HoursConfig::parse) {
                err(format!("{key}.hours.{field}"), &message);
            }
            let mut after = 0;
            for (j, step) in q.steps.iter().enumerate() {
                let key = format!("{key}.steps[{j}]");
                if step.after_ms <= after && j > 0 {
                    err(
                        format!("{key}.after_ms"),
                        "steps must come in increasing after_ms",
                    );
                }
                after = step.after_ms;
                for (skill, level) in &step.min_levels {
                    if !q.skills.contains_key(skill) {
                        err(
                            format!("{key}.min_levels.{skill}"),
                            "is not a skill this queue requires",
                        );
                    }
                    if !(1..=10).contains(level) {
                        err(
                            format!("{key}.min_levels.{skill}"),
                            "skill levels are 1 to 10",
                        );
                    }
                }
                for skill in &step.drop_skills {
                    if !q.skills.contains_key(skill) {
                        err(
                            format!("{key}.drop_skills"),
                            "names a skill this queue does not require",
                        );
                    }
                }
                for target in &step.widen_to {
                    if *target == q.name {
                        err(
                            format!("{key}.widen_to"),
                            &format!("`{target}` is this queue: name other queues"),
                        );
                    } else if !known(target) {
                        err(
                            format!("{key}.widen_to"),
                            &format!("`{target}` {}", no_queue(target, &self.queues)),
                        );
                    }
                }
            }
        }
        let mut ids = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let key = format!("agents[{i}]");
            if !valid_name(&a.id) {
                err(
                    format!("{key}.id"),
                    "1-64 characters: letters, digits, `-`, `_`, `.`",
                );
            }
            if !ids.insert(&a.id) {
                err(format!("{key}.id"), "another agent has this id");
            }
            check_skills(&a.skills, &self.skills, &format!("{key}.skills"), &mut err);
            if a.capacity.chat > 100 || a.capacity.voice > 10 {
                err(
                    format!("{key}.capacity"),
                    "chat capacity is at most 100 and voice at most 10",
                );
            }
            for (j, l) in a.languages.iter().enumerate() {
                if !language::valid(l) {
                    err(format!("{key}.languages[{j}]"), &language::problem(l));
                }
            }
        }
        for (i, rule) in self.signals.coaching.iter().flatten().enumerate() {
            let key = format!("signals.coaching[{i}]");
            if !valid_attribute(&rule.code) {
                err(
                    format!("{key}.code"),
                    "must be 1-64 characters: lowercase letters, digits, `_`",
                );
            }
            if rule.hint.trim().is_empty() || rule.hint.len() > 300 {
                err(format!("{key}.hint"), "must be 1-300 bytes");
            }
            if rule.phrases.is_empty()
                || rule.phrases.len() > 200
                || rule
                    .phrases
                    .iter()
                    .any(|p| p.trim().is_empty() || p.len() > 200)
            {
                err(format!("{key}.phrases"), "1-200 phrases, each 1-200 bytes");
            }
        }
        let m = &self.media;
        if let Some(queue) = &m.default_queue
            && !self.queues.is_empty()
            && !self.queues.iter().any(|q| q.name == *queue)
        {
            err("media.default_queue".into(), &no_queue(queue, &self.queues));
        }
        if !(-90.0..=0.0).contains(&m.vad_threshold_dbov) {
            err(
                "media.vad_threshold_dbov".into(),
                "must be between -90 and 0 (dBov; speech on a phone line is around -30 to -20)",
            );
        }
        if m.audio_queue_frames > 10_000 {
            err(
                "media.audio_queue_frames".into(),
                "must be at most 10000 (200 s of audio; late audio is useless)",
            );
        }
        if m.vad_hangover_ms > 5_000 {
            err("media.vad_hangover_ms".into(), "must be at most 5000");
        }
        errors
    }
}

impl Config {
    /// What is valid but probably not meant: an agent whose skills meet no queue's
    /// loosest requirements would never be offered a conversation. A warning, not an
    /// error: the queue they are meant for may come from the operator API (kept in the
    /// store, unknown to the file), or be added after them.
    pub fn advise(&self) -> Vec<ConfigError> {
        let needs = self.loosest_needs();
        self.agents
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let why = offered_nothing(a, &needs)?;
                Some(ConfigError::warning(&format!("agents[{i}].skills"), &why))
            })
            .collect()
    }

    /// Each queue's requirements relaxed by all of its steps: the least an agent
    /// must have to be offered anything from it.
    fn loosest_needs(&self) -> Vec<(&str, BTreeMap<String, u8>)> {
        self.queues
            .iter()
            .map(|q| {
                let steps: Vec<StepSettings> = q.steps.iter().map(StepConfig::settings).collect();
                (q.name.as_str(), relaxed(&q.skills, &steps))
            })
            .collect()
    }
}

/// Why `agent` could never be offered a conversation: their skills meet none of the
/// queues' loosest requirements (`needs`). Languages are not held against them (a
/// conversation may name its own), nor is anything held against the built-in demo
/// agent.
fn offered_nothing(agent: &AgentConfig, needs: &[(&str, BTreeMap<String, u8>)]) -> Option<String> {
    if needs.is_empty()
        || *agent == AgentConfig::demo()
        || needs.iter().any(|(_, need)| qualified(&agent.skills, need))
    {
        return None;
    }
    const SHOWN: usize = 5;
    let mut listed: Vec<String> = needs
        .iter()
        .take(SHOWN)
        .map(|(name, need)| {
            let skills: Vec<String> = need.iter().map(|(s, l)| format!("{s} {l}+")).collect();
            format!("{name} ({})", skills.join(", "))
        })
        .collect();
    if needs.len() > SHOWN {
        listed.push(format!("and {} more", needs.len() - SHOWN));
    }
    Some(format!(
        "match no queue's requirements (even relaxed by its steps), so this agent would never \
         be offered a conversation; queues need: {}",
        listed.join("; ")
    ))
}

/// `names no queue (did you mean `support`?); queues are: support, billing`.
fn no_queue(name: &str, queues: &[QueueConfig]) -> String {
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    let mut message = "names no queue".to_owned();
    if let Some(meant) = suggest::nearest(name, names.iter().copied()) {
        message.push_str(&format!(" (did you mean `{meant}`?)"));
    }
    message.push_str(&format!("; queues are: {}", names.join(", ")));
    message
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_skills(
    skills: &BTreeMap<String, u8>,
    catalogue: &[String],
    key: &str,
    err: &mut impl FnMut(String, &str),
) {
    for (name, level) in skills {
        if !catalogue.is_empty() && !catalogue.contains(name) {
            err(
                format!("{key}.{name}"),
                "is not a known skill (see `skills` in the config)",
            );
        }
        if !valid_name(name) {
            err(
                format!("{key}.{name}"),
                "skill names are 1-64 characters: letters, digits, `-`, `_`, `.`",
            );
        }
        if !(1..=10).contains(level) {
            err(format!("{key}.{name}"), "skill levels are 1 to 10");
        }
    }
}

/// An attribute name: what customer context and queue rules may use.
pub fn valid_attribute(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

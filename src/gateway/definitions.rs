//! The book of queue and agent definitions: those from the config file (read-only
//! through the API: edit the file) and those made through the operator API (kept in
//! the store). A change is checked by validating the whole config it would make, so
//! the API and `warmline check-config` agree on what is valid.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::config::{AgentConfig, Config, ConfigError, QueueConfig};
use crate::protocol::ErrorCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Config,
    Api,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Api => "api",
        }
    }
}

/// An operator API failure: HTTP status, error code, a sentence, and the field at
/// fault when there is one.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidField,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }
}

pub struct Definitions {
    file: Config,
    queues: Vec<(QueueConfig, Source)>,
    agents: Vec<(AgentConfig, Source)>,
}

impl Definitions {
    /// The file's definitions plus the API's (`(kind, body)` rows from the store).
    /// Rows that no longer parse, or clash with the file, are skipped and reported.
    pub fn new(file: &Config, stored: &[(String, String)]) -> (Definitions, Vec<String>) {
        let mut defs = Definitions {
            file: file.clone(),
            queues: file
                .queues
                .iter()
                .cloned()
                .map(|q| (q, Source::Config))
                .collect(),
            agents: file
                .agents
                .iter()
                .cloned()
                .map(|a| (a, Source::Config))
                .collect(),
        };
        let mut warnings = Vec::new();
        for (kind, body) in stored {
            match kind.as_str() {
                "queue" => match serde_json::from_str::<QueueConfig>(body) {
                    Ok(q) if defs.queue(&q.name).is_none() => defs.queues.push((q, Source::Api)),
                    Ok(q) => warnings.push(format!(
                        "queue `{}` is now in the config file; the API's definition is ignored",
                        q.name
                    )),
                    Err(e) => {
                        warnings.push(format!("a stored queue definition does not parse: {e}"))
                    }
                },
                "agent" => match serde_json::from_str::<AgentConfig>(body) {
                    Ok(a) if defs.agent(&a.id).is_none() => defs.agents.push((a, Source::Api)),
                    Ok(a) => warnings.push(format!(
                        "agent `{}` is now in the config file; the API's definition is ignored",
                        a.id
                    )),
                    Err(e) => {
                        warnings.push(format!("a stored agent definition does not parse: {e}"))
                    }
                },
                other => warnings.push(format!("unknown definition kind `{other}`")),
            }
        }
        (defs, warnings)
    }

    /// The configuration in force: the file's, with every queue and agent.
    pub fn config(&self) -> Config {
        Config {
            queues: self.queues.iter().map(|(q, _)| q.clone()).collect(),
            agents: self.agents.iter().map(|(a, _)| a.clone()).collect(),
            ..self.file.clone()
        }
    }

    fn queue(&self, name: &str) -> Option<&(QueueConfig, Source)> {
        self.queues.iter().find(|(q, _)| q.name == name)
    }

    fn agent(&self, id: &str) -> Option<&(AgentConfig, Source)> {
        self.agents.iter().find(|(a, _)| a.id == id)
    }

    pub fn queue_json(&self, name: &str) -> Result<Value, ApiError> {
        self.queue(name)
            .map(|(q, source)| with_source(q, *source))
            .ok_or_else(|| ApiError::not_found(format!("there is no queue named `{name}`")))
    }

    pub fn agent_json(&self, id: &str) -> Result<Value, ApiError> {
        self.agent(id)
            .map(|(a, source)| with_source(a, *source))
            .ok_or_else(|| ApiError::not_found(format!("there is no agent `{id}`")))
    }

    pub fn queues_json(&self) -> Value {
        Value::Array(
            self.queues
                .iter()
                .map(|(q, s)| with_source(q, *s))
                .collect(),
        )
    }

    pub fn agents_json(&self) -> Value {
        Value::Array(
            self.agents
                .iter()
                .map(|(a, s)| with_source(a, *s))
                .collect(),
        )
    }

    /// Checks that `queue` may be created (`create`) or replace the one of its name.
    pub fn check_put_queue(&self, queue: &QueueConfig, create: bool) -> Result<(), ApiError> {
        let existing = self.queues.iter().position(|(q, _)| q.name == queue.name);
        match (existing, create) {
            (Some(_), true) => {
                return Err(ApiError::conflict(format!(
                    "queue `{}` exists; PUT /api/v1/queues/{} changes it",
                    queue.name, queue.name
                )));
            }
            (None, false) => {
                return Err(ApiError::not_found(format!(
                    "there is no queue named `{}`",
                    queue.name
                )));
            }
            (Some(i), false) if self.queues[i].1 == Source::Config => {
                return Err(from_file("queue", &queue.name));
            }
            _ => {}
        }
        let current = self.config();
        let mut candidate = current.clone();
        let index = existing.unwrap_or(candidate.queues.len());
        match existing {
            Some(i) => candidate.queues[i] = queue.clone(),
            None => candidate.queues.push(queue.clone()),
        }
        check(&current, &candidate, &format!("queues[{index}]"))
    }

    pub fn check_put_agent(&self, agent: &AgentConfig, create: bool) -> Result<(), ApiError> {
        let existing = self.agents.iter().position(|(a, _)| a.id == agent.id);
        match (existing, create) {
            (Some(_), true) => {
                return Err(ApiError::conflict(format!(
                    "agent `{}` exists; PUT /api/v1/agents/{} changes it",
                    agent.id, agent.id
                )));
            }
            (None, false) => {
                return Err(ApiError::not_found(format!(
                    "there is no agent `{}`",
                    agent.id
                )));
            }
            (Some(i), false) if self.agents[i].1 == Source::Config => {
                return Err(from_file("agent", &agent.id));
            }
            _ => {}
        }
        let current = self.config();
        let mut candidate = current.clone();
        let index = existing.unwrap_or(candidate.agents.len());
        match existing {
            Some(i) => candidate.agents[i] = agent.clone(),
            None => candidate.agents.push(agent.clone()),
        }
        check(&current, &candidate, &format!("agents[{index}]"))
    }

    pub fn check_remove_queue(&self, name: &str) -> Result<(), ApiError> {
        match self.queue(name) {
            None => {
                return Err(ApiError::not_found(format!(
                    "there is no queue named `{name}`"
                )));
            }
            Some((_, Source::Config)) => return Err(from_file("queue", name)),
            Some(_) => {}
        }
        let users: Vec<&str> = self
            .queues
            .iter()
            .filter(|(q, _)| {
                q.overflow_to.as_deref() == Some(name)
                    || q.steps.iter().any(|s| s.widen_to.iter().any(|w| w == name))
            })
            .map(|(q, _)| q.name.as_str())
            .collect();
        if users.is_empty() {
            Ok(())
        } else {
            Err(ApiError::conflict(format!(
                "queue `{name}` is an overflow or widening target of: {}",
                users.join(", ")
            )))
        }
    }

    pub fn check_remove_agent(&self, id: &str) -> Result<(), ApiError> {
        match self.agent(id) {
            None => Err(ApiError::not_found(format!("there is no agent `{id}`"))),
            Some((_, Source::Config)) => Err(from_file("agent", id)),
            Some(_) => Ok(()),
        }
    }

    pub fn put_queue(&mut self, queue: QueueConfig) {
        match self.queues.iter_mut().find(|(q, _)| q.name == queue.name) {
            Some(slot) => slot.0 = queue,
            None => self.queues.push((queue, Source::Api)),
        }
    }

    pub fn put_agent(&mut self, agent: AgentConfig) {
        match self.agents.iter_mut().find(|(a, _)| a.id == agent.id) {
            Some(slot) => slot.0 = agent,
            None => self.agents.push((agent, Source::Api)),
        }
    }

    pub fn remove_queue(&mut self, name: &str) {
        self.queues.retain(|(q, _)| q.name != name);
    }

    pub fn remove_agent(&mut self, id: &str) {
        self.agents.retain(|(a, _)| a.id != id);
    }

    pub fn routing(&self) -> &crate::config::RoutingConfig {
        &self.file.routing
    }
}

fn with_source<T: serde::Serialize>(item: &T, source: Source) -> Value {
    let mut value = serde_json::to_value(item).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("source".to_owned(), json!(source.as_str()));
    }
    value
}

fn from_file(kind: &str, id: &str) -> ApiError {
    ApiError::conflict(format!(
        "{kind} `{id}` is defined in the config file; change it there (the API manages only what it created)"
    ))
}

/// Validates the candidate config; an error about the changed item names its field,
/// any other is a conflict with the rest of the configuration, unless the current
/// configuration has it already (a change is refused only for what it breaks).
fn check(current: &Config, candidate: &Config, prefix: &str) -> Result<(), ApiError> {
    let errors = candidate.validate();
    let about_item = |e: &ConfigError| {
        e.key
            .strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with('.'))
            .map(|rest| rest.trim_start_matches('.').to_owned())
    };
    if let Some((field, e)) = errors.iter().find_map(|e| Some((about_item(e)?, e))) {
        return Err(ApiError::invalid(field, e.message.clone()));
    }
    let before = current.validate();
    // By key: the message of a problem may mention the changed item (the queues an
    // agent could use), yet it is the same problem.
    match errors
        .iter()
        .find(|e| !before.iter().any(|b| b.key == e.key))
    {
        Some(e) => Err(ApiError::conflict(format!("the change would break {e}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, skills: &[(&str, u8)], languages: &[&str]) -> AgentConfig {
        AgentConfig {
            id: id.to_owned(),
            display_name: None,
            skills: skills.iter().map(|(s, l)| ((*s).to_owned(), *l)).collect(),
            languages: languages.iter().map(|l| (*l).to_owned()).collect(),
            capacity: Default::default(),
        }
    }

    fn queue(name: &str, skills: &[(&str, u8)]) -> QueueConfig {
        QueueConfig {
            skills: skills.iter().map(|(s, l)| ((*s).to_owned(), *l)).collect(),
            ..QueueConfig::named(name)
        }
    }

    fn book() -> Definitions {
        let file = Config {
            queues: vec![queue("support", &[("support", 1)])],
            agents: vec![agent("alice", &[("support", 3)], &["en"])],
            ..Config::default()
        };
        Definitions::new(&file, &[]).0
    }

    #[test]
    fn the_api_refuses_a_language_that_is_not_one_but_not_an_agent_waiting_for_their_queue() {
        let defs = book();
        // Their queue may be created next: a warning at start, not a refusal.
        defs.check_put_agent(&agent("bob", &[("sales", 3)], &[]), true)
            .unwrap();
        let err = defs
            .check_put_agent(&agent("bob", &[("support", 1)], &["english"]), true)
            .unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("languages[0]"),
            "{}",
            err.message
        );
        assert!(err.message.contains("did you mean `en` (English)?"));
        defs.check_put_agent(&agent("bob", &[("support", 1)], &["en-GB"]), true)
            .unwrap();
    }

    #[test]
    fn a_change_is_refused_only_for_the_problems_it_adds() {
        // A file queue that overflows to a queue nobody defined: a problem already there.
        let file = Config {
            queues: vec![QueueConfig {
                overflow_to: Some("vip".into()),
                ..queue("support", &[])
            }],
            ..Config::default()
        };
        let mut defs = Definitions::new(&file, &[]).0;
        // An unrelated change still goes through...
        defs.check_put_queue(&queue("sales", &[("sales", 1)]), true)
            .unwrap();
        defs.put_queue(queue("sales", &[("sales", 1)]));
        defs.put_queue(QueueConfig {
            overflow_to: Some("sales".into()),
            ..queue("returns", &[])
        });
        // ...but one that breaks another queue's overflow does not.
        let err = defs.check_remove_queue("sales").unwrap_err();
        assert!(err.message.contains("returns"), "{}", err.message);
        // Nor one with a problem of its own, though the book has another already.
        let err = defs
            .check_put_queue(
                &QueueConfig {
                    overflow_to: Some("nowhere".into()),
                    ..queue("sales", &[("sales", 1)])
                },
                false,
            )
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("overflow_to"), "{}", err.message);
    }
}

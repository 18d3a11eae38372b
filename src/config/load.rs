//! Reading a config: the TOML file, then `WARMLINE_` environment variables (nested
//! keys joined by `__`), then the command line's flags, merged into one tree. Every
//! problem is collected, not just the first: unknown keys (with the nearest valid
//! one), values of the wrong type, and what `Config::validate` finds; each says where
//! it came from (file:line:column, the environment variable, the flag) and the value
//! at fault.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::schema::{self, Seg, Table, Unknown};
use super::{Config, ConfigError, Origin, Overrides, report, suggest};

const PREFIX: &str = "WARMLINE_";

/// The keys whose checks compare entries of the lists (queues, agents, coaching rules).
const ABOUT_LISTS: [&str; 4] = [
    "queues",
    "agents",
    "signals.coaching",
    "media.default_queue",
];

/// Bounds the rounds of "deserialize, drop the value at fault, again".
const MAX_TYPE_ERRORS: usize = 100;

/// Reads and checks a config; `env` is the process environment (tests pass their own).
pub(super) fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<(Config, Vec<ConfigError>), Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut sources = Sources::default();
    let mut tree = toml::Table::new();

    if let Some(path) = file {
        let file = FileSource::read(path)?;
        tree = file.table.clone();
        let mut unknown = Vec::new();
        schema::strip_unknown(&mut tree, Table::Root, &mut Vec::new(), &mut unknown);
        for u in unknown {
            let origin = file.origin(file.key_span(&u.path));
            errors.push(unknown_key(u, Some(origin), None));
        }
        sources.file = Some(file);
    }

    let mut from_env = toml::Table::new();
    for (name, raw) in env {
        let Some(rest) = name
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .and_then(|_| name.get(PREFIX.len()..))
        else {
            continue;
        };
        let keys: Vec<String> = rest
            .trim()
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if keys.iter().any(String::is_empty) {
            continue;
        }
        let mut one = toml::Table::new();
        insert_at(&mut one, &keys, env_value(&raw));
        let mut unknown = Vec::new();
        schema::strip_unknown(&mut one, Table::Root, &mut Vec::new(), &mut unknown);
        for u in unknown {
            errors.push(unknown_key(u, Some(Origin::Env(name.clone())), Some(&name)));
        }
        merge(&mut from_env, one);
        sources
            .env
            .push((keys.into_iter().map(Seg::Key).collect(), name));
    }
    merge(&mut tree, from_env);

    for (keys, flag, value) in [
        (["server", "listen"], "--listen", overrides.listen.clone()),
        (
            ["server", "data_dir"],
            "--data-dir",
            overrides
                .data_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()),
        ),
    ] {
        if let Some(value) = value {
            let keys = keys.map(str::to_owned);
            insert_at(&mut tree, &keys, toml::Value::String(value));
            sources
                .flags
                .push((keys.into_iter().map(Seg::Key).collect(), flag));
        }
    }

    let (config, complete) = deserialize(&mut tree, &sources, &mut errors);
    let Some(mut config) = config else {
        errors.sort_by_key(report::place);
        return Err(errors);
    };
    config.fill_demo();
    let effective = toml::Value::try_from(&config).ok();
    let placed = |mut e: ConfigError| {
        let path = schema::parse(&e.key);
        e.origin = sources.origin(&path);
        e.value = effective
            .as_ref()
            .and_then(|v| get(v, &path))
            .map(|v| render(&path, v));
        e
    };
    // With an entry of a list left out, what is said of the lists would mislead.
    let said = |e: &ConfigError| complete || !ABOUT_LISTS.iter().any(|l| e.key.starts_with(l));
    errors.extend(config.validate().into_iter().filter(said).map(placed));
    let mut warnings: Vec<ConfigError> = config
        .advise()
        .into_iter()
        .filter(said)
        .map(placed)
        .collect();
    if !complete {
        errors.push(ConfigError::new(
            "",
            "the checks of queues and agents (names, skills, overflow targets) run once the problems above are fixed",
        ));
    }
    warnings.sort_by_key(report::place);
    if errors.is_empty() {
        Ok((config, warnings))
    } else {
        errors.append(&mut warnings);
        errors.sort_by_key(report::place);
        Err(errors)
    }
}

/// Deserializes `tree`; on an error, records it, drops the value at fault (its
/// default then applies) and tries again, so every wrong type is reported. The flag
/// is false when more than the value had to go (a list with a bad entry, a table
/// missing a required key): the checks across entries would then be misleading.
fn deserialize(
    tree: &mut toml::Table,
    sources: &Sources,
    errors: &mut Vec<ConfigError>,
) -> (Option<Config>, bool) {
    let mut complete = true;
    let mut dropped: Vec<Vec<Seg>> = Vec::new();
    for _ in 0..MAX_TYPE_ERRORS {
        let e =
            match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(tree.clone())) {
                Ok(config) => return (Some(config), complete),
                Err(e) => e,
            };
        let mut path = path_of(e.path());
        let message = e.into_inner().message().to_owned();
        if let Some(field) = missing_field(&message) {
            // Reported unless it is missing because its wrong value was dropped; then
            // the table that lacks it goes too.
            let mut field_path = path.clone();
            field_path.push(Seg::Key(field.to_owned()));
            if !dropped.contains(&field_path) {
                errors.push(ConfigError {
                    origin: sources.origin(&field_path),
                    ..ConfigError::new(&schema::display(&field_path), "is required and missing")
                });
            }
            complete = false;
        } else {
            let value = get_in(tree, &path).map(|v| render(&path, v));
            errors.push(ConfigError {
                origin: sources.origin(&path),
                value,
                ..ConfigError::new(&schema::display(&path), &message)
            });
        }
        // Drop the innermost keyed value holding the error: a list entry is dropped
        // with its whole list, which shifts nothing.
        let Some(cut) = path.iter().rposition(|s| matches!(s, Seg::Key(_))) else {
            return (None, false);
        };
        if cut + 1 != path.len() {
            complete = false;
        }
        path.truncate(cut + 1);
        if !remove(tree, &path) {
            return (None, false);
        }
        dropped.push(path);
    }
    (None, false)
}

/// `missing field `name`` -> `name`.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn path_of(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// An unknown key, with the nearest valid one and the table's keys (listed once by
/// the report). `var`: the environment variable that set it.
fn unknown_key(u: Unknown, origin: Option<Origin>, var: Option<&str>) -> ConfigError {
    let name = match u.path.last() {
        Some(Seg::Key(name)) => name.as_str(),
        _ => "",
    };
    let mut message = match var {
        Some(_) => "unknown key (set by the environment)".to_owned(),
        None => "unknown key".to_owned(),
    };
    if let Some(meant) = suggest::nearest(name, u.table.keys().iter().copied()) {
        message.push_str(&format!("; did you mean `{meant}`"));
        if var.is_some() {
            let mut keys: Vec<String> = u.path[..u.path.len() - 1]
                .iter()
                .filter_map(|s| match s {
                    Seg::Key(k) => Some(k.to_ascii_uppercase()),
                    Seg::Index(_) => None,
                })
                .collect();
            keys.push(meant.to_ascii_uppercase());
            message.push_str(&format!(" ({PREFIX}{})", keys.join("__")));
        }
        message.push('?');
    }
    ConfigError {
        origin,
        value: Some(render(&u.path, &u.value)),
        valid_keys: Some((u.table.label(), u.table.keys())),
        ..ConfigError::new(&schema::display(&u.path), &message)
    }
}

/// An environment variable's value, read as figment reads it: `true`, `5000`,
/// `[a, b]`, `{k = v}`, else the text itself.
fn env_value(raw: &str) -> toml::Value {
    let parsed = match raw.parse::<figment::value::Value>() {
        Ok(v) => v,
        Err(never) => match never {},
    };
    toml::Value::deserialize(&parsed).unwrap_or_else(|_| toml::Value::String(raw.to_owned()))
}

/// Keys whose values are never echoed: secrets, and URLs that may carry a password.
fn secret(path: &[Seg]) -> bool {
    let key = |i: usize| match path.get(i) {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    key(0) == "auth"
        || matches!(
            (key(0), key(1)),
            ("store", "url") | ("cluster", "redis_url")
        )
}

/// A value as TOML, shortened; secrets hidden.
fn render(path: &[Seg], value: &toml::Value) -> String {
    if secret(path) {
        return "(hidden)".to_owned();
    }
    let text = value.to_string();
    if text.chars().count() > 80 {
        let short: String = text.chars().take(77).collect();
        format!("{short}...")
    } else {
        text
    }
}

fn get<'a>(value: &'a toml::Value, path: &[Seg]) -> Option<&'a toml::Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.as_table()?.get(k),
        Seg::Index(i) => v.as_array()?.get(*i),
    })
}

fn get_in<'a>(table: &'a toml::Table, path: &[Seg]) -> Option<&'a toml::Value> {
    let (Seg::Key(first), rest) = path.split_first()? else {
        return None;
    };
    get(table.get(first)?, rest)
}

/// Removes the value at `path` (which ends with a key).
fn remove(table: &mut toml::Table, path: &[Seg]) -> bool {
    let Some((Seg::Key(last), parent)) = path.split_last() else {
        return false;
    };
    let holder = match parent.split_first() {
        None => Some(table),
        Some((Seg::Key(first), rest)) => table
            .get_mut(first)
            .and_then(|v| get_mut(v, rest))
            .and_then(toml::Value::as_table_mut),
        Some((Seg::Index(_), _)) => None,
    };
    holder.is_some_and(|t| t.remove(last).is_some())
}

fn get_mut<'a>(value: &'a mut toml::Value, path: &[Seg]) -> Option<&'a mut toml::Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.as_table_mut()?.get_mut(k),
        Seg::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

fn insert_at(table: &mut toml::Table, keys: &[String], value: toml::Value) {
    match keys {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                insert_at(inner, rest, value);
            }
        }
    }
}

/// `over` on top of `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Where each value came from.
#[derive(Default)]
struct Sources {
    file: Option<FileSource>,
    /// The key path each `WARMLINE_` variable set.
    env: Vec<(Vec<Seg>, String)>,
    flags: Vec<(Vec<Seg>, &'static str)>,
}

impl Sources {
    /// The last word on `path`: a flag, else an environment variable, else the file.
    fn origin(&self, path: &[Seg]) -> Option<Origin> {
        if let Some((_, flag)) = self.flags.iter().find(|(p, _)| path.starts_with(p)) {
            return Some(Origin::Flag(flag));
        }
        // A variable that set this value, or set something inside it.
        if let Some((_, var)) = self
            .env
            .iter()
            .rev()
            .find(|(p, _)| path.starts_with(p) || p.starts_with(path))
        {
            return Some(Origin::Env(var.clone()));
        }
        let file = self.file.as_ref()?;
        Some(file.origin(file.value_span(path)))
    }
}

struct FileSource {
    path: PathBuf,
    text: String,
    table: toml::Table,
    /// The same document with the byte span of every key and value.
    doc: Option<toml_edit::ImDocument<String>>,
}

impl FileSource {
    fn read(path: &Path) -> Result<FileSource, Vec<ConfigError>> {
        let at = |span: Option<Range<usize>>, text: &str| Origin::File {
            path: path.to_owned(),
            at: span.map(|s| line_column(text, s.start)),
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = match e.kind() {
                std::io::ErrorKind::NotFound => "the config file does not exist".to_owned(),
                _ => format!("cannot read the config file: {e}"),
            };
            vec![ConfigError {
                origin: Some(at(None, "")),
                ..ConfigError::new("", &message)
            }]
        })?;
        let table = toml::from_str::<toml::Table>(&text).map_err(|e| {
            vec![ConfigError {
                origin: Some(at(e.span(), &text)),
                ..ConfigError::new("", &format!("not valid TOML: {}", one_line(e.message())))
            }]
        })?;
        let doc = toml_edit::ImDocument::parse(text.clone()).ok();
        Ok(FileSource {
            path: path.to_owned(),
            text,
            table,
            doc,
        })
    }

    fn origin(&self, span: Option<Range<usize>>) -> Origin {
        Origin::File {
            path: self.path.clone(),
            at: span.map(|s| line_column(&self.text, s.start)),
        }
    }

    /// The span of the last key of `path`, else of what holds it.
    fn key_span(&self, path: &[Seg]) -> Option<Range<usize>> {
        let found = self.find(path)?;
        found.key.or(found.value)
    }

    /// The span of the value at `path`; when the file does not set it, of the nearest
    /// table that holds it (a default that conflicts with a set value).
    fn value_span(&self, path: &[Seg]) -> Option<Range<usize>> {
        self.find(path)?.value
    }

    fn find(&self, path: &[Seg]) -> Option<Found> {
        let doc = self.doc.as_ref()?;
        let mut node = Node::Table(doc.as_table());
        let mut found = Found {
            key: None,
            value: None,
        };
        for seg in path {
            let next = match seg {
                Seg::Key(k) => node.key(k).map(|(span, next)| {
                    found.key = span;
                    next
                }),
                Seg::Index(i) => node.index(*i),
            };
            let Some(next) = next else {
                found.key = None;
                return Some(found);
            };
            node = next;
            found.value = node.span().or(found.value);
        }
        Some(found)
    }
}

struct Found {
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

/// A place in a `toml_edit` document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn key(self, key: &str) -> Option<(Option<Range<usize>>, Node<'a>)> {
        let table: &dyn toml_edit::TableLike = match self {
            Node::Item(i) => i.as_table_like()?,
            Node::Table(t) => t,
            Node::Value(v) => v.as_inline_table()?,
        };
        let (key, item) = table.get_key_value(key)?;
        Some((key.span(), Node::Item(item)))
    }

    fn index(self, i: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(tables)) => tables.get(i).map(Node::Table),
            Node::Item(toml_edit::Item::Value(v)) | Node::Value(v) => {
                v.as_array()?.get(i).map(Node::Value)
            }
            _ => None,
        }
    }
}

/// `invalid string\nexpected `"`` -> `invalid string; expected `"``.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ")
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `toml` as the file `w.toml` with `env`; the problems as printed, with
    /// the temporary directory cut from the file's path.
    fn check(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
        check_errors(toml, env)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn check_errors(toml: &str, env: &[(&str, &str)]) -> Vec<ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, toml).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let mut errors = load(Some(&path), env, &Overrides::default()).unwrap_err();
        for e in &mut errors {
            if let Some(Origin::File { path, .. }) = &mut e.origin {
                *path = PathBuf::from("w.toml");
            }
        }
        errors
    }

    const QUEUES: &str = "[[queues]]\nname = \"support\"\nskills = { support = 3 }\n\
                          [[queues]]\nname = \"billing\"\n";

    #[test]
    fn a_file_with_several_mistakes_yields_all_of_them_in_place() {
        let toml = r#"[routing]
offer_timout_ms = 5000
wrap_up_ms = "soon"

[[queues]]
name = "support"
skills = { support = 3 }
language = "english"

[[queues]]
name = "billing"
skills = { billing = 1 }
max_wait_ms = 60000
overflow_to = "suport"

[[agents]]
id = "bob"
skills = { billng = 5 }
"#;
        assert_eq!(
            check(toml, &[]),
            [
                "w.toml:2:1: routing.offer_timout_ms = 5000: unknown key; did you mean `offer_timeout_ms`?",
                "w.toml:3:14: routing.wrap_up_ms = \"soon\": invalid type: string \"soon\", expected u64",
                "w.toml:8:12: queues[0].language = \"english\": is not a language code: expected ISO 639-1 \
                 (two lowercase letters, e.g. `en`), optionally with a region (`en-GB`); did you mean `en` (English)?",
                "w.toml:14:15: queues[1].overflow_to = \"suport\": names no queue (did you mean `support`?); \
                 queues are: support, billing",
                "w.toml:18:10: warning: agents[0].skills = { billng = 5 }: match no queue's requirements (even relaxed by its steps), so this agent \
                 would never be offered a conversation; queues need: support (support 3+); billing (billing 1+)",
            ]
        );
    }

    #[test]
    fn an_unknown_key_names_its_table_and_the_nearest_key() {
        let errors = check_errors(
            &format!("{QUEUES}[[queues]]\nname = \"x\"\nprioritty = 2\n"),
            &[],
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.key, "queues[2].prioritty");
        assert_eq!(e.value.as_deref(), Some("2"));
        assert!(e.message.ends_with("did you mean `priority`?"), "{e}");
        let (label, keys) = e.valid_keys.unwrap();
        assert_eq!(label, "[[queues]]");
        assert!(keys.contains(&"overflow_to"));
        assert_eq!(
            e.origin,
            Some(Origin::File {
                path: "w.toml".into(),
                at: Some((8, 1))
            })
        );
        // Nothing near: no guess.
        let errors = check(&format!("[server]\ncolour = 1\n{QUEUES}"), &[]);
        assert_eq!(errors, ["w.toml:2:1: server.colour = 1: unknown key"]);
        // An unknown table.
        let errors = check(&format!("[routng]\nwrap_up_ms = 1\n{QUEUES}"), &[]);
        assert_eq!(
            errors,
            ["w.toml:1:2: routng = { wrap_up_ms = 1 }: unknown key; did you mean `routing`?"]
        );
    }

    #[test]
    fn wrong_types_are_all_reported_with_their_paths() {
        let toml = format!(
            "[limits]\noutbound_queue = -1\n[media]\nvad_threshold_dbov = \"loud\"\n{QUEUES}\
             [[agents]]\nid = \"a\"\nskills = {{ support = \"expert\" }}\ncapacity = {{ chat = 2.5 }}\n\
             [[queues.steps]]\nafter_ms = \"1m\"\n"
        );
        let errors = check(&toml, &[]);
        assert_eq!(
            errors,
            [
                "w.toml:2:18: limits.outbound_queue = -1: invalid value: integer `-1`, expected usize",
                "w.toml:4:22: media.vad_threshold_dbov = \"loud\": invalid type: string \"loud\", expected f32",
                "w.toml:12:22: agents[0].skills.support = \"expert\": invalid type: string \"expert\", expected u8",
                "w.toml:13:21: agents[0].capacity.chat = 2.5: invalid type: floating point `2.5`, expected u32",
                "w.toml:15:12: queues[1].steps[0].after_ms = \"1m\": invalid type: string \"1m\", expected u64",
                // `after_ms` is required: without it the step, and so the list of
                // steps, cannot be read, and comparing queues would mislead.
                "the checks of queues and agents (names, skills, overflow targets) run once the \
                 problems above are fixed",
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn a_missing_required_key_is_reported_and_the_cross_checks_wait() {
        let mut errors = check(
            "[log]\nformat = \"xml\"\n[[queues]]\nskills = { a = 1 }\n[[agents]]\nid = 5\n",
            &[],
        );
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert_eq!(
            errors.remove(0),
            "w.toml:2:10: log.format = \"xml\": must be `text` or `json`"
        );
        assert_eq!(
            errors[0],
            "w.toml:3:1: queues[0].name: is required and missing"
        );
        assert_eq!(
            errors[1],
            "w.toml:6:6: agents[0].id = 5: invalid type: integer `5`, expected a string"
        );
        assert!(errors[2].starts_with("the checks of queues and agents"));
    }

    #[test]
    fn the_environment_is_named_when_it_set_the_key() {
        let errors = check(
            QUEUES,
            &[
                ("WARMLINE_ROUTING__OFFER_TIMOUT_MS", "100"),
                ("WARMLINE_LIMITS__CORE_QUEUE", "many"),
                ("WARMLINE_ROUTING__SERVICE_LEVEL_PERCENT", "150"),
                ("WARMLINE_AGENTS__ID", "x"),
                ("OTHER_ROUTING__X", "1"),
            ],
        );
        assert_eq!(
            errors,
            [
                "environment variable WARMLINE_ROUTING__OFFER_TIMOUT_MS: routing.offer_timout_ms = 100: \
                 unknown key (set by the environment); did you mean `offer_timeout_ms` \
                 (WARMLINE_ROUTING__OFFER_TIMEOUT_MS)?",
                "environment variable WARMLINE_AGENTS__ID: agents = { id = \"x\" }: \
                 invalid type: map, expected a sequence",
                "environment variable WARMLINE_LIMITS__CORE_QUEUE: limits.core_queue = \"many\": \
                 invalid type: string \"many\", expected usize",
                "environment variable WARMLINE_ROUTING__SERVICE_LEVEL_PERCENT: \
                 routing.service_level_percent = 150: must be 1-100",
            ]
        );
    }

    #[test]
    fn the_environment_overrides_the_file_and_a_flag_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, format!("[routing]\nwrap_up_ms = 1\n{QUEUES}")).unwrap();
        let env = [("WARMLINE_ROUTING__WRAP_UP_MS".to_owned(), "7".to_owned())];
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: None,
        };
        let (config, _) = load(Some(&path), env.clone(), &overrides).unwrap();
        assert_eq!(config.routing.wrap_up_ms, 7);
        assert_eq!(config.server.listen, "127.0.0.1:0");
        let overrides = Overrides {
            listen: Some("nowhere".into()),
            data_dir: None,
        };
        let errors = load(Some(&path), env, &overrides).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "command-line flag --listen: server.listen = \"nowhere\": must be an IP address and port, \
             such as 127.0.0.1:8080"
        );
    }

    #[test]
    fn rule_errors_point_at_the_value_in_lists_and_maps() {
        let toml = format!(
            "{QUEUES}[[queues.steps]]\nafter_ms = 10\nmin_levels = {{ support = 2 }}\nwiden_to = [\"nowhere\"]\n\
             [[agents]]\nid = \"a\"\nlanguages = [\"en-GB\", \"fr_FR\"]\nskills = {{ support = 12 }}\n"
        );
        let errors = check(&toml, &[]);
        assert_eq!(
            errors,
            [
                "w.toml:8:26: queues[1].steps[0].min_levels.support = 2: is not a skill this queue requires",
                "w.toml:9:12: queues[1].steps[0].widen_to = [\"nowhere\"]: `nowhere` names no queue; \
                 queues are: support, billing",
                "w.toml:12:23: agents[0].languages[1] = \"fr_FR\": is not a language code: expected ISO \
                 639-1 (two lowercase letters, e.g. `en`), optionally with a region (`en-GB`); \
                 did you mean `fr-FR`?",
                "w.toml:13:22: agents[0].skills.support = 12: skill levels are 1 to 10",
            ],
            "{errors:#?}"
        );
        for e in check_errors(&toml, &[]) {
            assert!(
                !e.key.split('.').any(|part| part.parse::<usize>().is_ok()),
                "one path style: {e}"
            );
        }
    }

    #[test]
    fn an_agent_qualified_only_after_a_step_or_for_a_plain_queue_is_fine() {
        let relaxed = "[[queues]]\nname = \"support\"\nskills = { support = 5 }\n\
                       [[queues.steps]]\nafter_ms = 1000\nmin_levels = { support = 2 }\n\
                       [[agents]]\nid = \"junior\"\nskills = { support = 2 }\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, relaxed).unwrap();
        let (_, warnings) = load(Some(&path), [], &Overrides::default()).unwrap();
        assert_eq!(warnings, []);
        // Queues only: the demo agent is not held to the rule.
        std::fs::write(&path, "[[queues]]\nname = \"s\"\nskills = { s = 1 }\n").unwrap();
        let (config, warnings) = load(Some(&path), [], &Overrides::default()).unwrap();
        assert_eq!(config.agents[0].id, "demo");
        assert_eq!(warnings, []);
    }

    #[test]
    fn an_agent_no_queue_would_use_is_a_warning_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(
            &path,
            "[[queues]]\nname = \"support\"\nskills = { support = 3 }\n\
             [[agents]]\nid = \"bo\"\nskills = { sales = 9 }\n",
        )
        .unwrap();
        let (config, warnings) = load(Some(&path), [], &Overrides::default()).unwrap();
        assert_eq!(config.agents[0].id, "bo");
        let shown: Vec<String> = warnings
            .iter()
            .map(|w| w.to_string().replace(&*dir.path().to_string_lossy(), ""))
            .collect();
        assert_eq!(
            shown,
            [
                "/w.toml:6:10: warning: agents[0].skills = { sales = 9 }: match no queue's requirements \
              (even relaxed by its steps), so this agent would never be offered a conversation; \
              queues need: support (support 3+)"
            ]
        );
    }

    #[test]
    fn secrets_are_not_echoed() {
        let errors = check(
            &format!("[auth]\nadmin_token = \"short\"\nadmin_tokn = \"secret\"\n{QUEUES}"),
            &[],
        );
        assert_eq!(
            errors,
            [
                "w.toml:2:15: auth.admin_token = (hidden): must be at least 32 characters",
                "w.toml:3:1: auth.admin_tokn = (hidden): unknown key; did you mean `admin_token`?",
            ]
        );
    }

    #[test]
    fn bad_toml_and_a_missing_file_say_where() {
        let errors = check("[server]\nlisten = \n", &[]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("w.toml:2:10: not valid TOML"),
            "{errors:?}"
        );
        let errors = load(
            Some(Path::new("/nonexistent/w.toml")),
            [],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "/nonexistent/w.toml: the config file does not exist"
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("a\nbé = 1", 9), (2, 7));
        assert_eq!(line_column("abc", 0), (1, 1));
    }
}

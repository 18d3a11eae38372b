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
use super::{Config, ConfigError, Origin, Overrides, suggest};

const PREFIX: &str = "WARMLINE_";

/// Bounds the rounds of "deserialize, drop the value at fault, again".
const MAX_TYPE_ERRORS: usize = 100;

/// Reads and checks a config; `env` is the process environment (tests pass their own).
pub(super) fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, Vec<ConfigError>> {
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
        return Err(errors);
    };
    config.fill_demo();
    if complete {
        let effective = toml::Value::try_from(&config).ok();
        for mut e in config.validate() {
            let path = schema::parse(&e.key);
            e.origin = sources.origin(&path);
            e.value = effective
                .as_ref()
                .and_then(|v| get(v, &path))
                .map(|v| render(&path, v));
            errors.push(e);
        }
    } else {
        errors.push(ConfigError::new(
            "",
            "the checks across queues and agents (names, skills, overflow targets) run once the problems above are fixed",
        ));
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Deserializes `tree`; on an error, records it, drops the value at fault (its
/// default then applies) and tries again, so every wrong type is reported. The flag
/// is false when a value could not be dropped cleanly (an entry of a list, a missing
/// required key): the checks across entries would then be about the wrong ones.
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
            path.push(Seg::Key(field.to_owned()));
            if !dropped.contains(&path) {
                errors.push(ConfigError {
                    origin: sources.origin(&path),
                    ..ConfigError::new(&schema::display(&path), "is required and missing")
                });
            }
            return (None, false);
        }
        let value = get_in(tree, &path).map(|v| render(&path, v));
        errors.push(ConfigError {
            origin: sources.origin(&path),
            value,
            ..ConfigError::new(&schema::display(&path), &message)
        });
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
        if let Some((_, var)) = self.env.iter().rev().find(|(p, _)| path.starts_with(p)) {
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
                ..ConfigError::new("", &format!("not valid TOML: {}", e.message().trim()))
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

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

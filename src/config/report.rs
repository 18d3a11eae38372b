//! The text `warmline check-config` and `warmline serve` print for a bad config: one
//! line per problem, in file order, then each table's valid keys once for the
//! unknown keys found in it.

use super::{ConfigError, Origin};

/// Keys are listed in lines of about this many characters.
const WIDTH: usize = 88;

/// File problems by position, then the environment's, the flags', the rest. Sorts
/// are stable: problems of one place keep the order they were found in.
pub(super) fn place(e: &ConfigError) -> (u8, (usize, usize)) {
    match &e.origin {
        Some(Origin::File { at: Some(at), .. }) => (0, *at),
        Some(Origin::File { at: None, .. }) => (1, (0, 0)),
        Some(Origin::Env(_)) => (2, (0, 0)),
        Some(Origin::Flag(_)) => (3, (0, 0)),
        None => (4, (0, 0)),
    }
}

pub fn report(errors: &[ConfigError]) -> String {
    let mut sorted: Vec<&ConfigError> = errors.iter().collect();
    sorted.sort_by_key(|e| place(e));
    let count = errors.len();
    let mut out = format!(
        "the configuration has {count} problem{}:\n",
        if count == 1 { "" } else { "s" }
    );
    for e in &sorted {
        out.push_str(&format!("{e}\n"));
    }
    let mut tables: Vec<(&str, &[&str])> = Vec::new();
    for (label, keys) in sorted.iter().filter_map(|e| e.valid_keys) {
        if !tables.iter().any(|(l, _)| *l == label) {
            tables.push((label, keys));
        }
    }
    for (label, keys) in tables {
        out.push_str(&format!("\nvalid keys of {label}:\n"));
        let mut line = String::new();
        for (i, key) in keys.iter().enumerate() {
            let item = if i + 1 < keys.len() {
                format!("{key}, ")
            } else {
                (*key).to_owned()
            };
            if !line.is_empty() && line.len() + item.len() > WIDTH {
                out.push_str(&format!("  {}\n", line.trim_end()));
                line.clear();
            }
            line.push_str(&item);
        }
        out.push_str(&format!("  {line}\n"));
    }
    out
}

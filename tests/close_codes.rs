//! One close-code table: what each code means for reconnecting is
//! `CloseCode::reconnect` (src/protocol/codes.rs). The pages' JavaScript carries a copy
//! (`RECONNECT` in web/common.js and web/widget.js) and docs/protocol.md publishes it;
//! these tests fail when any of them says something else.

use std::collections::BTreeMap;
use std::path::Path;

use warmline::protocol::{CloseCode, Reconnect};

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// The table as Rust has it: code -> the JavaScript name of what it asks.
fn rust_table() -> BTreeMap<u16, &'static str> {
    CloseCode::ALL
        .iter()
        .map(|c| (c.code(), c.reconnect().as_str()))
        .collect()
}

/// The `const RECONNECT = { 1000: 'no', ... };` object literal of a script.
fn js_table(path: &str) -> BTreeMap<u16, String> {
    let source = read(path);
    let start = source
        .find("const RECONNECT = {")
        .unwrap_or_else(|| panic!("{path} has no `const RECONNECT = {{`"));
    let body = &source[start + "const RECONNECT = {".len()..];
    let body = &body[..body
        .find("};")
        .unwrap_or_else(|| panic!("{path}: RECONNECT does not end with `}};`"))];
    let mut table = BTreeMap::new();
    for entry in body.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (code, name) = entry
            .split_once(':')
            .unwrap_or_else(|| panic!("{path}: `{entry}` is not `code: 'name'`"));
        let code: u16 = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{path}: `{code}` is not a close code"));
        let name = name.trim().trim_matches('\'').to_owned();
        assert!(
            table.insert(code, name).is_none(),
            "{path}: {code} is in RECONNECT twice"
        );
    }
    table
}

#[test]
fn the_pages_reconnect_as_the_close_code_table_says() {
    let rust: BTreeMap<u16, String> = rust_table()
        .into_iter()
        .map(|(code, name)| (code, name.to_owned()))
        .collect();
    for path in ["web/common.js", "web/widget.js"] {
        assert_eq!(
            js_table(path),
            rust,
            "{path}'s RECONNECT differs from CloseCode::reconnect"
        );
    }
}

/// What a "reconnect?" cell of docs/protocol.md says, in the table's terms.
fn documented(cell: &str) -> Reconnect {
    if !cell.starts_with("**yes**") {
        // "no need", "only after fixing the client", "after backing off ...", "**no**"
        Reconnect::No
    } else if cell.contains("without resending") {
        Reconnect::WithoutResending
    } else if cell.contains("fresh token") {
        Reconnect::WithFreshToken
    } else {
        Reconnect::Yes
    }
}

#[test]
fn the_protocol_page_publishes_the_close_code_table() {
    let page = read("docs/protocol.md");
    let section = page
        .split("## Close codes")
        .nth(1)
        .expect("docs/protocol.md has a `## Close codes` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut seen = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        let Ok(code) = cells[0].parse::<u16>() else {
            continue; // the header
        };
        let close = CloseCode::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .unwrap_or_else(|| panic!("docs/protocol.md lists {code}, which CloseCode has not"));
        let cell = cells.last().expect("a reconnect cell");
        assert_eq!(
            documented(cell),
            close.reconnect(),
            "docs/protocol.md says `{cell}` for {code}; CloseCode::reconnect says {:?}",
            close.reconnect()
        );
        seen.insert(code, ());
    }
    for close in CloseCode::ALL {
        assert!(
            seen.contains_key(&close.code()),
            "docs/protocol.md's close-code table lacks {}",
            close.code()
        );
    }
}

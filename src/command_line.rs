//! How to write a `warmline` command so that it works when a person copies it from
//! the start-up banner: the way this process was started (`cargo run --release --`
//! in a checkout, the path it was run by, or `warmline` on the PATH), followed by the
//! `--config` and `--data-dir` it was given, so a token minted by the command is
//! signed with the same stored secret the running gateway checks.

use std::path::Path;

/// The prefix that runs this binary the way it was run, and the flags that point it at
/// the same configuration and store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    program: String,
    flags: String,
}

impl Invocation {
    /// `cargo_run`: the process was started by `cargo run` (cargo sets `CARGO` and
    /// `CARGO_PKG_NAME` for the program it runs). `argv0`: how it was named otherwise.
    pub fn new(
        cargo_run: bool,
        argv0: &str,
        config: Option<&Path>,
        data_dir: Option<&Path>,
    ) -> Invocation {
        let program = if cargo_run {
            let mut cargo = String::from("cargo run");
            if !cfg!(debug_assertions) {
                cargo.push_str(" --release");
            }
            let features: Vec<&str> = [
                (cfg!(feature = "postgres"), "postgres"),
                (cfg!(feature = "redis"), "redis"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            if !features.is_empty() {
                cargo.push_str(" --features ");
                cargo.push_str(&features.join(","));
            }
            cargo.push_str(" --");
            cargo
        } else if argv0.contains('/') {
            quote(argv0)
        } else {
            "warmline".to_owned()
        };
        let mut flags = String::new();
        if let Some(config) = config {
            flags.push_str(" --config ");
            flags.push_str(&quote(&config.display().to_string()));
        }
        if let Some(dir) = data_dir {
            flags.push_str(" --data-dir ");
            flags.push_str(&quote(&dir.display().to_string()));
        }
        Invocation { program, flags }
    }

    /// This process's own invocation, read from its environment and arguments.
    pub fn current(config: Option<&Path>, data_dir: Option<&Path>) -> Invocation {
        let cargo_run = std::env::var_os("CARGO").is_some()
            && std::env::var("CARGO_PKG_NAME").is_ok_and(|name| name == "warmline");
        let argv0 = std::env::args().next().unwrap_or_default();
        Invocation::new(cargo_run, &argv0, config, data_dir)
    }

    /// A subcommand that reads the config and the store (`token agent demo`).
    pub fn with_store(&self, args: &str) -> String {
        format!("{} {args}{}", self.program, self.flags)
    }
}

/// Single quotes around a word a shell would split or expand.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_cargo_run_the_command_is_cargo_run_with_the_same_flags() {
        let inv = Invocation::new(
            true,
            "target/release/warmline",
            Some(Path::new("my config.toml")),
            Some(Path::new("./data")),
        );
        let cargo = if cfg!(debug_assertions) {
            "cargo run"
        } else {
            "cargo run --release"
        };
        let features = if cfg!(feature = "postgres") && cfg!(feature = "redis") {
            " --features postgres,redis"
        } else if cfg!(feature = "postgres") {
            " --features postgres"
        } else if cfg!(feature = "redis") {
            " --features redis"
        } else {
            ""
        };
        assert_eq!(
            inv.with_store("token agent demo"),
            format!(
                "{cargo}{features} -- token agent demo --config 'my config.toml' --data-dir ./data"
            )
        );
    }

    #[test]
    fn otherwise_the_program_as_it_was_named() {
        let by_path = Invocation::new(false, "./target/release/warmline", None, None);
        assert_eq!(
            by_path.with_store("token agent demo"),
            "./target/release/warmline token agent demo"
        );
        let on_path = Invocation::new(false, "warmline", None, Some(Path::new("/var/lib/w")));
        assert_eq!(
            on_path.with_store("token media NAME"),
            "warmline token media NAME --data-dir /var/lib/w"
        );
    }

    #[test]
    fn quotes_what_a_shell_would_split() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("/srv/warmline-data"), "/srv/warmline-data");
        assert_eq!(quote(""), "''");
    }
}

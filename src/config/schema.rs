//! The shape of a config file: the keys of every table, taken from the serde
//! derives themselves (so they cannot drift from the types), and key paths written
//! one way everywhere: `queues[0].overflow_to`.

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::{
    AgentConfig, AuthConfig, CapacityConfig, ClusterConfig, CoachingRuleConfig, Config,
    CustomerConfig, HoursConfig, LimitsConfig, LogConfig, MediaConfig, QueueConfig,
    RateLimitsConfig, RoutingConfig, RuleConfig, ServerConfig, SignalsConfig, StepConfig,
    StoreConfig,
};

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// `queues[0].skills.billing`.
pub fn display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The inverse of [`display`] (for the keys `Config::validate` names).
pub fn parse(key: &str) -> Vec<Seg> {
    let mut path = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            path.push(Seg::Key(name.to_owned()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                path.push(Seg::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    path
}

/// The tables of a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Root,
    Server,
    Store,
    Cluster,
    Limits,
    RateLimits,
    Customer,
    Auth,
    Routing,
    Media,
    Signals,
    Coaching,
    Log,
    Queue,
    Rule,
    Hours,
    Step,
    Agent,
    Capacity,
}

/// What a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Table(Table),
    /// An array of tables.
    List(Table),
    /// A table whose keys are names the user chooses (skills).
    Map,
    Value,
}

impl Table {
    /// Every key the table may hold, in declaration order.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Table::Root => fields::<Config>(),
            Table::Server => fields::<ServerConfig>(),
            Table::Store => fields::<StoreConfig>(),
            Table::Cluster => fields::<ClusterConfig>(),
            Table::Limits => fields::<LimitsConfig>(),
            Table::RateLimits => fields::<RateLimitsConfig>(),
            Table::Customer => fields::<CustomerConfig>(),
            Table::Auth => fields::<AuthConfig>(),
            Table::Routing => fields::<RoutingConfig>(),
            Table::Media => fields::<MediaConfig>(),
            Table::Signals => fields::<SignalsConfig>(),
            Table::Coaching => fields::<CoachingRuleConfig>(),
            Table::Log => fields::<LogConfig>(),
            Table::Queue => fields::<QueueConfig>(),
            Table::Rule => fields::<RuleConfig>(),
            Table::Hours => fields::<HoursConfig>(),
            Table::Step => fields::<StepConfig>(),
            Table::Agent => fields::<AgentConfig>(),
            Table::Capacity => fields::<CapacityConfig>(),
        }
    }

    /// What `key` (one of [`Table::keys`]) holds.
    pub fn shape(self, key: &str) -> Shape {
        match (self, key) {
            (Table::Root, "server") => Shape::Table(Table::Server),
            (Table::Root, "store") => Shape::Table(Table::Store),
            (Table::Root, "cluster") => Shape::Table(Table::Cluster),
            (Table::Root, "limits") => Shape::Table(Table::Limits),
            (Table::Root, "rate_limits") => Shape::Table(Table::RateLimits),
            (Table::Root, "customer") => Shape::Table(Table::Customer),
            (Table::Root, "auth") => Shape::Table(Table::Auth),
            (Table::Root, "routing") => Shape::Table(Table::Routing),
            (Table::Root, "media") => Shape::Table(Table::Media),
            (Table::Root, "signals") => Shape::Table(Table::Signals),
            (Table::Root, "log") => Shape::Table(Table::Log),
            (Table::Root, "queues") => Shape::List(Table::Queue),
            (Table::Root, "agents") => Shape::List(Table::Agent),
            (Table::Signals, "coaching") => Shape::List(Table::Coaching),
            (Table::Queue, "hours") => Shape::Table(Table::Hours),
            (Table::Queue, "steps") => Shape::List(Table::Step),
            (Table::Queue, "rules") => Shape::List(Table::Rule),
            (Table::Agent, "capacity") => Shape::Table(Table::Capacity),
            (Table::Queue | Table::Rule | Table::Agent, "skills") | (Table::Step, "min_levels") => {
                Shape::Map
            }
            _ => Shape::Value,
        }
    }

    /// How the table is written in a file.
    pub fn label(self) -> &'static str {
        match self {
            Table::Root => "the top level",
            Table::Server => "[server]",
            Table::Store => "[store]",
            Table::Cluster => "[cluster]",
            Table::Limits => "[limits]",
            Table::RateLimits => "[rate_limits]",
            Table::Customer => "[customer]",
            Table::Auth => "[auth]",
            Table::Routing => "[routing]",
            Table::Media => "[media]",
            Table::Signals => "[signals]",
            Table::Coaching => "[[signals.coaching]]",
            Table::Log => "[log]",
            Table::Queue => "[[queues]]",
            Table::Rule => "a queue's rules",
            Table::Hours => "a queue's hours",
            Table::Step => "a queue's steps",
            Table::Agent => "[[agents]]",
            Table::Capacity => "an agent's capacity",
        }
    }
}

/// A key no table of its kind has.
#[derive(Debug)]
pub struct Unknown {
    pub path: Vec<Seg>,
    pub table: Table,
    pub value: toml::Value,
}

/// Removes (and returns) every key `table` (of kind `kind`, at `path`) and the tables
/// below it do not know, so what is left can be deserialized.
pub fn strip_unknown(
    table: &mut toml::Table,
    kind: Table,
    path: &mut Vec<Seg>,
    out: &mut Vec<Unknown>,
) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        path.push(Seg::Key(key.clone()));
        if !kind.keys().contains(&key.as_str()) {
            if let Some(value) = table.remove(&key) {
                out.push(Unknown {
                    path: path.clone(),
                    table: kind,
                    value,
                });
            }
        } else {
            match (kind.shape(&key), table.get_mut(&key)) {
                (Shape::Table(inner_kind), Some(toml::Value::Table(inner))) => {
                    strip_unknown(inner, inner_kind, path, out);
                }
                (Shape::List(inner_kind), Some(toml::Value::Array(items))) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        if let toml::Value::Table(inner) = item {
                            path.push(Seg::Index(i));
                            strip_unknown(inner, inner_kind, path, out);
                            path.pop();
                        }
                    }
                }
                // Wrong types are for deserialization to find.
                _ => {}
            }
        }
        path.pop();
    }
}

/// The field names serde's derive gives a struct, read by asking it to deserialize
/// from a deserializer that only records them.
fn fields<T: Deserialize<'static>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The error is the point: the recorder refuses after noting the fields.
    let _ = T::deserialize(FieldRecorder(&mut fields));
    fields
}

struct FieldRecorder<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldRecorder<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs are recorded"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: [Table; 19] = [
        Table::Root,
        Table::Server,
        Table::Store,
        Table::Cluster,
        Table::Limits,
        Table::RateLimits,
        Table::Customer,
        Table::Auth,
        Table::Routing,
        Table::Media,
        Table::Signals,
        Table::Coaching,
        Table::Log,
        Table::Queue,
        Table::Rule,
        Table::Hours,
        Table::Step,
        Table::Agent,
        Table::Capacity,
    ];

    #[test]
    fn keys_come_from_the_types() {
        assert!(Table::Routing.keys().contains(&"offer_timeout_ms"));
        assert!(Table::Queue.keys().contains(&"overflow_to"));
        assert!(Table::Root.keys().contains(&"queues"));
        for table in TABLES {
            assert!(!table.keys().is_empty(), "{table:?}");
        }
    }

    /// A key whose value is a table must be walked into: each key the schema calls a
    /// plain value must refuse a table (so a forgotten nested struct, which would
    /// accept `{}`, fails here).
    #[test]
    fn every_nested_table_is_in_the_schema() {
        // A minimal valid instance of each table, at its place in a config.
        let minimal = |table: Table| -> &'static str {
            match table {
                Table::Root => "",
                Table::Queue => "[[queues]]\nname = \"q\"\n",
                Table::Agent => "[[queues]]\nname = \"q\"\n[[agents]]\nid = \"a\"\n",
                Table::Rule => {
                    "[[queues]]\nname = \"q\"\n[[queues.rules]]\nattribute = \"a\"\nequals = \"b\"\n"
                }
                Table::Step => "[[queues]]\nname = \"q\"\n[[queues.steps]]\nafter_ms = 1\n",
                Table::Hours => "[[queues]]\nname = \"q\"\n[queues.hours]\ntime_zone = \"UTC\"\n",
                Table::Capacity => {
                    "[[queues]]\nname = \"q\"\n[[agents]]\nid = \"a\"\n[agents.capacity]\n"
                }
                Table::Coaching => {
                    "[[signals.coaching]]\ncode = \"c\"\nhint = \"h\"\nphrases = [\"p\"]\n"
                }
                Table::Server => "[server]\n",
                Table::Store => "[store]\n",
                Table::Cluster => "[cluster]\n",
                Table::Limits => "[limits]\n",
                Table::RateLimits => "[rate_limits]\n",
                Table::Customer => "[customer]\n",
                Table::Auth => "[auth]\n",
                Table::Routing => "[routing]\n",
                Table::Media => "[media]\n",
                Table::Signals => "[signals]\n",
                Table::Log => "[log]\n",
            }
        };
        for table in TABLES {
            let prefix = minimal(table);
            toml::from_str::<Config>(prefix).unwrap_or_else(|e| panic!("{table:?}: {e}"));
            for key in table.keys() {
                if table.shape(key) != Shape::Value {
                    continue;
                }
                let doc = format!("{prefix}{key} = {{}}\n");
                assert!(
                    toml::from_str::<Config>(&doc).is_err(),
                    "{table:?}.{key} takes a table: give it a Shape in schema.rs"
                );
            }
        }
    }

    #[test]
    fn paths_read_back() {
        for key in [
            "queues[0].overflow_to",
            "server.listen",
            "agents[2].languages[1]",
            "queues[1].steps[0].min_levels.x",
        ] {
            assert_eq!(display(&parse(key)), key);
        }
        assert_eq!(
            parse("queues[1].name"),
            vec![
                Seg::Key("queues".into()),
                Seg::Index(1),
                Seg::Key("name".into())
            ]
        );
    }
}

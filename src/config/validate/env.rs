//! Environment overrides: `CACHET__SECTION__KEY=value` pairs applied onto the file's table
//! before it is read, each value converted to the TOML type its key expects (see
//! `schema::ENV_KEYS`). Routes and warm entries come from the file only.

use toml::{Table, Value};

use super::check::Check;
use crate::config::schema::{ENV_KEYS, EnvKind};

/// Environment variables with this prefix (any case) are overrides; all others are ignored.
const ENV_PREFIX: &str = "cachet__";

/// Applies `CACHET__SECTION__KEY=value` overrides onto the file's table. Returns the dotted
/// path of each applied override with the variable that set it, to name it in errors.
pub(super) fn apply_env(
    root: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    check: &mut Check,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String, String)> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            let dotted = lower.strip_prefix(ENV_PREFIX)?.replace("__", ".");
            Some((dotted, name, value))
        })
        .collect();
    // Deterministic whatever order the environment comes in.
    vars.sort();
    let mut applied = Vec::new();
    for (dotted, name, raw) in vars {
        let section = dotted.split('.').next().unwrap_or_default();
        if section == "routes" || section == "warm" {
            check.error(name, format!("{section} come from the file only"));
            continue;
        }
        let Some(&(_, kind)) = ENV_KEYS.iter().find(|(key, _)| *key == dotted) else {
            check.error(name, "unknown key");
            continue;
        };
        match env_value(kind, &raw).and_then(|value| set_dotted(root, &dotted, value)) {
            Ok(()) => applied.push((dotted, name)),
            Err(message) => check.error(name, message),
        }
    }
    // `url` and `cluster` name the same thing, so overriding one replaces the other.
    let set = |key: &str| applied.iter().any(|(path, _)| path == key);
    let replaced = match (set("cache.redis.url"), set("cache.redis.cluster")) {
        (true, false) => Some("cluster"),
        (false, true) => Some("url"),
        _ => None,
    };
    if let Some(key) = replaced {
        let redis = root
            .get_mut("cache")
            .and_then(Value::as_table_mut)
            .and_then(|cache| cache.get_mut("redis"))
            .and_then(Value::as_table_mut);
        if let Some(redis) = redis {
            redis.remove(key);
        }
    }
    applied
}

/// Converts an override's string to the TOML type its key expects.
fn env_value(kind: EnvKind, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    Ok(match kind {
        EnvKind::Str => Value::String(raw.to_owned()),
        EnvKind::Integer => Value::Integer(
            raw.parse()
                .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        ),
        EnvKind::Float => Value::Float(
            raw.parse()
                .map_err(|_| format!("expected a number, got {raw:?}"))?,
        ),
        EnvKind::Bool => Value::Boolean(
            raw.parse()
                .map_err(|_| format!("expected true or false, got {raw:?}"))?,
        ),
        EnvKind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
    })
}

/// Sets `a.b.c` in `root`, creating missing tables.
fn set_dotted(root: &mut Table, dotted: &str, value: Value) -> Result<(), String> {
    let mut table = root;
    let mut parts = dotted.split('.').peekable();
    let mut walked = String::new();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            table.insert(part.to_owned(), value);
            return Ok(());
        }
        walked.push_str(part);
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("cannot override: {walked} in the file is not a table"))?;
        walked.push('.');
    }
    Ok(())
}

//! Reading the file's table into `FileSchema` one section at a time: unknown keys are found
//! through `serde_ignored`, each wrongly typed key is reported with its path and dropped, and a
//! section of the wrong shape is reported once, so one bad key never hides the others.

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::check::Check;
use crate::config::schema::{FileSchema, SECTIONS};

/// Splits the file into sections, reporting unknown top-level keys.
pub(super) fn read_sections(mut root: Table, check: &mut Check) -> FileSchema {
    for key in root.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
        check.error(key.as_str(), "unknown top-level key");
    }
    let mut take = |name: &str| root.remove(name);
    FileSchema {
        server: section(take("server"), "server", check).unwrap_or_default(),
        admin: section(take("admin"), "admin", check).unwrap_or_default(),
        log: section(take("log"), "log", check).unwrap_or_default(),
        metrics: section(take("metrics"), "metrics", check).unwrap_or_default(),
        cache: section(take("cache"), "cache", check).unwrap_or_default(),
        routes: array_of(take("routes"), "routes", check),
        warm: array_of(take("warm"), "warm", check),
        warm_settings: section(take("warm_settings"), "warm_settings", check).unwrap_or_default(),
    }
}

/// An array of tables (`[[routes]]`); entries that are not tables are reported and kept as
/// `None` so that indexes still match the file.
fn array_of<T: DeserializeOwned + Default>(
    value: Option<Value>,
    path: &str,
    check: &mut Check,
) -> Vec<Option<T>> {
    match value {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| section(Some(item), &format!("{path}[{i}]"), check))
            .collect(),
        Some(other) => {
            check.error(
                path,
                format!(
                    "expected an array of tables ([[{path}]]), found {}",
                    other.type_str()
                ),
            );
            // One entry, already reported: "at least one route" would only repeat the problem.
            vec![None]
        }
    }
}

/// Deserializes one table, reporting unknown keys and each wrongly typed key with its path.
/// Keys that are fine are kept, so the checks of the rest of the section still run. `None`
/// when the value is not a table at all (reported).
fn section<T: DeserializeOwned + Default>(
    value: Option<Value>,
    path: &str,
    check: &mut Check,
) -> Option<T> {
    let table = match value {
        None => return Some(T::default()),
        Some(Value::Table(table)) => table,
        Some(other) => {
            check.error(
                path,
                format!("expected a table, found {}", other.type_str()),
            );
            return None;
        }
    };
    let table = if T::deserialize(Value::Table(table.clone())).is_ok() {
        table
    } else {
        well_typed::<T>(table, path, &|t| t, check)
    };
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(Value::Table(table), |p| {
        unknown.push(ignored_path(path, &p));
    });
    for key in unknown {
        check.error(key, "unknown key");
    }
    match parsed {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            // Not expected after `well_typed`; reported rather than hidden if it happens.
            check.error(path, e.message());
            Some(T::default())
        }
    }
}

/// Keeps the keys of `table` that deserialize as part of `T` on their own, reporting the others
/// with their path. `wrap` places a one-key table where `table` sits inside the section, so
/// nested tables (`cache.redis`, `warm[0].headers`) are searched key by key too.
fn well_typed<T: DeserializeOwned>(
    table: Table,
    path: &str,
    wrap: &dyn Fn(Table) -> Table,
    check: &mut Check,
) -> Table {
    let mut kept = Table::new();
    for (key, value) in table {
        let key_path = format!("{path}.{key}");
        let alone = |v: Value| wrap(Table::from_iter([(key.clone(), v)]));
        let Err(error) = T::deserialize(Value::Table(alone(value.clone()))) else {
            kept.insert(key, value);
            continue;
        };
        let holds_table = T::deserialize(Value::Table(alone(Value::Table(Table::new())))).is_ok();
        match value {
            Value::Table(inner) if holds_table => {
                let inner_wrap = |t: Table| alone(Value::Table(t));
                let inner = well_typed::<T>(inner, &key_path, &inner_wrap, check);
                kept.insert(key, Value::Table(inner));
            }
            _ => check.error(key_path, error.message()),
        }
    }
    kept
}

/// `section.key.sub` (or `section.list[2]`) for a key `serde_ignored` skipped.
fn ignored_path(section: &str, path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => section.to_owned(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(section, parent)),
        Path::Map { parent, key } => format!("{}.{key}", ignored_path(section, parent)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(section, parent),
    }
}

//! Text and environment → [`Config`], collecting every problem with its field path.
//!
//! Steps: parse the TOML into a `toml::Table` (a syntax error is the only early exit), apply
//! `CACHET__` environment overrides onto it, deserialize each section on its own (unknown keys
//! through `serde_ignored`, wrongly typed keys found one by one), then run every semantic check.
//! Nothing stops at the first problem; a value that failed is replaced by a placeholder so the
//! remaining checks still run, and `Config` is returned only when no problem was found.
//!
//! This file owns the pipeline and the naming of overrides in errors; each step has its module:
//! `env` (overrides), `sections` (reading sections with `serde_ignored` and per-key type errors),
//! `settings` and `routes` (semantic checks per section), `assemble` (assembling `Config` and its
//! warnings), with `check` holding the problem collector they all share.

mod assemble;
mod check;
mod env;
mod routes;
mod sections;
mod settings;

use toml::Table;

use self::assemble::build;
use self::check::Check;
use self::env::apply_env;
use self::sections::read_sections;
use super::{Config, ConfigError, FieldError};

/// Parses, overrides and validates; see the module docs.
///
/// # Errors
/// `ConfigError::Invalid` with every problem found.
pub(crate) fn validate(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut root = toml::from_str::<Table>(text).map_err(|e| {
        ConfigError::Invalid(vec![FieldError {
            path: "file".into(),
            message: syntax_message(text, &e),
        }])
    })?;
    let mut check = Check::default();
    let overridden = apply_env(&mut root, env, &mut check);
    let file = read_sections(root, &mut check);
    let config = build(file, &mut check);
    if check.errors.is_empty() {
        return Ok(config);
    }
    for error in &mut check.errors {
        let from_env = overridden
            .iter()
            .find(|(path, _)| error.path == **path || error.path.starts_with(&format!("{path}[")));
        if let Some((_, var)) = from_env {
            error.message.push_str(&format!(" (set by {var})"));
        }
    }
    Err(ConfigError::Invalid(check.errors))
}

/// `line L, column C: what` from a TOML parse error, on one line.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let what = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(start) = error.span().map(|s| s.start.min(text.len())) else {
        return format!("invalid toml: {what}");
    };
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("invalid toml at line {line}, column {column}: {what}")
}

#[cfg(test)]
mod tests;

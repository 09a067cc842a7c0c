//! The problem collector shared by every validation step: [`Check`] records a problem with its
//! field path and hands back a usable value, plus the field helpers several sections use
//! (required strings, header names).

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderName;

use crate::config::FieldError;
use crate::config::units::{parse_duration, parse_size};

/// Problems found so far, and helpers that record one and return a usable value.
#[derive(Debug, Default)]
pub(super) struct Check {
    pub(super) errors: Vec<FieldError>,
}

impl Check {
    pub(super) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn ok<T>(&mut self, path: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.error(path, message)).ok()
    }

    pub(super) fn duration(&mut self, path: &str, text: &str) -> Duration {
        self.ok(path, parse_duration(text)).unwrap_or_default()
    }

    /// `None` (reported) when it does not parse; zero is reported but returned.
    pub(super) fn positive_duration(&mut self, path: &str, text: &str) -> Option<Duration> {
        let duration = self.ok(path, parse_duration(text));
        if duration.is_some_and(|d| d.is_zero()) {
            self.error(path, "must be greater than 0s");
        }
        duration
    }

    pub(super) fn size(&mut self, path: &str, text: &str) -> Option<u64> {
        self.ok(path, parse_size(text))
    }

    pub(super) fn size_usize(&mut self, path: &str, text: &str) -> Option<usize> {
        let bytes = parse_size(text).and_then(|b| {
            usize::try_from(b).map_err(|_| format!("size {text:?} is too large for this platform"))
        });
        self.ok(path, bytes)
    }

    pub(super) fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        let parsed = text.trim().parse::<SocketAddr>().map_err(|_| {
            format!("invalid socket address {text:?}; expected ip:port, e.g. \"127.0.0.1:8080\"")
        });
        self.ok(path, parsed)
    }

    pub(super) fn at_least_one(&mut self, path: &str, value: usize) {
        if value == 0 {
            self.error(path, "must be at least 1");
        }
    }
}

/// A required non-empty string; `""` after an error so later checks skip it.
pub(super) fn required(path: &str, value: Option<String>, check: &mut Check) -> String {
    match value {
        None => check.error(path, "is required"),
        Some(v) if v.is_empty() => check.error(path, "must not be empty"),
        Some(v) => return v,
    }
    String::new()
}

/// A header name as `http` accepts it, or a message naming the text.
pub(super) fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("invalid header name {text:?}"))
}

//! `POST /purge`: a JSON body of at most 64 KiB → [`PurgeRequest`], handed to the
//! [`AdminBackend`], whose answer becomes 200 / 400 / 503; and [`AdminError`], the one place an
//! admin failure becomes a JSON response.
//!
//! The body is checked completely before the backend sees it, so a 400, 401 or 413 changes
//! nothing. Messages name the offending field (`tags[2]`, `partition.x-tenant-id`) and never
//! echo a value: partition values are credentials or tenant ids.

use std::collections::HashSet;
use std::fmt;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Value, json};

use super::{AdminBackend, PurgeRejected, ReloadRejected};
use crate::answer;
use crate::cache::normalize_path_prefix;
use crate::purge::{PurgeRequest, PurgeTarget};

/// The largest purge body (DESIGN.md "Admin API"); larger → 413.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most tags, URLs or partition headers one purge may name: bounds the work a single
/// request can ask of the backend (one watermark each).
pub(crate) const MAX_ITEMS: usize = 1000;
/// Field names echoed in messages are cut to this many characters.
const MAX_ECHOED_KEY_CHARS: usize = 64;

/// The selectors of a purge body, in the order messages list them.
const SELECTORS: [&str; 6] = ["tags", "urls", "prefix", "route", "partition", "all"];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an admin request was not carried out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// Missing, malformed or wrong token; deliberately without detail.
    #[error("unauthorized")]
    Unauthorized,
    #[error("body over 64 KiB")]
    BodyTooLarge,
    #[error("body: could not be read")]
    BodyRead(#[source] BoxError),
    /// A bad field in the body, or a value the backend could not resolve.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Applied on this instance only; the caller retries.
    #[error("shared tier unavailable")]
    SharedUnavailable,
    #[error("reload not available: no config file")]
    ReloadUnavailable,
    /// The re-read config is invalid; every problem is listed.
    #[error("invalid configuration")]
    ReloadInvalid(Vec<String>),
}

impl AdminError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead(_) | Self::Invalid { .. } | Self::ReloadInvalid(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::SharedUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ReloadUnavailable => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The JSON answer: `{"ok": false, "error": "<message>"}`, plus `"applied_locally": true`
    /// for [`AdminError::SharedUnavailable`], `Allow` on 405 and `WWW-Authenticate` on 401.
    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut body = json!({ "ok": false, "error": self.to_string() });
        if matches!(self, Self::SharedUnavailable) {
            body["applied_locally"] = Value::Bool(true);
        }
        if let Self::ReloadInvalid(problems) = &self {
            body["problems"] = json!(problems);
        }
        let mut response = answer::json(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            Self::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<ReloadRejected> for AdminError {
    fn from(rejected: ReloadRejected) -> Self {
        match rejected {
            ReloadRejected::Unavailable => Self::ReloadUnavailable,
            ReloadRejected::Invalid(problems) => Self::ReloadInvalid(problems),
        }
    }
}

impl From<PurgeRejected> for AdminError {
    fn from(rejected: PurgeRejected) -> Self {
        match rejected {
            PurgeRejected::Invalid { field, message } => Self::Invalid { field, message },
            PurgeRejected::SharedUnavailable => Self::SharedUnavailable,
        }
    }
}

/// Reads and checks the body, then applies the purge through `backend`. The caller has
/// already checked the method and the token.
pub(super) async fn handle<B>(
    backend: &dyn AdminBackend,
    max_tag_bytes: usize,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, AdminError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = read_body(request).await?;
    let purge = parse(&body, max_tag_bytes)?;
    let (kind, soft) = (purge.target.kind(), purge.soft);
    match backend.purge(purge).await {
        Ok(seq) => {
            tracing::info!(kind, soft, seq, "purge applied");
            Ok(answer::json(
                StatusCode::OK,
                &json!({ "ok": true, "seq": seq }),
            ))
        }
        Err(rejected @ PurgeRejected::Invalid { .. }) => {
            tracing::info!(kind, soft, error = %rejected, "purge rejected");
            Err(rejected.into())
        }
        Err(rejected @ PurgeRejected::SharedUnavailable) => {
            tracing::warn!(
                kind,
                soft,
                "purge applied on this instance only: shared tier unavailable"
            );
            Err(rejected.into())
        }
    }
}

/// The whole body, refused early on a `Content-Length` over the cap and cut off at the cap
/// otherwise (chunked bodies).
async fn read_body<B>(request: Request<B>) -> Result<Bytes, AdminError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(AdminError::BodyTooLarge);
    }
    match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(AdminError::BodyTooLarge),
        Err(error) => Err(AdminError::BodyRead(error)),
    }
}

/// A JSON object's members in body order, duplicates kept (a `serde_json::Map` would keep
/// only the last of two `"tags"`).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A purge body → [`PurgeRequest`]: exactly one selector, an optional boolean `soft`, nothing
/// else.
pub(crate) fn parse(body: &[u8], max_tag_bytes: usize) -> Result<PurgeRequest, AdminError> {
    let Members(members) = serde_json::from_slice(body).map_err(|error| {
        if error.classify() == serde_json::error::Category::Data {
            // Valid JSON of another type. serde's message would echo the value: not used.
            AdminError::invalid("body", "expected a JSON object")
        } else {
            // Syntax and end-of-input messages give a position, never the content.
            AdminError::invalid("body", format!("invalid JSON ({error})"))
        }
    })?;
    let mut seen = HashSet::new();
    for (key, _) in &members {
        if !is_known(key) {
            return Err(unknown_field(key));
        }
        if !seen.insert(key.as_str()) {
            return Err(AdminError::invalid(key.as_str(), "given more than once"));
        }
    }
    let mut soft = false;
    let mut selected = Vec::new();
    for (key, value) in members {
        if key == "soft" {
            soft = value
                .as_bool()
                .ok_or_else(|| AdminError::invalid("soft", "expected true or false"))?;
        } else {
            selected.push((key, value));
        }
    }
    let (key, value) = match <[_; 1]>::try_from(selected) {
        Ok([only]) => only,
        Err(selected) => return Err(selector_count_error(&selected)),
    };
    let target = match key.as_str() {
        "tags" => PurgeTarget::Tags(strings("tags", value, |tag| check_tag(tag, max_tag_bytes))?),
        "urls" => PurgeTarget::Urls(strings("urls", value, check_url)?),
        "prefix" => PurgeTarget::Prefix(prefix(value)?),
        "route" => PurgeTarget::Route(string("route", value, check_route)?),
        "partition" => PurgeTarget::Partition(partition(value)?),
        "all" if value == Value::Bool(true) => PurgeTarget::All,
        "all" => return Err(AdminError::invalid("all", "must be true")),
        _ => return Err(unknown_field(&key)),
    };
    Ok(PurgeRequest { target, soft })
}

fn is_known(key: &str) -> bool {
    key == "soft" || SELECTORS.contains(&key)
}

fn unknown_field(key: &str) -> AdminError {
    AdminError::invalid(echoed(key), "unknown field")
}

/// "no selector (…)" or "two selectors: tags and urls".
fn selector_count_error(selected: &[(String, Value)]) -> AdminError {
    let names: Vec<&str> = selected.iter().map(|(key, _)| key.as_str()).collect();
    match names.as_slice() {
        [] => AdminError::invalid(
            "body",
            format!("no selector (expected one of {})", SELECTORS.join(", ")),
        ),
        [first, second] => {
            AdminError::invalid("body", format!("two selectors: {first} and {second}"))
        }
        [init @ .., last] => AdminError::invalid(
            "body",
            format!("{} selectors: {} and {last}", names.len(), init.join(", ")),
        ),
    }
}

/// A non-empty string passing `check`.
fn string(
    field: &str,
    value: Value,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<String, AdminError> {
    let Value::String(text) = value else {
        return Err(AdminError::invalid(field, "expected a string"));
    };
    if text.is_empty() {
        return Err(AdminError::invalid(field, "empty"));
    }
    check(&text).map_err(|message| AdminError::invalid(field, message))?;
    Ok(text)
}

/// A list of 1 to [`MAX_ITEMS`] non-empty strings, each passing `check`.
fn strings(
    field: &str,
    value: Value,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, AdminError> {
    let Value::Array(items) = value else {
        return Err(AdminError::invalid(field, "expected a list of strings"));
    };
    if items.is_empty() {
        return Err(AdminError::invalid(field, "empty list"));
    }
    if items.len() > MAX_ITEMS {
        return Err(AdminError::invalid(
            field,
            format!("more than {MAX_ITEMS} items"),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| string(&format!("{field}[{index}]"), item, &check))
        .collect()
}

fn check_tag(tag: &str, max_tag_bytes: usize) -> Result<(), String> {
    if tag.len() > max_tag_bytes {
        return Err(format!("longer than {max_tag_bytes} bytes"));
    }
    if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character".to_owned());
    }
    Ok(())
}

/// A path (`/api/products/42?lang=en`), or an absolute `http`/`https` URL for routes that
/// match on the host.
fn check_url(url: &str) -> Result<(), String> {
    let has_scheme = |scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    };
    let absolute = has_scheme("http://") || has_scheme("https://");
    if !absolute && !url.starts_with('/') {
        return Err("expected a path starting with \"/\" or an absolute http(s) URL".to_owned());
    }
    match url.parse::<http::Uri>() {
        Ok(uri) if !absolute || uri.authority().is_some() => Ok(()),
        _ => Err("not a valid URL".to_owned()),
    }
}

/// A path prefix in the normal form of the request paths it selects: spelled any other way
/// it would purge nothing while answering as if it had.
fn prefix(value: Value) -> Result<String, AdminError> {
    let prefix = string("prefix", value, no_control_characters)?;
    normalize_path_prefix(&prefix).map_err(|error| AdminError::invalid("prefix", error.to_string()))
}

fn check_route(route: &str) -> Result<(), String> {
    no_control_characters(route)
}

fn no_control_characters(text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err("contains a control character".to_owned());
    }
    Ok(())
}

/// `{"X-Tenant-Id": "acme", ...}` → lower-case header names with their raw values, sorted by
/// name.
fn partition(value: Value) -> Result<Vec<(String, String)>, AdminError> {
    let Value::Object(headers) = value else {
        return Err(AdminError::invalid(
            "partition",
            "expected an object of header names to values",
        ));
    };
    if headers.is_empty() {
        return Err(AdminError::invalid("partition", "no headers"));
    }
    if headers.len() > MAX_ITEMS {
        return Err(AdminError::invalid(
            "partition",
            format!("more than {MAX_ITEMS} headers"),
        ));
    }
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(headers.len());
    let mut seen = HashSet::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            AdminError::invalid(
                format!("partition.{}", echoed(&name)),
                "not a valid header name",
            )
        })?;
        let field = format!("partition.{header}");
        if !seen.insert(header.clone()) {
            return Err(AdminError::invalid(field, "given more than once"));
        }
        let Value::String(value) = value else {
            return Err(AdminError::invalid(field, "expected a string"));
        };
        if HeaderValue::from_str(&value).is_err() {
            return Err(AdminError::invalid(field, "not a valid header value"));
        }
        pairs.push((header.as_str().to_owned(), value));
    }
    // Sorted by name, whatever the order in the body (or serde_json's map type) was.
    pairs.sort();
    Ok(pairs)
}

/// A caller-supplied key as a message may show it: cut to [`MAX_ECHOED_KEY_CHARS`].
fn echoed(key: &str) -> String {
    match key.char_indices().nth(MAX_ECHOED_KEY_CHARS) {
        Some((cut, _)) => format!("{}…", &key[..cut]),
        None => key.to_owned(),
    }
}

//! Answers from a stored entry: the full response, or what the client's conditional and range
//! headers ask of it (RFC 9110 §13, §14) — 304, 412, 206 or 416 — plus `Age` and
//! `Cache-Status`. A hit copies refcounts, not bytes.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use super::headers::{set_age, set_cache_status};
use super::{Body, empty, full};
use crate::cache::conditional::{
    Boundary, Served, evaluate, not_modified_headers, partial_content, unsatisfiable_content_range,
};
use crate::cache::{CacheStatus, Entry};

/// The request fields that can change what is served from an entry.
const CONDITIONS: [HeaderName; 6] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

/// How a request wants an entry served: its method and, when it has any, its conditional and
/// range fields (kept apart so the common request carries no copy of them).
#[derive(Debug, Clone)]
pub(crate) struct ServeAs {
    method: Method,
    conditions: Option<HeaderMap>,
}

impl ServeAs {
    pub(crate) fn new(method: &Method, headers: &HeaderMap) -> Self {
        let mut conditions: Option<HeaderMap> = None;
        for name in &CONDITIONS {
            for value in headers.get_all(name) {
                conditions
                    .get_or_insert_with(HeaderMap::new)
                    .append(name.clone(), value.clone());
            }
        }
        Self {
            method: method.clone(),
            conditions,
        }
    }

    pub(crate) fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }
}

/// Serves `entry` to a request described by `how`.
pub(crate) fn serve_entry(
    entry: &Entry,
    status: CacheStatus,
    now: SystemTime,
    how: &ServeAs,
) -> Response<Body> {
    let served = match &how.conditions {
        None => Served::Full,
        Some(conditions) => evaluate(&how.method, conditions, entry),
    };
    let mut response = match served {
        Served::Full => full_response(entry, how.is_head()),
        Served::NotModified => bodiless(
            StatusCode::NOT_MODIFIED,
            not_modified_headers(&entry.headers),
        ),
        Served::PreconditionFailed => bodiless(StatusCode::PRECONDITION_FAILED, HeaderMap::new()),
        Served::Partial { ranges } => match partial_content(entry, &ranges, &Boundary::random()) {
            Ok(partial) => {
                let headers = partial.headers.clone();
                let body = if how.is_head() {
                    empty()
                } else {
                    full(partial.into_bytes())
                };
                let mut response = Response::new(body);
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                *response.headers_mut() = headers;
                response
            }
            Err(error) => {
                tracing::debug!(%error, "range not servable; full response");
                full_response(entry, how.is_head())
            }
        },
        Served::Unsatisfiable { complete_length } => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_RANGE,
                unsatisfiable_content_range(complete_length),
            );
            bodiless(StatusCode::RANGE_NOT_SATISFIABLE, headers)
        }
    };
    set_age(response.headers_mut(), entry.age(now));
    set_cache_status(&mut response, status);
    response
}

fn full_response(entry: &Entry, is_head: bool) -> Response<Body> {
    let body = if is_head {
        empty()
    } else {
        full(entry.body.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = entry.status;
    *response.headers_mut() = entry.headers.clone();
    if is_head && entry.status != StatusCode::NO_CONTENT && entry.status != StatusCode::NOT_MODIFIED
    {
        // What a GET would have carried (RFC 9110 §9.3.2).
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    }
    response
}

fn bodiless(status: StatusCode, headers: HeaderMap) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

//! The admin API as tests call it: `POST /purge` with a JSON body and an optional bearer token,
//! `GET` of the health paths, and the JSON answers.

use std::net::SocketAddr;

use serde_json::Value;

use super::client::{Client, Resp};

/// A client for one admin listener.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    client: Client,
}

impl Admin {
    /// A client for the admin listener at `addr` (e.g. `Proxy::admin`).
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::new(addr),
        }
    }

    /// `POST /purge` with `json` as the body, and `Authorization: Bearer <token>` when given.
    pub(crate) async fn purge(&self, json: &str, token: Option<&str>) -> Resp {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        self.client
            .post("/purge", &headers, json.as_bytes().to_vec())
            .await
    }

    /// Purges with `json` (no token), fails the test unless the answer is 200
    /// `{"ok": true, "seq": N}`, and returns `N`.
    pub(crate) async fn purge_ok(&self, json: &str) -> u64 {
        let answer = self.purge(json, None).await;
        assert_eq!(answer.status, 200, "purge {json}: {}", answer.text());
        let body = body_json(&answer);
        assert_eq!(body["ok"], Value::Bool(true), "purge {json}: {body}");
        body["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("purge {json}: no seq in {body}"))
    }

    /// `GET path` on the admin listener.
    pub(crate) async fn get(&self, path: &str) -> Resp {
        self.client.get(path, &[]).await
    }
}

/// The body of an admin answer as JSON; fails the test when it is not JSON.
pub(crate) fn body_json(response: &Resp) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {:?}", response.text()))
}

//! The access log: one JSON event per answered request with route, method, path, status, cache
//! status and duration, and never a credential, a query string or an unlisted tenant's name.
//!
//! Logs are captured by a JSON subscriber set as this thread's default: `#[tokio::test]` runs
//! Cachet's tasks on the test's own thread, so every event they emit lands in the buffer.

mod support;

use serde_json::Value;
use support::logs::Captured;
use support::proxy::one_route;
use support::{Client, Origin, Proxy, Reply};

const SECRET: &str = "Bearer access-log-s3cret";
const QUERY_SECRET: &str = "api_key=q-s3cret";
const UNLISTED_TENANT: &str = "unlisted-tenant-91c2";

fn config(origin: &Origin, access_log: bool) -> String {
    format!(
        "{}\n[log]\naccess_log = {access_log}\n\n[metrics]\ntenant_labels = [\"acme\"]\n",
        one_route(&origin.url(), "")
    )
}

/// The access events among the captured JSON lines (every line must parse).
fn access_events(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .filter(|event| event["target"] == "cachet::access")
        .collect()
}

#[tokio::test]
async fn one_event_per_request_and_no_secrets() {
    let captured = Captured::default();
    let _guard = captured.capture(true);
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let proxy = Proxy::start(&config(&origin, true)).await;
    let client = Client::new(proxy.addr);
    let secret = [("authorization", SECRET), ("x-tenant-id", UNLISTED_TENANT)];

    client.get(&format!("/log/a?{QUERY_SECRET}"), &[]).await;
    client.get(&format!("/log/a?{QUERY_SECRET}"), &[]).await;
    client.get("/log/private", &secret).await;
    client
        .post(&format!("/log/form?{QUERY_SECRET}"), &secret, "x=1")
        .await;
    proxy.shutdown().await;

    let text = captured.text();
    let events = access_events(&text);
    assert_eq!(events.len(), 4, "{text}");
    let fields: Vec<&Value> = events.iter().map(|e| &e["fields"]).collect();
    let methods: Vec<&str> = fields.iter().filter_map(|f| f["method"].as_str()).collect();
    assert_eq!(methods, ["GET", "GET", "GET", "POST"]);
    assert_eq!(fields[0]["path"], "/log/a");
    assert_eq!(fields[0]["route"], "test");
    assert_eq!(fields[0]["status"], 200);
    assert_eq!(fields[0]["cache"], "cachet; fwd=miss; stored");
    assert_eq!(fields[1]["cache"], "cachet; hit; ttl=60");
    assert_eq!(fields[2]["tenant"], "other");
    assert_eq!(fields[3]["path"], "/log/form");
    assert!(fields.iter().all(|f| f["duration_ms"].is_number()));

    for leaked in [SECRET, "access-log-s3cret", "q-s3cret", UNLISTED_TENANT] {
        assert!(!text.contains(leaked), "{leaked:?} in the logs:\n{text}");
    }
}

#[tokio::test]
async fn access_log_off_writes_no_access_events() {
    let captured = Captured::default();
    let _guard = captured.capture(true);
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let proxy = Proxy::start(&config(&origin, false)).await;
    Client::new(proxy.addr).get("/quiet", &[]).await;
    proxy.shutdown().await;
    assert!(access_events(&captured.text()).is_empty());
}

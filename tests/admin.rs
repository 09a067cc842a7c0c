//! The admin API over HTTP (DESIGN.md "Admin API", "Failure behaviour"): bad purge bodies are
//! refused naming the field and change nothing, the bearer token is enforced when configured,
//! bodies over 64 KiB are refused, health and readiness answer, and a non-loopback admin
//! listener without a token refuses to start.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::admin::{Admin, body_json};
use support::proxy::one_route;
use support::{Client, Origin, Proxy, Reply, Resp};

const STORED: &str = "cachet; fwd=miss; stored";
const HIT: &str = "cachet; hit; ttl=60";
const TOKEN: &str = "s3cret";
/// How long the binary may take to exit.
const PROCESS_WAIT: Duration = Duration::from_secs(20);

/// An origin, and a proxy of one route `test` (static tag `entry`) with `/entry` cached; with
/// `token`, the admin API requires it.
async fn cached_entry(token: Option<&str>) -> (Origin, Proxy, Client) {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let mut config = one_route(&origin.url(), "tags = [\"entry\"]");
    if let Some(token) = token {
        let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
        assert!(config.contains(admin), "{config}");
        config = config.replace(admin, &format!("{admin}token = \"{token}\"\n"));
    }
    let proxy = Proxy::start(&config).await;
    let client = Client::new(proxy.addr);
    assert_eq!(client.get("/entry", &[]).await.cache_status(), STORED);
    assert_still_cached(&origin, &client).await;
    (origin, proxy, client)
}

/// `/entry` is still the first fill's memory hit.
async fn assert_still_cached(origin: &Origin, client: &Client) {
    let hit = client.get("/entry", &[]).await;
    assert_eq!(hit.cache_status(), HIT);
    assert_eq!(hit.text(), "/entry #1");
    assert_eq!(origin.hits(), 1);
}

/// The `error` of a refusal, after checking its shape: `{"ok": false, "error": "..."}` as JSON.
fn refusal(response: &Resp, status: u16, what: &str) -> String {
    assert_eq!(response.status, status, "{what}: {}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = body_json(response);
    assert_eq!(body["ok"], Value::Bool(false), "{what}: {body}");
    body["error"].as_str().expect("an error message").to_owned()
}

#[tokio::test]
async fn each_malformed_purge_body_is_refused_naming_its_field_and_changes_nothing() {
    let (origin, proxy, client) = cached_entry(None).await;
    let admin = Admin::new(proxy.admin);
    let long_tag = "x".repeat(257);
    let over_long = json!({ "tags": ["entry", long_tag] }).to_string();
    // Most bodies would purge `/entry` if any part of them were applied.
    let cases: &[(&str, &str)] = &[
        ("", "body"),
        (r#"{"all": true"#, "body"),
        (r#"[{"all": true}]"#, "body"),
        ("{}", "body"),
        (r#"{"everything": true}"#, "everything"),
        (r#"{"all": true, "force": true}"#, "force"),
        (r#"{"all": true, "route": "test"}"#, "body"),
        (r#"{"all": true, "all": true}"#, "all"),
        (r#"{"all": false}"#, "all"),
        (r#"{"all": true, "soft": "yes"}"#, "soft"),
        (r#"{"tags": []}"#, "tags"),
        (r#"{"tags": "entry"}"#, "tags"),
        (&over_long, "tags[1]"),
        (r#"{"urls": ["/entry", "entry"]}"#, "urls[1]"),
        (r#"{"urls": []}"#, "urls"),
        (r#"{"prefix": "entry"}"#, "prefix"),
        (r#"{"route": "nope"}"#, "route"),
        (r#"{"partition": {}}"#, "partition"),
        // No route keys on this header.
        (
            r#"{"partition": {"x-tenant-id": "acme"}}"#,
            "partition.x-tenant-id",
        ),
    ];
    for (body, field) in cases {
        let error = refusal(&admin.purge(body, None).await, 400, body);
        assert!(error.starts_with(&format!("{field}: ")), "{body}: {error}");
    }
    let two = refusal(
        &admin.purge(r#"{"all": true, "route": "test"}"#, None).await,
        400,
        "two",
    );
    assert!(two.contains("two selectors"), "{two}");
    // Partition values are tenant ids or credentials: never echoed.
    let echoed = r#"{"partition": {"x-tenant-id": "acme-secret-value"}}"#;
    let error = refusal(&admin.purge(echoed, None).await, 400, echoed);
    assert!(!error.contains("acme-secret-value"), "{error}");

    assert_still_cached(&origin, &client).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn purge_requires_the_configured_bearer_token() {
    let (origin, proxy, client) = cached_entry(Some(TOKEN)).await;
    let admin = Client::new(proxy.admin);
    let body = r#"{"all": true}"#;
    let refused: &[&[(&str, &str)]] = &[
        &[],
        &[("authorization", "Bearer wrong")],
        &[("authorization", "Bearer s3cre")],
        &[("authorization", "Basic s3cret")],
        &[("authorization", "s3cret")],
    ];
    let mut answers = Vec::new();
    for headers in refused {
        let answer = admin.post("/purge", headers, body).await;
        let what = format!("{headers:?}");
        refusal(&answer, 401, &what);
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{what}");
        answers.push(answer.text());
    }
    // No detail: a missing and a wrong token get the same answer.
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_still_cached(&origin, &client).await;
    // Health needs no token.
    assert_eq!(admin.get("/healthz", &[]).await.status, 200);

    let accepted = Admin::new(proxy.admin).purge(body, Some(TOKEN)).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(client.get("/entry", &[]).await.cache_status(), STORED);
    proxy.shutdown().await;
}

/// "413 for a body over 64 KiB": a 100 KiB body and one byte over the limit are refused and
/// change nothing; a body of exactly 64 KiB is read.
#[tokio::test]
async fn a_purge_body_over_64_kib_is_refused_with_413() {
    let (origin, proxy, client) = cached_entry(None).await;
    let admin = Admin::new(proxy.admin);
    let padded = |len: usize| {
        let body = r#"{"all": true}"#;
        format!("{body}{}", " ".repeat(len - body.len()))
    };
    for len in [100 * 1024, 64 * 1024 + 1] {
        let answer = admin.purge(&padded(len), None).await;
        refusal(&answer, 413, &format!("{len} bytes"));
    }
    assert_still_cached(&origin, &client).await;

    let answer = admin.purge(&padded(64 * 1024), None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(client.get("/entry", &[]).await.cache_status(), STORED);
    proxy.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_answer_on_the_admin_listener() {
    let origin = Origin::numbered(Reply::empty()).await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let admin = Admin::new(proxy.admin);
    assert_eq!(admin.get("/healthz").await.status, 200);
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.header("content-type"), Some("application/json"));
    let body = body_json(&ready);
    assert_eq!(body["ready"], Value::Bool(true), "{body}");
    assert_eq!(body["shared_tier"], "none", "{body}");

    // Purging is a POST; unknown paths are not found.
    let get_purge = admin.get("/purge").await;
    assert_eq!(get_purge.status, 405);
    assert_eq!(get_purge.header("allow"), Some("POST"));
    assert_eq!(admin.get("/nope").await.status, 404);
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

/// Runs the `cachet` binary with `args` plus `--config <toml in a temp file>`; its exit code
/// and its output (stdout then stderr). Fails the test if it is still running after a bound,
/// i.e. if it started serving.
fn run_cachet(args: &[&str], name: &str, toml: &str) -> (Option<i32>, String) {
    let path =
        std::env::temp_dir().join(format!("cachet-admin-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, toml).expect("write temp config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachet"));
    // The binary applies CACHET__ overrides from its environment: none may leak in.
    for (var, _) in std::env::vars().filter(|(var, _)| var.starts_with("CACHET__")) {
        command.env_remove(var);
    }
    let mut child = command
        .args(args)
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cachet");
    let deadline = Instant::now() + PROCESS_WAIT;
    while child.try_wait().expect("poll cachet").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&path);
            panic!("cachet {args:?} still running after {PROCESS_WAIT:?}: it started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("cachet output");
    let _ = std::fs::remove_file(&path);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn a_non_loopback_admin_listener_without_a_token_refuses_to_start() {
    let config = |token: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"0.0.0.0:0\"\n{token}\n\
             [cache]\nmemory_max_bytes = \"64MiB\"\n\n\
             [[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"
        )
    };
    for command in ["check", "serve"] {
        let (code, output) = run_cachet(&[command], command, &config(""));
        assert_eq!(code, Some(2), "cachet {command}: {output}");
        assert!(output.contains("admin.token"), "cachet {command}: {output}");
        assert!(output.contains("loopback"), "cachet {command}: {output}");
    }
    // With a token the same listener is accepted.
    let (code, output) = run_cachet(&["check"], "with-token", &config("token = \"s3cret\""));
    assert_eq!(code, Some(0), "{output}");
}

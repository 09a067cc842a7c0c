//! Hot reload: `POST /reload` and SIGHUP re-read the config file; a valid one swaps routes and
//! TTL rules for new requests, an invalid one is refused with every problem and changes
//! nothing.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::proxy::{Options, SERVER};
use support::{Client, Origin, Proxy, Reply};

/// A config file of this test's own, under the system temp dir.
fn config_file(name: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("cachet-reload-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write the test config");
    path
}

fn config(origin: &str, prefix: &str, default_ttl: &str) -> String {
    format!(
        "{SERVER}\n[[routes]]\nname = \"test\"\npath_prefix = \"{prefix}\"\nupstream = \"{origin}\"\ndefault_ttl = \"{default_ttl}\"\nttl_jitter = 0.0\nearly_refresh_beta = 0.0\n"
    )
}

async fn reload(proxy: &Proxy) -> (u16, serde_json::Value) {
    let client = Client::new(proxy.admin);
    let response = client.post("/reload", &[], "").await;
    let json = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    (response.status.as_u16(), json)
}

#[tokio::test]
async fn a_valid_file_swaps_routes_and_ttls_for_new_requests() {
    let origin = Origin::numbered(Reply::empty()).await;
    let path = config_file("valid", &config(&origin.url(), "/a", "60s"));
    let options = Options {
        config_path: Some(path.clone()),
        ..Options::default()
    };
    let proxy = Proxy::start_with(&config(&origin.url(), "/a", "60s"), options).await;
    let client = Client::new(proxy.addr);
    assert_eq!(
        client.get("/a/1", &[]).await.cache_status(),
        "cachet; fwd=miss; stored"
    );
    assert_eq!(client.get("/b/1", &[]).await.status, 404);

    std::fs::write(&path, config(&origin.url(), "/b", "5s")).unwrap();
    let (status, json) = reload(&proxy).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        client.get("/a/2", &[]).await.status,
        404,
        "the old route is gone"
    );
    let miss = client.get("/b/1", &[]).await;
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(
        client.get("/b/1", &[]).await.cache_status(),
        "cachet; hit; ttl=5",
        "the new default_ttl"
    );
    proxy.shutdown().await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn an_invalid_file_is_refused_with_every_problem_and_changes_nothing() {
    let origin = Origin::numbered(Reply::empty()).await;
    let good = config(&origin.url(), "/a", "60s");
    let path = config_file("invalid", &good);
    let options = Options {
        config_path: Some(path.clone()),
        ..Options::default()
    };
    let proxy = Proxy::start_with(&good, options).await;
    let client = Client::new(proxy.addr);
    client.get("/a/1", &[]).await;

    let broken = good
        .replace(
            "default_ttl = \"60s\"",
            "default_ttl = \"soon\"\nttl_jiter = 1",
        )
        .replace("path_prefix = \"/a\"", "path_prefix = \"a\"");
    std::fs::write(&path, broken).unwrap();
    let (status, json) = reload(&proxy).await;
    assert_eq!(status, 400, "{json}");
    let problems = json["problems"].as_array().expect("problems listed");
    assert_eq!(problems.len(), 3, "{json}");
    let text = json.to_string();
    for field in [
        "routes[0].default_ttl",
        "routes[0].ttl_jiter",
        "routes[0].path_prefix",
    ] {
        assert!(text.contains(field), "{field} missing from {json}");
    }
    let hit = client.get("/a/1", &[]).await;
    assert!(
        hit.cache_status().starts_with("cachet; hit"),
        "{}",
        hit.cache_status()
    );
    proxy.shutdown().await;
    let _ = std::fs::remove_file(path);
}

/// SIGHUP does what `POST /reload` does (this test process signals itself).
#[tokio::test]
async fn sighup_reloads_the_file() {
    let origin = Origin::numbered(Reply::empty()).await;
    let path = config_file("sighup", &config(&origin.url(), "/a", "60s"));
    let options = Options {
        config_path: Some(path.clone()),
        ..Options::default()
    };
    let proxy = Proxy::start_with(&config(&origin.url(), "/a", "60s"), options).await;
    let client = Client::new(proxy.addr);
    assert_eq!(client.get("/c/1", &[]).await.status, 404);

    std::fs::write(&path, config(&origin.url(), "/c", "60s")).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The signal is handled by a background task: poll, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if client.get("/c/1", &[]).await.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.shutdown().await;
    let _ = std::fs::remove_file(path);
}

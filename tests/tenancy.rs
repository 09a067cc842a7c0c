//! Partitions never leak (DESIGN.md "Keys and tenancy", "Authenticated responses"): tenants
//! and credentials on one URL each get their own entry, a request without the key header never
//! reads a keyed entry, credentials-bearing entries are never served without credentials, and
//! raw key-header values never appear in a header Cachet adds. A property test sends random
//! request sequences and checks that every body is the one the origin gives that very request.

mod support;

use proptest::prelude::*;
use support::{Client, Origin, Proxy, Reply, Resp, Seen};

/// The body the echo origin gives a request: everything a partition may depend on.
fn echo_body(
    tenant: Option<&str>,
    credential: Option<&str>,
    host: &str,
    path: &str,
    query: &str,
) -> String {
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort_unstable();
    format!(
        "tenant={} credential={} host={host} path={path} query={}",
        tenant.unwrap_or("-"),
        credential.unwrap_or("-"),
        params.join("&")
    )
}

/// Echoes the request. Credentialed requests get `cache_control_with_auth`, others
/// `cache_control`.
async fn echo_origin(cache_control: &'static str, cache_control_with_auth: &'static str) -> Origin {
    Origin::start(move |seen: &Seen| {
        let credential = seen.header("authorization");
        let body = echo_body(
            seen.header("x-tenant-id"),
            credential,
            seen.header("x-forwarded-host").unwrap_or("-"),
            seen.path(),
            seen.uri.query().unwrap_or(""),
        );
        let cc = if credential.is_some() {
            cache_control_with_auth
        } else {
            cache_control
        };
        Reply::ok(body).cache_control(cc)
    })
    .await
}

fn tenant(resp: &Resp) -> String {
    resp.text().split(' ').next().unwrap_or_default().to_owned()
}

/// No header Cachet adds (or passes on) may contain a raw key-header value.
fn assert_no_secret_in_headers(resp: &Resp, secrets: &[&str]) {
    for (name, value) in &resp.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        for secret in secrets {
            assert!(!value.contains(secret), "{name}: {value} reveals {secret}");
        }
    }
}

#[tokio::test]
async fn tenants_on_one_url_never_see_each_others_body() {
    let origin = echo_origin("max-age=60", "max-age=60").await;
    let proxy = Proxy::one_route(&origin.url(), "key_headers = [\"x-tenant-id\"]").await;
    let client = Client::new(proxy.addr);

    for round in ["cachet; fwd=miss; stored", "cachet; hit; ttl=60"] {
        for t in ["tenant-acme-4711", "tenant-globex-0815"] {
            let resp = client.get("/tenants/profile", &[("x-tenant-id", t)]).await;
            assert_eq!(resp.cache_status(), round, "{t}");
            assert_eq!(tenant(&resp), format!("tenant={t}"));
            assert_no_secret_in_headers(&resp, &["tenant-acme-4711", "tenant-globex-0815"]);
        }
    }
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn requests_with_and_without_the_key_header_never_share_an_entry() {
    let origin = echo_origin("max-age=60", "max-age=60").await;
    let proxy = Proxy::one_route(&origin.url(), "key_headers = [\"x-tenant-id\"]").await;
    let client = Client::new(proxy.addr);
    let acme = [("x-tenant-id", "acme")];

    // Anonymous first, then a tenant; and the other way round on another path.
    for (path, order) in [
        ("/keyed/anon-first", [&[][..], &acme[..]]),
        ("/keyed/tenant-first", [&acme[..], &[][..]]),
    ] {
        for headers in order {
            let resp = client.get(path, headers).await;
            assert_eq!(
                resp.cache_status(),
                "cachet; fwd=miss; stored",
                "{path} {headers:?}"
            );
            let expected = headers.first().map_or("-", |(_, v)| v);
            assert_eq!(tenant(&resp), format!("tenant={expected}"));
        }
    }
    assert_eq!(origin.hits(), 4);
    proxy.shutdown().await;
}

/// DESIGN.md "Authenticated responses": with `authorization` as a key header each credential
/// is a private partition, where `private` responses may be stored.
#[tokio::test]
async fn private_responses_are_stored_per_credential_and_never_shared() {
    let origin = echo_origin("private, max-age=60", "private, max-age=60").await;
    let proxy = Proxy::one_route(&origin.url(), "key_headers = [\"authorization\"]").await;
    let client = Client::new(proxy.addr);
    let secrets = ["Bearer token-alice-secret", "Bearer token-bob-secret"];

    for round in ["cachet; fwd=miss; stored", "cachet; hit; ttl=60"] {
        for token in secrets {
            let resp = client.get("/me/private", &[("authorization", token)]).await;
            assert_eq!(resp.cache_status(), round, "{token}");
            assert!(
                resp.text().contains(&format!("credential={token} ")),
                "{}",
                resp.text()
            );
            assert_no_secret_in_headers(&resp, &secrets);
        }
    }
    // Without credentials: the origin's answer, never a credential's entry; `private` is not
    // stored in the shared partition.
    let anonymous = client.get("/me/private", &[]).await;
    assert_eq!(anonymous.cache_status(), "cachet; fwd=miss");
    assert!(
        anonymous.text().contains("credential=- "),
        "{}",
        anonymous.text()
    );
    assert_eq!(origin.hits(), 3);
    proxy.shutdown().await;
}

/// RFC 9111 §3.5: without a credential partition, a response to a request with
/// `Authorization` is stored only when marked `public` or `s-maxage`, and (DESIGN.md) such an
/// entry is never served to a request without credentials.
#[tokio::test]
async fn credentialed_responses_on_a_shared_route_need_public_and_stay_with_credentials() {
    let origin = Origin::start(|seen: &Seen| {
        let cc = match seen.path() {
            "/shared/plain" => "max-age=60",
            "/shared/public" => "public, max-age=60",
            _ => "s-maxage=60",
        };
        let who = if seen.header("authorization").is_some() {
            "credentialed"
        } else {
            "anonymous"
        };
        Reply::ok(who).cache_control(cc)
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    let auth = [("authorization", "Bearer shared-route-secret")];

    let plain = client.get("/shared/plain", &auth).await;
    assert_eq!(plain.cache_status(), "cachet; fwd=miss");
    for path in ["/shared/public", "/shared/s-maxage"] {
        let first = client.get(path, &auth).await;
        assert_eq!(first.cache_status(), "cachet; fwd=miss; stored", "{path}");
        let again = client.get(path, &auth).await;
        assert!(
            again.cache_status().starts_with("cachet; hit;"),
            "{path}: {}",
            again.cache_status()
        );
        assert_no_secret_in_headers(&again, &["shared-route-secret"]);
        let anonymous = client.get(path, &[]).await;
        assert_eq!(
            anonymous.text(),
            "anonymous",
            "{path} served a credentialed entry"
        );
        assert!(!anonymous.cache_status().contains("hit;"), "{path}");
    }
    proxy.shutdown().await;
}

/// A request shape: indexes into the small sets below, so that shapes often share a URL
/// and differ only in partition.
#[derive(Debug, Clone)]
struct Shape {
    tenant: Option<usize>,
    credential: Option<usize>,
    host: usize,
    path: usize,
    with_query: bool,
}

/// One request of a sequence: a shape, with its query parameters sent in reverse order or not.
#[derive(Debug, Clone)]
struct Req {
    shape: Shape,
    reversed: bool,
}

const TENANTS: [&str; 2] = ["acme", "globex"];
const CREDENTIALS: [&str; 2] = ["Bearer alpha", "Bearer beta"];
const HOSTS: [&str; 2] = ["one.example", "two.example"];
const PATHS: [&str; 2] = ["/prop/a", "/prop/b"];
const PARAMS: [&str; 3] = ["x=1", "y=2", "z=3"];

fn shape() -> impl Strategy<Value = Shape> {
    (
        proptest::option::of(0..TENANTS.len()),
        proptest::option::of(0..CREDENTIALS.len()),
        0..HOSTS.len(),
        0..PATHS.len(),
        any::<bool>(),
    )
        .prop_map(|(tenant, credential, host, path, with_query)| Shape {
            tenant,
            credential,
            host,
            path,
            with_query,
        })
}

/// A pool of up to 8 shapes and 1..40 requests drawn from it: repeats make hits, shapes
/// sharing a URL make every partition boundary matter.
fn sequence() -> impl Strategy<Value = Vec<Req>> {
    proptest::collection::vec(shape(), 1..8).prop_flat_map(|pool| {
        let picks = proptest::collection::vec((0..pool.len(), any::<bool>()), 1..40);
        picks.prop_map(move |picks| {
            picks
                .into_iter()
                .map(|(i, reversed)| Req {
                    shape: pool[i].clone(),
                    reversed,
                })
                .collect()
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the order of requests, every body is the origin's answer for exactly that
    /// request's tenant, credential, host, path and (sorted) query: nothing crosses partitions.
    #[test]
    fn random_request_sequences_never_cross_partitions(requests in sequence()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            // Credentialed answers are `private` (stored per credential), others shared.
            let origin = echo_origin("max-age=60", "private, max-age=60").await;
            let proxy = Proxy::one_route(&origin.url(), "key_headers = [\"x-tenant-id\", \"authorization\"]").await;
            let client = Client::new(proxy.addr);
            for req in &requests {
                let shape = &req.shape;
                let tenant = shape.tenant.map(|i| TENANTS[i]);
                let credential = shape.credential.map(|i| CREDENTIALS[i]);
                let mut headers = vec![("host", HOSTS[shape.host])];
                headers.extend(tenant.map(|t| ("x-tenant-id", t)));
                headers.extend(credential.map(|c| ("authorization", c)));
                let mut params = if shape.with_query { PARAMS.to_vec() } else { Vec::new() };
                if req.reversed {
                    params.reverse();
                }
                let query = params.join("&");
                let path = PATHS[shape.path];
                let target = if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") };
                let resp = client.get(&target, &headers).await;
                prop_assert_eq!(resp.status, 200);
                let expected = echo_body(tenant, credential, HOSTS[shape.host], path, &query);
                prop_assert_eq!(resp.text(), expected, "{:?} answered with {}", req, resp.cache_status());
                assert_no_secret_in_headers(&resp, &TENANTS);
                assert_no_secret_in_headers(&resp, &CREDENTIALS);
            }
            proxy.shutdown().await;
            Ok::<(), TestCaseError>(())
        })?;
    }
}

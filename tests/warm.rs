//! Cache warming: `[[warm]]` URLs are fetched after start-up through the normal path, at the
//! configured rate, and a failing URL does not stop the rest.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::proxy::SERVER;
use support::{Client, Origin, Proxy, Reply};

#[tokio::test]
async fn warm_urls_are_fetched_at_the_configured_rate_and_a_failure_is_survived() {
    let arrivals = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let seen = Arc::clone(&arrivals);
    let origin = Origin::start(move |request| {
        seen.lock()
            .unwrap()
            .push((request.path().to_owned(), Instant::now()));
        if request.path() == "/warm/broken" {
            Reply::ok("broken").status(500)
        } else {
            Reply::ok(format!("warm {}", request.path())).cache_control("max-age=60")
        }
    })
    .await;
    let urls = ["/warm/1", "/warm/broken", "/warm/2", "/warm/3", "/warm/4"];
    let warm: String = urls
        .iter()
        .map(|url| format!("[[warm]]\nurl = \"{url}\"\n"))
        .collect();
    let config = format!(
        "{SERVER}\n[warm_settings]\nrate = 10\n\n[[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"{}\"\nttl_jitter = 0.0\nearly_refresh_beta = 0.0\n\n{warm}",
        origin.url()
    );
    let proxy = Proxy::start(&config).await;
    for _ in &urls {
        origin.next_request().await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let paths: Vec<&str> = arrivals.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths, urls,
        "every URL once, in order, the failing one included"
    );
    // 10 per second: four gaps of at least ~100 ms (a little slack for timer granularity).
    let span = arrivals[4].1 - arrivals[0].1;
    assert!(
        span >= Duration::from_millis(360),
        "warm-up went too fast: {span:?}"
    );

    let client = Client::new(proxy.addr);
    let hit = client.get("/warm/3", &[]).await;
    assert!(
        hit.cache_status().starts_with("cachet; hit"),
        "{}",
        hit.cache_status()
    );
    assert_eq!(hit.text(), "warm /warm/3");
    assert_eq!(origin.hits_for("/warm/3"), 1);
    proxy.shutdown().await;
}

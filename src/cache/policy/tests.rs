use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

use super::*;
use crate::cache::key::PartitionHasher;

fn route() -> Route {
    // No jitter unless a test asks for it: exact lifetimes are what most tests check.
    Route {
        ttl_jitter: 0.0,
        ..Route::for_tests("r", "/")
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

struct Case {
    route: Route,
    status: u16,
    headers: Vec<(&'static str, String)>,
    request_auth: bool,
    key_on_auth: bool,
    jitter: f64,
}

impl Case {
    fn new(headers: &[(&'static str, &str)]) -> Self {
        Self {
            route: route(),
            status: 200,
            headers: headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(),
            request_auth: false,
            key_on_auth: false,
            jitter: 0.0,
        }
    }

    fn decide(&self) -> Decision {
        let mut request_headers = HeaderMap::new();
        if self.request_auth {
            request_headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        }
        let key_headers: Vec<HeaderName> = if self.key_on_auth {
            vec![AUTHORIZATION]
        } else {
            vec![]
        };
        let partition = PartitionHasher::new(None).partition(&key_headers, &request_headers);
        let target = Target::from_request(
            &"/p".parse::<Uri>().unwrap(),
            &[(http::header::HOST, HeaderValue::from_static("h"))]
                .into_iter()
                .collect(),
        )
        .unwrap();
        let request = sanitized_request(&target, &partition);
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let status = StatusCode::from_u16(self.status).unwrap();
        decide(
            &self.route,
            &request,
            &partition,
            status,
            &headers,
            Timing {
                request_time: now(),
                response_time: now(),
                jitter_sample: self.jitter,
            },
        )
    }

    /// Seconds of freshness, or the reason it was not stored.
    fn fresh_secs(&self) -> Result<u64, NotStorable> {
        match self.decide() {
            Decision::Store(t) => Ok(t.fresh_until.duration_since(now()).unwrap().as_secs()),
            Decision::DontStore(why) => Err(why),
        }
    }

    fn times(&self) -> EntryTimes {
        match self.decide() {
            Decision::Store(t) => t,
            Decision::DontStore(why) => panic!("not stored: {why:?}"),
        }
    }
}

#[test]
fn explicit_freshness_rfc9111_4_2_1() {
    assert_eq!(
        Case::new(&[("cache-control", "max-age=60")]).fresh_secs(),
        Ok(60)
    );
    // s-maxage wins over max-age in a shared cache (§5.2.2.10).
    assert_eq!(
        Case::new(&[("cache-control", "max-age=100, s-maxage=20")]).fresh_secs(),
        Ok(20)
    );
    // max-age wins over Expires (§5.3).
    let expires = httpdate::fmt_http_date(now() + Duration::from_secs(500));
    let case = Case {
        headers: vec![
            ("cache-control", "max-age=60".into()),
            ("expires", expires.clone()),
        ],
        ..Case::new(&[])
    };
    assert_eq!(case.fresh_secs(), Ok(60));
    let date = httpdate::fmt_http_date(now());
    let case = Case {
        headers: vec![("expires", expires), ("date", date)],
        ..Case::new(&[])
    };
    assert_eq!(case.fresh_secs(), Ok(500));
}

#[test]
fn invalid_expires_means_already_expired_rfc9111_5_3() {
    assert_eq!(
        Case::new(&[("expires", "0")]).fresh_secs(),
        Err(NotStorable::NoLifetime)
    );
}

#[test]
fn upstream_age_and_date_are_counted_rfc9111_4_2_3() {
    assert_eq!(
        Case::new(&[("cache-control", "max-age=100"), ("age", "90")]).fresh_secs(),
        Ok(10)
    );
    let date = httpdate::fmt_http_date(now() - Duration::from_secs(40));
    let case = Case {
        headers: vec![("cache-control", "max-age=100".into()), ("date", date)],
        ..Case::new(&[])
    };
    assert_eq!(case.fresh_secs(), Ok(60));
    let times = Case::new(&[("cache-control", "max-age=100"), ("age", "90")]).times();
    assert_eq!(times.initial_age, Duration::from_secs(90));
}

#[test]
fn not_stored_rfc9111_3() {
    assert_eq!(
        Case::new(&[("cache-control", "no-store, max-age=60")]).fresh_secs(),
        Err(NotStorable::Policy)
    );
    assert_eq!(
        Case::new(&[("cache-control", "private, max-age=60")]).fresh_secs(),
        Err(NotStorable::Policy)
    );
    // RFC 9111 §5.2: directive names are case-insensitive.
    for spelling in ["No-Store, max-age=60", "max-age=60, PRIVATE"] {
        assert_eq!(
            Case::new(&[("cache-control", spelling)]).fresh_secs(),
            Err(NotStorable::Policy),
            "{spelling}"
        );
    }
    // RFC 9213 §2.1: CDN-Cache-Control decides alone, `no-store` in it too.
    assert_eq!(
        Case::new(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "no-store")
        ])
        .fresh_secs(),
        Err(NotStorable::Policy)
    );
    assert_eq!(
        Case::new(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]).fresh_secs(),
        Err(NotStorable::SetCookie)
    );
    assert_eq!(
        Case::new(&[("cache-control", "max-age=60"), ("vary", "*")]).fresh_secs(),
        Err(NotStorable::Vary)
    );
    let server_error = Case {
        status: 500,
        ..Case::new(&[])
    };
    assert_eq!(server_error.fresh_secs(), Err(NotStorable::Policy));
    // No freshness information and no default_ttl: nothing to serve.
    assert_eq!(Case::new(&[]).fresh_secs(), Err(NotStorable::NoLifetime));
}

#[test]
fn error_statuses_are_stored_when_the_origin_says_so() {
    let case = Case {
        status: 503,
        ..Case::new(&[("cache-control", "max-age=10")])
    };
    assert_eq!(case.fresh_secs(), Ok(10));
    let with_default = Case {
        status: 503,
        route: Route {
            default_ttl: Duration::from_secs(60),
            ..route()
        },
        ..Case::new(&[])
    };
    assert!(
        with_default.fresh_secs().is_err(),
        "default_ttl never makes an error cacheable"
    );
}

#[test]
fn set_cookie_is_stored_when_the_route_opts_in() {
    let case = Case {
        route: Route {
            cache_set_cookie: true,
            ..route()
        },
        ..Case::new(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")])
    };
    assert_eq!(case.fresh_secs(), Ok(60));
}

#[test]
fn default_ttl_only_without_origin_freshness_and_max_ttl_caps() {
    let r = Route {
        default_ttl: Duration::from_secs(30),
        ..route()
    };
    assert_eq!(
        Case {
            route: r.clone(),
            ..Case::new(&[])
        }
        .fresh_secs(),
        Ok(30)
    );
    assert_eq!(
        Case {
            route: r.clone(),
            ..Case::new(&[("cache-control", "max-age=5")])
        }
        .fresh_secs(),
        Ok(5)
    );
    assert_eq!(
        Case {
            route: r,
            ..Case::new(&[("cache-control", "no-cache")])
        }
        .fresh_secs(),
        Err(NotStorable::NoLifetime)
    );
    let capped = Route {
        max_ttl: Some(Duration::from_secs(10)),
        ..route()
    };
    assert_eq!(
        Case {
            route: capped,
            ..Case::new(&[("cache-control", "max-age=100")])
        }
        .fresh_secs(),
        Ok(10)
    );
}

#[test]
fn stale_windows_rfc5861_unless_the_origin_forbids_them_rfc9111_4_2_4() {
    let r = Route {
        stale_while_revalidate: Duration::from_secs(30),
        stale_if_error: Duration::from_secs(300),
        ..route()
    };
    let t = Case {
        route: r.clone(),
        ..Case::new(&[("cache-control", "max-age=10")])
    }
    .times();
    assert_eq!(
        t.stale_while_revalidate_until
            .duration_since(t.fresh_until)
            .unwrap()
            .as_secs(),
        30
    );
    assert_eq!(
        t.stale_if_error_until
            .duration_since(t.fresh_until)
            .unwrap()
            .as_secs(),
        300
    );
    assert_eq!(t.keep_until, t.stale_if_error_until);
    // The origin's larger window wins.
    let t = Case {
        route: r.clone(),
        ..Case::new(&[("cache-control", "max-age=10, stale-while-revalidate=100")])
    }
    .times();
    assert_eq!(
        t.stale_while_revalidate_until
            .duration_since(t.fresh_until)
            .unwrap()
            .as_secs(),
        100
    );
    // ...but no further than `max_ttl`, which bounds an entry's whole life (and so how long a
    // purge watermark must be kept).
    let capped = Route {
        max_ttl: Some(Duration::from_secs(60)),
        ..r.clone()
    };
    let t = Case {
        route: capped,
        ..Case::new(&[(
            "cache-control",
            "max-age=10, stale-while-revalidate=100000, stale-if-error=100000",
        )])
    }
    .times();
    assert_eq!(
        t.keep_until
            .duration_since(t.fresh_until)
            .unwrap()
            .as_secs(),
        300,
        "the route's own stale-if-error (300 s) is larger than max_ttl and stays"
    );
    assert_eq!(
        t.stale_while_revalidate_until
            .duration_since(t.fresh_until)
            .unwrap()
            .as_secs(),
        60
    );
    for forbidding in [
        "max-age=10, must-revalidate",
        "max-age=10, proxy-revalidate",
        "s-maxage=10",
    ] {
        let t = Case {
            route: r.clone(),
            ..Case::new(&[("cache-control", forbidding)])
        }
        .times();
        assert_eq!(t.keep_until, t.fresh_until, "{forbidding}");
    }
}

#[test]
fn authenticated_requests_in_a_shared_partition_need_explicit_permission_rfc9111_3_5() {
    let plain = Case {
        request_auth: true,
        ..Case::new(&[("cache-control", "max-age=60")])
    };
    assert_eq!(plain.fresh_secs(), Err(NotStorable::Policy));
    let public = Case {
        request_auth: true,
        ..Case::new(&[("cache-control", "public, max-age=60")])
    };
    assert_eq!(public.fresh_secs(), Ok(60));
}

#[test]
fn credential_partitions_act_as_a_private_cache_without_stale_serving() {
    let r = Route {
        stale_while_revalidate: Duration::from_secs(30),
        ..route()
    };
    let case = Case {
        route: r.clone(),
        request_auth: true,
        key_on_auth: true,
        ..Case::new(&[("cache-control", "private, max-age=60")])
    };
    let t = case.times();
    assert_eq!(
        t.keep_until, t.fresh_until,
        "no stale serving for credentials by default"
    );
    let opted_in = Case {
        route: Route {
            cache_authenticated_stale: true,
            ..r
        },
        request_auth: true,
        key_on_auth: true,
        ..Case::new(&[("cache-control", "private, max-age=60")])
    };
    let t = opted_in.times();
    assert!(t.keep_until > t.fresh_until);
}

#[test]
fn jitter_only_ever_shortens_freshness() {
    let jittery = Route {
        ttl_jitter: 0.1,
        ..route()
    };
    let base = Case {
        route: jittery.clone(),
        ..Case::new(&[("cache-control", "max-age=100")])
    };
    assert_eq!(
        base.fresh_secs(),
        Ok(100),
        "sample 0 keeps the full lifetime"
    );
    let most = Case {
        jitter: 0.999,
        ..Case {
            route: jittery,
            ..Case::new(&[("cache-control", "max-age=100")])
        }
    };
    let t = most.times();
    let fresh = t.fresh_until.duration_since(now()).unwrap();
    assert!(
        fresh > std::time::Duration::from_secs(90) && fresh < std::time::Duration::from_secs(91),
        "{fresh:?}"
    );
}

#[test]
fn cdn_cache_control_takes_precedence_rfc9213_2_1() {
    let case = Case::new(&[
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=30"),
    ]);
    assert_eq!(case.fresh_secs(), Ok(30));
    let case = Case::new(&[
        ("cache-control", "max-age=600"),
        ("cdn-cache-control", "no-store"),
    ]);
    assert_eq!(case.fresh_secs(), Err(NotStorable::Policy));
    let expires = httpdate::fmt_http_date(now() + Duration::from_secs(500));
    let case = Case {
        headers: vec![
            ("expires", expires),
            ("cdn-cache-control", "max-age=20".into()),
        ],
        ..Case::new(&[])
    };
    assert_eq!(case.fresh_secs(), Ok(20));
}

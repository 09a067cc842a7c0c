//! Environment overrides as `validate` applies them: values take the type of their key, bad
//! ones are reported by variable, every key in `ENV_KEYS` exists, and `url`/`cluster` replace
//! each other.

use super::super::validate;
use super::{MINIMAL, env, errors};
use crate::config::RedisTarget;
use crate::config::schema::{ENV_KEYS, EnvKind};

#[test]
fn env_values_take_the_type_of_their_key() {
    let config = validate(
        MINIMAL,
        env(&[
            ("CACHET__SERVER__WORKER_THREADS", "3"),
            ("cachet__log__access_log", "false"),
            ("CACHET__CACHE__TENANT_MAX_SHARE", "0.5"),
            ("CACHET__SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
            ("CACHET__WARM_SETTINGS__RATE", "5"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.worker_threads, 3);
    assert!(!config.log.access_log);
    assert_eq!(config.cache.tenant_max_share, 0.5);
    let proxies: Vec<_> = config
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.1/32"]);
    assert_eq!(config.warm_settings.rate, 5);
}

#[test]
fn bad_env_values_are_reported_by_variable() {
    let found = errors(
        MINIMAL,
        &[
            ("CACHET__SERVER__WORKER_THREADS", "many"),
            ("CACHET__LOG__ACCESS_LOG", "yes"),
            ("CACHET__WARM__URL", "/x"),
            ("CACHET__SERVER__LISTEN", "nowhere"),
        ],
    );
    let pairs: Vec<_> = found
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(pairs.len(), 4, "{pairs:?}");
    assert!(pairs.contains(&(
        "CACHET__SERVER__WORKER_THREADS",
        "expected an integer, got \"many\""
    )));
    assert!(pairs.contains(&(
        "CACHET__LOG__ACCESS_LOG",
        "expected true or false, got \"yes\""
    )));
    assert!(pairs.contains(&("CACHET__WARM__URL", "warm come from the file only")));
    let listen = found.iter().find(|e| e.path == "server.listen").unwrap();
    assert!(
        listen.message.ends_with("(set by CACHET__SERVER__LISTEN)"),
        "{listen:?}"
    );
}

#[test]
fn every_env_key_names_a_schema_field() {
    for (key, kind) in ENV_KEYS {
        let var = format!("CACHET__{}", key.replace('.', "__").to_uppercase());
        let value = match kind {
            EnvKind::Integer => "1",
            EnvKind::Float => "0.5",
            EnvKind::Bool => "true",
            EnvKind::List | EnvKind::Str => "redis://x",
        };
        let found = errors(MINIMAL, &[(&var, value)]);
        assert!(
            found.iter().all(|e| e.message != "unknown key"),
            "{var}: {found:?}"
        );
    }
}

#[test]
fn env_url_and_cluster_replace_each_other() {
    let file = format!("[cache.redis]\ncluster = [\"redis://a:7000\"]\n{MINIMAL}");
    let url = env(&[("CACHET__CACHE__REDIS__URL", "redis://b:6379")]);
    let redis = validate(&file, url).unwrap().cache.redis.unwrap();
    assert!(matches!(redis.target, RedisTarget::Node(url) if url == "redis://b:6379"));

    let file = format!("[cache.redis]\nurl = \"redis://a:6379\"\n{MINIMAL}");
    let cluster = env(&[("CACHET__CACHE__REDIS__CLUSTER", "redis://c:1,redis://d:2")]);
    let redis = validate(&file, cluster).unwrap().cache.redis.unwrap();
    assert!(matches!(redis.target, RedisTarget::Cluster(nodes) if nodes.len() == 2));
}

//! Assembling [`Config`] from the read sections: runs the semantic checks of every section in
//! file order, then collects the non-fatal warnings of the finished configuration.

use super::check::Check;
use super::routes::routes;
use super::settings::{admin, cache, log, metrics, server, warm_target};
use crate::config::schema::FileSchema;
use crate::config::{Config, WarmSettings, WarmTarget};

/// Every semantic check, section by section, then the cross-field ones.
pub(super) fn build(file: FileSchema, check: &mut Check) -> Config {
    let server = server(file.server, check);
    let admin = admin(file.admin, check);
    let log = log(file.log, check);
    let metrics = metrics(file.metrics, check);
    let cache = cache(file.cache, check);
    let routes = routes(file.routes, &cache, check);
    let warm: Vec<WarmTarget> = file
        .warm
        .into_iter()
        .enumerate()
        .filter_map(|(i, entry)| Some(warm_target(&format!("warm[{i}]"), entry?, check)))
        .collect();
    check.at_least_one("warm_settings.rate", file.warm_settings.rate as usize);
    let mut config = Config {
        server,
        admin,
        log,
        metrics,
        cache,
        routes: routes.into(),
        warm,
        warm_settings: WarmSettings {
            rate: file.warm_settings.rate,
        },
        warnings: Vec::new(),
    };
    config.warnings = warnings(&config);
    config
}

/// Remarks that do not stop start-up.
fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.cache.partition_secret.is_none() {
        for (i, route) in config.routes.iter().enumerate() {
            if route.key_headers.contains(&http::header::AUTHORIZATION) {
                warnings.push(format!(
                    "routes[{i}].key_headers: authorization is a key header but cache.partition_secret is not set; a built-in constant keys the hash"
                ));
            }
        }
    }
    warnings
}

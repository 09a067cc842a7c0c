//! [`RouteTable`]: picks the route of a normalized target, by host (when a route names one)
//! and then the longest `path_prefix`.

use std::sync::Arc;

use crate::config::Route;

/// Routes ordered for matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    // Host-specific routes first, then longest prefix first: the first match wins.
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Builds the table from validated routes.
    pub fn new(routes: &[Route]) -> Self {
        let mut routes: Vec<Arc<Route>> = routes.iter().cloned().map(Arc::new).collect();
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
        });
        Self { routes }
    }

    /// The route for `host` (lower-case, no port) and a normalized `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| {
            route.host.as_deref().is_none_or(|h| h == host) && path.starts_with(&route.path_prefix)
        })
    }

    /// The route a path alone selects, whatever its host: for purges that name a path.
    pub fn route_for_path(&self, path: &str) -> Option<&Arc<Route>> {
        let hostless = self.routes.iter().filter(|r| r.host.is_none());
        let hosted = self.routes.iter().filter(|r| r.host.is_some());
        hostless
            .chain(hosted)
            .find(|route| path.starts_with(&route.path_prefix))
    }

    /// The route called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| &*route.name == name)
    }

    /// Whether some route keys on `header`.
    pub fn has_key_header(&self, header: &http::HeaderName) -> bool {
        self.routes
            .iter()
            .any(|route| route.key_headers.contains(header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str, host: Option<&str>) -> Route {
        Route {
            host: host.map(Into::into),
            ..Route::for_tests(name, prefix)
        }
    }

    #[test]
    fn host_match_beats_a_longer_prefix_elsewhere_and_longest_prefix_wins() {
        let table = RouteTable::new(&[
            route("root", "/", None),
            route("api", "/api", None),
            route("products", "/api/products", None),
            route("b-host", "/", Some("b.example")),
        ]);
        let name = |host, path| table.route(host, path).map(|r| r.name.clone());
        assert_eq!(
            name("a.example", "/api/products/1").as_deref(),
            Some("products")
        );
        assert_eq!(name("a.example", "/api/other").as_deref(), Some("api"));
        assert_eq!(name("a.example", "/x").as_deref(), Some("root"));
        assert_eq!(
            name("b.example", "/api/products/1").as_deref(),
            Some("b-host")
        );
    }

    #[test]
    fn no_match_is_none() {
        let table = RouteTable::new(&[route("api", "/api", Some("a.example"))]);
        assert!(table.route("a.example", "/other").is_none());
        assert!(table.route("b.example", "/api").is_none());
    }
}

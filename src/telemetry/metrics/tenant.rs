//! [`TenantRule`]: which header names the tenant, and which tenants get their own label value;
//! credential headers never do.

use std::sync::Arc;

use http::HeaderName;

use super::OTHER_TENANT;
use crate::config::MetricsConfig;

/// Headers whose values must never become labels, whatever the config says (validation refuses
/// them too; this is the second lock).
const CREDENTIAL_HEADERS: [HeaderName; 3] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
];

/// Which header names the tenant, and the tenants that get their own label value.
#[derive(Debug)]
pub(super) struct TenantRule {
    pub(super) header: HeaderName,
    pub(super) allowed: Vec<Arc<str>>,
    pub(super) other: Arc<str>,
}

impl TenantRule {
    /// `None` (per-tenant figures off) without an allow-list, or when the header is not a
    /// valid name or is a credential header.
    pub(super) fn new(config: &MetricsConfig) -> Option<Self> {
        if config.tenant_labels.is_empty() {
            return None;
        }
        let header = match HeaderName::from_bytes(config.tenant_label_header.as_bytes()) {
            Ok(header) if !CREDENTIAL_HEADERS.contains(&header) => header,
            _ => {
                tracing::warn!(
                    header = %config.tenant_label_header,
                    "tenant label header refused; per-tenant metrics off"
                );
                return None;
            }
        };
        Some(Self {
            header,
            allowed: config
                .tenant_labels
                .iter()
                .map(|t| Arc::from(t.as_str()))
                .collect(),
            other: Arc::from(OTHER_TENANT),
        })
    }
}

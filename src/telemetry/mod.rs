//! Logging setup: a `tracing` subscriber from `[log]`, text or JSON; and [`metrics`], the
//! instance-owned Prometheus registry.

pub mod metrics;

pub use metrics::Metrics;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter")]
    Filter(#[source] tracing_subscriber::filter::ParseError),
}

/// Installs the global subscriber for the binary. A second call (as in tests running several
/// instances) leaves the first in place.
///
/// # Errors
/// [`TelemetryError::Filter`] when `level` is not a valid filter.
pub fn init(config: &LogConfig) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(&config.level).map_err(TelemetryError::Filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

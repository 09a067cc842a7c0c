//! Wiring: builds the tier, origin client and services from a validated [`Config`] and runs
//! them on pre-bound listeners until the shutdown future completes.

mod backend;
mod warm;

use backend::Backend;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{AdminLimits, AdminService};
use crate::clock::{Clock, SystemClock};
use crate::coalesce::lease::{LeaseHook, Leases};
use crate::config::Config;
use crate::proxy::{OriginClient, ProxyService};
use crate::purge::SharedPurges;
use crate::server::{self, ServerLimits};
use crate::telemetry::Metrics;
use crate::tiers::{MemoryTier, RedisTier, TieredOptions, Tiers};

/// The bound sockets Cachet serves on. Binding is the caller's job, so tests bind port 0.
#[derive(Debug)]
pub struct Listeners {
    /// Client traffic (`[server].listen`).
    pub proxy: TcpListener,
    /// Health and admin (`[admin].listen`).
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both addresses of `config`.
    ///
    /// # Errors
    /// The bind failure, naming nothing secret.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            proxy: TcpListener::bind(config.server.listen).await?,
            admin: TcpListener::bind(config.admin.listen).await?,
        })
    }
}

/// Knobs that are not configuration: what tests inject.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The time source for every freshness decision.
    pub clock: Arc<dyn Clock>,
    /// Seed of the random draws (TTL jitter, early refresh); random when `None`.
    pub seed: Option<u64>,
    /// The config file `POST /reload` and SIGHUP re-read; no reload without one.
    pub config_path: Option<std::path::PathBuf>,
    /// Environment overrides applied on reload (the binary passes `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Test seam: runs when this instance lost a fill lease, before it registers for the
    /// holder's outcome.
    #[doc(hidden)]
    pub lease_hook: Option<LeaseHook>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            seed: None,
            config_path: None,
            env: Vec::new(),
            lease_hook: None,
        }
    }
}

/// A failure that stops Cachet.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("listener failed")]
    Io(#[from] std::io::Error),
}

/// Runs Cachet with the system clock. See [`run_with`].
///
/// # Errors
/// [`RunError`] when a listener fails.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_with(listeners, config, RunOptions::default(), shutdown).await
}

/// Serves client traffic and the admin API until `shutdown` completes, then drains both
/// within `[server].drain_timeout` and returns.
///
/// # Errors
/// [`RunError`] when a listener fails.
pub async fn run_with(
    listeners: Listeners,
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let tiers = build_tiers(&config).await;
    let redis = tiers.shared().cloned();
    let stats = Arc::clone(tiers.stats());
    let shared_reads = tiers.shared_reads();
    // One subscription per instance carries fill outcomes and purges.
    let pubsub = redis.as_ref().map(|redis| {
        redis.subscribe(vec![
            Leases::channel_name(redis),
            SharedPurges::channel_name(redis),
        ])
    });
    let leases = redis
        .as_ref()
        .zip(pubsub.clone())
        .map(|(redis, pubsub)| Leases::new(redis.clone(), pubsub, options.lease_hook.clone()));
    let seed = options.seed.unwrap_or_else(rand::random);
    // Owned by this instance: several instances in one process report their own figures.
    let metrics = Metrics::new(&config.metrics);
    let proxy = ProxyService::new(
        &config,
        tiers,
        OriginClient::new(),
        Arc::clone(&options.clock),
        seed,
        leases,
        metrics,
    );
    let purges = redis.clone().zip(pubsub).map(|(redis, pubsub)| {
        SharedPurges::start(
            redis,
            pubsub,
            proxy.watermarks().clone(),
            shared_reads,
            Arc::clone(&options.clock),
        )
    });
    let draining = Arc::new(AtomicBool::new(false));
    let backend = Backend {
        proxy: proxy.clone(),
        purges,
        redis,
        stats,
        clock: options.clock,
        draining: Arc::clone(&draining),
        config_path: options.config_path,
        env: options.env,
    };
    let backend = Arc::new(backend);
    let hangups = reload_on_hangup(Arc::clone(&backend));
    let sweeping = sweep_watermarks(Arc::clone(&backend));
    let warming = warm::spawn(
        proxy.clone(),
        config.warm.clone(),
        &config.warm_settings,
        listeners.proxy.local_addr()?.to_string(),
    );
    let limits = ServerLimits::from(&config.server);
    let admin = AdminService::new(
        backend,
        config.admin.token.clone(),
        AdminLimits::from(&config.cache),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down");
        draining.store(true, Ordering::Release);
        let _ = stop_tx.send(true);
    };
    tracing::info!(
        proxy = %listeners.proxy.local_addr()?,
        admin = %listeners.admin.local_addr()?,
        routes = config.routes.len(),
        "listening"
    );
    let (_, proxy_result, admin_result) = tokio::join!(
        signal,
        server::serve(
            listeners.proxy,
            move |peer| proxy.for_peer(peer),
            limits,
            stopped(stop_rx.clone())
        ),
        server::serve(
            listeners.admin,
            move |_| admin.clone(),
            limits,
            stopped(stop_rx)
        ),
    );
    sweeping.abort();
    for task in [hangups, warming].into_iter().flatten() {
        task.abort();
    }
    proxy_result?;
    admin_result?;
    Ok(())
}

/// SIGHUP re-reads the config file, like `POST /reload`.
fn reload_on_hangup(backend: Arc<Backend>) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload through the admin API");
                return None;
            }
        };
        Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let _ = backend.reload_now();
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = backend;
        None
    }
}

/// How often old purge watermarks are forgotten (purges also sweep before they record).
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Forgets purge watermarks past their retention, here and in the shared tier, every
/// [`SWEEP_INTERVAL`].
fn sweep_watermarks(backend: Arc<Backend>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The first sweep one interval after start: nothing is old yet.
        let first = tokio::time::Instant::now() + SWEEP_INTERVAL;
        let mut ticks = tokio::time::interval_at(first, SWEEP_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            backend.sweep().await;
        }
    })
}

/// Completes once the stop flag is raised (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// The memory tier `[cache]` describes.
fn memory_tier(config: &Config) -> MemoryTier {
    MemoryTier::with_limits(
        config.cache.memory_max_bytes,
        config.cache.max_object_bytes,
        config.cache.tenant_max_share,
    )
}

/// A `ProxyService` on the memory tier alone, as [`run`] builds it without `[cache.redis]`,
/// for driving the proxy in process (`oneshot`) from benches and tests. `seed` seeds its
/// random draws.
pub fn memory_only_service(config: &Config, clock: Arc<dyn Clock>, seed: u64) -> ProxyService {
    ProxyService::new(
        config,
        Tiers::new(memory_tier(config), None, TieredOptions::default()),
        OriginClient::new(),
        clock,
        seed,
        None,
        Metrics::new(&config.metrics),
    )
}

/// Memory in front of Redis when `[cache.redis]` is configured. Redis being down is not an
/// error: the tier connects by itself and the breaker keeps it off the request path meanwhile.
async fn build_tiers(config: &Config) -> Tiers {
    let memory = memory_tier(config);
    let Some(redis) = &config.cache.redis else {
        return Tiers::new(memory, None, TieredOptions::default());
    };
    let options = TieredOptions {
        max_inflight_writes: redis.max_inflight_writes,
        ..TieredOptions::default()
    };
    match RedisTier::connect(redis, config.cache.max_object_bytes).await {
        Ok(shared) => {
            let changes = shared.epoch_changes();
            let tiers = Tiers::new(memory, Some(shared), options);
            // Ends with the tier's epoch sender, i.e. when the tier is dropped.
            let _clearing = tiers.clear_on_epoch_change(changes);
            tiers
        }
        Err(error) => {
            tracing::error!(%error, "shared tier misconfigured; running on the memory tier alone");
            Tiers::new(memory, None, options)
        }
    }
}

//! The `cachet` binary: parses the command line, calls the library, maps failures to exit
//! codes (0 clean, 2 bad config or arguments, 1 runtime failure).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use cachet::config::{self, Config, ConfigError};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cachet",
    version,
    about = "A caching HTTP reverse proxy for multi-tenant APIs"
)]
struct Cli {
    /// The TOML configuration file.
    #[arg(long, global = true, default_value = "config/cachet.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the configuration and print a summary, or every problem.
    Check,
    /// Run the proxy in front of an in-process demo API.
    Demo {
        /// Where the demo proxy listens (with --origin-only: where the demo API listens).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Run only the demo API, no proxy: an origin for separately started instances.
        #[arg(long)]
        origin_only: bool,
    },
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check => match config::load(&cli.config, std::env::vars()) {
            Ok(config) => {
                println!("{}", config.summary());
                for warning in &config.warnings {
                    println!("warning: {warning}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => config_failure(&error),
        },
        Command::Serve => match config::load(&cli.config, std::env::vars()) {
            Ok(config) => serve(config, cli.config),
            Err(error) => config_failure(&error),
        },
        Command::Demo {
            listen,
            origin_only,
        } => demo(listen, origin_only),
    }
}

fn config_failure(error: &ConfigError) -> ExitCode {
    match error {
        ConfigError::Invalid(problems) => {
            eprintln!("invalid configuration ({} problem(s)):", problems.len());
            for problem in problems {
                eprintln!("  {problem}");
            }
        }
        ConfigError::Read { path, source } => {
            eprintln!("cannot read config file {}: {source}", path.display());
        }
    }
    ExitCode::from(EXIT_CONFIG)
}

/// The runtime of `worker_threads` threads (0: one per core). One thread gets tokio's
/// current-thread scheduler: the work-stealing one, run on a single worker, cost 16 % more CPU
/// per miss (each miss hands work between several tasks) for nothing it could steal.
fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if worker_threads > 0 {
            builder.worker_threads(worker_threads);
        }
        builder
    };
    builder.enable_all().build()
}

fn serve(config: Config, path: PathBuf) -> ExitCode {
    if let Err(error) = cachet::telemetry::init(&config.log) {
        eprintln!("invalid configuration: log.level: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in &config.warnings {
        tracing::warn!(%warning, "configuration");
    }
    let runtime = match runtime(config.server.worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start runtime: {error}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async move {
        let listeners = match cachet::Listeners::bind(&config).await {
            Ok(listeners) => listeners,
            Err(error) => {
                tracing::error!(%error, "cannot bind listeners");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let options = cachet::RunOptions {
            config_path: Some(path),
            env: std::env::vars().collect(),
            ..cachet::RunOptions::default()
        };
        match cachet::run_with(listeners, config, options, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "cachet stopped");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

fn demo(listen: SocketAddr, origin_only: bool) -> ExitCode {
    let log = cachet::config::LogConfig {
        level: "info".into(),
        format: cachet::config::LogFormat::Text,
        access_log: true,
    };
    let _ = cachet::telemetry::init(&log);
    let runtime = match runtime(0) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start runtime: {error}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(async {
        if origin_only {
            cachet::demo::run_origin(listen, shutdown_signal()).await
        } else {
            cachet::demo::run(listen, shutdown_signal()).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM; SIGINT only");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

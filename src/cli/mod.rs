//! The command line: `serve`, `sim`, `lookup`.

mod lookup;
mod serve;
mod sim;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::ConfigError;
use crate::domain::Check;
use crate::server::ServeError;
use crate::telemetry::LogFormat;

/// phonecheck: phone-number intelligence behind one gRPC contract.
#[derive(Debug, Parser)]
#[command(name = "phonecheck", version, about)]
pub struct Cli {
    /// Log format (logs go to standard error; `RUST_LOG` filters them).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service (sandbox mode when no vendor is configured).
    Serve {
        /// Configuration file (TOML); `PHONECHECK__...` variables override it.
        #[arg(long, env = "PHONECHECK_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on; overrides `server.listen`. Port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Serve every vendor simulator on one address, at each vendor's own paths.
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
        /// Latency added to every answer, e.g. `20ms`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        latency: Duration,
        /// How long caih takes to label an added number, e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        caih_label_delay: Duration,
    },
    /// Check one number against a running server and print the report.
    Lookup {
        /// The number, in any common written form.
        number: String,
        /// A paid check to run; repeat for several.
        #[arg(long = "check", value_name = "CHECK")]
        checks: Vec<Check>,
        /// Region for numbers without a country code.
        #[arg(long, default_value = "CN")]
        region: String,
        /// The server's URL.
        #[arg(
            long,
            default_value = "http://127.0.0.1:50051",
            env = "PHONECHECK_SERVER"
        )]
        server: String,
        /// Print the report as JSON (the protobuf JSON mapping).
        #[arg(long)]
        json: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The service failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A socket or the terminal failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server could not be reached.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// The URL tried.
        server: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The server answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    /// The answer could not be shown.
    #[error("cannot render the answer: {0}")]
    Render(String),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    crate::telemetry::init_logging(cli.log_format);
    match cli.command {
        Command::Serve { config, listen } => serve::run(config, listen).await,
        Command::Sim {
            listen,
            latency,
            caih_label_delay,
        } => sim::run(listen, latency, caih_label_delay).await,
        Command::Lookup {
            number,
            checks,
            region,
            server,
            json,
        } => lookup::run(number, checks, region, server, json).await,
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

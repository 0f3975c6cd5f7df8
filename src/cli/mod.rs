//! The command line: `serve`, `sim`, `lookup`, `analyze`, `check`, `job ...`, `usage`, `keys new`.

mod analyze;
mod check;
mod estimate;
mod job;
mod lookup;
mod serve;
mod sim;
mod usage;

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
        /// Address of the admin HTTP endpoint (`/metrics` for Prometheus, `/healthz`);
        /// overrides `server.admin_listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Listen on a non-loopback address even though no API keys are configured.
        #[arg(long)]
        allow_unauthenticated: bool,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Serve every vendor simulator on one address, at each vendor's own paths.
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
        /// Latency added to every answer, e.g. `20ms`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        latency: Duration,
        /// How long an asynchronous vendor takes to finish a submitted number (caller-ID labels:
        /// hours in real life), e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        async_delay: Duration,
        /// How long a vendor that refuses repeated queries of one number (a carrier's
        /// per-number frequency limit) refuses them for, e.g. `5s`; `0s` turns it off (each such
        /// vendor's own window when absent).
        #[arg(long, value_parser = humantime::parse_duration)]
        repeat_window: Option<Duration>,
        /// Faults to inject.
        #[command(flatten)]
        faults: FaultArgs,
    },
    /// Check a list of numbers through a running server (streaming), with a progress bar.
    Check(CheckCommand),
    /// Bulk file jobs on a running server: submit, follow, export.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// The usage ledger of a running server: billable calls, cost, cache hits, shared calls and
    /// failures per tenant, provider, check and day or month (China time).
    Usage(usage::UsageCommand),
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
    /// Analyse numbers offline, without a server: one number per line in, one `NumberInfo` per
    /// line out (JSON, the protobuf JSON mapping).
    Analyze {
        /// A file with one number per line, or `-` for standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// Region for numbers without a country code.
        #[arg(long, default_value = "CN")]
        region: String,
    },
}

/// `phonecheck keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a fresh API key and the configuration line that grants it.
    New {
        /// The tenant the key is for.
        #[arg(long, default_value = "my-tenant")]
        tenant: String,
    },
}

/// `phonecheck check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckCommand {
    /// A file of numbers read as a batch job reads it (TXT, CSV, XLSX, XLS; the number column
    /// detected), or `-` for a UTF-8 list on standard input.
    pub input: PathBuf,
    /// A paid check to run; repeat for several.
    #[arg(long = "check", value_name = "CHECK")]
    pub checks: Vec<Check>,
    /// Region for numbers without a country code.
    #[arg(long, default_value = "CN")]
    pub region: String,
    /// The number column: header name, letter or 1-based number (detected when absent).
    #[arg(long)]
    pub column: Option<String>,
    /// The sheet of a workbook (every sheet when absent).
    #[arg(long)]
    pub sheet: Option<String>,
    /// The server's URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "PHONECHECK_SERVER"
    )]
    pub server: String,
    /// Where to write the results (CSV); standard output when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// When the users registered these numbers with you (RFC 3339, `2021-03-04T05:06:07Z`), for
    /// `--check reassigned`: sent with every number whose row has no time of its own.
    #[arg(long, value_parser = parse_registered_at)]
    pub registered_at: Option<prost_types::Timestamp>,
    /// The column of each row's registration time, for `--check reassigned`: header name,
    /// letter or 1-based number (found by its header, 注册时间, registered, ..., when absent).
    #[arg(long)]
    pub registered_at_column: Option<String>,
}

/// Reads `--registered-at`.
fn parse_registered_at(text: &str) -> Result<prost_types::Timestamp, String> {
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2021-03-04T05:06:07Z"))?;
    Ok(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

/// `phonecheck sim` fault flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FaultArgs {
    /// Share of calls answered HTTP 503 with a non-vendor body (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of calls answered with a truncated body.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// Share of calls left unanswered for a minute.
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    /// Share of calls whose connection is cut mid-answer.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Extra latency, uniform up to this, e.g. `30ms`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub latency_jitter: Duration,
    /// Calls per second each vendor accepts before its own over-limit answer.
    #[arg(long)]
    pub quota: Option<u32>,
    /// Seed of the fault draws, to replay a run (a fresh one is printed when absent).
    #[arg(long)]
    pub fault_seed: Option<u64>,
}

impl From<FaultArgs> for crate::sim::faults::Faults {
    fn from(a: FaultArgs) -> Self {
        crate::sim::faults::Faults {
            error_rate: a.error_rate,
            malformed_rate: a.malformed_rate,
            timeout_rate: a.timeout_rate,
            reset_rate: a.reset_rate,
            latency_jitter: a.latency_jitter,
            quota_per_second: a.quota,
            seed: a.fault_seed,
        }
    }
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
    /// A flag's value is out of range.
    #[error("{0}")]
    Usage(String),
    /// The answer could not be shown.
    #[error("cannot render the answer: {0}")]
    Render(String),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    crate::telemetry::init_logging(cli.log_format);
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
            allow_unauthenticated,
        } => serve::run(config, listen, admin_listen, allow_unauthenticated).await,
        Command::Keys(KeysCommand::New { tenant }) => {
            let key = crate::auth::new_key();
            println!("API key (give it to the client; it is not stored anywhere):\n  {key}\n");
            println!("Add to the server configuration:\n  [tenants.{tenant}]");
            println!("  key_sha256 = [\"{}\"]", crate::auth::key_hash(&key));
            Ok(())
        }
        Command::Sim {
            listen,
            latency,
            async_delay,
            repeat_window,
            faults,
        } => sim::run(listen, latency, async_delay, repeat_window, faults.into()).await,
        Command::Check(c) => {
            check::run(check::CheckArgs {
                input: c.input,
                checks: c.checks,
                region: c.region,
                column: c.column,
                sheet: c.sheet,
                server: c.server,
                out: c.out,
                registered_at: c.registered_at,
                registered_at_column: c.registered_at_column,
            })
            .await
        }
        Command::Job(command) => job::run(command).await,
        Command::Usage(command) => usage::run(command).await,
        Command::Lookup {
            number,
            checks,
            region,
            server,
            json,
        } => lookup::run(number, checks, region, server, json).await,
        Command::Analyze { input, region } => analyze::run(&input, &region),
    }
}

/// An amount as people read it: `0.09 CNY` (`0.00` when the server sent none).
pub(crate) fn money_text(money: Option<&crate::pb::google_type::Money>) -> String {
    let money = money.cloned().unwrap_or_default();
    let amount =
        crate::domain::Money::from_units_and_nanos(money.units, money.nanos).unwrap_or_default();
    if money.currency_code.is_empty() {
        amount.to_string()
    } else {
        format!("{amount} {}", money.currency_code)
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a signal that comes while the server is still starting (its
/// address already announced) stops it gracefully instead of killing it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        let mut terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt.take()) => {},
                () = wait(terminate.take()) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

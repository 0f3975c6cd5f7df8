//! `phonecheck sim`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{CliError, shutdown_signal};
use crate::sim::SimConfig;
use crate::sim::faults::Faults;

pub(super) async fn run(
    listen: SocketAddr,
    latency: Duration,
    async_delay: Duration,
    repeat_window: Option<Duration>,
    mut faults: Faults,
) -> Result<(), CliError> {
    let problems = faults.problems();
    if !problems.is_empty() {
        return Err(CliError::Usage(problems.join("; ")));
    }
    // Chosen here so that it can be printed: `--fault-seed` replays the run.
    let seed = *faults.seed.get_or_insert_with(rand::random);
    let listener = TcpListener::bind(listen).await?;
    let server = crate::vendors::simulator(
        listener,
        SimConfig {
            latency,
            async_delay,
            repeat_window,
            faults,
            ..SimConfig::default()
        },
    )?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "phonecheck sim listening on {}", server.base_url())?;
    for (vendor, paths) in crate::vendors::sim_paths() {
        for path in paths {
            writeln!(stdout, "  {vendor:<9} POST {path}")?;
        }
    }
    writeln!(stdout, "  stats     GET  /_sim/stats")?;
    writeln!(
        stdout,
        "  fault seed {seed} (replay the draws with --fault-seed {seed})"
    )?;
    writeln!(
        stdout,
        "  sandbox accounts: see README, \"Sandbox and magic numbers\""
    )?;
    stdout.flush()?;
    shutdown_signal().await;
    server.shutdown().await?;
    Ok(())
}

//! `phonecheck sim`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{CliError, shutdown_signal};
use crate::providers::{aliyun, caih, thinksms, tongdun, yidun};
use crate::sim::faults::Faults;
use crate::sim::{SimConfig, SimServer};

pub(super) async fn run(
    listen: SocketAddr,
    latency: Duration,
    caih_label_delay: Duration,
    mut faults: Faults,
) -> Result<(), CliError> {
    let problems = faults.problems();
    if !problems.is_empty() {
        return Err(CliError::Usage(problems.join("; ")));
    }
    // Chosen here so that it can be printed: `--fault-seed` replays the run.
    let seed = *faults.seed.get_or_insert_with(rand::random);
    let listener = TcpListener::bind(listen).await?;
    let server = SimServer::spawn(
        listener,
        SimConfig {
            latency,
            caih_label_delay,
            faults,
            ..SimConfig::default()
        },
    )?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "phonecheck sim listening on {}", server.base_url())?;
    for (vendor, path) in [
        ("thinksms", thinksms::PATH.to_owned()),
        ("caih", caih::ADD_PATH.to_owned()),
        ("caih", caih::SEARCH_PATH.to_owned()),
        ("tongdun", format!("[/id|/sg|/pk]{}", tongdun::PATH)),
        ("yidun", yidun::PATH.to_owned()),
        (
            "aliyun",
            format!("{}  (x-acs-action: {})", aliyun::PATH, aliyun::ACTION),
        ),
    ] {
        writeln!(stdout, "  {vendor:<9} POST {path}")?;
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

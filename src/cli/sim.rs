//! `phonecheck sim`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{CliError, shutdown_signal};
use crate::sim::{self, SimConfig, SimServer};

pub(super) async fn run(listen: SocketAddr, latency: Duration) -> Result<(), CliError> {
    let listener = TcpListener::bind(listen).await?;
    let server = SimServer::spawn(
        listener,
        SimConfig {
            latency,
            ..SimConfig::default()
        },
    )?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "phonecheck sim listening on {}", server.base_url())?;
    writeln!(
        stdout,
        "  thinksms  POST /HrmApi/emptyStatusQuery  (sandbox account hashcode={})",
        sim::SANDBOX_THINKSMS_HASHCODE
    )?;
    writeln!(stdout, "  stats     GET  /_sim/stats")?;
    stdout.flush()?;
    shutdown_signal().await;
    server.shutdown().await?;
    Ok(())
}

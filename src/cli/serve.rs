//! `phonecheck serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;

use super::{CliError, shutdown_signal};
use crate::config::{Config, ConfigError};

pub(super) async fn run(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    allow_unauthenticated: bool,
) -> Result<(), CliError> {
    let config = Config::load(config.as_deref())?;
    let addr = match listen {
        Some(addr) => addr,
        None => config.server.listen.parse().map_err(|_| {
            ConfigError::Invalid(vec![format!(
                "server.listen: {:?} is not an address",
                config.server.listen
            )])
        })?,
    };
    if !addr.ip().is_loopback() && config.tenants.is_empty() && !allow_unauthenticated {
        return Err(CliError::Usage(format!(
            "refusing to listen on {addr} with no API keys configured: anyone who can reach it \
             could spend the vendor accounts' credit. Configure [tenants] (`phonecheck keys new` \
             prints a key), listen on a loopback address, or pass --allow-unauthenticated."
        )));
    }
    // Before the address is announced: whoever reads it may stop the server at once.
    let stop = shutdown_signal();
    // Bind first, then announce, then serve: whoever reads this line can connect at once.
    let listener = TcpListener::bind(addr).await?;
    // The lines go out in one write: a reader that takes only the first and closes the pipe
    // does not make a later line fail.
    let mut lines = format!("phonecheck listening on {}\n", listener.local_addr()?);
    let admin_addr = match admin_listen {
        Some(addr) => Some(addr.to_string()),
        None => config.server.admin_listen.clone(),
    };
    let admin = match admin_addr {
        Some(addr) => {
            let admin = TcpListener::bind(addr.as_str()).await?;
            lines.push_str(&format!(
                "phonecheck admin listening on {}\n",
                admin.local_addr()?
            ));
            Some(admin)
        }
        None => None,
    };
    let console = crate::server::bind_console(&config).await?;
    if let Some(console) = &console {
        let addr = console.local_addr()?;
        if !addr.ip().is_loopback() && config.tenants.is_empty() && !allow_unauthenticated {
            return Err(CliError::Usage(format!(
                "refusing to serve the console on {addr} with no API keys configured: anyone who \
                 can reach it could spend the vendor accounts' credit. Configure [tenants], use a \
                 loopback address, or pass --allow-unauthenticated."
            )));
        }
        let scheme = if config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        lines.push_str(&format!("phonecheck console at {scheme}://{addr}/\n"));
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(lines.as_bytes())?;
    stdout.flush()?;
    drop(stdout);
    let served = crate::serve_with_listeners(listener, admin, console, config, stop).await;
    // The exporter blocks while it flushes the last spans.
    let _ = tokio::task::spawn_blocking(crate::telemetry::shutdown).await;
    served?;
    Ok(())
}

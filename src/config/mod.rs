//! Typed configuration: a TOML file plus `PHONECHECK__SECTION__KEY` environment overrides, read
//! once at start-up and validated all at once, so that one run reports every problem.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:50051"
//! shutdown_grace = "30s"
//!
//! [analysis]
//! location_data = "/data/cn_location.bin"   # optional; replaces the embedded data
//!
//! [providers.thinksms]
//! type = "thinksms"
//! hashcode = "8c0354cebf53f09d33c90953161b3e"
//! private_key = { env = "THINKSMS_PRIVATE_KEY" }   # or { file = "/run/secrets/thinksms" }
//! ```
//!
//! With no `[providers]` the service runs in sandbox mode against in-process simulators.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::auth::TenantConfig;
pub use crate::secret::SecretRef;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::vendors::ProviderConfig;

pub use crate::engine::CacheConfig;
pub use crate::engine::{Policy, RouteConfig, RoutesConfig, RuleConfig};
pub use crate::jobs::JobsConfig;

/// The environment prefix for overrides: `PHONECHECK__SERVER__LISTEN=0.0.0.0:50051`.
pub const ENV_PREFIX: &str = "PHONECHECK__";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read into the typed configuration.
    #[error("cannot read configuration: {0}")]
    Parse(String),
    /// The configuration was read but is not valid; every problem is listed.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gRPC server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Offline analysis.
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// Sandbox mode.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Persistent state.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The answer cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Bulk file jobs.
    #[serde(default)]
    pub jobs: JobsConfig,
    /// State shared by replicas (the vendor quota); absent: each process keeps its own.
    #[serde(default)]
    pub redis: Option<crate::replicas::RedisConfig>,
    /// Vendor accounts, by name. Empty: sandbox mode. Held sorted by name: that is the order of
    /// a check's providers when `[routes]` does not give one.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Per check, the providers that serve it, in order, with a policy (see
    /// [`crate::engine::route`]). In sandbox mode the names are the sandbox's (`thinksms`,
    /// `aliyun`, `caih`, `tongdun`, `yidun`).
    #[serde(default)]
    pub routes: RoutesConfig,
    /// API clients, by name. Empty: no authentication (loopback only, unless explicitly allowed).
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The currency of prices, costs and budgets.
    #[serde(default)]
    pub billing: crate::domain::BillingConfig,
    /// How webhooks are delivered (the targets are the tenants' `webhook`).
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhooksConfig,
    /// The web console (off unless `listen` is set; on at a loopback port in sandbox mode).
    #[serde(default)]
    pub console: crate::console::ConsoleConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (the `--listen` flag wins).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How long in-flight calls may run after a shutdown signal.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How many items of one `CheckNumbers` stream are worked on at once; reading stops beyond.
    #[serde(default = "default_stream_window")]
    pub stream_window: usize,
    /// Address of the admin HTTP listener (`/metrics`, `/healthz`); none when absent (the
    /// `--admin-listen` flag wins).
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// TLS for the gRPC listener; plaintext when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `CheckNumbers` streams one tenant (or, without tenants, all callers) may have open; past
    /// it a new stream is refused with `RESOURCE_EXHAUSTED`.
    #[serde(default = "default_max_streams")]
    pub max_streams_per_tenant: usize,
    /// Stream items one tenant may have in flight over all its streams; past it the server stops
    /// reading (flow control pushes back).
    #[serde(default = "default_max_items")]
    pub max_items_in_flight_per_tenant: usize,
    /// HTTP/2 streams one connection may have open at once.
    #[serde(default = "default_max_connection_streams")]
    pub max_concurrent_streams_per_connection: u32,
    /// Job uploads (`CreateBatchJob`) one tenant may have in progress; past it a new one is
    /// refused with `RESOURCE_EXHAUSTED`.
    #[serde(default = "default_max_uploads")]
    pub max_uploads_per_tenant: usize,
    /// Exports (`ExportBatchJobResults`) one tenant may have in progress.
    #[serde(default = "default_max_exports")]
    pub max_exports_per_tenant: usize,
    /// `WatchBatchJob` streams one tenant may have open.
    #[serde(default = "default_max_watches")]
    pub max_watches_per_tenant: usize,
    /// `[server.connections]`: connections and requests in transit.
    #[serde(default)]
    pub connections: crate::transport::ConnectionsConfig,
}

fn default_max_streams() -> usize {
    64
}

fn default_max_items() -> usize {
    4_096
}

fn default_max_connection_streams() -> u32 {
    1_024
}

fn default_max_uploads() -> usize {
    crate::auth::ConcurrencyLimits::default().uploads
}

fn default_max_exports() -> usize {
    crate::auth::ConcurrencyLimits::default().exports
}

fn default_max_watches() -> usize {
    crate::auth::ConcurrencyLimits::default().watches
}

impl ServerConfig {
    /// The default concurrency limits of tenants.
    pub fn concurrency_limits(&self) -> crate::auth::ConcurrencyLimits {
        crate::auth::ConcurrencyLimits {
            streams: self.max_streams_per_tenant,
            items: self.max_items_in_flight_per_tenant,
            uploads: self.max_uploads_per_tenant,
            exports: self.max_exports_per_tenant,
            watches: self.max_watches_per_tenant,
        }
    }
}

/// `[server.tls]`: the server's certificate and key (PEM files), and optionally the CA whose
/// client certificates are required (mutual TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM (a mounted secret).
    pub key: PathBuf,
    /// The CA that signs client certificates; when set, every client must present one.
    pub client_ca: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            shutdown_grace: default_grace(),
            stream_window: default_stream_window(),
            admin_listen: None,
            tls: None,
            max_streams_per_tenant: default_max_streams(),
            max_items_in_flight_per_tenant: default_max_items(),
            max_concurrent_streams_per_connection: default_max_connection_streams(),
            max_uploads_per_tenant: default_max_uploads(),
            max_exports_per_tenant: default_max_exports(),
            max_watches_per_tenant: default_max_watches(),
            connections: crate::transport::ConnectionsConfig::default(),
        }
    }
}

fn default_stream_window() -> usize {
    256
}

fn default_listen() -> String {
    "127.0.0.1:50051".to_owned()
}

fn default_grace() -> Duration {
    Duration::from_secs(30)
}

/// `[analysis]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// A newer location data file (made by `tools/gen_location_data.py`) to use instead of the
    /// embedded one.
    pub location_data: Option<PathBuf>,
}

/// `[sandbox]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Run against in-process simulators when no provider is configured (default true). False
    /// with no providers means offline analysis only.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Latency the sandbox simulators add to each answer.
    #[serde(default, with = "humantime_serde")]
    pub latency: Duration,
    /// How long the sandbox's asynchronous vendors take to finish a submitted number (caller-ID
    /// labels: hours in real life).
    #[serde(default = "default_label_delay", with = "humantime_serde")]
    pub async_delay: Duration,
    /// Faults the sandbox simulators inject.
    #[serde(default)]
    pub faults: crate::sim::faults::Faults,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            latency: Duration::ZERO,
            async_delay: default_label_delay(),
            faults: crate::sim::faults::Faults::default(),
        }
    }
}

fn default_label_delay() -> Duration {
    Duration::from_secs(10)
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded database (created if missing), and of upload spool files.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A PostgreSQL database shared by replicas (`postgres://user:password@host/db`, from the
    /// environment or a file since it holds a password) instead of the embedded one.
    #[serde(default)]
    pub database_url: Option<SecretRef>,
    /// Connections to PostgreSQL per replica.
    #[serde(default = "default_database_connections")]
    pub database_connections: u32,
    /// The longest any one call to the database (PostgreSQL or SQLite) may take, waiting for a
    /// connection included; past it the call fails (`UNAVAILABLE` for an RPC, an interruption
    /// for a job, which goes on later).
    #[serde(default = "default_storage_timeout", with = "humantime_serde")]
    pub timeout: std::time::Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: default_data_dir(),
            database_url: None,
            database_connections: default_database_connections(),
            timeout: default_storage_timeout(),
        }
    }
}

fn default_storage_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn default_database_connections() -> u32 {
    8
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("phonecheck-data")
}

fn default_true() -> bool {
    true
}

/// A configuration error that names the key, the rule and where the value came from, never the
/// value: the value may be a secret given the wrong way (a database URL with its password as a
/// plain string, say).
fn describe(e: &figment::Error) -> String {
    use figment::error::{Actual, Kind};
    let what = |actual: &Actual| match actual {
        Actual::Str(_) | Actual::Other(_) => "a string".to_owned(),
        Actual::Bytes(_) => "bytes".to_owned(),
        Actual::Char(_) => "a character".to_owned(),
        Actual::Bool(_) => "a boolean".to_owned(),
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number".to_owned(),
        // The rest carry no value.
        other => other.to_string(),
    };
    let rule = match &e.kind {
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", what(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("expected {expected}, found {} that is not", what(actual))
        }
        Kind::UnknownVariant(_, expected) => {
            format!("not one of the accepted forms: {}", expected.join(", "))
        }
        Kind::Unsupported(actual) => format!("{} is not accepted here", what(actual)),
        Kind::UnsupportedKey(actual, _) => format!("{} is not accepted as a key", what(actual)),
        // A syntax error, or a deserializer's own message: kept without the excerpt of the
        // source that a TOML error quotes (`3 | database_url = "postgres://..."`).
        Kind::Message(message) => message
            .lines()
            .filter(|line| {
                let line = line.trim_start();
                let excerpt = line.trim_start_matches(|c: char| c.is_ascii_digit());
                !(line.is_empty() || excerpt.trim_start().starts_with('|'))
            })
            .collect::<Vec<_>>()
            .join(": "),
        // These name keys and lengths, not values.
        other => other.to_string(),
    };
    let key = if e.path.is_empty() {
        "the configuration".to_owned()
    } else {
        e.path.join(".")
    };
    match &e.metadata {
        Some(source) => format!("{key}: {rule} (in {})", source.name),
        None => format!("{key}: {rule}"),
    }
}

impl Config {
    /// Reads `path` (if given) and the `PHONECHECK__` environment, then validates everything.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Parse(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        Self::from_figment(figment.merge(Env::prefixed(ENV_PREFIX).split("__")))
    }

    /// Reads a configuration from TOML text alone (tests, examples), then validates it.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            ConfigError::Parse(
                e.into_iter()
                    .map(|e| describe(&e))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// `[cache]` as the engine uses it. Without tenants every caller is the one anonymous tenant,
    /// so answers are not scoped to it: `share = "tenant"` would change nothing but the answers'
    /// keys, and an upgraded single-tenant deployment would pay again for what it had stored.
    pub fn answer_cache(&self) -> CacheConfig {
        let mut cache = self.cache.clone();
        if self.tenants.is_empty() {
            cache.settings.share = crate::engine::Share::All;
        }
        cache
    }

    /// Checks everything that can be checked before serving and reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.server.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "server.listen: {:?} is not an IP address with a port",
                self.server.listen
            ));
        }
        if let Some(admin) = &self.server.admin_listen
            && admin.parse::<SocketAddr>().is_err()
        {
            problems.push(format!(
                "server.admin_listen: {admin:?} is not an IP address with a port"
            ));
        }
        if let Some(tls) = &self.server.tls {
            let files = [
                Some(("cert", &tls.cert)),
                Some(("key", &tls.key)),
                tls.client_ca.as_ref().map(|p| ("client_ca", p)),
            ];
            for (name, path) in files.into_iter().flatten() {
                match std::fs::read_to_string(path) {
                    Ok(pem) if pem.contains("-----BEGIN") => {}
                    Ok(_) => problems.push(format!(
                        "server.tls.{name}: {} is not a PEM file",
                        path.display()
                    )),
                    Err(e) => problems.push(format!(
                        "server.tls.{name}: cannot read {}: {e}",
                        path.display()
                    )),
                }
            }
        }
        if !(1..=100_000).contains(&self.server.stream_window) {
            problems.push("server.stream_window must be between 1 and 100000".to_owned());
        }
        problems.extend(self.server.connections.problems());
        problems.extend(self.console.problems());
        if self.console.listen.is_some()
            && self
                .server
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca.is_some())
        {
            // The console signs in with keys and does not ask browsers for certificates: with
            // client certificates required of every gRPC client, it would be a way around them.
            problems.push(
                "console.listen: the console cannot require client certificates, which \
                 server.tls.client_ca requires of every client; leave the console off"
                    .to_owned(),
            );
        }
        if let Some(path) = &self.analysis.location_data
            && let Err(e) = crate::number::LocationData::from_path(path)
        {
            problems.push(format!("analysis.location_data: {e}"));
        }
        for problem in self.sandbox.faults.problems() {
            problems.push(format!("sandbox.{problem}"));
        }
        if self.sandbox_active() && !self.providers.is_empty() {
            problems.push("sandbox and configured providers exclude each other".to_owned());
        }
        for (name, provider) in &self.providers {
            for problem in provider.problems() {
                problems.push(format!("providers.{name}: {problem}"));
            }
            for secret in provider.secrets() {
                if let Err(problem) = secret.resolve() {
                    problems.push(format!("providers.{name}: {problem}"));
                }
            }
        }
        problems.extend(self.cache.problems());
        let served: BTreeMap<String, Vec<crate::domain::Check>> = if self.sandbox_active() {
            crate::vendors::ALL
                .iter()
                .map(|vendor| (vendor.name.to_owned(), vendor.checks.to_vec()))
                .collect()
        } else {
            self.providers
                .iter()
                .map(|(name, provider)| (name.clone(), provider.checks()))
                .collect()
        };
        problems.extend(crate::engine::route::problems(&self.routes, &served));
        problems.extend(self.jobs.problems());
        problems.extend(self.webhooks.problems());
        if let Some(redis) = &self.redis {
            problems.extend(redis.problems());
        }
        if let Some(url) = &self.storage.database_url {
            match url.resolve() {
                Ok(url) if !secrecy::ExposeSecret::expose_secret(&url).starts_with("postgres") => {
                    problems.push(
                        "storage.database_url: not a postgres:// or postgresql:// URL".to_owned(),
                    );
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("storage.database_url: {e}")),
            }
        }
        if self.storage.timeout.is_zero() {
            problems.push("storage.timeout must be above zero".to_owned());
        }
        if self.storage.database_connections == 0 {
            problems.push("storage.database_connections must be at least 1".to_owned());
        }
        for (name, tenant) in &self.tenants {
            problems.extend(tenant.problems(name));
            if let Some(webhook) = &tenant.webhook {
                problems.extend(webhook.problems(name, &self.webhooks));
            }
        }
        // A budget in money binds only if every paid answer has a price: a provider without one
        // would be held and billed at nothing.
        if let Some(tenant) = self
            .tenants
            .keys()
            .find(|t| self.tenants[*t].daily_budget.is_some())
        {
            for (name, provider) in &self.providers {
                for check in provider.checks() {
                    if provider.prices().get(check).is_none() {
                        problems.push(format!(
                            "providers.{name}.prices.{}: required, as tenants.{tenant}.daily_budget \
                             is in money",
                            check.as_str().replace('-', "_")
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// True when the service runs against in-process simulators.
    pub fn sandbox_active(&self) -> bool {
        self.providers.is_empty() && self.sandbox.enabled
    }
}

#[cfg(test)]
mod tests;

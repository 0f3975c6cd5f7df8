//! The vendors phonecheck speaks to. Each is one folder: its client (wire types, signing, the
//! decoding of answers into the domain types), its simulator, their tests, and a [`Vendor`]
//! descriptor that tells the rest of the crate what it needs to know. [`ALL`] lists them, one
//! line each; nothing outside this folder names a vendor.
//!
//! `[providers.NAME]` with `type = "VENDOR"` is read by [`ProviderConfig`]: the fields every
//! vendor shares ([`SharedConfig`]), the vendor's secret (one per account, in the field the
//! vendor names), and the rest, which is the vendor's own settings.

pub mod aliyun;
pub mod caih;
pub mod thinksms;
pub mod tongdun;
pub mod yidun;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::Error as _;
use serde_json::{Map, Value};

use crate::domain::Check;
use crate::providers::{BuildContext, Defaults, Prices, Provider, Setup, SharedConfig};
use crate::secret::SecretRef;
use crate::sim::{SimConfig, SimRoutes, SimServer, SimState, Stats};

/// Every vendor, in the order the sandbox lists its providers (so the default route of a check
/// that several vendors serve is the first of them).
pub static ALL: &[&Vendor] = &[
    &thinksms::VENDOR,
    &aliyun::VENDOR,
    &caih::VENDOR,
    &tongdun::VENDOR,
    &yidun::VENDOR,
];

/// What the rest of the crate knows of a vendor: a row of the registry.
#[derive(Debug)]
pub struct Vendor {
    /// Its name: `type` in `[providers.NAME]`, the name its simulator counts calls under.
    pub name: &'static str,
    /// The checks it serves.
    pub checks: &'static [Check],
    /// What it publishes: endpoint, quota, timeout, batch size.
    pub defaults: Defaults,
    /// The field of `[providers.NAME]` that says where its secret is read from.
    pub secret_field: &'static str,
    /// Reads its own settings: the fields of `[providers.NAME]` other than `type`, the shared
    /// ones and the secret (usually [`read_settings`]).
    pub settings: fn(Value) -> Result<Arc<dyn VendorSettings>, String>,
    /// Its sandbox account at the simulator.
    pub sandbox: Sandbox,
    /// Its simulator, sharing the simulators' common state.
    pub simulator: fn(&Arc<SimState>) -> SimRoutes,
}

/// One vendor's own settings, as read from `[providers.NAME]`.
pub trait VendorSettings: std::fmt::Debug + Send + Sync {
    /// Every problem with them, for start-up validation.
    fn problems(&self) -> Vec<String>;

    /// Builds the client, given its surroundings and its secret.
    fn build(&self, setup: Setup<'_>, secret: SecretString) -> Result<Arc<dyn Provider>, String>;
}

/// Reads a vendor's own settings of type `T` (with `deny_unknown_fields`, a misspelt field is an
/// error).
pub fn read_settings<T>(table: Value) -> Result<Arc<dyn VendorSettings>, String>
where
    T: VendorSettings + serde::de::DeserializeOwned + 'static,
{
    serde_json::from_value::<T>(table)
        .map(|settings| Arc::new(settings) as Arc<dyn VendorSettings>)
        .map_err(|e| e.to_string())
}

/// A vendor's sandbox account at its simulator. Public on purpose: it opens only the simulator.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Its own settings, as `[providers.NAME]` would hold them (without the secret).
    pub settings: &'static [(&'static str, &'static str)],
    /// The secret.
    pub secret: &'static str,
    /// Made-up prices of the vendor's order of magnitude, per check, so that the sandbox shows
    /// costs, estimates and budgets in money.
    pub prices: &'static [(Check, &'static str)],
}

impl Sandbox {
    /// Its own settings as the table `[providers.NAME]` would hold them.
    pub fn settings_table(&self) -> Value {
        Value::Object(
            self.settings
                .iter()
                .map(|(field, value)| ((*field).to_owned(), Value::from(*value)))
                .collect(),
        )
    }
}

/// `[providers.NAME]`: a vendor, the settings every vendor shares, its secret and its own.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The vendor (`type`).
    pub vendor: &'static Vendor,
    /// `base_url`, `limits`, `prices`.
    pub shared: SharedConfig,
    /// Where the account's secret is read from.
    pub secret: SecretRef,
    /// The vendor's own settings.
    pub settings: Arc<dyn VendorSettings>,
}

/// The vendor whose name is `name`.
pub fn find(name: &str) -> Option<&'static Vendor> {
    ALL.iter().copied().find(|v| v.name == name)
}

impl<'de> Deserialize<'de> for ProviderConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Map::<String, Value>::deserialize(deserializer)?;
        ProviderConfig::from_table(table).map_err(D::Error::custom)
    }
}

impl ProviderConfig {
    /// Reads `[providers.NAME]`.
    fn from_table(mut table: Map<String, Value>) -> Result<ProviderConfig, String> {
        let names = || ALL.iter().map(|v| v.name).collect::<Vec<_>>().join(", ");
        let vendor = match table.remove("type") {
            None => return Err(format!("missing field `type` (one of {})", names())),
            Some(Value::String(name)) => find(&name)
                .ok_or_else(|| format!("unknown type `{name}`; expected one of {}", names()))?,
            Some(other) => return Err(format!("`type` must be a string, not {other}")),
        };
        let shared: Map<String, Value> = crate::providers::SHARED_FIELDS
            .iter()
            .filter_map(|field| table.remove_entry(*field))
            .collect();
        let shared: SharedConfig =
            serde_json::from_value(Value::Object(shared.clone())).map_err(|e| {
                // Name the field at fault: the error of a whole table does not.
                let alone = |field: &String| {
                    let one = Map::from_iter([(field.clone(), shared[field].clone())]);
                    serde_json::from_value::<SharedConfig>(Value::Object(one)).is_err()
                };
                match shared.keys().find(|field| alone(field)) {
                    Some(field) => format!("{field}: {e}"),
                    None => e.to_string(),
                }
            })?;
        let field = vendor.secret_field;
        let secret = table
            .remove(field)
            .ok_or_else(|| format!("missing field `{field}`"))?;
        let secret: SecretRef =
            serde_json::from_value(secret).map_err(|e| format!("{field}: {e}"))?;
        let settings = (vendor.settings)(Value::Object(table))?;
        Ok(ProviderConfig {
            vendor,
            shared,
            secret,
            settings,
        })
    }

    /// The provider of `vendor`'s sandbox account at the simulator at `base_url`.
    pub fn sandbox(vendor: &'static Vendor, base_url: &str) -> Result<ProviderConfig, String> {
        let sandbox = &vendor.sandbox;
        let mut prices = Prices::default();
        for (check, price) in sandbox.prices {
            prices.set(*check, price.parse().map_err(|e| format!("{e}"))?);
        }
        Ok(ProviderConfig {
            vendor,
            shared: SharedConfig {
                base_url: Some(base_url.to_owned()),
                prices,
                ..SharedConfig::default()
            },
            secret: SecretRef::Public(sandbox.secret.to_owned()),
            settings: (vendor.settings)(sandbox.settings_table())?,
        })
    }

    /// Builds the provider named `name`.
    pub fn build(&self, name: &str, ctx: &BuildContext) -> Result<Arc<dyn Provider>, String> {
        let secret = self.secret.resolve()?;
        let setup = Setup::new(
            name,
            self.vendor.name,
            self.vendor.checks,
            &self.vendor.defaults,
            &self.shared,
            ctx,
        )?;
        self.settings.build(setup, secret)
    }

    /// The checks the provider serves (known before it is built, for validating routes).
    pub fn checks(&self) -> Vec<Check> {
        self.vendor.checks.to_vec()
    }

    /// Every problem with this provider's settings, for start-up validation.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.settings.problems();
        problems.extend(self.shared.problems(self.vendor.checks));
        problems
    }

    /// The prices configured for this provider.
    pub fn prices(&self) -> &Prices {
        &self.shared.prices
    }

    /// The secrets this provider reads.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.secret]
    }
}

/// The sandbox's providers: every vendor's sandbox account at the simulator at `base_url`, named
/// after the vendor, in the order of [`ALL`].
pub fn sandbox_providers(base_url: &str) -> Result<Vec<(String, ProviderConfig)>, String> {
    ALL.iter()
        .map(|vendor| {
            ProviderConfig::sandbox(vendor, base_url)
                .map(|config| (vendor.name.to_owned(), config))
                .map_err(|e| format!("{}: {e}", vendor.name))
        })
        .collect()
}

/// Every vendor's simulator on one router, with their counters.
pub fn sim_router(config: SimConfig) -> (axum::Router, Arc<Stats>) {
    let state = Arc::new(SimState::new(config, ALL.iter().map(|v| v.name)));
    let routes = ALL.iter().map(|v| (v.simulator)(&state)).collect();
    (crate::sim::router(&state, routes), state.stats.clone())
}

/// Serves every vendor's simulator on `listener`.
pub fn simulator(
    listener: tokio::net::TcpListener,
    config: SimConfig,
) -> std::io::Result<SimServer> {
    let (router, stats) = sim_router(config);
    SimServer::spawn(listener, router, stats)
}

/// The paths each vendor's simulator serves, for `phonecheck sim` to list.
pub fn sim_paths() -> Vec<(&'static str, Vec<String>)> {
    let state = Arc::new(SimState::new(
        SimConfig::default(),
        ALL.iter().map(|v| v.name),
    ));
    ALL.iter()
        .map(|v| (v.name, (v.simulator)(&state).paths))
        .collect()
}

//! TongDun as the registry knows it: the descriptor, the settings of `[providers.NAME]` (a node
//! per country) and the sandbox account.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{COUNTRIES, TongdunProvider};
use crate::domain::Check;
use crate::providers::{Defaults, Provider, QuotaConfig, Setup, url_problem};
use crate::vendors::{Sandbox, Vendor, VendorSettings, read_settings};

/// The TongDun partner code of the sandbox.
pub const SANDBOX_PARTNER_CODE: &str = "sandbox_partner";
/// The TongDun partner key of the sandbox. Public on purpose: it only opens the simulator.
pub const SANDBOX_PARTNER_KEY: &str = "sandbox-tongdun-partner-key";

/// The vendor, as the registry lists it.
pub const VENDOR: Vendor = Vendor {
    name: "tongdun",
    checks: &[Check::AccountPresence],
    defaults: Defaults {
        // A node per country instead ([`COUNTRIES`]).
        base_url: None,
        quota: QuotaConfig {
            requests_per_second: 20.0,
            burst: 20,
        },
        timeout: Duration::from_secs(10),
        batch_size: 1,
        asynchronous: false,
    },
    secret_field: "partner_key",
    settings: read_settings::<TongdunSettings>,
    sandbox: Sandbox {
        settings: &[("partner_code", SANDBOX_PARTNER_CODE)],
        secret: SANDBOX_PARTNER_KEY,
        prices: &[(Check::AccountPresence, "0.30")],
    },
    simulator: super::sim::routes,
};

/// `[providers.NAME]` with `type = "tongdun"`; the partner key is in `partner_key`. With
/// `base_url` and no `nodes`, each country's node is `{base_url}/{country in lower case}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TongdunSettings {
    /// `partner_code`.
    pub partner_code: String,
    /// Node base URL per country (ISO alpha-2); the vendor's nodes by default.
    #[serde(default)]
    pub nodes: Option<BTreeMap<String, String>>,
}

impl TongdunSettings {
    /// The node of each country: as configured, else under `base_url`, else the vendor's.
    pub fn nodes(&self, base_url: Option<&reqwest::Url>) -> BTreeMap<String, String> {
        if let Some(nodes) = &self.nodes {
            return nodes.clone();
        }
        COUNTRIES
            .iter()
            .map(|&(country, node)| {
                let url = match base_url {
                    Some(base) => format!(
                        "{}/{}",
                        base.as_str().trim_end_matches('/'),
                        country.to_ascii_lowercase()
                    ),
                    None => node.to_owned(),
                };
                (country.to_owned(), url)
            })
            .collect()
    }
}

impl VendorSettings for TongdunSettings {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.partner_code.trim().is_empty() {
            problems.push("partner_code is empty".to_owned());
        }
        for (country, url) in self.nodes.iter().flatten() {
            if !COUNTRIES.iter().any(|&(c, _)| c == country) {
                problems.push(format!(
                    "nodes.{country}: TongDun serves only ID, SG and PK"
                ));
            }
            problems.extend(url_problem(&format!("nodes.{country}"), url));
        }
        problems
    }

    fn build(&self, setup: Setup<'_>, secret: SecretString) -> Result<Arc<dyn Provider>, String> {
        Ok(Arc::new(TongdunProvider::new(setup, self, secret)?))
    }
}

//! caih as the registry knows it: the descriptor, the settings of `[providers.NAME]`, the
//! sandbox account, and the `authinfo` signature.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{BATCH_SIZE, CaihProvider, DEFAULT_BASE_URL};
use crate::domain::Check;
use crate::providers::signing::SignatureMethod;
use crate::providers::{Defaults, Provider, QuotaConfig, Setup};
use crate::vendors::{Sandbox, Vendor, VendorSettings, read_settings};

/// The caih account of the sandbox.
pub const SANDBOX_USER_KEY: &str = "5a1db0c0sandbox0caih0userkey0001";
/// The caih app id of the sandbox.
pub const SANDBOX_APP_ID: &str = "5a1db0c0sandbox0caih00appid00001";
/// The caih secret key of the sandbox. Public on purpose: it only opens the simulator.
pub const SANDBOX_SECRET_KEY: &str = "sandbox-caih-secret-key";

/// The vendor, as the registry lists it.
pub const VENDOR: Vendor = Vendor {
    name: "caih",
    checks: &[Check::SpamLabels],
    defaults: Defaults {
        base_url: Some(DEFAULT_BASE_URL),
        quota: QuotaConfig {
            requests_per_second: 10.0,
            burst: 10,
        },
        timeout: Duration::from_secs(10),
        batch_size: BATCH_SIZE,
        asynchronous: true,
    },
    secret_field: "secret_key",
    settings: read_settings::<CaihSettings>,
    sandbox: Sandbox {
        settings: &[("user_key", SANDBOX_USER_KEY), ("app_id", SANDBOX_APP_ID)],
        secret: SANDBOX_SECRET_KEY,
        prices: &[(Check::SpamLabels, "0.05")],
    },
    simulator: super::sim::routes,
};

/// `[providers.NAME]` with `type = "caih"`; the secret key is in `secret_key` (never sent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaihSettings {
    /// `userkey` (32 characters).
    pub user_key: String,
    /// `appid` (32 characters).
    pub app_id: String,
}

impl VendorSettings for CaihSettings {
    fn problems(&self) -> Vec<String> {
        [("user_key", &self.user_key), ("app_id", &self.app_id)]
            .into_iter()
            .filter(|(_, value)| value.len() != 32)
            .map(|(field, value)| format!("{field} must have 32 characters, not {}", value.len()))
            .collect()
    }

    fn build(&self, setup: Setup<'_>, secret: SecretString) -> Result<Arc<dyn Provider>, String> {
        Ok(Arc::new(CaihProvider::new(setup, self, secret)?))
    }
}

/// caih: `lower(hex(md5(secretkey + userkey + appid + timestamp)))`, timestamp `yyyyMMddHHmmss`
/// in China time. The secret key itself is never sent.
pub fn sign(secret_key: &str, user_key: &str, app_id: &str, timestamp: &str) -> String {
    let input = [secret_key, user_key, app_id, timestamp].concat();
    SignatureMethod::Md5.hex_digest(input.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caih_published_vector() {
        assert_eq!(
            sign(
                "g8imy09du0y893uv03mu580c4mu5c341",
                "6be014da2c1f6b4140e2a12984960376",
                "f790e630a256667a9b25a433bf40481b",
                "20190310121232",
            ),
            "0fd62781d984abc1a840480d707d5cd2"
        );
    }
}

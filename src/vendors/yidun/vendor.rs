//! NetEase Yidun as the registry knows it: the descriptor, the settings of `[providers.NAME]`,
//! the sandbox account, and the signature over the sorted parameters.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{BATCH_SIZE, DEFAULT_BASE_URL, YidunProvider};
use crate::domain::Check;
use crate::providers::signing::SignatureMethod;
use crate::providers::{Defaults, Provider, QuotaConfig, Setup};
use crate::vendors::{Sandbox, Vendor, VendorSettings, read_settings};

/// The Yidun secret id of the sandbox.
pub const SANDBOX_SECRET_ID: &str = "sandbox0yidun0secret0id000000001";
/// The Yidun business id of the sandbox.
pub const SANDBOX_BUSINESS_ID: &str = "sandbox0yidun0business0id0000001";
/// The Yidun secret key of the sandbox. Public on purpose: it only opens the simulator.
pub const SANDBOX_SECRET_KEY: &str = "sandbox-yidun-secret-key";

/// The vendor, as the registry lists it.
pub const VENDOR: Vendor = Vendor {
    name: "yidun",
    checks: &[Check::RiskProfile],
    defaults: Defaults {
        base_url: Some(DEFAULT_BASE_URL),
        quota: QuotaConfig {
            requests_per_second: 10.0,
            burst: 10,
        },
        timeout: Duration::from_secs(10),
        batch_size: BATCH_SIZE,
        asynchronous: false,
    },
    secret_field: "secret_key",
    settings: read_settings::<YidunSettings>,
    sandbox: Sandbox {
        settings: &[
            ("secret_id", SANDBOX_SECRET_ID),
            ("business_id", SANDBOX_BUSINESS_ID),
            ("signature_method", "SM3"),
        ],
        secret: SANDBOX_SECRET_KEY,
        prices: &[(Check::RiskProfile, "0.10")],
    },
    simulator: super::sim::routes,
};

/// `[providers.NAME]` with `type = "yidun"`; the secret key is in `secret_key` (never sent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YidunSettings {
    /// `secretId`.
    pub secret_id: String,
    /// `businessId`.
    pub business_id: String,
    /// `MD5` (default, not sent), `SHA1`, `SHA256` or `SM3`.
    #[serde(default = "default_method")]
    pub signature_method: String,
}

fn default_method() -> String {
    "MD5".to_owned()
}

impl VendorSettings for YidunSettings {
    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = [
            ("secret_id", &self.secret_id),
            ("business_id", &self.business_id),
        ]
        .into_iter()
        .filter(|(_, value)| value.trim().is_empty())
        .map(|(field, _)| format!("{field} is empty"))
        .collect();
        if SignatureMethod::parse(&self.signature_method).is_none() {
            problems.push(format!(
                "signature_method {:?} is not MD5, SHA1, SHA256 or SM3",
                self.signature_method
            ));
        }
        problems
    }

    fn build(&self, setup: Setup<'_>, secret: SecretString) -> Result<Arc<dyn Provider>, String> {
        Ok(Arc::new(YidunProvider::new(setup, self, secret)?))
    }
}

/// Yidun: every parameter but `signature`, names sorted by byte order, `name + value`
/// concatenated with no separator, then the secret key; hashed with `method`, lower-case hex.
/// Values are signed raw, before any URL encoding.
pub fn sign(params: &[(&str, &str)], secret_key: &str, method: SignatureMethod) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().filter(|(k, _)| *k != "signature").collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut input = String::new();
    for (name, value) in sorted {
        input.push_str(name);
        input.push_str(value);
    }
    input.push_str(secret_key);
    method.hex_digest(input.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yidun_vector_params(method: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut params = vec![
            ("secretId", "ea5293c22736992fd1e4a0c01f16f1ed"),
            ("businessId", "d45f112069264f92bfeb4d474f3c7c5c"),
            ("nonce", "3e4235a28d4c4129953ff7751abb664e"),
            ("timestamp", "1623036428207"),
            ("version", "v1"),
            ("phones", r#"["17312341234"]"#),
        ];
        if let Some(m) = method {
            params.push(("signatureMethod", m));
        }
        params
    }

    const YIDUN_KEY: &str = "f03e795e12934534b711a1959ea1a689";

    #[test]
    fn yidun_published_vectors() {
        let cases = [
            (
                None,
                SignatureMethod::Md5,
                "5f0005d5e14ca405d1ed3cecd36aaedc",
            ),
            (
                Some("SHA256"),
                SignatureMethod::Sha256,
                "5b1ee86a38c18f9a1852b17c17331810240f475e43beeaa4dba1dd6825e806b8",
            ),
            (
                Some("SHA1"),
                SignatureMethod::Sha1,
                "44a46bec9158739d8589dfc5b325c2981f2c301e",
            ),
            (
                Some("SM3"),
                SignatureMethod::Sm3,
                "361cbcf5c415b93742adc65f61df177ecbd21edb4c405713944f24c10a84985c",
            ),
        ];
        for (wire, method, expected) in cases {
            assert_eq!(
                sign(&yidun_vector_params(wire), YIDUN_KEY, method),
                expected,
                "{method:?}"
            );
        }
    }

    #[test]
    fn yidun_ignores_a_signature_parameter() {
        let mut params = yidun_vector_params(None);
        params.push(("signature", "whatever"));
        assert_eq!(
            sign(&params, YIDUN_KEY, SignatureMethod::Md5),
            "5f0005d5e14ca405d1ed3cecd36aaedc"
        );
    }
}

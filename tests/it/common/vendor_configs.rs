//! Configurations and clients of the vendors' sandbox accounts at a simulator, read from the
//! registry: tests name no vendor's fields.

use std::collections::BTreeMap;
use std::path::Path;

use phonecheck::config::Config;
use phonecheck::sim::SimServer;
use phonecheck::vendors;

use super::TestServer;

/// The secret phonecheck signs with for each vendor, by vendor name.
pub struct Secrets(BTreeMap<&'static str, String>);

impl Secrets {
    /// The simulator's own (right) secrets.
    pub fn right() -> Secrets {
        Secrets(
            vendors::ALL
                .iter()
                .map(|v| (v.name, v.sandbox.secret.to_owned()))
                .collect(),
        )
    }

    /// Wrong secrets for every vendor.
    pub fn wrong() -> Secrets {
        Secrets(
            vendors::ALL
                .iter()
                .map(|v| (v.name, "wrong".to_owned()))
                .collect(),
        )
    }
}

/// The vendors of [`vendors_config`]: for each check, the first vendor of the registry that
/// serves it (so each check has one provider and no failover).
pub fn one_vendor_per_check() -> Vec<&'static vendors::Vendor> {
    let mut served = Vec::new();
    let mut chosen = Vec::new();
    for vendor in vendors::ALL {
        if vendor.checks.iter().any(|c| !served.contains(c)) {
            served.extend_from_slice(vendor.checks);
            chosen.push(*vendor);
        }
    }
    chosen
}

/// One provider per check ([`one_vendor_per_check`]), live (not sandbox), each with its sandbox
/// account at `sim`, named after its vendor, its secret in a file under `dir`. Yidun signs with
/// `yidun_method`.
pub fn vendors_config(
    sim: &SimServer,
    dir: &Path,
    secrets: &Secrets,
    yidun_method: &str,
) -> Config {
    let base = sim.base_url();
    let mut toml = String::from("[server]\nshutdown_grace = \"5s\"\n");
    for vendor in one_vendor_per_check() {
        let name = vendor.name;
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&key, &secrets.0[name]).unwrap();
        let mut settings = vendor.sandbox.settings_table();
        if name == "yidun" {
            settings["signature_method"] = yidun_method.into();
        }
        toml.push_str(&format!(
            "[providers.{name}]\ntype = \"{name}\"\nbase_url = \"{base}\"\n{} = {{ file = \"{}\" }}\n",
            vendor.secret_field,
            key.display()
        ));
        for (field, value) in settings.as_object().unwrap() {
            toml.push_str(&format!("{field} = {value}\n"));
        }
    }
    // Each check to the first of them that serves it: a vendor chosen for one check may serve
    // others too (Aliyun: line status), and those stay with their first vendor.
    toml.push_str("[routes]\n");
    for check in phonecheck::domain::Check::ALL {
        if let Some(vendor) = one_vendor_per_check()
            .into_iter()
            .find(|v| v.checks.contains(&check))
        {
            toml.push_str(&format!("{} = [\"{}\"]\n", check.key(), vendor.name));
        }
    }
    Config::from_toml(&toml).unwrap()
}

/// Starts a server with one vendor per check live against `sim` ([`vendors_config`]).
pub async fn vendors_server(sim: &SimServer, secrets: &Secrets, yidun_method: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = vendors_config(sim, dir.path(), secrets, yidun_method);
    TestServer::start_in(config, dir.path()).await.keep_dir(dir)
}

/// The client of `vendor`'s sandbox account at `sim` (its own settings changed by `overrides`,
/// its secret `secret` or the sandbox's), signing with `clock`: a vendor client alone, without a
/// server.
pub async fn vendor_client(
    vendor: &str,
    sim: &SimServer,
    clock: std::sync::Arc<dyn phonecheck::providers::Clock>,
    overrides: serde_json::Value,
    secret: Option<&str>,
) -> std::sync::Arc<dyn phonecheck::providers::Provider> {
    let vendor = vendors::find(vendor).expect("a vendor of the registry");
    let mut config = vendors::ProviderConfig::sandbox(vendor, &sim.base_url()).unwrap();
    let mut settings = vendor.sandbox.settings_table();
    for (field, value) in overrides.as_object().unwrap() {
        settings[field] = value.clone();
    }
    config.settings = (vendor.settings)(settings).unwrap();
    if let Some(secret) = secret {
        config.secret = phonecheck::secret::SecretRef::Public(secret.to_owned());
    }
    let ctx = phonecheck::providers::BuildContext {
        http: phonecheck::providers::http_client().unwrap(),
        clock,
        sandbox: false,
        pending: std::sync::Arc::new(phonecheck::store::SqliteStore::in_memory().await.unwrap()),
    };
    config.build(vendor.name, &ctx).unwrap()
}

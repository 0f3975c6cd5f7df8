//! Configuration: parsing, validation, secrets, environment overrides.
use super::*;

#[test]
fn empty_config_is_the_sandbox() {
    let config = Config::from_toml("").unwrap();
    assert!(config.sandbox_active());
    assert_eq!(config.server.listen, "127.0.0.1:50051");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = Config::from_toml(
        r#"
        [server]
        listen = "not an address"
        [analysis]
        location_data = "/nonexistent/cn_location.bin"
        [providers.ts]
        type = "thinksms"
        base_url = "::nope::"
        hashcode = ""
        private_key = { env = "PHONECHECK_TEST_SURELY_UNSET" }
        "#,
    )
    .unwrap_err();
    let ConfigError::Invalid(problems) = err else {
        panic!("{err}")
    };
    let text = problems.join("\n");
    for needle in [
        "server.listen",
        "location_data",
        "base_url",
        "hashcode",
        "PHONECHECK_TEST_SURELY_UNSET",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(problems.len() >= 5, "{text}");
}

#[test]
fn retired_job_prices_name_their_replacement() {
    let err = Config::from_toml(
        "[jobs]\nprices = { currency = \"CNY\", line_status = 0.03 }\n\
         [tenants.a]\nkey_sha256 = [\"x\"]\nusage_all = true",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("jobs.prices is retired"), "{err}");
    assert!(err.contains("[providers.NAME.prices]"), "{err}");
    // Every problem at once: the tenant's bad key too.
    assert!(err.contains("tenants.a.key_sha256[0]"), "{err}");
}

#[test]
fn unknown_fields_and_vendors_are_refused() {
    assert!(Config::from_toml("[server]\nlisten_on = \"x\"").is_err());
    assert!(Config::from_toml("[providers.x]\ntype = \"acme\"").is_err());
    let extra = "[providers.ts]\ntype = \"thinksms\"\nhashcode = \"h\"\nprivate_key = { env = \"X\" }\ncolour = \"red\"";
    assert!(matches!(
        Config::from_toml(extra),
        Err(ConfigError::Parse(_))
    ));
}

#[test]
// figment's Jail dictates the closure's (large) error type.
#[allow(clippy::result_large_err)]
fn environment_overrides_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("phonecheck.toml", "[server]\nlisten = \"127.0.0.1:1\"\n")?;
        jail.set_env("PHONECHECK__SERVER__LISTEN", "127.0.0.1:2");
        jail.set_env("PHONECHECK__SANDBOX__LATENCY", "20ms");
        let config = Config::load(Some(Path::new("phonecheck.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.server.listen, "127.0.0.1:2");
        assert_eq!(config.sandbox.latency, Duration::from_millis(20));
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)]
fn shared_state_can_be_configured_by_the_environment_alone() {
    // As the Helm chart does: addresses as values, secrets named by reference.
    figment::Jail::expect_with(|jail| {
        jail.set_env("PHONECHECK__REDIS__URL", "redis://redis.data:6379/0");
        jail.set_env(
            "PHONECHECK__REDIS__HASH_KEY__ENV",
            "PHONECHECK_REDIS_HASH_KEY",
        );
        jail.set_env("PHONECHECK_REDIS_HASH_KEY", "a-hash-key-of-some-length");
        jail.create_file("db-url", "postgres://phonecheck:pw@db.data/phonecheck")?;
        jail.set_env("PHONECHECK__STORAGE__DATABASE_URL__FILE", "db-url");
        let config = Config::load(None).map_err(|e| e.to_string())?;
        let redis = config.redis.expect("[redis] from the environment");
        assert_eq!(redis.url, "redis://redis.data:6379/0");
        assert_eq!(
            redis.hash_key,
            SecretRef::Env("PHONECHECK_REDIS_HASH_KEY".into())
        );
        assert_eq!(
            config.storage.database_url,
            Some(SecretRef::File("db-url".into()))
        );
        Ok(())
    });
}

#[test]
fn the_readme_example_is_a_valid_configuration() {
    let readme = include_str!("../../README.md");
    let section = readme
        .find("## Configuration")
        .expect("README has a configuration section");
    let start = section
        + readme[section..]
            .find("```toml\n")
            .expect("with a TOML example")
        + 8;
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let config: Config = Figment::from(Toml::string(example)).extract().unwrap();
    assert_eq!(
        config.providers.keys().collect::<Vec<_>>(),
        ["aliyun", "caih", "thinksms", "tongdun", "yidun"]
    );
    let problems: Vec<_> = config
        .providers
        .values()
        .flat_map(ProviderConfig::problems)
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn a_missing_file_is_named() {
    let err = Config::load(Some(Path::new("/nonexistent/phonecheck.toml"))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/phonecheck.toml"));
}

#[test]
fn secrets_come_from_files_and_never_appear_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "s3cret\n").unwrap();
    let secret = SecretRef::File(path.clone()).resolve().unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "s3cret");
    assert!(!format!("{secret:?}").contains("s3cret"));
    std::fs::write(&path, "").unwrap();
    assert!(
        SecretRef::File(path)
            .resolve()
            .unwrap_err()
            .contains("empty")
    );
}

#[test]
#[allow(clippy::result_large_err)]
fn a_secret_given_the_wrong_way_is_refused_without_being_printed() {
    // The obvious mistake: the URL itself, password included, instead of a reference to it.
    figment::Jail::expect_with(|jail| {
        jail.set_env(
            "PHONECHECK__STORAGE__DATABASE_URL",
            "postgres://user:hunter2secret@db.data/phonecheck",
        );
        let message = Config::load(None).unwrap_err().to_string();
        assert!(message.contains("storage.database_url"), "{message}");
        assert!(message.contains("env, file"), "the rule: {message}");
        for secret in ["hunter2secret", "user:", "db.data"] {
            assert!(!message.contains(secret), "{secret} leaked: {message}");
        }
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("PHONECHECK__REDIS__URL", "redis://127.0.0.1:1/0");
        jail.set_env("PHONECHECK__REDIS__HASH_KEY", "plain-hash-key-s3cret");
        let message = Config::load(None).unwrap_err().to_string();
        assert!(message.contains("redis.hash_key"), "{message}");
        assert!(!message.contains("s3cret"), "leaked: {message}");
        Ok(())
    });
    // Nor are they in a syntax error's excerpt of the file.
    let message = Config::from_toml("[storage]\ndatabase_url = postgres://user:hunter2@db\n")
        .unwrap_err()
        .to_string();
    assert!(message.contains("line 2"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    // Values of other types are not quoted either.
    let message = Config::from_toml("[server]\nshutdown_grace = \"forever-s3cret\"\n")
        .unwrap_err()
        .to_string();
    assert!(message.contains("server.shutdown_grace"), "{message}");
    assert!(!message.contains("forever-s3cret"), "{message}");
}

#[test]
fn money_settings_are_checked() {
    let hash = "0".repeat(64);
    let err = Config::from_toml("[billing]\ncurrency = \"XYZ\"").unwrap_err();
    assert!(err.to_string().contains("ISO 4217"), "{err}");
    let err = Config::from_toml(&format!(
        r#"
        [providers.ts]
        type = "thinksms"
        hashcode = "h"
        private_key = {{ env = "PATH" }}
        prices = {{ line_status = "0.03", risk_profile = "0.10" }}
        [providers.yd]
        type = "yidun"
        secret_id = "i"
        business_id = "b"
        secret_key = {{ env = "PATH" }}
        [tenants.acme]
        key_sha256 = ["{hash}"]
        daily_budget = "9000000.01"
        "#
    ))
    .unwrap_err();
    let ConfigError::Invalid(problems) = err else {
        panic!("{err}")
    };
    let text = problems.join("\n");
    for needle in [
        "providers.ts: prices.risk_profile: the provider does not serve risk-profile",
        "tenants.acme.daily_budget: at most 9000000",
        "providers.yd.prices.risk_profile: required, as tenants.acme.daily_budget is in money",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // A price is a decimal string, never a float (which would have lost the exact amount).
    let err = Config::from_toml("[providers.ts]\ntype = \"thinksms\"\nhashcode = \"h\"\nprivate_key = { env = \"PATH\" }\nprices = { line_status = 0.03 }").unwrap_err();
    assert!(
        err.to_string().contains(
            "providers.ts: prices: invalid type: floating point `0.03`, expected a string"
        ),
        "{err}"
    );
}

#[test]
fn answers_are_scoped_to_tenants_only_when_there_are_tenants() {
    use crate::engine::Share;
    let open = Config::from_toml("").unwrap();
    assert_eq!(open.cache.share, Share::Tenant, "the default");
    assert_eq!(
        open.answer_cache().share,
        Share::All,
        "one anonymous caller"
    );
    let tenants = Config::from_toml(
        "[tenants.a]\nkey_sha256 = [\"0000000000000000000000000000000000000000000000000000000000000000\"]",
    )
    .unwrap();
    assert_eq!(tenants.answer_cache().share, Share::Tenant);
    let shared = Config::from_toml(
        "[cache]\nshare = \"all\"\n[tenants.a]\nkey_sha256 = [\"0000000000000000000000000000000000000000000000000000000000000000\"]",
    )
    .unwrap();
    assert_eq!(shared.answer_cache().share, Share::All);
}

#[test]
fn a_console_is_refused_where_client_certificates_are_required() {
    let err = Config::from_toml(
        r#"
        [server.tls]
        cert = "/nonexistent/cert.pem"
        key = "/nonexistent/key.pem"
        client_ca = "/nonexistent/ca.pem"
        [console]
        listen = "127.0.0.1:0"
        "#,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("console.listen: the console cannot require client certificates"),
        "{err}"
    );
}

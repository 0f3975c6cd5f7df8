//! API keys, tenants and grants.
use super::*;

#[test]
fn keys_and_hashes() {
    let key = new_key();
    assert!(key.starts_with("pck_") && key.len() == 68);
    assert_ne!(new_key(), key);
    assert_eq!(
        key_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn grants() {
    let tenant = Tenant::with_limits(
        "acme",
        [Check::LineStatus].into_iter().collect(),
        false,
        TenantLimits::default(),
        ConcurrencyLimits::default(),
    );
    assert!(
        tenant
            .authorize("checks", &[Check::LineStatus], &CheckOptions::default())
            .is_ok()
    );
    assert!(
        tenant
            .authorize(
                "checks",
                &[Check::AccountPresence],
                &CheckOptions::default()
            )
            .is_err()
    );
    let profiles = CheckOptions {
        include_profile_details: true,
        ..CheckOptions::default()
    };
    assert!(
        tenant
            .authorize("checks", &[Check::LineStatus], &profiles)
            .is_err()
    );
    assert!(
        Tenant::anonymous()
            .authorize("checks", &Check::ALL, &profiles)
            .is_ok()
    );
}

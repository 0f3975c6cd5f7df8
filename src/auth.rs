//! API keys and tenants: `authorization: Bearer <key>` names a tenant, whose grants decide which
//! checks it may run. Keys are configured only as SHA-256 hashes.
//!
//! Authentication is a tonic interceptor on the phonecheck services (health and reflection stay
//! open); authorisation of each request's checks happens in the API layer, which knows them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::api::ApiError;
use crate::budget::{BudgetHold, TenantLimits};
use crate::config::TenantConfig;
use crate::domain::{Check, CheckOptions};

/// An API client and what it may do.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The configured name (`anonymous` without authentication).
    pub name: String,
    /// Checks it may run.
    pub allowed_checks: HashSet<Check>,
    /// Whether it may receive platform profile details.
    pub profile_details: bool,
    /// Whether it may use the admin service (forget a number).
    pub admin: bool,
    /// Its daily billable budget and request rate, on every path (calls, stream items, jobs).
    pub limits: TenantLimits,
    /// Its `CheckNumbers` streams open at once; past it a new one is refused.
    streams: Arc<Semaphore>,
    /// Its stream items being worked on at once, over all its streams; past it reading waits.
    items: Arc<Semaphore>,
    /// Its job uploads being received at once.
    uploads: Arc<Semaphore>,
    /// Its exports being produced at once.
    exports: Arc<Semaphore>,
    /// Its `WatchBatchJob` streams open at once.
    watches: Arc<Semaphore>,
}

/// How many of each long-lived call a tenant may have open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLimits {
    /// Concurrent `CheckNumbers` streams.
    pub streams: usize,
    /// Stream items being worked on at once, over all the tenant's streams.
    pub items: usize,
    /// Concurrent `CreateBatchJob` uploads.
    pub uploads: usize,
    /// Concurrent `ExportBatchJobResults` calls.
    pub exports: usize,
    /// Concurrent `WatchBatchJob` streams.
    pub watches: usize,
}

impl Default for ConcurrencyLimits {
    fn default() -> Self {
        ConcurrencyLimits {
            streams: 64,
            items: 4_096,
            uploads: 4,
            exports: 4,
            watches: 32,
        }
    }
}

/// A long-lived call a tenant holds a place for while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrent {
    /// A `CheckNumbers` stream.
    Stream,
    /// A `CreateBatchJob` upload.
    Upload,
    /// An `ExportBatchJobResults` call.
    Export,
    /// A `WatchBatchJob` stream.
    Watch,
}

impl Concurrent {
    /// What the caller reads in the error: the calls, and the setting that bounds them.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Concurrent::Stream => ("CheckNumbers streams", "max_streams"),
            Concurrent::Upload => ("job uploads", "max_uploads"),
            Concurrent::Export => ("exports", "max_exports"),
            Concurrent::Watch => ("WatchBatchJob streams", "max_watches"),
        }
    }
}

impl Tenant {
    /// The caller when no tenants are configured: may do everything.
    pub fn anonymous() -> Tenant {
        Self::anonymous_with(ConcurrencyLimits::default())
    }

    /// The anonymous caller with these concurrency limits.
    pub fn anonymous_with(limits: ConcurrencyLimits) -> Tenant {
        Tenant {
            admin: true,
            ..Self::with_limits(
                ANONYMOUS,
                Check::ALL.into_iter().collect(),
                true,
                TenantLimits::default(),
                limits,
            )
        }
    }

    fn with_limits(
        name: &str,
        allowed_checks: HashSet<Check>,
        profile_details: bool,
        limits: TenantLimits,
        concurrency: ConcurrencyLimits,
    ) -> Tenant {
        let places = |n: usize| Arc::new(Semaphore::new(n));
        Tenant {
            name: name.to_owned(),
            allowed_checks,
            profile_details,
            admin: false,
            limits,
            streams: places(concurrency.streams),
            items: places(concurrency.items),
            uploads: places(concurrency.uploads),
            exports: places(concurrency.exports),
            watches: places(concurrency.watches),
        }
    }

    /// Takes a place for a long-lived call, or refuses it when the tenant has its maximum open.
    pub fn open(&self, call: Concurrent) -> Result<OwnedSemaphorePermit, ApiError> {
        let places = match call {
            Concurrent::Stream => &self.streams,
            Concurrent::Upload => &self.uploads,
            Concurrent::Export => &self.exports,
            Concurrent::Watch => &self.watches,
        };
        let (calls, setting) = call.describe();
        places
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooMany {
                tenant: self.name.clone(),
                calls,
                setting,
            })
    }

    /// Waits for room for one more stream item in flight.
    pub async fn item_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.items.clone().acquire_owned().await.ok()
    }

    /// Holds room in today's billable budget for the paid checks of one request (one call each
    /// at most), or refuses them when the budget has not that much left (offline analysis stays
    /// free).
    pub fn hold_budget(&self, checks: &[Check]) -> Result<BudgetHold, ApiError> {
        let calls = checks.iter().collect::<HashSet<_>>().len() as u64;
        self.limits
            .hold(calls)
            .map_err(|spent| ApiError::BudgetExhausted {
                tenant: self.name.clone(),
                retry_after: spent.retry_after,
            })
    }

    /// Waits for the tenant's rate to allow one more stream item.
    pub async fn pace(&self) {
        self.limits.pace().await;
    }

    /// Refuses checks and options the tenant was not granted.
    pub fn authorize(
        &self,
        field: &str,
        checks: &[Check],
        options: &CheckOptions,
    ) -> Result<(), ApiError> {
        if let Some(check) = checks.iter().find(|c| !self.allowed_checks.contains(c)) {
            return Err(ApiError::PermissionDenied {
                reason: "CHECK_NOT_ALLOWED",
                message: format!("{field}: tenant {} may not run {check}", self.name),
            });
        }
        if options.include_profile_details && !self.profile_details {
            return Err(ApiError::PermissionDenied {
                reason: "PROFILE_DETAILS_NOT_ALLOWED",
                message: format!("tenant {} may not receive profile details", self.name),
            });
        }
        Ok(())
    }
}

/// The SHA-256 (hex) of an API key, as configured in `key_sha256`.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A fresh API key: `pck_` and 64 hex digits of randomness.
pub fn new_key() -> String {
    format!("pck_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The tenant name of callers when no keys are configured.
pub const ANONYMOUS: &str = "anonymous";

/// Every configured key's hash, mapped to its tenant.
#[derive(Debug, Clone)]
pub struct Tenants {
    by_hash: HashMap<String, Arc<Tenant>>,
    by_name: HashMap<String, Arc<Tenant>>,
    anonymous: Arc<Tenant>,
}

impl Tenants {
    /// From the validated configuration.
    pub fn new(
        config: &std::collections::BTreeMap<String, TenantConfig>,
        defaults: ConcurrencyLimits,
    ) -> Tenants {
        let mut by_hash = HashMap::new();
        let mut by_name = HashMap::new();
        for (name, tenant) in config {
            // One budget and one bucket per tenant, whichever of its keys is used.
            let resolved = Arc::new(Tenant {
                admin: tenant.admin,
                ..Tenant::with_limits(
                    name,
                    tenant.allowed_checks.iter().copied().collect(),
                    tenant.profile_details,
                    TenantLimits::new(tenant.daily_billable_budget, tenant.rate_limit),
                    ConcurrencyLimits {
                        streams: tenant.max_streams.unwrap_or(defaults.streams),
                        items: tenant.max_items_in_flight.unwrap_or(defaults.items),
                        ..defaults
                    },
                )
            });
            for hash in &tenant.key_sha256 {
                by_hash.insert(hash.to_ascii_lowercase(), resolved.clone());
            }
            by_name.insert(name.clone(), resolved);
        }
        Tenants {
            by_hash,
            by_name,
            anonymous: Arc::new(Tenant::anonymous_with(defaults)),
        }
    }

    /// Each tenant's budget and rate by name (the anonymous caller's too), for the job runner,
    /// whose jobs keep only their tenant's name.
    pub fn limits_by_name(&self) -> HashMap<String, TenantLimits> {
        let mut limits: HashMap<String, TenantLimits> = self
            .by_name
            .iter()
            .map(|(name, tenant)| (name.clone(), tenant.limits.clone()))
            .collect();
        limits
            .entry(ANONYMOUS.to_owned())
            .or_insert_with(|| self.anonymous.limits.clone());
        limits
    }

    /// Whether any key is configured.
    pub fn enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }
}

/// Authenticates every call of a service: puts the caller's [`Tenant`] in the request extensions,
/// or refuses the call with `UNAUTHENTICATED`.
#[derive(Debug, Clone)]
pub struct AuthInterceptor {
    tenants: Arc<Tenants>,
    anonymous: Arc<Tenant>,
}

impl AuthInterceptor {
    /// An interceptor over these tenants (none: every caller is anonymous).
    pub fn new(tenants: Tenants) -> AuthInterceptor {
        AuthInterceptor {
            anonymous: tenants.anonymous.clone(),
            tenants: Arc::new(tenants),
        }
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let tenant = if self.tenants.enabled() {
            let key = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or(ApiError::Unauthenticated(
                    "an API key is required: authorization: Bearer <key>",
                ))?;
            let tenant = self
                .tenants
                .by_hash
                .get(&key_hash(key))
                .ok_or(ApiError::Unauthenticated("the API key is not valid"))?;
            // Every RPC is one request; stream items and job numbers are paced per item too.
            if let Err(retry_after) = tenant.limits.try_request() {
                return Err(ApiError::RateLimited {
                    tenant: tenant.name.clone(),
                    retry_after,
                }
                .into());
            }
            tenant.clone()
        } else {
            self.anonymous.clone()
        };
        request.extensions_mut().insert(tenant);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
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
}

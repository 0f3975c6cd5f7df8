//! The API's conversions: the wire's ([`crate::wire`]), and the provider list, which needs the
//! engine's view of each provider's health.

use crate::engine::Health;
use crate::pb;
use crate::providers::Provider;
pub use crate::wire::*;

/// The protobuf `ProviderInfo`.
/// The answer cache's figures, for `ListProviders`.
pub fn answer_stats_to_proto(stats: &crate::engine::AnswerStats) -> pb::AnswerCacheInfo {
    let store = stats.store.unwrap_or_default();
    pb::AnswerCacheInfo {
        store_enabled: stats.store.is_some(),
        stored_answers: store.entries,
        store_bytes: store.disk_bytes,
        oldest_answer_time: store
            .oldest_fetched_at
            .map(|ms| timestamp(crate::store::from_millis(ms))),
        hot_answers: stats.hot.entries,
        hot_bytes: stats.hot.bytes,
        lookups: stats.lookups,
        hits: stats.hits,
        hit_rate: if stats.lookups == 0 {
            0.0
        } else {
            stats.hits as f64 / stats.lookups as f64
        },
        store_degraded: stats.degraded,
    }
}

pub fn provider_to_proto(provider: &dyn Provider, health: &Health) -> pb::ProviderInfo {
    let info = provider.info();
    pb::ProviderInfo {
        name: info.name.to_string(),
        vendor: info.vendor.to_owned(),
        checks: info
            .checks
            .iter()
            .map(|&c| check_to_proto(c) as i32)
            .collect(),
        batch_size: u32::try_from(info.batch_size).unwrap_or(u32::MAX),
        asynchronous: info.asynchronous,
        quota: Some(pb::Quota {
            requests_per_second: info.limits.quota.requests_per_second,
            burst: info.limits.quota.burst,
        }),
        sandbox: info.sandbox,
        health: if health.failing() {
            pb::ProviderHealth::Failing
        } else {
            pb::ProviderHealth::Serving
        } as i32,
        last_error: health
            .last_error
            .as_ref()
            .filter(|_| health.failing())
            .map(|e| provider_error_to_status(&info.name, e)),
    }
}

//! The API's conversions: the contract's messages ([`crate::messages`]), and the provider list
//! and routes, which need the engine's view of each provider's health and of the routes.

use crate::engine::{Health, Policy, RouteView};
pub use crate::messages::*;
use crate::pb;
use crate::providers::Provider;

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

/// The protobuf `ProviderInfo`, prices in `currency`.
pub fn provider_to_proto(
    provider: &dyn Provider,
    health: &Health,
    currency: crate::domain::Currency,
) -> pb::ProviderInfo {
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
        circuit_open: health.circuit_open,
        prices: info
            .checks
            .iter()
            .map(|&check| pb::CheckPrice {
                check: check_to_proto(check) as i32,
                price: Some(money_to_proto(info.prices.of(check), currency)),
            })
            .collect(),
    }
}

/// The protobuf `Route`.
pub fn route_to_proto(route: &RouteView) -> pb::Route {
    pb::Route {
        check: check_to_proto(route.check) as i32,
        providers: route.providers.iter().map(|p| p.to_string()).collect(),
        policy: match route.policy {
            Policy::Failover => pb::RoutePolicy::Failover,
            Policy::Spread => pb::RoutePolicy::Spread,
        } as i32,
        rules: route
            .rules
            .iter()
            .map(|r| pb::RouteRule {
                regions: r.regions.clone(),
                provinces: r.provinces.clone(),
                carriers: r.carriers.clone(),
                providers: r.providers.clone(),
            })
            .collect(),
    }
}

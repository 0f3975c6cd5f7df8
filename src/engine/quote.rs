//! What a check of a number would cost if it ran now, without running it: for the estimate of a
//! dry-run job and for the amount a job with a `max_cost` holds before a number starts. Nothing
//! here calls a vendor or counts as a lookup of the answer cache.

use std::time::{Duration, SystemTime};

use super::{Engine, route::Policy};
use crate::domain::{Check, CheckOptions, NumberInfo};
use crate::providers::Query;

/// What one check of one number would cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// The number is not valid: decided offline, free.
    Invalid,
    /// No provider of the check's route covers the number (or the check has no route): free.
    NotCovered,
    /// An answer in the answer cache serves it, free, as long as it is used before this time.
    Answered(SystemTime),
    /// A vendor would be paid (at most [`Engine::price_ceiling`]).
    Paid,
}

impl Quote {
    /// Whether a vendor would be paid.
    pub fn paid(self) -> bool {
        self == Quote::Paid
    }
}

impl Engine {
    /// What `check` of the number `info` would cost if it ran at `at` (now or later) with
    /// `options`: an answer already in the answer cache (memory or the answer store) of any
    /// provider of the route covering the number is free only if it is still usable at `at`
    /// (its check's TTL and `options.max_cache_age`). Looks without counting a lookup and without
    /// calling a vendor; answers kept in Redis by other replicas are not looked for (they count
    /// as paid: an estimate errs on the dear side). Only answers `tenant` would be served count
    /// (with `cache.share = "tenant"`, its own).
    pub async fn quote(
        &self,
        check: Check,
        info: &NumberInfo,
        options: &CheckOptions,
        at: SystemTime,
        tenant: &str,
    ) -> Quote {
        if !info.valid {
            return Quote::Invalid;
        }
        if !self.reaches(check, info) {
            return Quote::NotCovered;
        }
        let query = Query {
            number: info.clone(),
            kyc: options.inputs_for(check),
            scope: None,
        };
        let mut answered: Option<SystemTime> = None;
        for dispatcher in self.covering(check, info) {
            if let Some(hit) = dispatcher
                .find_cached(
                    check,
                    &query,
                    options.max_cache_age,
                    options.include_profile_details,
                    tenant,
                )
                .await
            {
                let until = self
                    .answers
                    .usable_until(check, hit.fetched_at, options.max_cache_age);
                answered = Some(answered.map_or(until, |a| a.max(until)));
            }
        }
        match answered {
            Some(until) if until > at => Quote::Answered(until),
            _ => Quote::Paid,
        }
    }

    /// Whether a vendor may be asked `check` for this number: it is valid and a provider of the
    /// check's route covers it (no answer store is looked at).
    pub fn reaches(&self, check: Check, info: &NumberInfo) -> bool {
        info.valid && self.covering(check, info).next().is_some()
    }

    /// The dispatchers of `check`'s route that cover the number, in the route's order.
    fn covering<'a>(
        &'a self,
        check: Check,
        info: &'a NumberInfo,
    ) -> impl Iterator<Item = &'a super::Dispatcher> + 'a {
        self.routes
            .get(&check)
            .map(|route| route.members.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|&index| &self.dispatchers[index])
            .filter(|dispatcher| dispatcher.provider().covers(info).is_ok())
    }

    /// How many numbers per second a bulk job's `check` may go at: the bulk share of the
    /// route's quota (the first provider's with `failover`, every provider's with `spread`), in
    /// numbers (a call of a batching vendor carries several). `None`: no quota limits it.
    pub fn bulk_rate(&self, check: Check) -> Option<f64> {
        let route = self.routes.get(&check)?;
        let rate = |index: usize| {
            let info = self.dispatchers[index].provider().info();
            let rps = info.limits.quota.requests_per_second;
            (rps > 0.0).then(|| rps * self.bulk_share * info.batch_size.max(1) as f64)
        };
        match route.policy {
            Policy::Failover => rate(*route.members.first()?),
            Policy::Spread => route
                .members
                .iter()
                .map(|&i| rate(i))
                .try_fold(0.0, |sum, r| r.map(|r| sum + r)),
        }
    }

    /// How long `numbers` paid numbers of `check` take at [`Engine::bulk_rate`]; `None` when no
    /// quota limits the check.
    pub fn bulk_duration(&self, check: Check, numbers: u64) -> Option<Duration> {
        let rate = self.bulk_rate(check)?;
        // An absurdly low quota would not fit a Duration: say nothing rather than panic.
        Duration::try_from_secs_f64(numbers as f64 / rate).ok()
    }
}

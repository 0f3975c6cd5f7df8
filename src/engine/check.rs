//! One check of a request: where it goes ([`Plan`]: the providers in turn, or an answer
//! decided locally) and how it is run and recorded as an outcome.

use std::sync::Arc;
use std::time::Instant;

use super::{Caller, Delivery, Engine, LOCAL, LookupRequest, route};
use crate::domain::{
    Attempt, Check, CheckData, CheckOptions, CheckOutcome, CheckState, LineStatus,
    LineStatusResult, Money, NumberInfo, SkipReason,
};
use crate::providers::{Answer, Query};

impl Engine {
    pub(super) async fn run_check(
        &self,
        check: Check,
        info: &NumberInfo,
        request: &LookupRequest,
        started: Instant,
    ) -> CheckOutcome {
        let options = &request.options;
        let query = Query {
            number: info.clone(),
            kyc: options.inputs_for(check),
            scope: self
                .answers
                .scope(&request.tenant)
                .map(|_| request.tenant.clone()),
        };
        let order = match self.plan(check, info, &query, &request.tenant) {
            Plan::Local(local) => return local.finish(started),
            Plan::Providers(order) => order,
        };
        let profiles = options.include_profile_details;
        let caller = Caller {
            tenant: request.tenant.clone(),
            deadline: request.deadline,
            priority: request.priority,
            profiles,
        };
        // An answer any provider of the route gave is a hit for the route: the first one found,
        // in the route's order, is served in the name of the provider that gave it. (A route of
        // one is left to its dispatcher, which looks in its cache first anyway.)
        for &index in order.iter().filter(|_| order.len() > 1) {
            let dispatcher = &self.dispatchers[index];
            if let Some(hit) = dispatcher
                .find_cached(
                    check,
                    &query,
                    options.max_cache_age,
                    profiles,
                    &request.tenant,
                )
                .await
            {
                let hit = dispatcher.serve_cached(hit);
                let provider = dispatcher.provider().info();
                self.count_usage(&request.tenant, &provider.name, check, true, false);
                return redact_profiles(
                    CheckOutcome {
                        check,
                        provider: provider.name.clone(),
                        state: CheckState::Ok(hit.data),
                        billable: false,
                        cost: Money::ZERO,
                        joined: false,
                        cached: true,
                        latency: started.elapsed(),
                        fetched_at: Some(hit.fetched_at),
                        sandbox: provider.sandbox,
                        attempts: Vec::new(),
                    },
                    options,
                );
            }
        }
        let mut attempts = Vec::new();
        for (n, &index) in order.iter().enumerate() {
            let dispatcher = &self.dispatchers[index];
            let tried = Instant::now();
            let delivery = dispatcher
                .dispatch(check, query.clone(), options.max_cache_age, &caller)
                .await;
            let provider = dispatcher.provider().info();
            let joined = matches!(delivery, Delivery::Joined(_));
            let (state, billable, cached, fetched_at) = match delivery {
                Delivery::Cached(hit) => (CheckState::Ok(hit.data), false, true, hit.fetched_at),
                Delivery::Fresh(fetched) => {
                    let billable = match &fetched.result {
                        Ok(answer) => answer.billable(),
                        Err(e) => e.billable(),
                    };
                    (
                        state_of(fetched.result),
                        billable,
                        false,
                        fetched.fetched_at,
                    )
                }
                // Another caller's call: shared, and billed to that caller.
                Delivery::Joined(fetched) => {
                    (state_of(fetched.result), false, false, fetched.fetched_at)
                }
            };
            if let CheckState::Failed(error) = &state
                && let Some(&next) = order.get(n + 1)
                && route::fails_over(error)
                && !billable
                && request
                    .deadline
                    .is_none_or(|deadline| tokio::time::Instant::now() < deadline)
            {
                let to = self.dispatchers[next].provider().info().name.clone();
                route::failed_over(check, &provider.name, &to, error);
                attempts.push(Attempt {
                    provider: provider.name.clone(),
                    error: error.clone(),
                    latency: tried.elapsed(),
                });
                continue;
            }
            self.count_usage(&request.tenant, &provider.name, check, cached, joined);
            return redact_profiles(
                CheckOutcome {
                    check,
                    provider: provider.name.clone(),
                    state,
                    billable,
                    cost: if billable {
                        provider.prices.of(check)
                    } else {
                        Money::ZERO
                    },
                    joined,
                    cached,
                    latency: started.elapsed(),
                    fetched_at: Some(fetched_at),
                    sandbox: provider.sandbox,
                    attempts,
                },
                options,
            );
        }
        unreachable!("a plan names at least one provider, and the last one always answers")
    }

    /// The providers to try for a check, in order, or the local decision why none is asked.
    fn plan(&self, check: Check, info: &NumberInfo, query: &Query, tenant: &str) -> Plan {
        if !info.valid {
            // The taxonomy's INVALID is decided here and never sent upstream.
            return Plan::Local(LocalOutcome::local(
                check,
                match check {
                    Check::LineStatus => CheckState::Ok(CheckData::LineStatus(
                        LineStatusResult::new(LineStatus::Invalid, LOCAL, "not a valid number"),
                    )),
                    _ => CheckState::Skipped(SkipReason::NumberInvalid),
                },
            ));
        }
        let Some(route) = self.routes.get(&check) else {
            return Plan::Local(LocalOutcome::local(
                check,
                CheckState::Skipped(SkipReason::NoProvider),
            ));
        };
        let order = route.order(
            info,
            |i| self.dispatchers[i].provider().covers(info).is_ok(),
            |i| self.dispatchers[i].in_flight_for(check, query, tenant),
        );
        if order.is_empty() {
            // Nobody on the route takes the number: the first provider says why.
            let provider = self.dispatchers[route.members[0]].provider();
            let why = provider.covers(info).err().unwrap_or_default();
            return Plan::Local(LocalOutcome {
                check,
                provider: provider.info().name.clone(),
                state: CheckState::Skipped(SkipReason::NotCovered(why)),
            });
        }
        Plan::Providers(order)
    }
}

/// Where a check goes.
enum Plan {
    /// To the providers at these indices, in turn.
    Providers(Vec<usize>),
    /// Nowhere: decided locally.
    Local(LocalOutcome),
}

fn state_of(result: Result<Answer, crate::providers::ProviderError>) -> CheckState {
    match result {
        Ok(Answer::Ready { data, .. }) => CheckState::Ok(data),
        Ok(Answer::Pending { .. }) => CheckState::Pending,
        Err(error) => CheckState::Failed(error),
    }
}

/// An outcome decided without a vendor.
struct LocalOutcome {
    check: Check,
    provider: Arc<str>,
    state: CheckState,
}

impl LocalOutcome {
    fn local(check: Check, state: CheckState) -> LocalOutcome {
        LocalOutcome {
            check,
            provider: LOCAL.into(),
            state,
        }
    }

    fn finish(self, started: Instant) -> CheckOutcome {
        CheckOutcome {
            check: self.check,
            provider: self.provider,
            state: self.state,
            billable: false,
            cost: Money::ZERO,
            joined: false,
            cached: false,
            latency: started.elapsed(),
            fetched_at: None,
            sandbox: false,
            attempts: Vec::new(),
        }
    }
}

/// Platform profiles are personal data: they leave the engine only when the caller asked.
fn redact_profiles(mut outcome: CheckOutcome, options: &CheckOptions) -> CheckOutcome {
    if !options.include_profile_details
        && let CheckState::Ok(CheckData::AccountPresence(presence)) = outcome.state
    {
        outcome.state = CheckState::Ok(CheckData::AccountPresence(presence.without_profiles()));
    }
    outcome
}

//! Routes: which providers serve a check, in which order, and how traffic is shared among them.
//!
//! `[routes]` maps a check to providers in order. With the `failover` policy (the default) every
//! number goes to the first provider; with `spread` numbers are dealt across the route in
//! proportion to each provider's quota (two accounts of 100/s give 200/s). Either way, when the
//! chosen provider cannot serve the account (breaker open, credentials refused, out of quota, rate
//! limited or unavailable past its retries) the next provider of the route is tried for that
//! number within the caller's deadline ([`fails_over`]). Match rules put providers that are
//! better on some ranges (a region, a province, a segment carrier) first for those numbers.
//!
//! A check without a `[routes]` entry is served by every provider that serves it, in the order the
//! engine was given them: `[providers]` is read into a map sorted by name (figment keeps no file
//! order), so by default that is the alphabetical order of the provider names.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::domain::{Check, NumberInfo, ProviderError};
use crate::providers::ErrorReason;

/// `[routes]`: per check (`line_status`, `spam_labels`, `account_presence`, `risk_profile`), the
/// providers that serve it.
///
/// ```toml
/// [routes]
/// line_status = ["thinksms", "aliyun"]
///
/// # or, with a policy and match rules:
/// [routes.line_status]
/// providers = ["thinksms", "aliyun"]
/// policy = "spread"
/// rules = [{ carriers = ["China Telecom"], providers = ["aliyun"] }]
/// ```
pub type RoutesConfig = BTreeMap<String, RouteConfig>;

/// One check's route: a list of provider names, or a table with a policy and rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RouteConfig {
    /// The providers, in order; policy `failover`.
    Providers(Vec<String>),
    /// The full form.
    Table(RouteTable),
}

/// The full form of a route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// The providers, in order.
    pub providers: Vec<String>,
    /// How numbers are shared among them.
    #[serde(default)]
    pub policy: Policy,
    /// Providers preferred for some numbers; the first rule that matches a number applies.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// How a route shares numbers among its providers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Every number goes to the first provider that can take it; the next ones are tried when
    /// it fails for the account's sake.
    #[default]
    Failover,
    /// Numbers are dealt across the providers in proportion to their quotas (smooth weighted
    /// round robin); a failed number still fails over to the others.
    Spread,
}

impl Policy {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Failover => "failover",
            Policy::Spread => "spread",
        }
    }
}

/// A match rule: numbers matching every criterion given (each a list of alternatives) go to
/// `providers` first, in that order; the rest of the route follows for failover.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// ISO 3166 alpha-2 regions of the number (`CN`, `ID`).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Home provinces, as reported in `NumberInfo.location.province` (`广东`).
    #[serde(default)]
    pub provinces: Vec<String>,
    /// Segment carriers: the English or local name (`China Telecom`, `中国电信`) or the code
    /// (`CMCC`, `CUCC`, `CTCC`, `CBN`). This is the carrier of the number's segment, before any
    /// porting.
    #[serde(default)]
    pub carriers: Vec<String>,
    /// The preferred providers, all of them in the route.
    pub providers: Vec<String>,
}

impl RouteConfig {
    /// The full form.
    pub fn table(&self) -> RouteTable {
        match self {
            RouteConfig::Providers(providers) => RouteTable {
                providers: providers.clone(),
                policy: Policy::Failover,
                rules: Vec::new(),
            },
            RouteConfig::Table(table) => table.clone(),
        }
    }
}

/// The check a `[routes]` key names (`line_status` or `line-status`).
pub fn check_named(name: &str) -> Option<Check> {
    Check::named(name)
}

/// Every problem with `[routes]`, given the providers that exist and the checks each serves.
pub fn problems(routes: &RoutesConfig, providers: &BTreeMap<String, Vec<Check>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, route) in routes {
        let at = format!("routes.{key}");
        let Some(check) = check_named(key) else {
            problems.push(format!("{at}: not a check ({})", Check::keys()));
            continue;
        };
        let table = route.table();
        if table.providers.is_empty() {
            problems.push(format!("{at}: names no provider"));
        }
        for (i, name) in table.providers.iter().enumerate() {
            if table.providers[..i].contains(name) {
                problems.push(format!("{at}: {name:?} is listed twice"));
                continue;
            }
            match providers.get(name) {
                None => problems.push(format!("{at}: no provider is named {name:?}")),
                Some(checks) if !checks.contains(&check) => {
                    problems.push(format!("{at}: provider {name:?} does not serve {check}"));
                }
                Some(_) => {}
            }
        }
        for (i, rule) in table.rules.iter().enumerate() {
            let at = format!("{at}.rules[{i}]");
            if rule.providers.is_empty() {
                problems.push(format!("{at}: names no provider"));
            }
            for name in &rule.providers {
                if !table.providers.contains(name) {
                    problems.push(format!("{at}: provider {name:?} is not in the route"));
                }
            }
            if rule.regions.is_empty() && rule.provinces.is_empty() && rule.carriers.is_empty() {
                problems.push(format!(
                    "{at}: matches every number (give regions, provinces or carriers)"
                ));
            }
        }
    }
    problems
}

/// Why the engine could not take the routes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The routes are not valid for these providers; every problem is listed.
    #[error("invalid routes:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Whether a failed attempt passes the number on to the next provider of the route: the account
/// could not be served (breaker open, credentials refused, no quota, rate limited or unavailable
/// after the provider's own retries) and the vendor did not bill. A number the vendor refused
/// (`Rejected`), an answer that could not be read (the vendor may have billed it) and
/// phonecheck's own state failing stay with the provider that had them.
pub fn fails_over(error: &ProviderError) -> bool {
    matches!(
        error.reason(),
        ErrorReason::AuthFailed
            | ErrorReason::QuotaExhausted
            | ErrorReason::RateLimited
            | ErrorReason::Unavailable
    ) && !error.billable()
}

/// The `reason` label of a failover: the error's reason, `circuit_open` for a breaker that
/// refused without calling.
pub fn failover_reason(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::CircuitOpen => "circuit_open",
        other => other.reason().label(),
    }
}

/// The vendor code (`CMCC`, ...) of an operator's English name.
fn carrier_code(name: &str) -> Option<&'static str> {
    use crate::number::segments::Operator;
    [
        Operator::ChinaMobile,
        Operator::ChinaUnicom,
        Operator::ChinaTelecom,
        Operator::ChinaBroadnet,
    ]
    .into_iter()
    .find(|op| op.names().0 == name)
    .and_then(Operator::code)
}

/// A rule, resolved to provider indices.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    config: RuleConfig,
    preferred: Vec<usize>,
}

impl Rule {
    /// The rule as configured.
    pub(super) fn config(&self) -> &RuleConfig {
        &self.config
    }

    fn matches(&self, info: &NumberInfo) -> bool {
        let c = &self.config;
        let any = |list: &[String], value: &str| list.iter().any(|v| v.eq_ignore_ascii_case(value));
        let region = c.regions.is_empty() || any(&c.regions, &info.region_code);
        let province = c.provinces.is_empty()
            || info
                .location
                .as_ref()
                .is_some_and(|l| any(&c.provinces, &l.province));
        let carrier = c.carriers.is_empty()
            || info.carrier.as_ref().is_some_and(|carrier| {
                any(&c.carriers, carrier.name)
                    || any(&c.carriers, carrier.local_name)
                    || carrier_code(carrier.name).is_some_and(|code| any(&c.carriers, code))
            });
        region && province && carrier
    }
}

/// One check's route over the engine's providers (by index).
#[derive(Debug)]
pub(super) struct Route {
    pub(super) check: Check,
    pub(super) members: Vec<usize>,
    pub(super) policy: Policy,
    pub(super) rules: Vec<Rule>,
    /// Each member's share for `spread` (its quota), by position in `members`.
    weights: Vec<i64>,
    /// Smooth weighted round robin: each member's running credit.
    credit: Mutex<Vec<i64>>,
}

impl Route {
    /// A route over `members` (indices), whose quotas (requests per second, 0 for none) are
    /// `quotas`, by position.
    pub(super) fn new(
        check: Check,
        members: Vec<usize>,
        policy: Policy,
        rules: Vec<Rule>,
        quotas: &[f64],
    ) -> Route {
        // A provider without a quota takes as much as the largest quota of the route (or an
        // equal share when none has one): it has no rate to be proportional to.
        let largest = quotas.iter().copied().fold(0.0_f64, f64::max);
        let weights = quotas
            .iter()
            .map(|&q| {
                let q = if q > 0.0 { q } else { largest.max(1.0) };
                ((q * 1000.0).round() as i64).max(1)
            })
            .collect::<Vec<_>>();
        Route {
            check,
            credit: Mutex::new(vec![0; members.len()]),
            members,
            policy,
            rules,
            weights,
        }
    }

    /// Resolves a rule's provider names against `names` (the engine's providers, by index).
    pub(super) fn rule(config: RuleConfig, names: &[Arc<str>]) -> Rule {
        let preferred = config
            .providers
            .iter()
            .filter_map(|name| names.iter().position(|n| **n == **name))
            .collect();
        Rule { config, preferred }
    }

    /// Every provider a number of this route may go to: the members and the rules' providers.
    pub(super) fn providers(&self) -> Vec<usize> {
        let mut all = self.members.clone();
        for rule in &self.rules {
            all.extend(rule.preferred.iter().filter(|p| !self.members.contains(p)));
        }
        all
    }

    /// The providers to try for a number, in order, among those that `covers` accepts: the
    /// first matching rule's providers, then the rest of the route. With `spread`, the first is
    /// dealt by quota among the first tier (the rule's providers, or the whole route); `busy`
    /// says whether a provider already has this number in flight, which then takes it (one
    /// vendor call for identical numbers).
    pub(super) fn order(
        &self,
        info: &NumberInfo,
        covers: impl Fn(usize) -> bool,
        busy: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut order: Vec<usize> = Vec::with_capacity(self.members.len());
        if let Some(rule) = self.rules.iter().find(|r| r.matches(info)) {
            order.extend(rule.preferred.iter().copied());
        }
        let tier = order.len();
        let rest: Vec<usize> = self
            .members
            .iter()
            .copied()
            .filter(|m| !order.contains(m))
            .collect();
        order.extend(rest);
        order.retain(|&m| covers(m));
        if self.policy == Policy::Spread && order.len() > 1 {
            let tier = if tier == 0 { order.len() } else { tier };
            let tier = tier.min(order.len());
            let first = order[..tier]
                .iter()
                .position(|&m| busy(m))
                .or_else(|| self.deal(&order[..tier]));
            if let Some(first) = first {
                let chosen = order.remove(first);
                order.insert(0, chosen);
            }
        }
        order
    }

    /// Smooth weighted round robin over `candidates` (a subset of the members): each gains its
    /// weight, the richest is chosen and pays the total. Returns its position in `candidates`.
    fn deal(&self, candidates: &[usize]) -> Option<usize> {
        let positions: Vec<usize> = candidates
            .iter()
            .filter_map(|c| self.members.iter().position(|m| m == c))
            .collect();
        let mut credit = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, &p) in positions.iter().enumerate() {
            credit[p] += self.weights[p];
            total += self.weights[p];
            if best.is_none_or(|b| credit[p] > credit[positions[b]]) {
                best = Some(i);
            }
        }
        let best = best?;
        credit[positions[best]] -= total;
        Some(best)
    }
}

/// Counts a failover and notes it on the lookup's span.
pub(super) fn failed_over(
    check: Check,
    from: &Arc<str>,
    to: &Arc<str>,
    error: &crate::providers::ProviderError,
) {
    let reason = failover_reason(error);
    metrics::counter!(crate::metrics::FAILOVERS, "check" => check.as_str(),
        "from" => from.to_string(), "to" => to.to_string(), "reason" => reason)
    .increment(1);
    tracing::info!(
        check = check.as_str(),
        from = %from,
        to = %to,
        reason,
        "failover: {from} failed ({reason}), trying {to}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::{Analyzer, LocationData};

    fn info(number: &str) -> NumberInfo {
        Analyzer::new(LocationData::embedded())
            .analyze(number, "CN")
            .unwrap()
    }

    #[test]
    fn spread_deals_in_proportion_to_quotas() {
        let route = Route::new(
            Check::LineStatus,
            vec![0, 1],
            Policy::Spread,
            Vec::new(),
            &[100.0, 50.0],
        );
        let n = info("13800138000");
        let mut counts = [0; 2];
        for _ in 0..300 {
            counts[route.order(&n, |_| true, |_| false)[0]] += 1;
        }
        assert_eq!(counts, [200, 100]);
        // Two equal accounts alternate exactly.
        let route = Route::new(
            Check::LineStatus,
            vec![3, 7],
            Policy::Spread,
            Vec::new(),
            &[100.0, 100.0],
        );
        let firsts: Vec<usize> = (0..4)
            .map(|_| route.order(&n, |_| true, |_| false)[0])
            .collect();
        assert_eq!(firsts, [3, 7, 3, 7]);
        // A provider with the number in flight takes it.
        assert_eq!(route.order(&n, |_| true, |m| m == 7), [7, 3]);
    }

    #[test]
    fn failover_keeps_the_order_and_drops_what_does_not_cover() {
        let route = Route::new(
            Check::LineStatus,
            vec![2, 0, 1],
            Policy::Failover,
            Vec::new(),
            &[1.0, 1.0, 1.0],
        );
        let n = info("13800138000");
        assert_eq!(route.order(&n, |_| true, |_| false), [2, 0, 1]);
        assert_eq!(route.order(&n, |m| m != 0, |_| false), [2, 1]);
    }

    #[test]
    fn rules_put_their_providers_first() {
        let names: Vec<Arc<str>> = vec!["thinksms".into(), "aliyun".into()];
        let rule = Route::rule(
            RuleConfig {
                carriers: vec!["CTCC".into()],
                providers: vec!["aliyun".into()],
                ..RuleConfig::default()
            },
            &names,
        );
        let route = Route::new(
            Check::LineStatus,
            vec![0, 1],
            Policy::Failover,
            vec![rule],
            &[100.0, 300.0],
        );
        // 133 is a China Telecom segment, 138 China Mobile.
        assert_eq!(
            route.order(&info("13300001111"), |_| true, |_| false),
            [1, 0]
        );
        assert_eq!(
            route.order(&info("13800001111"), |_| true, |_| false),
            [0, 1]
        );
    }

    #[test]
    fn only_account_failures_fail_over() {
        use crate::domain::CodeClass;
        assert!(fails_over(&ProviderError::CircuitOpen));
        assert!(fails_over(&ProviderError::Http(503)));
        assert!(fails_over(&ProviderError::Http(401)));
        assert!(fails_over(&ProviderError::Http(429)));
        assert!(!fails_over(&ProviderError::Http(404)));
        assert!(!fails_over(&ProviderError::BadResponse("x".into())));
        let billed = ProviderError::Vendor {
            code: "x".into(),
            message: String::new(),
            class: CodeClass {
                reason: ErrorReason::Unavailable,
                retryable: false,
                billable: true,
            },
        };
        assert!(!fails_over(&billed));
        assert_eq!(failover_reason(&ProviderError::CircuitOpen), "circuit_open");
        assert_eq!(failover_reason(&ProviderError::Http(401)), "auth_failed");
    }

    #[test]
    fn route_problems_are_all_listed() {
        let providers = BTreeMap::from([
            ("thinksms".to_owned(), vec![Check::LineStatus]),
            ("caih".to_owned(), vec![Check::SpamLabels]),
        ]);
        let routes: RoutesConfig = BTreeMap::from([
            (
                "line_status".to_owned(),
                RouteConfig::Table(RouteTable {
                    providers: vec!["thinksms".into(), "caih".into(), "nope".into()],
                    policy: Policy::Spread,
                    rules: vec![RuleConfig {
                        providers: vec!["other".into()],
                        ..RuleConfig::default()
                    }],
                }),
            ),
            ("colour".to_owned(), RouteConfig::Providers(vec![])),
        ]);
        let problems = problems(&routes, &providers);
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }
}

//! A job's `max_cost`: before a number's paid checks run, the runner holds the highest price of
//! each check's route ([`Engine::price_ceiling`]) for every check a vendor may be asked, and never
//! lets what the job spent plus what is held pass the limit. A number settles with what it was
//! really billed. When a hold would pass the limit no further number starts: the numbers in flight
//! finish and the job is paused until a client raises the limit.

use crate::domain::{Check, Money, Report};
use crate::engine::Engine;
use std::sync::{Arc, Mutex};

/// The spent and held amounts of one job against its `max_cost`.
#[derive(Debug)]
pub(super) struct CostGuard {
    max: Money,
    state: Mutex<Spending>,
}

#[derive(Debug, Default)]
struct Spending {
    spent: Money,
    held: Money,
}

/// An amount held for one number until it is settled. Dropped unsettled (the lookup was dropped at
/// a stop, when vendor calls may still bill), the whole amount counts as spent.
#[derive(Debug)]
#[must_use = "settle the hold with the number's report"]
pub(super) struct CostHold {
    guard: Option<Arc<CostGuard>>,
    amount: Money,
}

impl CostGuard {
    /// A guard of `max`, the job having spent `spent` already.
    pub(super) fn new(max: Money, spent: Money) -> Arc<CostGuard> {
        Arc::new(CostGuard {
            max,
            state: Mutex::new(Spending {
                spent,
                held: Money::ZERO,
            }),
        })
    }

    /// Holds `amount`, or `None` when spent plus held plus it would pass the limit.
    /// Whether `amount` more could be held now.
    pub(super) fn fits(&self, amount: Money) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .spent
            .saturating_add(state.held)
            .saturating_add(amount)
            <= self.max
    }

    pub(super) fn hold(self: &Arc<Self>, amount: Money) -> Option<CostHold> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .spent
            .saturating_add(state.held)
            .saturating_add(amount)
            > self.max
        {
            return None;
        }
        state.held += amount;
        Some(CostHold {
            guard: Some(self.clone()),
            amount,
        })
    }

    fn settle(&self, held: Money, billed: Money) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.held = state.held.saturating_sub(held);
        state.spent += billed;
    }
}

impl CostHold {
    /// Counts what the number was billed and frees the rest of the hold.
    pub(super) fn settle(mut self, report: Option<&Report>) {
        if let Some(guard) = self.guard.take() {
            let billed = report.map_or(Money::ZERO, |r| crate::budget::billed(r).cost);
            guard.settle(self.amount, billed);
        }
    }
}

impl Drop for CostHold {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.settle(self.amount, self.amount);
        }
    }
}

/// What to hold for one number: the price ceiling of each of `checks` a vendor may be asked for
/// (none for an invalid number, or one no provider covers). An answer in the cache holds too: it
/// may expire, be evicted or be forgotten before the number runs (its rate and budget waits come
/// first), and a hold that is not used is given back when the number settles.
pub(super) fn to_hold(
    engine: &Engine,
    input: &str,
    default_region: &str,
    checks: &[Check],
) -> Money {
    let Ok(info) = engine.analyzer().analyze(input, default_region) else {
        return Money::ZERO;
    };
    checks
        .iter()
        .filter(|&&check| engine.reaches(check, &info))
        .map(|&check| engine.price_ceiling(check))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cny(text: &str) -> Money {
        text.parse().unwrap()
    }

    #[test]
    fn spent_and_held_never_pass_the_limit() {
        let guard = CostGuard::new(cny("0.10"), cny("0.01"));
        let a = guard.hold(cny("0.04")).expect("0.05 of 0.10");
        let b = guard.hold(cny("0.04")).expect("0.09 of 0.10");
        assert!(guard.hold(cny("0.04")).is_none(), "0.13 would pass 0.10");
        assert!(guard.hold(cny("0.01")).is_some_and(|h| {
            h.settle(None);
            true
        }));
        // Billed less than held: the rest is free again.
        a.settle(None);
        assert!(guard.hold(cny("0.04")).is_some_and(|h| {
            h.settle(None);
            true
        }));
        // Dropped unsettled, a hold counts whole: 0.01 + 0.04 spent, 0.05 left.
        drop(b);
        assert!(guard.hold(cny("0.06")).is_none());
        let c = guard.hold(cny("0.05")).expect("exactly the limit");
        c.settle(None);
        assert_eq!(guard.state.lock().unwrap().spent, cny("0.05"));
        assert_eq!(guard.state.lock().unwrap().held, Money::ZERO);
    }

    #[test]
    fn nothing_to_hold_always_fits() {
        let guard = CostGuard::new(Money::ZERO, Money::ZERO);
        guard
            .hold(Money::ZERO)
            .expect("free numbers go on")
            .settle(None);
        assert!(guard.hold(cny("0.01")).is_none());
    }
}

//! What phonecheck depends on outside its process (Redis, the database, the answer store's
//! disk), each watched by one [`Dependency`]: a breaker that treats the dependency as down for a
//! short interval after it failed, so that callers fail at once instead of each paying the
//! timeout again; a log line when it goes down and one when it comes back (never one per
//! request); the gauge [`DEPENDENCY_UP`]; and a watch that the server turns into readiness.
//!
//! Only failures that say the dependency cannot be reached count (a timeout, a refused or dropped
//! connection, a full disk); an answer that is an error (a script error, a constraint) shows it
//! is up.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// 1 while a dependency is usable, 0 while it is down, by `dependency` (`redis`, `database`,
/// `answer_store`).
pub const DEPENDENCY_UP: &str = "phonecheck_dependency_up";

/// How a failed call failed, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The call waited its whole timeout: the caller already paid the bound, so the next one is
    /// spared it at once (down after one).
    Timeout,
    /// Refused, dropped or otherwise unreachable at once: cheap to see again, so down only after
    /// [`Breaker::failures`] of them in a row.
    Unreachable,
}

/// When a dependency is treated as down and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Breaker {
    /// Down after this many [`Failure::Unreachable`] in a row (one [`Failure::Timeout`] is enough).
    pub failures: u32,
    /// How long calls fail at once before one call is let through to see whether it is back.
    pub down_for: Duration,
    /// How long that one call may take before another is let through (its own timeout).
    pub probe_timeout: Duration,
}

/// The dependency is down: calls fail at once until the next probe.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{name} is down (it failed just now; retried by itself)")]
pub struct Down {
    /// The dependency's name.
    pub name: &'static str,
}

/// One dependency's state.
#[derive(Debug)]
pub struct Dependency {
    name: &'static str,
    breaker: Breaker,
    state: Mutex<State>,
    up: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    /// Set while down: calls fail at once until then.
    down_until: Option<Instant>,
    /// While down, the one call let through to see whether it is back, and since when.
    probe_since: Option<Instant>,
    /// How many calls failed at once while down (said in the recovery line).
    refused: u64,
    since: Option<Instant>,
}

impl Dependency {
    /// A dependency named `name` (a metric label), up until it fails.
    pub fn new(name: &'static str, breaker: Breaker) -> Dependency {
        metrics::gauge!(DEPENDENCY_UP, "dependency" => name).set(1.0);
        Dependency {
            name,
            breaker: Breaker {
                failures: breaker.failures.max(1),
                ..breaker
            },
            state: Mutex::new(State::default()),
            up: watch::channel(true).0,
        }
    }

    /// The dependency's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether it is up now.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Follows whether it is up (readiness).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go now: `Err` while down, except for one call after `down_for` (the
    /// probe: its success or failure decides).
    pub fn admit(&self) -> Result<(), Down> {
        let mut s = self.lock();
        let Some(until) = s.down_until else {
            return Ok(());
        };
        let now = Instant::now();
        let probing = s
            .probe_since
            .is_some_and(|since| now < since + self.breaker.probe_timeout);
        if now >= until && !probing {
            s.probe_since = Some(now);
            return Ok(());
        }
        s.refused += 1;
        Err(Down { name: self.name })
    }

    /// A call reached the dependency (even one answered with an error).
    pub fn succeeded(&self) {
        let mut s = self.lock();
        s.failures = 0;
        if s.down_until.take().is_some() {
            let down = s.since.take().map(|t| t.elapsed()).unwrap_or_default();
            tracing::info!(
                dependency = self.name,
                down_for = ?down,
                failed_at_once = s.refused,
                "{} is back",
                self.name
            );
            s.probe_since = None;
            s.refused = 0;
            metrics::gauge!(DEPENDENCY_UP, "dependency" => self.name).set(1.0);
            self.up.send_replace(true);
        }
    }

    /// A call could not reach the dependency; `why` is the error's kind, without details that
    /// may carry addresses or secrets.
    pub fn failed(&self, failure: Failure, why: &str) {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        let now = Instant::now();
        if s.down_until.is_some() {
            // Still down (a probe or a call admitted before it went down): wait again.
            s.down_until = Some(now + self.breaker.down_for);
            s.probe_since = None;
            return;
        }
        if failure == Failure::Timeout || s.failures >= self.breaker.failures {
            s.down_until = Some(now + self.breaker.down_for);
            s.since = Some(now);
            tracing::error!(
                dependency = self.name,
                error = why,
                "{} is unreachable: calls that need it fail at once for {:?} at a time until it \
                 answers again",
                self.name,
                self.breaker.down_for
            );
            metrics::gauge!(DEPENDENCY_UP, "dependency" => self.name).set(0.0);
            self.up.send_replace(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(down_for: Duration) -> Breaker {
        Breaker {
            failures: 3,
            down_for,
            probe_timeout: Duration::from_millis(50),
        }
    }

    #[test]
    fn one_timeout_takes_it_down_and_a_success_brings_it_back() {
        let d = Dependency::new("test", breaker(Duration::from_secs(60)));
        assert!(d.admit().is_ok() && d.is_up());
        d.failed(Failure::Timeout, "Io");
        assert!(!d.is_up());
        assert_eq!(d.admit().unwrap_err().name, "test");
        d.succeeded();
        assert!(d.is_up() && d.admit().is_ok());
    }

    #[test]
    fn unreachable_takes_it_down_after_the_set_number_in_a_row() {
        let d = Dependency::new("test", breaker(Duration::from_secs(60)));
        d.failed(Failure::Unreachable, "Io");
        d.failed(Failure::Unreachable, "Io");
        d.succeeded();
        d.failed(Failure::Unreachable, "Io");
        d.failed(Failure::Unreachable, "Io");
        assert!(d.is_up(), "a success in between starts the count again");
        d.failed(Failure::Unreachable, "Io");
        assert!(!d.is_up());
    }

    #[test]
    fn after_down_for_one_probe_goes_through_and_the_others_wait() {
        let d = Dependency::new("test", breaker(Duration::ZERO));
        d.failed(Failure::Timeout, "Io");
        assert!(d.admit().is_ok(), "the probe");
        assert!(d.admit().is_err(), "others fail at once while it is out");
        d.failed(Failure::Timeout, "Io");
        assert!(!d.is_up());
        // A probe that never reports (its caller went away) is replaced after its timeout.
        assert!(d.admit().is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert!(d.admit().is_ok());
        d.succeeded();
        assert!(d.is_up());
    }

    #[tokio::test]
    async fn the_watch_follows_it() {
        let d = Dependency::new("test", breaker(Duration::from_secs(60)));
        let mut up = d.watch();
        d.failed(Failure::Timeout, "Io");
        up.changed().await.unwrap();
        assert!(!*up.borrow_and_update());
        d.succeeded();
        up.changed().await.unwrap();
        assert!(*up.borrow());
    }
}

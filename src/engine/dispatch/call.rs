//! A dispatcher's vendor calls: the batcher that gathers queued numbers into calls, and the call
//! of one batch, whose results are counted (health, cost, usage), kept and delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::Instrument;

use super::{Fetched, Health, Job, Shared, keepable};
use crate::domain::Check;
use crate::engine::usage::UsageEvent;
use crate::providers::{Answer, ProviderError, Query};

impl Shared {
    /// Calls the provider for a batch, then caches and delivers each answer.
    pub(super) async fn execute(&self, check: Check, jobs: Vec<Job>) {
        let queries: Arc<[Query]> = jobs.iter().map(|j| j.query.clone()).collect();
        // Retries stop at the latest deadline among the callers; any caller without one lifts it.
        let deadline = jobs
            .iter()
            .map(|j| j.deadline)
            .reduce(|a, b| a.zip(b).map(|(a, b)| a.max(b)))
            .flatten();
        let call = crate::engine::stack::Call {
            check,
            queries,
            deadline,
            attempt: 0,
        };
        let info = self.provider.info();
        let span = tracing::info_span!(
            parent: &jobs[0].span,
            "vendor.call",
            provider = %info.name,
            vendor = info.vendor,
            check = check.as_str(),
            batch_size = jobs.len() as i64,
            outcome = tracing::field::Empty,
        );
        let mut results = match self
            .stack
            .clone()
            .oneshot(call)
            .instrument(span.clone())
            .await
        {
            Ok(results) => {
                span.record("outcome", "answered");
                results
            }
            Err(error) => {
                // A breaker that is open fails the call here, without a vendor.http span.
                span.record("outcome", error.reason().label());
                vec![Err(error); jobs.len()]
            }
        };
        if results.len() != jobs.len() {
            let error = ProviderError::BadResponse(format!(
                "the provider returned {} results for {} numbers",
                results.len(),
                jobs.len()
            ));
            results = vec![Err(error); jobs.len()];
        }
        self.record(&results);
        // Milliseconds, as the answer store keeps it: a fresh answer and its stored copy say the
        // same time.
        let fetched_at = SystemTime::UNIX_EPOCH
            + Duration::from_millis(
                u64::try_from(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis(),
                )
                .unwrap_or(u64::MAX),
            );
        let mut shared_answers = Vec::new();
        let mut deliveries = Vec::with_capacity(jobs.len());
        let mut rows = Vec::new();
        let price = info.prices.of(check);
        for (job, result) in jobs.into_iter().zip(results) {
            // Counted here, where the call completed, whether or not its caller still waits.
            let billable = match &result {
                Ok(answer) => answer.billable(),
                Err(error) => error.billable(),
            };
            if billable {
                crate::metrics::count_vendor_cost(&info.name, check.as_str(), price.nanos());
            }
            self.usage.record(
                &job.tenant,
                &info.name,
                check,
                UsageEvent {
                    billable,
                    cost: price,
                    failed: result.is_err(),
                    ..UsageEvent::default()
                },
            );
            // Answers are kept, negative ones too; failures and pending answers are not.
            let kept = match &result {
                Ok(Answer::Ready { data, .. }) => Some(keepable(data.clone(), job.profiles)),
                _ => None,
            };
            if let Some((data, withheld)) = &kept {
                rows.push(self.answers.hold(
                    job.key.id,
                    job.key.check,
                    data,
                    fetched_at,
                    *withheld,
                ));
            }
            if let (Some(remote), Some(lock)) = (&self.remote, job.lock) {
                shared_answers.push(async move {
                    let withheld = kept.as_ref().is_some_and(|(_, w)| *w);
                    remote
                        .finish(lock, kept.as_ref().map(|(d, _)| (d, fetched_at)), withheld)
                        .await;
                });
            }
            deliveries.push((job.key, Fetched { result, fetched_at }, job.reply));
        }
        // Other replicas can see an answer by the time this replica's callers have it.
        join_all(shared_answers).await;
        // Queued for the store (no disk wait) before any caller has it, so that a flush at
        // shutdown covers every answer a caller was given.
        self.answers.persist(rows).await;
        for (key, fetched, reply) in deliveries {
            self.deliver(&key, fetched, Some(reply));
        }
    }

    /// Any success resets the failure count; a call whose results all failed for the vendor's
    /// sake (not a refused number) counts as one failure.
    fn record(&self, results: &[Result<Answer, ProviderError>]) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if results.iter().any(Result::is_ok) {
            *health = Health::default();
            return;
        }
        let failure = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .find(|e| e.counts_against_vendor());
        if let Some(error) = failure {
            health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            health.last_error = Some(error.clone());
        }
    }
}

/// Gathers jobs into batches of the provider's size, waiting at most `linger` for one to fill.
pub(super) async fn batcher(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Job>, linger: Duration) {
    let size = shared.provider.info().batch_size.max(1);
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        let until = Instant::now() + linger;
        while batch.len() < size {
            match tokio::time::timeout_at(until, jobs.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut by_check: HashMap<Check, Vec<Job>> = HashMap::new();
            for job in batch {
                by_check.entry(job.key.check).or_default().push(job);
            }
            for (check, jobs) in by_check {
                shared.execute(check, jobs).await;
            }
        });
    }
}

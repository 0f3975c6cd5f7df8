//! The two ends of a pass: the numbers still to check, read from the store a page at a time, and
//! their results, written as they come (group commit).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::store::{JobStore, NumberFate, NumberResult, StoreError, TodoNumber};

/// Numbers fetched from the store at once.
pub(super) const PAGE: u32 = 1_000;
/// Most results in one write.
const MAX_WRITE: usize = 1_000;
/// The first pause before writing results again after a failed write; it doubles up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Sends the numbers still to check, in file order, until there are none or nobody listens.
pub(super) async fn read_todo(
    store: Arc<dyn JobStore>,
    id: String,
    todo: mpsc::Sender<Result<TodoNumber, StoreError>>,
) {
    let mut after = -1;
    loop {
        match store.todo(&id, after, PAGE).await {
            Ok(page) => {
                let Some(last) = page.last() else { return };
                after = last.seq;
                for number in page {
                    if todo.send(Ok(number)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = todo.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Writes results as they come: each write takes everything that arrived during the previous one.
/// A write that fails (the database is away) is tried again, with the same results, until it
/// succeeds or the job is stopped: the results were paid for, and a job that lost them would ask
/// again of the answer store and no longer count what the vendor billed. Meanwhile the results
/// channel fills and the checks wait, so no more is paid while nothing can be written. (A write
/// that failed may have committed; writing it again counts each number once.)
pub(super) async fn write_results(
    store: Arc<dyn JobStore>,
    id: String,
    mut received: mpsc::Receiver<NumberResult>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let mut rate = Rate::default();
    let mut batch = Vec::with_capacity(MAX_WRITE);
    while let Some(first) = received.recv().await {
        batch.push(first);
        while batch.len() < MAX_WRITE {
            match received.try_recv() {
                Ok(result) => batch.push(result),
                Err(_) => break,
            }
        }
        rate.add(batch.len());
        let mut pause = FIRST_RETRY_PAUSE;
        let mut failures = 0u32;
        while let Err(e) = store.record(&id, &batch, rate.per_second()).await {
            if failures == 0 {
                warn!(job = %id, results = batch.len(), error = %e, "job results could not be written; trying again");
            }
            failures += 1;
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return Err(e),
            }
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
        if failures > 0 {
            info!(job = %id, results = batch.len(), failures, "job results written after all");
        }
        let again = batch.iter().filter(|r| r.fate == NumberFate::Again).count() as u64;
        metrics::counter!(crate::metrics::JOB_NUMBERS, "fate" => "again").increment(again);
        metrics::counter!(crate::metrics::JOB_NUMBERS, "fate" => "done")
            .increment(batch.len() as u64 - again);
        batch.clear();
    }
    Ok(())
}

/// Numbers per second over the last ten seconds.
#[derive(Default)]
struct Rate {
    samples: VecDeque<(Instant, usize)>,
}

impl Rate {
    const WINDOW: Duration = Duration::from_secs(10);

    fn add(&mut self, n: usize) {
        let now = Instant::now();
        self.samples.push_back((now, n));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Self::WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn per_second(&self) -> f64 {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return 0.0;
        };
        let span = last.0.duration_since(first.0).as_secs_f64();
        let count: usize = self.samples.iter().skip(1).map(|(_, n)| n).sum();
        if span > 0.0 { count as f64 / span } else { 0.0 }
    }
}

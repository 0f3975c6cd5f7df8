//! Unit tests of `dispatch.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::domain::{LineStatus, LineStatusResult};
use crate::engine::Priority;
use crate::number::{Analyzer, LocationData};
use crate::providers::{LimitsConfig, ProviderInfo, QuotaConfig};

/// A vendor that answers only when the test opens its door, and counts its calls.
#[derive(Debug)]
struct HeldVendor {
    info: ProviderInfo,
    door: tokio::sync::Semaphore,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Provider for HeldVendor {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn covers(&self, _: &crate::domain::NumberInfo) -> Result<(), String> {
        Ok(())
    }

    async fn call(&self, _: Check, batch: &[Query]) -> Vec<Result<Answer, ProviderError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(permit) = self.door.acquire().await {
            permit.forget();
        }
        let data = CheckData::LineStatus(LineStatusResult::new(LineStatus::Active, "1", ""));
        vec![
            Ok(Answer::Ready {
                data,
                billable: true,
            });
            batch.len()
        ]
    }
}

fn held(queue: usize) -> (Arc<HeldVendor>, Dispatcher) {
    let limits = LimitsConfig::default().resolve(
        QuotaConfig {
            requests_per_second: 0.0,
            burst: 1,
        },
        Duration::from_secs(5),
    );
    let vendor = Arc::new(HeldVendor {
        info: ProviderInfo {
            name: "held".into(),
            vendor: "held",
            checks: vec![Check::LineStatus],
            batch_size: 1,
            asynchronous: false,
            limits,
            sandbox: true,
            prices: Default::default(),
        },
        door: tokio::sync::Semaphore::new(0),
        calls: AtomicUsize::new(0),
    });
    let cache = crate::engine::CacheConfig::default();
    let dispatcher = Dispatcher::with_queue(
        vendor.clone(),
        Answers::memory(&cache),
        cache.ttl_fn(),
        1.0,
        None,
        Arc::new(crate::engine::Usage::default()),
        queue,
    );
    (vendor, dispatcher)
}

fn live() -> Caller {
    Caller {
        tenant: "acme".into(),
        priority: Priority::Live,
        ..Caller::default()
    }
}

fn query(number: &str) -> Query {
    Query {
        number: Analyzer::new(LocationData::embedded())
            .analyze(number, "CN")
            .unwrap(),
        kyc: None,
        scope: None,
    }
}

/// A leader dropped after any number of polls (before its vendor call is queued, while it
/// is queued, while the vendor holds it) leaves no number wedged: the callers after it get
/// the answer of the one vendor call.
#[tokio::test]
async fn a_dropped_leader_never_wedges_its_number() {
    let (vendor, dispatcher) = held(QUEUE);
    let caller = live();
    for polls in 0..6 {
        let number = format!("1380013800{polls}");
        let mut leader =
            Box::pin(dispatcher.dispatch(Check::LineStatus, query(&number), None, &caller));
        for _ in 0..=polls {
            assert!(futures::poll!(&mut leader).is_pending());
            tokio::task::yield_now().await;
        }
        drop(leader);
        let next = tokio::spawn({
            let dispatcher = dispatcher.clone();
            let query = query(&number);
            async move {
                dispatcher
                    .dispatch(Check::LineStatus, query, None, &live())
                    .await
            }
        });
        vendor.door.add_permits(1);
        match next.await.unwrap() {
            Delivery::Joined(fetched) | Delivery::Fresh(fetched) => {
                assert!(fetched.result.is_ok(), "{:?}", fetched.result)
            }
            Delivery::Cached(_) => {}
        }
        assert_eq!(
            vendor.calls.load(Ordering::SeqCst),
            polls + 1,
            "one call each"
        );
    }
}

/// A leader dropped while it waits for room in the batcher's queue (this test's runtime has
/// one thread, so the batcher does not run until the test yields).
#[tokio::test]
async fn a_leader_dropped_at_a_full_queue_never_wedges_its_number() {
    let (vendor, dispatcher) = held(1);
    let dispatch = |number: &str| {
        let dispatcher = dispatcher.clone();
        let query = query(number);
        async move {
            dispatcher
                .dispatch(Check::LineStatus, query, None, &live())
                .await
        }
    };
    let mut first = Box::pin(dispatch("13800138010"));
    assert!(futures::poll!(&mut first).is_pending());
    let mut second = Box::pin(dispatch("13800138011"));
    assert!(futures::poll!(&mut second).is_pending());
    drop(second);
    vendor.door.add_permits(2);
    let again = tokio::time::timeout(Duration::from_secs(10), dispatch("13800138011"))
        .await
        .expect("the number of the dropped leader is answered");
    assert!(!matches!(again, Delivery::Fresh(ref f) if f.result.is_err()));
    assert!(first.await.is_answered());
    assert_eq!(vendor.calls.load(Ordering::SeqCst), 2);
}

impl Delivery {
    fn is_answered(&self) -> bool {
        match self {
            Delivery::Cached(_) => true,
            Delivery::Fresh(f) | Delivery::Joined(f) => f.result.is_ok(),
        }
    }
}

//! The tower stack in front of a vendor.
use super::*;
use tower::retry::Policy;

fn call(deadline: Option<Instant>) -> Call {
    Call {
        check: Check::LineStatus,
        queries: Arc::from(Vec::new()),
        deadline,
        attempt: 0,
    }
}

#[tokio::test]
async fn retries_only_what_may_succeed_unbilled_and_in_time() {
    let policy = || RetryPolicy {
        left: 2,
        backoff: Duration::from_millis(50),
    };
    let unavailable = || Err(ProviderError::Http(503));
    assert!(
        policy()
            .retry(&mut call(None), &mut unavailable())
            .is_some()
    );
    // Refusals are not retried, nor successes, nor a fast-failing breaker.
    assert!(
        policy()
            .retry(&mut call(None), &mut Err(ProviderError::Http(404)))
            .is_none()
    );
    assert!(
        policy()
            .retry(&mut call(None), &mut Ok(Vec::new()))
            .is_none()
    );
    assert!(
        policy()
            .retry(&mut call(None), &mut Err(ProviderError::CircuitOpen))
            .is_none()
    );
    // No retry would start after the caller's deadline.
    let past = Instant::now();
    assert!(
        policy()
            .retry(&mut call(Some(past)), &mut unavailable())
            .is_none()
    );
    let later = Instant::now() + Duration::from_secs(60);
    assert!(
        policy()
            .retry(&mut call(Some(later)), &mut unavailable())
            .is_some()
    );
    // And no more than `retries` of them.
    let mut p = policy();
    assert!(p.retry(&mut call(None), &mut unavailable()).is_some());
    assert!(p.retry(&mut call(None), &mut unavailable()).is_some());
    assert!(p.retry(&mut call(None), &mut unavailable()).is_none());
}

// ---- The circuit breaker, on tokio's paused clock: the cool-down passes by `advance`, not by
// sleeping, so the tests take no time and cannot race the wall clock.

/// An inner service that answers from a script and counts the calls that reach it.
#[derive(Clone)]
struct Vendor {
    calls: Arc<std::sync::atomic::AtomicU32>,
    script: Arc<Mutex<std::collections::VecDeque<Result<Results, ProviderError>>>>,
    /// When set, each call waits for a permit (so a probe can be held in flight) after saying
    /// it arrived on `arrived`.
    gate: Option<(
        Arc<tokio::sync::Semaphore>,
        tokio::sync::mpsc::UnboundedSender<()>,
    )>,
}

impl Vendor {
    fn new(script: Vec<Result<Results, ProviderError>>) -> Vendor {
        Vendor {
            calls: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            gate: None,
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Service<Call> for Vendor {
    type Response = Results;
    type Error = ProviderError;
    type Future = BoxFuture<Result<Results, ProviderError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _call: Call) -> Self::Future {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let next = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(Vec::new()));
        let gate = self.gate.clone();
        Box::pin(async move {
            if let Some((permits, arrived)) = gate {
                let _ = arrived.send(());
                permits.acquire().await.unwrap().forget();
            }
            next
        })
    }
}

const COOLDOWN: Duration = Duration::from_secs(30);

fn breaker(vendor: &Vendor) -> tower::util::BoxCloneService<Call, Results, ProviderError> {
    let state = Arc::new(Mutex::new(BreakerState {
        threshold: 2,
        cooldown: COOLDOWN,
        failures: 0,
        open_until: None,
        probing: false,
    }));
    let layer = breaker_layer::<Vendor>(state, Arc::from("test"));
    tower::util::BoxCloneService::new(layer.layer(vendor.clone()))
}

fn send(
    service: &tower::util::BoxCloneService<Call, Results, ProviderError>,
) -> impl Future<Output = Result<Results, ProviderError>> + Send + use<> {
    service.clone().oneshot(call(None))
}

const DOWN: ProviderError = ProviderError::Http(503);

/// `future`, which must finish: on the paused clock a wait that never ends fails here at
/// once (the clock jumps to the deadline when nothing else can run) instead of hanging.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .unwrap_or_else(|_| panic!("{what} never finished"))
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_the_breaker_for_a_whole_cool_down() {
    let vendor = Vendor::new(vec![Err(DOWN), Err(DOWN), Err(DOWN), Ok(Vec::new())]);
    let service = breaker(&vendor);
    // Two failures in a row open it; then calls fail fast without reaching the vendor.
    assert_eq!(send(&service).await, Err(DOWN));
    assert_eq!(send(&service).await, Err(DOWN));
    assert_eq!(send(&service).await, Err(ProviderError::CircuitOpen));
    assert_eq!(vendor.calls(), 2);
    tokio::time::advance(COOLDOWN - Duration::from_millis(1)).await;
    assert_eq!(send(&service).await, Err(ProviderError::CircuitOpen));
    assert_eq!(
        vendor.calls(),
        2,
        "still open just before the cool-down ends"
    );

    // After the cool-down one call probes; it fails, and the breaker opens again at once,
    // for a whole cool-down from the failed probe (not the rest of the old one).
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(send(&service).await, Err(DOWN));
    assert_eq!(vendor.calls(), 3, "exactly one probe reached the vendor");
    assert_eq!(send(&service).await, Err(ProviderError::CircuitOpen));
    tokio::time::advance(COOLDOWN - Duration::from_millis(1)).await;
    assert_eq!(send(&service).await, Err(ProviderError::CircuitOpen));
    assert_eq!(vendor.calls(), 3);

    // The next probe succeeds and closes it: calls flow again.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(send(&service).await, Ok(Vec::new()));
    assert_eq!(send(&service).await, Ok(Vec::new()));
    assert_eq!(vendor.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn while_a_probe_is_in_flight_other_callers_fail_fast() {
    // Every call that reaches the vendor says so and waits for a permit; the two failures
    // that open the breaker get theirs at once.
    let permits = Arc::new(tokio::sync::Semaphore::new(2));
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let vendor = Vendor {
        gate: Some((permits.clone(), arrived_tx)),
        ..Vendor::new(vec![Err(DOWN), Err(DOWN)])
    };
    let service = breaker(&vendor);
    assert_eq!(send(&service).await, Err(DOWN));
    assert_eq!(send(&service).await, Err(DOWN));
    assert_eq!(
        (arrived.recv().await, arrived.recv().await),
        (Some(()), Some(()))
    );
    tokio::time::advance(COOLDOWN).await;

    // The probe goes out and is held at the vendor.
    let probe = tokio::spawn(send(&service));
    within("the probe's arrival at the vendor", arrived.recv())
        .await
        .unwrap();
    assert_eq!(vendor.calls(), 3);

    // Meanwhile every other caller, however many at once, fails fast: no second probe.
    let others: Vec<_> = (0..16).map(|_| tokio::spawn(send(&service))).collect();
    for other in others {
        let answer = within("a caller during the probe", other).await.unwrap();
        assert_eq!(answer, Err(ProviderError::CircuitOpen));
    }
    assert_eq!(vendor.calls(), 3, "one probe only");

    // The probe's success closes the breaker for everyone.
    permits.add_permits(1);
    assert_eq!(within("the probe", probe).await.unwrap(), Ok(Vec::new()));
    permits.add_permits(1);
    assert_eq!(within("a call", send(&service)).await, Ok(Vec::new()));
    assert_eq!(vendor.calls(), 4);
}

#[test]
fn quotas() {
    assert!(
        QuotaConfig::governor(QuotaConfig {
            requests_per_second: 0.0,
            burst: 1
        })
        .is_none()
    );
    let q = QuotaConfig::governor(QuotaConfig {
        requests_per_second: 100.0,
        burst: 5,
    })
    .unwrap();
    assert_eq!(q.burst_size().get(), 5);
    assert_eq!(q.replenish_interval(), Duration::from_millis(10));
}

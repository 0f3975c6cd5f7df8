//! A guard against stalls on the request path: a lookup's time is the vendor's plus about a
//! millisecond. The full open-loop measurement is `cargo bench --bench latency`; this test only
//! catches the regression that once added 40 ms (a delayed acknowledgement meeting a write held
//! back by Nagle's algorithm), which shows at moderate rates and hides when calls are far apart.

use std::time::{Duration, Instant};

use crate::common::{TestServer, lookup};
use phonecheck::pb;

/// Sequential uncached line-status lookups 5 ms apart against the sandbox (the simulator answers
/// at once): their median stays far below the 40 ms of a delayed ACK, with room for a debug build
/// on a busy machine.
#[tokio::test]
async fn uncached_lookups_5ms_apart_do_not_stall() {
    let server = TestServer::sandbox().await;
    let mut client = server.client();
    // The first call opens the connection and warms the vendor client's pool.
    client
        .lookup_number(lookup("13912340999", &[pb::Check::LineStatus]))
        .await
        .unwrap();
    let mut took = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Distinct numbers whose last four digits are none of the simulator's magic suffixes.
    for n in 0..61u32 {
        tick.tick().await;
        let started = Instant::now();
        let report = client
            .lookup_number(lookup(
                &format!("1391234{:04}", 1000 + n),
                &[pb::Check::LineStatus],
            ))
            .await
            .unwrap()
            .into_inner()
            .report
            .unwrap();
        took.push(started.elapsed());
        let outcome = &report.outcomes[0];
        assert!(!outcome.cached, "each number is new");
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median {median:?} of uncached lookups 5 ms apart (sorted: {took:?})"
    );
}

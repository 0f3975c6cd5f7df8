//! A vendor whose network misbehaves, played by a small TCP server in the test on 127.0.0.1: one
//! that accepts and never answers, one that answers a byte at a time, a port that refuses. Each
//! is bounded by the provider's `limits.timeout`, classified, and retried only when the request
//! was never sent (a request the vendor may have billed is not asked again blindly).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use phonecheck::pb;
use phonecheck::providers::LimitsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The provider's timeout for one attempt in these tests.
const TIMEOUT: Duration = Duration::from_millis(400);

#[derive(Clone, Copy)]
enum Behaviour {
    /// Reads the request and never answers.
    Silent,
    /// Answers headers, then one byte of the body every 100 ms.
    Trickle,
}

/// Serves `behaviour` on 127.0.0.1:0; the base URL and how many requests arrived. The server
/// stops with the test's runtime.
async fn misbehaving(behaviour: Behaviour) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                // The request has arrived once anything was read (its size does not matter).
                if socket.read(&mut buffer).await.unwrap_or(0) > 0 {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                match behaviour {
                    Behaviour::Silent => {
                        // Hold the connection open, bounded: the client gives up long before.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Behaviour::Trickle => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                    Content-Length: 600\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        for _ in 0..600 {
                            if socket.write_all(b" ").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
    });
    (url, requests)
}

/// Thinksms pointed at `base_url`, with two retries allowed.
async fn server_against(base_url: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("thinksms.key");
    std::fs::write(&key, phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY).unwrap();
    let mut config = thinksms_config(
        base_url,
        phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        &key,
    );
    set_limits(
        &mut config,
        LimitsConfig {
            timeout: Some(TIMEOUT),
            retries: Some(2),
            retry_backoff: Some(Duration::from_millis(10)),
            ..LimitsConfig::default()
        },
    );
    TestServer::start_in(config, dir.path()).await.keep_dir(dir)
}

/// One lookup: its outcome and how long it took.
async fn ask(server: &TestServer) -> (pb::CheckOutcome, Duration) {
    let started = Instant::now();
    let r = report(server, lookup("13800138000", &[pb::Check::LineStatus])).await;
    (
        outcome(&r, pb::Check::LineStatus).clone(),
        started.elapsed(),
    )
}

fn assert_possibly_billed_not_retried(o: &pb::CheckOutcome, took: Duration, requests: usize) {
    assert_eq!(o.state(), pb::CheckState::Error, "{o:?}");
    assert!(!o.billable, "{o:?}");
    assert!(took < TIMEOUT + Duration::from_millis(600), "took {took:?}");
    assert_eq!(
        requests, 1,
        "a request the vendor may have billed is not sent again"
    );
}

#[tokio::test]
async fn a_vendor_that_accepts_and_never_answers_costs_one_timeout() {
    let (url, requests) = misbehaving(Behaviour::Silent).await;
    let server = server_against(&url).await;
    let (o, took) = ask(&server).await;
    println!("silent vendor: {took:?}");
    assert!(
        o.error
            .as_ref()
            .unwrap()
            .message
            .contains("did not answer within"),
        "{o:?}"
    );
    assert_possibly_billed_not_retried(&o, took, requests.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_trickling_answer_is_cut_at_the_timeout() {
    let (url, requests) = misbehaving(Behaviour::Trickle).await;
    let server = server_against(&url).await;
    let (o, took) = ask(&server).await;
    println!("trickling vendor: {took:?}");
    assert_possibly_billed_not_retried(&o, took, requests.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_refused_connection_is_retried_for_it_was_never_sent() {
    // Connecting is refused at once (and no other test can take the port meanwhile).
    let (_held, port) = crate::common::refusing_port();
    let server = server_against(&format!("http://127.0.0.1:{port}")).await;
    let (o, took) = ask(&server).await;
    println!("refused: {took:?}");
    assert_eq!(o.state(), pb::CheckState::Error);
    let error = o.error.as_ref().unwrap();
    assert!(error.message.contains("could not reach"), "{error:?}");
    assert!(!o.billable, "{o:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

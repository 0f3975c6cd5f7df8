//! The services open without a key (health, reflection), attacked as an anonymous client would:
//! calls that never send their message, streams held open, and unfinished messages meant to take
//! the room of the services that need a key (`[server.connections]`, `max_open_service_*`).

use std::time::Duration;

use bytes::Bytes;
use phonecheck::config::Config;
use tokio::time::{Instant, timeout};

use crate::common::h2::*;
use crate::common::{TestServer, lookup};

const LOOKUP: &str = "/phonecheck.v1.PhoneCheckService/LookupNumber";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

const WATCH: &str = "/grpc.health.v1.Health/Watch";
const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

/// A health `Watch` of the whole server (an empty request message), left open.
async fn watch(send: &h2::client::SendRequest<Bytes>) -> h2::client::ResponseFuture {
    let (response, mut stream) = headers_only(send, WATCH).await;
    stream
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    response
}

fn config(connections: &str) -> Config {
    Config::from_toml(&format!("[server.connections]\n{connections}")).unwrap()
}

/// Whether a further `Health/Check` is refused naming `setting` (the places held may take a
/// moment to be counted: a bounded number of tries).
async fn check_refused(send: &h2::client::SendRequest<Bytes>, setting: &str) -> bool {
    for _ in 0..50 {
        let (code, message) = grpc_status(headers_only(send, HEALTH).await.0).await;
        if code == RESOURCE_EXHAUSTED {
            assert!(message.contains(setting), "{message}");
            return true;
        }
    }
    false
}

async fn serving(server: &TestServer) -> bool {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    HealthClient::new(server.channel())
        .check(HealthCheckRequest::default())
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

/// Calls to the open services that send their headers and never a message are cut at the
/// message timeout (counted from the call's start), and their connection then goes idle and is
/// closed: no key is needed to open them, so none may hold a connection for ever.
#[tokio::test]
async fn an_open_call_that_never_sends_its_message_is_cut() {
    let server = TestServer::start(config(
        "message_timeout = \"400ms\"\nidle_timeout = \"800ms\"",
    ))
    .await;
    let (send, driver) = h2_connect(server.addr).await;
    let started = Instant::now();
    let mut calls = Vec::new();
    for path in [HEALTH, WATCH, REFLECTION] {
        calls.push((path, headers_only(&send, path).await));
    }
    for (path, (response, _stream)) in calls {
        let (code, message) = timeout(Duration::from_secs(3), grpc_status(response))
            .await
            .expect("cut within the message timeout");
        // Reflection is a bidirectional stream that ends (OK) when its request stream fails.
        let cut = if path == REFLECTION {
            vec![0, DEADLINE_EXCEEDED]
        } else {
            vec![DEADLINE_EXCEEDED]
        };
        assert!(cut.contains(&code), "{path}: {code} {message}");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(send);
    timeout(Duration::from_secs(3), driver)
        .await
        .expect("the connection is closed once idle")
        .unwrap()
        .ok();
}

/// Health `Watch` and reflection streams may last, so they have a cap of their own below the
/// open services' cap: streams held open leave room for the probes' `Health/Check`, and calls
/// past either cap are refused at once, naming it; a stream that ends gives its place back.
#[tokio::test]
async fn open_service_streams_are_capped_and_leave_room_for_checks() {
    let server = TestServer::start(config(
        "max_open_service_calls = 4\nmax_open_service_streams = 2\nmessage_timeout = \"5s\"",
    ))
    .await;
    let (send, _driver) = h2_connect(server.addr).await;
    let mut watches = vec![watch(&send).await, watch(&send).await];
    for response in &mut watches {
        let response = timeout(Duration::from_secs(2), response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("grpc-status").is_none(), "a stream");
    }
    let (code, message) = grpc_status(watch(&send).await).await;
    assert_eq!(code, RESOURCE_EXHAUSTED, "{message}");
    assert!(message.contains("max_open_service_streams"), "{message}");
    assert!(serving(&server).await, "a probe's check is answered");
    // Two checks that never send their message take the last places for calls.
    let _held = [
        headers_only(&send, HEALTH).await,
        headers_only(&send, HEALTH).await,
    ];
    assert!(
        check_refused(&send, "max_open_service_calls").await,
        "a check past max_open_service_calls is refused"
    );
    // The watches end with their connection; their places come back.
    drop((watches, send, _held));
    let (send, _driver) = h2_connect(server.addr).await;
    let mut watching = false;
    for _ in 0..50 {
        let response = timeout(Duration::from_secs(2), watch(&send).await)
            .await
            .unwrap()
            .unwrap();
        if response.headers().get("grpc-status").is_none() {
            watching = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(watching, "a watch is served again once the others ended");
}

/// Anonymous clients holding unfinished reflection messages fill the open services' own pool,
/// never the pool of the services that need a key: a 1,000 KiB `LookupNumber` message is still
/// held (not refused) with the process cap at 1 MiB.
#[tokio::test]
async fn open_services_cannot_take_the_room_of_the_others() {
    let server = TestServer::start(config(
        "max_pending_bytes = 1048576\nmax_pending_bytes_per_connection = 1048576\n\
         max_open_service_calls = 64\nmax_open_service_streams = 64\nmessage_timeout = \"30s\"",
    ))
    .await;
    let almost = Bytes::from(vec![0x0au8; 16 * 1024 - 1]);
    let mut held = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..8 {
        let (send, driver) = h2_connect(server.addr).await;
        for _ in 0..8 {
            held.push(begin_message(&send, REFLECTION, 16 * 1024, almost.clone()).await);
        }
        connections.push((send, driver));
    }
    let (send, _driver) = h2_connect(server.addr).await;
    let (response, _stream) = begin_message(&send, REFLECTION, 16, Bytes::new()).await;
    let (code, message) = grpc_status(response).await;
    assert_eq!(code, RESOURCE_EXHAUSTED, "{message}");
    assert!(message.contains("max_open_service_calls"), "{message}");
    let (response, _stream) = begin_message(
        &send,
        LOOKUP,
        1000 * 1024,
        Bytes::from(vec![0u8; 100 * 1024]),
    )
    .await;
    assert!(
        timeout(Duration::from_millis(700), grpc_status(response))
            .await
            .is_err(),
        "the lookup's message is held, not refused"
    );
    crate::common::report(&server, lookup("13800138000", &[])).await;
    drop(held);
}

/// A health check's request must end (END_STREAM) within the message timeout of its start: one
/// that sends its message whole and never ends is cut then.
#[tokio::test]
async fn a_check_that_never_ends_its_request_is_cut() {
    let server = TestServer::start(config("message_timeout = \"400ms\"")).await;
    let (send, _driver) = h2_connect(server.addr).await;
    let started = Instant::now();
    let (response, _stream) = begin_message(&send, HEALTH, 0, Bytes::new()).await;
    let (code, message) = timeout(Duration::from_secs(3), grpc_status(response))
        .await
        .expect("cut within the message timeout");
    assert_eq!(code, DEADLINE_EXCEEDED, "{message}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A health check holds its place while its request arrives, not while its answer waits for a
/// client that never opens its flow-control window; and one peer address cannot take more than
/// `max_open_service_calls_per_peer` places.
#[tokio::test]
async fn unread_check_answers_hold_no_place_and_one_peer_holds_few() {
    let server = TestServer::start(config(
        "max_open_service_calls = 4\nmax_open_service_streams = 1\n\
         max_open_service_calls_per_peer = 3\nmessage_timeout = \"5s\"",
    ))
    .await;
    // A connection that grants no room for any answer's data.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (closed, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let _driver = tokio::spawn(connection);
    let mut unread = Vec::new();
    for _ in 0..8 {
        let (response, mut stream) = headers_only(&closed, HEALTH).await;
        stream
            .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .unwrap();
        unread.push(response);
    }
    // Their answers are stuck; the probe is still answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(serving(&server).await, "a probe's check is answered");
    // Three held requests from this address take its places; the fourth is refused.
    let (send, _driver) = h2_connect(server.addr).await;
    let _held = [
        headers_only(&send, HEALTH).await,
        headers_only(&send, HEALTH).await,
        headers_only(&send, HEALTH).await,
    ];
    assert!(
        check_refused(&send, "max_open_service_calls_per_peer").await,
        "a fourth call from one address is refused"
    );
    drop(unread);
}

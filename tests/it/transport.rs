//! The edge below gRPC, attacked as an anonymous client would (`[server.connections]`): messages
//! declared large and never finished, messages trickled a byte at a time, connections that never
//! send a request or go quiet, more connections than allowed, a process out of descriptors, and
//! the services open without a key held with calls that never send a message or never end.
//! Raw HTTP/2 (the `h2` crate) builds what a well-behaved client never sends.

use std::time::Duration;

use bytes::Bytes;
use phonecheck::config::Config;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::common::h2::*;
use crate::common::{KillOnDrop, TestServer, cpu_seconds, lookup, memory_mib};

const LOOKUP: &str = "/phonecheck.v1.PhoneCheckService/LookupNumber";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

fn config(connections: &str) -> Config {
    Config::from_toml(&format!("[server.connections]\n{connections}")).unwrap()
}

/// Opens `per_connection` calls on each of `connections` connections, each declaring 400 KiB
/// and sending 256 KiB, and waits for every answer: how many each cap refused (named in the
/// message) and how many were held until the message timeout.
async fn hold_unfinished(
    server: &TestServer,
    connections: usize,
    per_connection: usize,
) -> (std::collections::BTreeMap<&'static str, usize>, usize) {
    let chunk = Bytes::from(vec![0x55u8; 256 * 1024]);
    let mut calls = Vec::new();
    let mut open = Vec::new();
    for _ in 0..connections {
        let (send, driver) = h2_connect(server.addr).await;
        for _ in 0..per_connection {
            calls.push(begin_message(&send, LOOKUP, 400 * 1024, chunk.clone()).await);
        }
        open.push((send, driver));
    }
    let mut refused_by = std::collections::BTreeMap::new();
    let mut timed_out = 0;
    for (response, _stream) in calls {
        let (code, message) = timeout(Duration::from_secs(10), grpc_status(response))
            .await
            .expect("every call is answered within the message timeout");
        match code {
            RESOURCE_EXHAUSTED => {
                let cap = if message.contains("max_pending_bytes_per_connection") {
                    "connection"
                } else {
                    assert!(message.contains("max_pending_bytes"), "{message}");
                    "process"
                };
                *refused_by.entry(cap).or_default() += 1;
            }
            DEADLINE_EXCEEDED => {
                assert!(message.contains("message_timeout"), "{message}");
                timed_out += 1;
            }
            other => panic!("unexpected status {other} {message}"),
        }
    }
    (refused_by, timed_out)
}

/// Ten calls on one connection each declare 400 KiB and send 256 KiB: the connection's cap on
/// unfinished bytes (1 MiB) refuses what is past it at once, naming the cap; what fits waits
/// until the message timeout and is given back; the server goes on serving.
#[tokio::test]
async fn unfinished_messages_are_held_within_the_connection_cap() {
    let server = TestServer::start(config(
        "max_pending_bytes_per_connection = 1048576\nmax_pending_bytes = 67108864\nmessage_timeout = \"1500ms\"",
    ))
    .await;
    let started = Instant::now();
    let (refused_by, timed_out) = hold_unfinished(&server, 1, 10).await;
    assert!(timed_out <= 4, "{timed_out} waited");
    assert!(refused_by["connection"] >= 6, "{refused_by:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    // All of it given back: a new call of the same size is held, not refused.
    let (send, _driver) = h2_connect(server.addr).await;
    let chunk = Bytes::from(vec![0x55u8; 256 * 1024]);
    let (response, _stream) = begin_message(&send, LOOKUP, 1000 * 1024, chunk).await;
    let (code, _) = grpc_status(response).await;
    assert_eq!(
        code, DEADLINE_EXCEEDED,
        "held until its timeout, not refused"
    );
    crate::common::report(&server, lookup("13800138000", &[])).await;
}

/// Two such calls on each of three connections: the process's cap (1 MiB) refuses what is past
/// it, though no connection reaches its own.
#[tokio::test]
async fn unfinished_messages_are_held_within_the_process_cap() {
    let server = TestServer::start(config(
        "max_pending_bytes_per_connection = 1048576\nmax_pending_bytes = 1048576\nmessage_timeout = \"1500ms\"",
    ))
    .await;
    let (refused_by, timed_out) = hold_unfinished(&server, 3, 2).await;
    assert!(timed_out <= 4, "{timed_out} waited");
    assert!(refused_by["process"] >= 2, "{refused_by:?}");
    assert!(!refused_by.contains_key("connection"), "{refused_by:?}");
    crate::common::report(&server, lookup("13800138000", &[])).await;
}

/// A message is counted at its declared length from its prefix on (the decoder reserves that
/// much then): one that declares more than the connection may hold is refused at once, though
/// only ten of its bytes came.
#[tokio::test]
async fn a_declared_length_counts_from_the_prefix() {
    let server = TestServer::start(config(
        "max_pending_bytes_per_connection = 1048576\nmessage_timeout = \"30s\"",
    ))
    .await;
    let (send, _driver) = h2_connect(server.addr).await;
    let started = Instant::now();
    let (response, _stream) =
        begin_message(&send, LOOKUP, 2 * 1024 * 1024, Bytes::from_static(&[0; 10])).await;
    let (code, message) = grpc_status(response).await;
    assert_eq!(code, RESOURCE_EXHAUSTED, "{message}");
    assert!(
        message.contains("max_pending_bytes_per_connection"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A message trickled a byte at a time is cut at the message timeout, though bytes keep coming.
#[tokio::test]
async fn a_trickled_message_is_cut_at_the_message_timeout() {
    let server = TestServer::start(config("message_timeout = \"400ms\"")).await;
    let (send, _driver) = h2_connect(server.addr).await;
    let (response, mut stream) = begin_message(&send, LOOKUP, 1000, Bytes::new()).await;
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            if stream.send_data(Bytes::from_static(b"x"), false).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (code, message) = grpc_status(response).await;
    assert_eq!(code, DEADLINE_EXCEEDED, "{message}");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "cut after {took:?}");
    trickle.abort();
}

/// Health and reflection are open without a key: a message declared larger than theirs is
/// refused from its prefix, before its bytes are read.
#[tokio::test]
async fn open_services_refuse_large_messages_from_their_prefix() {
    let server = TestServer::start(config("message_timeout = \"5s\"")).await;
    let (send, _driver) = h2_connect(server.addr).await;
    for path in [
        HEALTH,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ] {
        let started = Instant::now();
        let (response, _stream) =
            begin_message(&send, path, 4 * 1024 * 1024, Bytes::from(vec![0u8; 1024])).await;
        let (code, message) = grpc_status(response).await;
        // Tonic's OUT_OF_RANGE for a message past the service's decoding limit, read from the
        // prefix. Reflection is a bidirectional stream that ends (OK) at a message it cannot
        // decode: the call is over either way, its bytes unread.
        let ended = if path == HEALTH {
            vec![OUT_OF_RANGE]
        } else {
            vec![0, OUT_OF_RANGE]
        };
        assert!(ended.contains(&code), "{path}: {code} {message}");
        assert!(started.elapsed() < Duration::from_secs(2), "{path}");
    }
}

/// Connections that never send a request are closed after `first_request_timeout`; one whose
/// call is in flight stays open past `idle_timeout`, and is closed once quiet that long.
#[tokio::test]
async fn silent_and_idle_connections_are_closed_busy_ones_are_not() {
    let server = TestServer::start(config(
        "first_request_timeout = \"300ms\"\nidle_timeout = \"700ms\"\nmessage_timeout = \"30s\"",
    ))
    .await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let (_quiet, quiet_driver) = h2_connect(server.addr).await;
    for tcp in &mut silent {
        assert!(closed_within(tcp, Duration::from_secs(3)).await);
    }
    timeout(Duration::from_secs(3), quiet_driver)
        .await
        .expect("a handshake without a request is closed")
        .unwrap()
        .ok();
    // A call whose message is still to come keeps its connection open past the idle timeout.
    let (busy, mut busy_driver) = h2_connect(server.addr).await;
    let (response, mut stream) = begin_message(&busy, LOOKUP, 0, Bytes::new()).await;
    assert!(
        timeout(Duration::from_millis(1500), &mut busy_driver)
            .await
            .is_err(),
        "closed while a call was in flight"
    );
    stream.send_data(Bytes::new(), true).unwrap();
    let (code, message) = grpc_status(response).await;
    assert_ne!(code, -1, "{message}");
    drop(busy);
    timeout(Duration::from_secs(3), busy_driver)
        .await
        .expect("closed once idle past its timeout")
        .unwrap()
        .ok();
}

/// Past `max` connections a new one is closed at once; when places free up, clients are served.
#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let server = TestServer::start(config("max = 8\nfirst_request_timeout = \"30s\"")).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The eighth is counted once the server accepted it, which the ninth's refusal proves.
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut refused, Duration::from_secs(1)).await);
    drop(held);
    // The server sees the closes as its connections read them: a bounded wait for a place.
    let mut served = false;
    for _ in 0..50 {
        let mut client = server.client();
        let call = client.lookup_number(lookup("13800138000", &[]));
        if let Ok(Ok(_)) = timeout(Duration::from_millis(500), call).await {
            served = true;
            break;
        }
    }
    assert!(served, "served again once places were free");
}

/// A process out of descriptors backs off instead of retrying `accept` in a loop: its CPU time
/// stays low while connections wait in the backlog, and clients are served once descriptors
/// are free again.
#[tokio::test]
async fn out_of_descriptors_the_accept_loop_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonecheck.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n[server.connections]\nfirst_request_timeout = \"1s\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (child, url) = crate::common::spawn_server_with_nofile(&config, 64);
    let _child = KillOnDrop(child);
    let pid = _child.0.id();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_seconds(pid) - before;
    assert!(spent < 0.3, "{spent:.2} s of CPU in 1 s out of descriptors");
    drop(held);
    let mut client = phonecheck::pb::phone_check_service_client::PhoneCheckServiceClient::new(
        crate::common::channel_to(&url),
    );
    let call = client.lookup_number(lookup("13800138000", &[]));
    timeout(Duration::from_secs(5), call)
        .await
        .expect("served within the back-off once descriptors are free")
        .unwrap();
}

/// The stated bound, measured on the real process: 300 calls on 3 connections each declaring
/// 4 MiB and sending 1 MiB, with 1,000 silent TCP connections and 100 quiet HTTP/2 ones open
/// beside them. The server's peak memory above idle stays within `max_pending_bytes` (32 MiB
/// here) plus the connections' own buffers, and every call is answered.
#[tokio::test]
async fn peak_memory_under_unfinished_messages_and_idle_connections_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonecheck.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n[server.connections]\nmax_pending_bytes_per_connection = 8388608\n\
             max_pending_bytes = 33554432\nmessage_timeout = \"2s\"\nfirst_request_timeout = \"20s\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (child, url) = crate::common::spawn_server(&config);
    let child = KillOnDrop(child);
    let pid = child.0.id();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let mut client = phonecheck::pb::phone_check_service_client::PhoneCheckServiceClient::new(
        crate::common::channel_to(&url),
    );
    client
        .lookup_number(lookup("13800138000", &[]))
        .await
        .unwrap();
    let idle = memory_mib(pid, "VmRSS:");
    let mut silent = Vec::new();
    for _ in 0..1_000 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut quiet = Vec::new();
    for _ in 0..100 {
        quiet.push(h2_connect(addr).await);
    }
    let chunk = Bytes::from(vec![0x55u8; 1024 * 1024]);
    let mut calls = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..3 {
        let (send, driver) = h2_connect(addr).await;
        for _ in 0..100 {
            calls.push(begin_message(&send, LOOKUP, 4 * 1024 * 1024 - 59, chunk.clone()).await);
        }
        connections.push((send, driver));
    }
    let mut answered = 0;
    for (response, _stream) in calls {
        let (code, message) = timeout(Duration::from_secs(20), grpc_status(response))
            .await
            .expect("answered within the message timeout");
        assert!(
            code == RESOURCE_EXHAUSTED || code == DEADLINE_EXCEEDED,
            "{code} {message}"
        );
        answered += 1;
    }
    let peak = memory_mib(pid, "VmHWM:") - idle;
    println!(
        "peak {peak:.1} MiB above idle ({idle:.1} MiB) with {answered} unfinished 4 MiB messages and 1,100 idle connections"
    );
    assert_eq!(answered, 300);
    assert!(peak < 32.0 + 64.0, "peak {peak:.1} MiB above idle");
    client
        .lookup_number(lookup("13800138000", &[]))
        .await
        .unwrap();
}

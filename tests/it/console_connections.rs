//! The console's connections, bounded (`[console] max_connections`, `first_request_timeout`,
//! `idle_timeout`): a connection past the cap is closed at once, one that says nothing is closed,
//! one left quiet after its answer is closed, and an answer slower than the idle timeout is not
//! cut (a request in flight keeps its connection busy).

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::console::*;
use crate::common::*;

/// Waits (at most 10 s) for the server to close `socket`, reading and dropping what it sends;
/// true when it did.
async fn closed_by_server(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let reading = async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .is_ok()
}

#[tokio::test]
async fn the_consoles_connections_are_capped_and_quiet_ones_closed() {
    let bounds = "max_connections = 2\nfirst_request_timeout = \"300ms\"\nidle_timeout = \"300ms\"";
    let server = TestServer::with_console(config(bounds)).await;
    let addr = server.console.unwrap();
    // Two connections that say nothing hold both places: a third is closed at once.
    let mut quiet = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut third).await, "past the cap");
    // Having begun no request within first_request_timeout, the two are closed too...
    for socket in &mut quiet {
        assert!(closed_by_server(socket).await, "no request begun");
    }
    // ... and their places serve again.
    let page = http().build().unwrap();
    let signin = page
        .get(format!("http://{addr}/signin"))
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), StatusCode::OK);
    drop(page);

    // A connection quiet after its answer is closed after idle_timeout.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /signin HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    kept.write_all(request.as_bytes()).await.unwrap();
    assert!(closed_by_server(&mut kept).await, "idle after its answer");
}

#[tokio::test]
async fn an_answer_slower_than_the_idle_timeout_is_not_cut() {
    // Every vendor answer takes 2.5 s; a connection is closed 1 s after its accept unless a
    // request has begun, or 1 s after its last answer.
    let more = "first_request_timeout = \"1s\"\nidle_timeout = \"1s\"\n\
                [sandbox]\nlatency = \"2500ms\"";
    let server = TestServer::with_console(config(more)).await;
    let mut web = Web::new(&server);
    web.sign_in(KEY_A).await;
    let csrf = web.csrf().await;
    let form = [
        ("csrf", csrf.as_str()),
        ("number", "13800138000"),
        ("check", "line-status"),
    ];
    let answer = web.post("/lookup", &form).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let page = answer.text().await.unwrap();
    assert!(page.contains("+8613800138000"), "{page}");
}

#[tokio::test]
async fn a_request_whose_body_stops_arriving_ends_and_frees_its_place() {
    let server = TestServer::with_console(config("idle_timeout = \"300ms\"")).await;
    let addr = server.console.unwrap();
    // A sign-in that declares a body and never sends it: no session is needed to try.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /signin HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         content-length: 16000\r\n\r\n"
    );
    silent.write_all(head.as_bytes()).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "a body that never came"
    );
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_the_places() {
    let server = TestServer::with_console(config("max_connections_per_address = 1")).await;
    let addr = server.console.unwrap();
    let mut first = TcpStream::connect(addr).await.unwrap();
    // The second from 127.0.0.1 is closed at once; the first is still served.
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_server(&mut second).await,
        "past the address's cap"
    );
    let request = format!("GET /signin HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    first.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), first.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

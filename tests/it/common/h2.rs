//! Raw HTTP/2 (the `h2` crate), to build what a well-behaved gRPC client never sends.

use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

pub const RESOURCE_EXHAUSTED: i32 = 8;
pub const DEADLINE_EXCEEDED: i32 = 4;
pub const OUT_OF_RANGE: i32 = 11;

/// An HTTP/2 connection to the server; its driver runs in a task that ends when the connection
/// does.
pub async fn h2_connect(
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    (send, tokio::spawn(connection))
}

/// Opens a gRPC call on `path` whose message declares `declared` bytes, and sends `sent` of them.
pub async fn begin_message(
    send: &h2::client::SendRequest<Bytes>,
    path: &str,
    declared: u32,
    sent: Bytes,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let (response, mut stream) = headers_only(send, path).await;
    let mut prefix = vec![0u8];
    prefix.extend(declared.to_be_bytes());
    stream.send_data(Bytes::from(prefix), false).unwrap();
    if !sent.is_empty() {
        stream.send_data(sent, false).unwrap();
    }
    (response, stream)
}

/// The call's `grpc-status` and `grpc-message`, from a trailers-only response or the trailers.
pub async fn grpc_status(response: h2::client::ResponseFuture) -> (i32, String) {
    let response = response.await.unwrap();
    let pick = |headers: &http::HeaderMap| {
        headers.get("grpc-status").map(|code| {
            let message = headers
                .get("grpc-message")
                .map(|m| m.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            (code.to_str().unwrap().parse::<i32>().unwrap(), message)
        })
    };
    if let Some(status) = pick(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    pick(&trailers).unwrap_or((-1, String::new()))
}

/// Opens a call on `path` that sends its headers and nothing more.
pub async fn headers_only(
    send: &h2::client::SendRequest<Bytes>,
    path: &str,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut send = send.clone().ready().await.unwrap();
    let request = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    send.send_request(request, false).unwrap()
}

/// Whether the server closed the raw connection within `limit`.
pub async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let until = Instant::now() + limit;
    loop {
        match timeout(
            until.saturating_duration_since(Instant::now()),
            tcp.read(&mut buf),
        )
        .await
        {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // The server's HTTP/2 preface or a GOAWAY: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

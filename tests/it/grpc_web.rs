//! gRPC-Web: a browser-style HTTP/1.1 call of LookupNumber.

use crate::common::{TestServer, lookup};
use phonecheck::pb;
use prost::Message;

/// One gRPC-Web frame: flag byte, big-endian length, payload.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn lookup_number_over_grpc_web() {
    let server = TestServer::sandbox().await;
    // Installs the TLS crypto provider reqwest is built with.
    let _ = phonecheck::providers::http_client();
    let request = lookup("13800000002", &[pb::Check::LineStatus]);
    let response = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!(
            "http://{}/phonecheck.v1.PhoneCheckService/LookupNumber",
            server.addr
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(0, &request.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    let body = response.bytes().await.unwrap();

    // First a data frame with the message, then a trailers frame (flag 0x80) with grpc-status.
    assert_eq!(body[0], 0);
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let answer = pb::LookupNumberResponse::decode(&body[5..5 + len]).unwrap();
    let report = answer.report.unwrap();
    assert_eq!(report.line_status.unwrap().status(), pb::LineStatus::Empty);
    let trailers = &body[5 + len..];
    assert_eq!(trailers[0], 0x80);
    let text = String::from_utf8_lossy(&trailers[5..]).to_ascii_lowercase();
    assert!(text.contains("grpc-status:0"), "{text}");
}

#[tokio::test]
async fn grpc_web_errors_carry_their_status() {
    let server = TestServer::sandbox().await;
    let request = lookup("call me", &[]);
    let response = phonecheck::providers::http_client()
        .unwrap()
        .post(format!(
            "http://{}/phonecheck.v1.PhoneCheckService/LookupNumber",
            server.addr
        ))
        .header("content-type", "application/grpc-web+proto")
        .body(frame(0, &request.encode_to_vec()))
        .send()
        .await
        .unwrap();
    let status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.bytes().await.unwrap();
    let in_body = String::from_utf8_lossy(&body).contains("grpc-status:3");
    assert!(
        status.as_deref() == Some("3") || in_body,
        "INVALID_ARGUMENT expected: {status:?}"
    );
}

//! Property tests: random bytes as the message of every public RPC, random well-formed requests,
//! and random text for the number parser never crash the server or the parser; every answer is a
//! gRPC status or a response.

mod common;

use bytes::{Buf, BufMut};
use common::TestServer;
use phonecheck::number::Analyzer;
use phonecheck::pb;
use proptest::prelude::*;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends and receives raw message bytes, whatever the method expects.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug, Clone, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

const UNARY: &[&str] = &[
    "/phonecheck.v1.PhoneCheckService/LookupNumber",
    "/phonecheck.v1.PhoneCheckService/ListProviders",
    "/phonecheck.v1.BatchJobService/GetBatchJob",
    "/phonecheck.v1.BatchJobService/ListBatchJobs",
    "/phonecheck.v1.BatchJobService/CancelBatchJob",
    "/phonecheck.v1.BatchJobService/DeleteBatchJob",
];
const STREAMING: &[&str] = &[
    "/phonecheck.v1.PhoneCheckService/CheckNumbers",
    "/phonecheck.v1.BatchJobService/CreateBatchJob",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn random_bytes_to_every_rpc_get_a_status_not_a_crash() {
    let rt = runtime();
    let _inside = rt.enter();
    let server = rt.block_on(TestServer::sandbox());
    let channel = server.channel();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(
                0..UNARY.len() + STREAMING.len(),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..4),
            ),
            |(method, messages)| {
                rt.block_on(async {
                    let mut grpc = tonic::client::Grpc::new(channel.clone());
                    grpc.ready().await.unwrap();
                    if method < UNARY.len() {
                        let path = UNARY[method].parse().unwrap();
                        let _ = grpc
                            .unary(tonic::Request::new(messages[0].clone()), path, RawCodec)
                            .await;
                    } else {
                        let path = STREAMING[method - UNARY.len()].parse().unwrap();
                        let request = tonic::Request::new(tokio_stream::iter(messages.clone()));
                        if let Ok(response) = grpc.streaming(request, path, RawCodec).await {
                            let mut stream = response.into_inner();
                            while let Ok(Some(_)) = stream.message().await {}
                        }
                    }
                });
                Ok(())
            },
        )
        .unwrap();
    // Still serving.
    rt.block_on(async {
        server
            .client()
            .lookup_number(pb::LookupNumberRequest {
                number: "13800138000".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn the_number_parser_never_panics(input in "\\PC{0,40}", region in "[A-Za-z]{0,3}") {
        let analyzer = Analyzer::default();
        if let Ok(info) = analyzer.analyze(&input, &region) {
            prop_assert!(info.e164.is_empty() || info.e164.starts_with('+'));
        }
    }

    #[test]
    fn digit_soup_is_parsed_or_refused(input in "[0-9+()\\- ]{0,30}") {
        let _ = Analyzer::default().analyze(&input, "CN");
    }
}

#[test]
fn random_well_formed_requests_are_answered() {
    let rt = runtime();
    let _inside = rt.enter();
    let server = rt.block_on(TestServer::sandbox());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(
                "\\PC{0,24}",
                "[A-Z]{0,2}",
                proptest::collection::vec(-2i32..8, 0..5),
            ),
            |(number, region, checks)| {
                rt.block_on(async {
                    let answer = server
                        .client()
                        .lookup_number(pb::LookupNumberRequest {
                            number,
                            default_region: region,
                            checks,
                            options: None,
                        })
                        .await;
                    if let Err(status) = answer {
                        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
                    }
                });
                Ok(())
            },
        )
        .unwrap();
}

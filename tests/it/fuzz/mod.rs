//! Property tests: random bytes and random protobuf wire records as the messages of every public
//! RPC, random well-formed requests, and random text for the number parser never crash the server
//! or the parser. Every malformed message gets a response or a refusal the server chose
//! (`INVALID_ARGUMENT`, `NOT_FOUND`, ..., or the codec's decode error), never a reset stream, and
//! the server still serves after each. Uploads: generated text files and workbooks (random structure,
//! claimed sizes, widths, encodings, truncation), the hostile workbooks of issue #12 and the
//! regression corpus in `tests/corpus/import/` are read into rows or refused with
//! `INVALID_ARGUMENT`, never a panic, an abort or memory past the bound.

mod uploads;

use crate::common::TestServer;
use bytes::{Buf, BufMut};
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

/// Protobuf wire records with random field numbers, wire types and values: unlike random bytes,
/// these often decode as the method's message (unknown fields are skipped), so the handlers,
/// not only the codec, see them.
fn wire_message() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((1..12u32, any::<bool>(), any::<u64>(), "\\PC{0,24}"), 0..6).prop_map(
        |records| {
            let mut bytes = Vec::new();
            for (field, varint, value, text) in records {
                if varint {
                    prost::encoding::encode_varint(u64::from(field << 3), &mut bytes);
                    prost::encoding::encode_varint(value, &mut bytes);
                } else {
                    prost::encoding::encode_varint(u64::from(field << 3 | 2), &mut bytes);
                    prost::encoding::encode_varint(text.len() as u64, &mut bytes);
                    bytes.extend_from_slice(text.as_bytes());
                }
            }
            bytes
        },
    )
}

/// Whether `status` is the server refusing what it was sent: a status a handler or the codec
/// chose, not a crash (a panicking handler resets the stream or the connection, which the client
/// sees as `UNKNOWN`, `UNAVAILABLE`, `CANCELLED` or `INTERNAL` with transport words).
fn refused_cleanly(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::ResourceExhausted => true,
        // tonic's codec answers bytes that are not the method's message so, with prost's words.
        Code::Internal => status
            .message()
            .starts_with("failed to decode Protobuf message"),
        _ => false,
    }
}

/// The server still answers a well-formed call.
async fn still_serving(server: &TestServer) {
    server
        .client()
        .list_providers(pb::ListProvidersRequest::default())
        .await
        .expect("the server still serves");
}

#[test]
fn random_bytes_to_every_rpc_get_a_status_not_a_crash() {
    let rt = runtime();
    let _inside = rt.enter();
    let server = rt.block_on(TestServer::sandbox());
    let channel = server.channel();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    });
    let codes = std::sync::Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    runner
        .run(
            &(
                0..UNARY.len() + STREAMING.len(),
                proptest::collection::vec(
                    prop_oneof![
                        proptest::collection::vec(any::<u8>(), 0..200),
                        wire_message()
                    ],
                    1..4,
                ),
            ),
            |(method, messages)| {
                let answers: Vec<Result<(), tonic::Status>> = rt.block_on(async {
                    let mut grpc = tonic::client::Grpc::new(channel.clone());
                    grpc.ready().await.unwrap();
                    let mut answers = Vec::new();
                    if method < UNARY.len() {
                        let path = UNARY[method].parse().unwrap();
                        let answer = grpc
                            .unary(tonic::Request::new(messages[0].clone()), path, RawCodec)
                            .await;
                        answers.push(answer.map(drop));
                    } else {
                        let path = STREAMING[method - UNARY.len()].parse().unwrap();
                        let request = tonic::Request::new(tokio_stream::iter(messages.clone()));
                        match grpc.streaming(request, path, RawCodec).await {
                            Ok(response) => {
                                let mut stream = response.into_inner();
                                loop {
                                    match stream.message().await {
                                        Ok(Some(_)) => answers.push(Ok(())),
                                        Ok(None) => break,
                                        Err(status) => {
                                            answers.push(Err(status));
                                            break;
                                        }
                                    }
                                }
                            }
                            Err(status) => answers.push(Err(status)),
                        }
                    }
                    still_serving(&server).await;
                    answers
                });
                let rpc = UNARY.iter().chain(STREAMING).nth(method).unwrap();
                for answer in answers {
                    let code = match &answer {
                        Ok(()) => "OK".to_owned(),
                        Err(status) => format!("{:?}", status.code()),
                    };
                    *codes.lock().unwrap().entry(code).or_default() += 1;
                    if let Err(status) = answer {
                        prop_assert!(
                            refused_cleanly(&status),
                            "{rpc} answered {messages:?} with {status:?}"
                        );
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    // Printed for whoever reads a failure: what the malformed messages were answered with.
    println!("answers: {:?}", codes.lock().unwrap());
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

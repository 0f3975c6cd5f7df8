//! The server around the API: health per service, reflection v1 and v1alpha, gzip, graceful
//! shutdown.

use std::time::Duration;

use crate::common::{TestServer, lookup, start_sim};
use phonecheck::pb;
use phonecheck::sim::SimConfig;
use tonic::codec::CompressionEncoding;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SERVICE: &str = "phonecheck.v1.PhoneCheckService";

#[tokio::test]
async fn health_is_served_per_service() {
    let server = TestServer::sandbox().await;
    let mut health = HealthClient::new(server.channel());
    for service in ["", SERVICE, "phonecheck.v1.UsageService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

macro_rules! reflection_checks {
    ($name:ident, $module:ident) => {
        #[tokio::test]
        async fn $name() {
            use tonic_reflection::pb::$module::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$module::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$module::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$module::ServerReflectionRequest;

            let server = TestServer::sandbox().await;
            let mut client = ServerReflectionClient::new(server.channel());
            let ask = |request: MessageRequest| {
                tokio_stream::iter(vec![ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request),
                }])
            };
            let mut answers = client
                .server_reflection_info(ask(MessageRequest::ListServices(String::new())))
                .await
                .unwrap()
                .into_inner();
            let Some(MessageResponse::ListServicesResponse(list)) =
                answers.message().await.unwrap().unwrap().message_response
            else {
                panic!("not a service list")
            };
            let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
            assert!(names.contains(&SERVICE), "{names:?}");
            assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
            assert!(names.contains(&"phonecheck.v1.UsageService"), "{names:?}");

            // Error details decode: google.rpc types are known to reflection.
            for symbol in ["google.rpc.BadRequest", "google.rpc.ErrorInfo", "phonecheck.v1.NumberReport"] {
                let mut answers = client
                    .server_reflection_info(ask(MessageRequest::FileContainingSymbol(symbol.into())))
                    .await
                    .unwrap()
                    .into_inner();
                let response = answers.message().await.unwrap().unwrap().message_response;
                assert!(
                    matches!(response, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
                    "{symbol}: {response:?}"
                );
            }
        }
    };
}

reflection_checks!(reflection_v1, v1);
reflection_checks!(reflection_v1alpha, v1alpha);

#[tokio::test]
async fn gzip_both_ways() {
    let server = TestServer::sandbox().await;
    let mut client = server
        .client()
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let response = client
        .lookup_number(lookup("13800138000", &[]))
        .await
        .unwrap();
    assert_eq!(
        response
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish_and_reports_not_serving() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let mut server = TestServer::thinksms(
        &sim,
        phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY,
    )
    .await;
    let mut health = HealthClient::new(server.channel());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    let mut client = server.client();
    let in_flight = tokio::spawn(async move {
        client
            .lookup_number(lookup("13800000001", &[pb::Check::LineStatus]))
            .await
    });
    // The call is in flight once the vendor has it.
    sim.stats().wait_for_calls(1).await;
    server.signal_stop();

    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    drop(watch);
    let report = in_flight
        .await
        .unwrap()
        .expect("in-flight call finishes")
        .into_inner()
        .report
        .unwrap();
    assert_eq!(report.line_status.unwrap().status(), pb::LineStatus::Active);
    server.join().await.expect("clean stop");
}

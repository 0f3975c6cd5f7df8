//! Traces end to end: a `phonecheck serve` process exports its spans over OTLP to a real OTLP/gRPC
//! receiver run by the test. One `LookupNumber` that carries the caller's `traceparent` yields the
//! span tree RPC → engine → dispatch → vendor call → vendor HTTP, in the caller's trace, with no
//! phone number in clear in any attribute.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use phonecheck::pb;
use tokio::net::TcpListener;

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test]
async fn a_lookup_is_traced_from_the_callers_span_to_the_vendor() {
    let receiver = Receiver::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonecheck"))
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("OTEL_SERVICE_NAME", "phonecheck-under-test")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
        // Everything, to show that no log line carries a number in clear.
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .trim_start_matches("phonecheck listening on ")
        .to_owned();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut client =
        pb::phone_check_service_client::PhoneCheckServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
    let mut request = tonic::Request::new(pb::LookupNumberRequest {
        number: "13800138000".into(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    client.lookup_number(request).await.unwrap();
    drop(client);

    // A graceful stop flushes the spans not yet exported.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().count() > 20, "trace-level logs were written");
    assert!(logged.lines().all(|l| l.starts_with('{')), "JSON lines");
    assert!(
        !logged.contains("13800138000"),
        "a number in clear in the logs"
    );

    let received = receiver.received.lock().unwrap().clone();
    let mut spans = Vec::new();
    for export in &received {
        for resource in &export.resource_spans {
            let attributes = &resource.resource.as_ref().unwrap().attributes;
            let value = |key: &str| {
                attributes.iter().find(|a| a.key == key).and_then(|a| {
                    match a.value.as_ref()?.value.as_ref()? {
                        Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    }
                })
            };
            assert_eq!(
                value("service.name").as_deref(),
                Some("phonecheck-under-test")
            );
            assert_eq!(value("deployment.environment").as_deref(), Some("ci"));
            for scope in &resource.scope_spans {
                spans.extend(scope.spans.iter().cloned());
            }
        }
    }
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| hex::encode(&s.trace_id) == trace_id)
        .collect();
    let named = |name: &str| {
        ours.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no {name} span in the caller's trace; got {:?}",
                ours.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let rpc = named("phonecheck.v1.PhoneCheckService/LookupNumber");
    assert_eq!(
        hex::encode(&rpc.parent_span_id),
        caller_span,
        "continues the caller's span"
    );
    let engine = named("engine.lookup");
    assert_eq!(engine.parent_span_id, rpc.span_id);
    let dispatch = named("dispatch");
    assert_eq!(dispatch.parent_span_id, engine.span_id);
    let call = named("vendor.call");
    assert_eq!(call.parent_span_id, dispatch.span_id);
    let http = named("vendor.http");
    assert_eq!(http.parent_span_id, call.span_id);
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone()?.value)
    };
    assert_eq!(
        attribute(http, "vendor"),
        Some(Value::StringValue("thinksms".into()))
    );
    assert!(
        matches!(attribute(http, "billable"), Some(Value::IntValue(1))),
        "one billable number: {:?}",
        http.attributes
    );
    assert!(matches!(
        attribute(http, "batch_size"),
        Some(Value::IntValue(1))
    ));
    assert_eq!(
        attribute(engine, "number"),
        Some(Value::StringValue("138****8000".into()))
    );
    // No number in clear anywhere: no string attribute holds a run of seven digits.
    // (At trace level the HTTP/2 library's own spans are exported too; their flow-control
    // counters are long numbers but not phone numbers, so they are left out here.)
    let ours_or_phonecheck = |span: &&opentelemetry_proto::tonic::trace::v1::Span| {
        hex::encode(&span.trace_id) == trace_id
            || matches!(attribute(span, "target"), Some(Value::StringValue(t)) if t.starts_with("phonecheck"))
    };
    let checked: Vec<_> = spans.iter().filter(ours_or_phonecheck).collect();
    assert!(checked.len() >= 5);
    for span in &checked {
        for a in &span.attributes {
            if let Some(Value::StringValue(text)) = a.value.as_ref().and_then(|v| v.value.as_ref())
            {
                let longest = text
                    .split(|c: char| !c.is_ascii_digit())
                    .map(str::len)
                    .max()
                    .unwrap_or(0);
                assert!(longest < 7, "{}: {} = {text:?}", span.name, a.key);
            }
        }
    }
}

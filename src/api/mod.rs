//! The gRPC services: request validation, calls into the engine, and conversion of the answers.

pub mod admin;
pub mod convert;
pub mod error;
pub mod jobs;
pub mod stream;

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use crate::auth::Tenant;
use crate::engine::{Engine, LookupRequest};
use crate::pb;
use crate::pb::phone_check_service_server::PhoneCheckService;

pub use error::ApiError;

/// The caller's tenant, put in the request by the [`crate::auth::AuthInterceptor`].
pub(crate) fn tenant_of<T>(request: &Request<T>) -> Arc<Tenant> {
    request
        .extensions()
        .get::<Arc<Tenant>>()
        .cloned()
        .unwrap_or_else(|| Arc::new(Tenant::anonymous()))
}

/// `phonecheck.v1.PhoneCheckService`.
#[derive(Debug, Clone)]
pub struct PhoneCheckApi {
    engine: Arc<Engine>,
    stream_window: usize,
}

impl PhoneCheckApi {
    /// The service over an engine; each `CheckNumbers` stream has at most `stream_window` items
    /// in flight.
    pub fn new(engine: Arc<Engine>, stream_window: usize) -> PhoneCheckApi {
        PhoneCheckApi {
            engine,
            stream_window,
        }
    }
}

#[tonic::async_trait]
impl PhoneCheckService for PhoneCheckApi {
    async fn lookup_number(
        &self,
        request: Request<pb::LookupNumberRequest>,
    ) -> Result<Response<pb::LookupNumberResponse>, Status> {
        let deadline = stream::deadline(request.metadata());
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        convert::bounded_number(&request.number, &request.default_region)?;
        let lookup = LookupRequest {
            checks: convert::checks_from_proto("checks", &request.checks)?,
            options: convert::options_from_proto("options", request.options)?,
            number: request.number,
            default_region: request.default_region,
            deadline,
            priority: crate::engine::Priority::Live,
        };
        tenant.authorize("checks", &lookup.checks, &lookup.options)?;
        let hold = tenant.hold_budget(&lookup.checks)?;
        let report = match self.engine.lookup(&lookup).await {
            Ok(report) => report,
            Err(e) => {
                hold.release();
                return Err(ApiError::from(e).into());
            }
        };
        hold.settle(&report);
        Ok(Response::new(pb::LookupNumberResponse {
            report: Some(convert::report_to_proto(&report)),
        }))
    }

    type CheckNumbersStream = stream::CheckNumbersStream;

    async fn check_numbers(
        &self,
        request: Request<Streaming<pb::CheckNumbersRequest>>,
    ) -> Result<Response<Self::CheckNumbersStream>, Status> {
        let deadline = stream::deadline(request.metadata());
        let tenant = tenant_of(&request);
        let permit = tenant.open(crate::auth::Concurrent::Stream)?;
        Ok(Response::new(stream::check_numbers(
            self.engine.clone(),
            tenant,
            permit,
            request.into_inner(),
            self.stream_window,
            deadline,
        )))
    }

    async fn list_providers(
        &self,
        _request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let providers = self
            .engine
            .providers()
            .iter()
            .map(|(provider, health)| convert::provider_to_proto(provider.as_ref(), health))
            .collect();
        let answer_cache = Some(convert::answer_stats_to_proto(
            &self.engine.answer_stats().await,
        ));
        Ok(Response::new(pb::ListProvidersResponse {
            providers,
            answer_cache,
        }))
    }
}

//! The gRPC services: request validation, calls into the engine, and conversion of the answers:
//! checks ([`PhoneCheckApi`]), file jobs ([`jobs`]), the usage ledger ([`usage`]),
//! webhook deliveries ([`webhooks`]) and administration ([`admin`]).

pub mod admin;
mod auth;
pub mod convert;
pub mod error;
pub mod jobs;
pub mod stream;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use crate::auth::Tenant;
use crate::engine::{Engine, LookupRequest};
use crate::pb;
use crate::pb::phone_check_service_server::PhoneCheckService;

pub use auth::{AuthLayer, AuthService};
pub use error::ApiError;

/// The caller's tenant, put in the request by the [`AuthLayer`].
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

/// A live lookup for `tenant` from a request's fields (a `LookupNumber` call or one stream item),
/// each field bounded before it is read.
pub(crate) fn lookup_request(
    tenant: &Tenant,
    number: String,
    default_region: String,
    checks: &[i32],
    options: Option<pb::CheckOptions>,
    deadline: Option<tokio::time::Instant>,
) -> Result<LookupRequest, ApiError> {
    convert::bounded_number(&number, &default_region)?;
    let checks = convert::checks_from_proto("checks", checks)?;
    let options = convert::options_from_proto("options", options)?;
    convert::require_inputs("options", &checks, &options)?;
    Ok(LookupRequest {
        checks,
        options,
        number,
        default_region,
        deadline,
        priority: crate::engine::Priority::Live,
        tenant: tenant.name.as_str().into(),
    })
}

/// The one flow of a live lookup, unary or streamed: the tenant's grants, room in its daily
/// budget, the engine, then the budget settled with what was billed.
pub(crate) async fn lookup_for(
    engine: &Engine,
    tenant: &Tenant,
    lookup: &LookupRequest,
) -> Result<crate::domain::Report, ApiError> {
    tenant.authorize("checks", &lookup.checks, &lookup.options)?;
    let hold = tenant
        .hold_budget(&lookup.checks, |check| engine.price_ceiling(check))
        .await?;
    match engine.lookup(lookup).await {
        Ok(report) => {
            hold.settle(&report).await;
            Ok(report)
        }
        Err(e) => {
            hold.release().await;
            Err(e.into())
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
        let lookup = lookup_request(
            &tenant,
            request.number,
            request.default_region,
            &request.checks,
            request.options,
            deadline,
        )?;
        let report = lookup_for(&self.engine, &tenant, &lookup).await?;
        Ok(Response::new(pb::LookupNumberResponse {
            report: Some(convert::report_to_proto(&report, self.engine.currency())),
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
            .map(|(provider, health)| {
                convert::provider_to_proto(provider.as_ref(), health, self.engine.currency())
            })
            .collect();
        let answer_cache = Some(convert::answer_stats_to_proto(
            &self.engine.answer_stats().await,
        ));
        let routes = self
            .engine
            .routes()
            .iter()
            .map(convert::route_to_proto)
            .collect();
        Ok(Response::new(pb::ListProvidersResponse {
            providers,
            answer_cache,
            routes,
            currency_code: self.engine.currency().code().to_owned(),
        }))
    }
}

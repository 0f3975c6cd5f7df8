//! `phonecheck.v1.AdminService`: forgetting a number (right to erasure). Only tenants granted
//! `admin` may call it when tenants are configured.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{ApiError, convert, tenant_of};
use crate::engine::Engine;
use crate::pb;
use crate::pb::admin_service_server::AdminService;

/// `phonecheck.v1.AdminService`.
#[derive(Debug, Clone)]
pub struct AdminApi {
    engine: Arc<Engine>,
}

impl AdminApi {
    /// The service over an engine.
    pub fn new(engine: Arc<Engine>) -> AdminApi {
        AdminApi { engine }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn forget_number(
        &self,
        request: Request<pb::ForgetNumberRequest>,
    ) -> Result<Response<pb::ForgetNumberResponse>, Status> {
        let tenant = tenant_of(&request);
        tenant.authorize_admin()?;
        let request = request.into_inner();
        convert::bounded_number(&request.number, &request.default_region)?;
        let info = self
            .engine
            .analyzer()
            .analyze(&request.number, &request.default_region)
            .map_err(|e| ApiError::from(crate::engine::EngineError::from(e)))?;
        if info.e164.is_empty() {
            return Err(ApiError::invalid("number", "not a number phonecheck can key").into());
        }
        let forgotten = self.engine.forget(&[info.e164]).await.map_err(|e| {
            tracing::error!(error = %e, "forgetting a number failed");
            ApiError::Unavailable(
                "the answer store or Redis failed; nothing may have been forgotten, try again",
            )
        })?;
        tracing::info!(
            tenant = %tenant.name,
            number = %crate::telemetry::mask(&request.number),
            answers = forgotten,
            "number forgotten (right to erasure)"
        );
        Ok(Response::new(pb::ForgetNumberResponse {
            answers_forgotten: forgotten,
        }))
    }
}

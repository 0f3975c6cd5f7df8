//! The console's gRPC client: the server's own services, called in-process through the same
//! auth layer as any network client, with the signed-in tenant's key as `authorization`.
//!
//! In-process rather than over a loopback socket: the calls take the same path through the
//! services (auth, tenant rates and places, budgets, the bounded importer) without depending on
//! the gRPC listener's address, TLS or client-certificate settings.

use std::convert::Infallible;

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::MetadataValue;
use tower::util::BoxCloneSyncService;

use crate::pb;
use crate::pb::batch_job_service_client::BatchJobServiceClient;
use crate::pb::phone_check_service_client::PhoneCheckServiceClient;
use crate::pb::usage_service_client::UsageServiceClient;

/// The server's routes (its gRPC services behind their auth layer), as one cloneable service.
pub type Routes = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Infallible,
>;

/// Clients of the server's services for the console.
#[derive(Clone)]
pub struct Backend {
    routes: Routes,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl Backend {
    /// The console's clients over `routes`.
    pub fn new(routes: Routes) -> Backend {
        Backend { routes }
    }

    /// `BatchJobService`.
    pub fn jobs(&self) -> BatchJobServiceClient<Routes> {
        BatchJobServiceClient::new(self.routes.clone())
    }

    /// `UsageService`.
    pub fn usage(&self) -> UsageServiceClient<Routes> {
        UsageServiceClient::new(self.routes.clone())
    }

    /// `PhoneCheckService`.
    pub fn lookups(&self) -> PhoneCheckServiceClient<Routes> {
        PhoneCheckServiceClient::new(self.routes.clone())
    }

    /// Checks `key` the way the API does, by a cheap keyed call: the key names a tenant (or no
    /// key is needed).
    pub async fn verify(&self, key: &SecretString) -> Result<(), tonic::Status> {
        self.jobs()
            .list_batch_jobs(keyed(
                key,
                pb::ListBatchJobsRequest {
                    page_size: 1,
                    page_token: String::new(),
                },
            )?)
            .await
            .map(|_| ())
    }
}

/// `message` with `authorization: Bearer <key>` (no header for an empty key: no tenants).
pub fn keyed<T>(key: &SecretString, message: T) -> Result<tonic::Request<T>, tonic::Status> {
    let mut request = tonic::Request::new(message);
    let key = key.expose_secret();
    if !key.is_empty() {
        let value: MetadataValue<_> = format!("Bearer {key}")
            .parse()
            .map_err(|_| tonic::Status::unauthenticated("the API key is not valid"))?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

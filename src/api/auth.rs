//! The auth layer in front of each phonecheck service: the caller's API key names its tenant,
//! and the call counts against the tenant's rate (kept by every replica together when Redis is
//! configured, hence a layer that can wait on Redis rather than a synchronous interceptor).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::server::NamedService;

use super::ApiError;
use crate::auth::Tenants;

/// Authenticates every call of the services it wraps and counts it against the tenant's rate:
/// puts the caller's [`crate::auth::Tenant`] in the request extensions, or answers the call
/// itself (`UNAUTHENTICATED`; `RESOURCE_EXHAUSTED` past the tenant's rate; `UNAVAILABLE` when a
/// shared rate cannot be checked).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    tenants: Arc<Tenants>,
}

impl AuthLayer {
    /// A layer over these tenants (none configured: every caller is anonymous).
    pub fn new(tenants: Tenants) -> AuthLayer {
        AuthLayer {
            tenants: Arc::new(tenants),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            tenants: self.tenants.clone(),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    tenants: Arc<Tenants>,
}

impl<S: NamedService> NamedService for AuthService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The service that was made ready answers this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tenants = self.tenants.clone();
        Box::pin(async move {
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let admitted = match tenants.authenticate(authorization) {
                // Every RPC is one request; stream items and job numbers are paced per item too.
                Ok(tenant) => tenant.count_call().await.map(|()| tenant),
                Err(e) => Err(e),
            };
            match admitted {
                Ok(tenant) => {
                    request.extensions_mut().insert(tenant);
                    inner.call(request).await
                }
                Err(e) => Ok(Status::from(ApiError::from(e)).into_http()),
            }
        })
    }
}

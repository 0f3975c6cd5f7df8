//! `phonecheck.v1.WebhookService`: a tenant's webhook events and their delivery, and re-sending
//! one. A tenant sees its own events only (another's are `NOT_FOUND`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{ApiError, tenant_of};
use crate::messages::bounded;
use crate::pb;
use crate::pb::webhook_service_server::WebhookService;
use crate::webhooks::sign::delivery_to_proto;
use crate::webhooks::{WebhookError, Webhooks};

/// Default and largest page of `ListWebhookDeliveries`.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1_000;
/// The longest job id, event id or page token accepted (ids are about 40 bytes).
const MAX_ID: usize = 128;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> ApiError {
        match e {
            WebhookError::NotFound(id) => ApiError::NotFound {
                kind: "phonecheck.v1.JobEvent",
                name: id,
            },
            e @ (WebhookError::Store(_) | WebhookError::Secret { .. }) => {
                tracing::error!(error = %e, "webhook outbox failure");
                ApiError::Unavailable("the webhook outbox is unavailable; try again")
            }
        }
    }
}

/// `phonecheck.v1.WebhookService`.
#[derive(Debug, Clone)]
pub struct WebhookApi {
    webhooks: Arc<Webhooks>,
}

impl WebhookApi {
    /// The service over the process's webhooks.
    pub fn new(webhooks: Arc<Webhooks>) -> WebhookApi {
        WebhookApi { webhooks }
    }
}

fn parse_page_token(token: &str) -> Result<Option<(i64, String)>, ApiError> {
    bounded("page_token", token, MAX_ID * 2)?;
    if token.is_empty() {
        return Ok(None);
    }
    token
        .split_once('.')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, id.to_owned())))
        .map(Some)
        .ok_or_else(|| ApiError::invalid("page_token", "not a token this server gave out"))
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        bounded("job_id", &request.job_id, MAX_ID).map_err(ApiError::from)?;
        let limit = match request.page_size {
            0 => DEFAULT_PAGE,
            n if (1..=MAX_PAGE as i32).contains(&n) => n as u32,
            _ => {
                return Err(ApiError::invalid(
                    "page_size",
                    format!("between 1 and {MAX_PAGE} (0 means {DEFAULT_PAGE})"),
                )
                .into());
            }
        };
        let after = parse_page_token(&request.page_token)?;
        let job_id = (!request.job_id.is_empty()).then_some(request.job_id.as_str());
        let events = self
            .webhooks
            .list(&tenant.name, job_id, after, limit)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match events.last() {
            Some(last) if events.len() == limit as usize => {
                format!("{}.{}", crate::store::millis(last.created_at), last.id)
            }
            _ => String::new(),
        };
        let currency = self.webhooks.currency();
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: events
                .iter()
                .map(|e| delivery_to_proto(e, currency))
                .collect(),
            next_page_token,
        }))
    }

    async fn resend_webhook_event(
        &self,
        request: Request<pb::ResendWebhookEventRequest>,
    ) -> Result<Response<pb::ResendWebhookEventResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        bounded("event_id", &request.event_id, MAX_ID).map_err(ApiError::from)?;
        if request.event_id.is_empty() {
            return Err(ApiError::invalid("event_id", "the event id is required").into());
        }
        let event = self
            .webhooks
            .resend(&tenant.name, &request.event_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ResendWebhookEventResponse {
            delivery: Some(delivery_to_proto(&event, self.webhooks.currency())),
        }))
    }
}

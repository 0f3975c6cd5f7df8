//! The API layer's errors and their one conversion to `tonic::Status`, with `google.rpc` details.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::engine::EngineError;

/// The `google.rpc.ErrorInfo` domain of phonecheck's errors.
pub const ERROR_DOMAIN: &str = "phonecheck.dev";

/// Why an RPC failed as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No valid API key.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller's tenant was not granted what it asked for.
    #[error("{message}")]
    PermissionDenied {
        /// The `google.rpc.ErrorInfo` reason.
        reason: &'static str,
        /// What was refused.
        message: String,
    },
    /// The tenant called faster than its rate limit.
    #[error("tenant {tenant} is over its rate limit; retry in {retry_after:?}")]
    RateLimited {
        /// The tenant.
        tenant: String,
        /// When a call would be accepted again.
        retry_after: std::time::Duration,
    },
    /// The tenant spent today's billable budget.
    #[error("tenant {tenant} has spent today's billable budget; it renews in {retry_after:?}")]
    BudgetExhausted {
        /// The tenant.
        tenant: String,
        /// Until the budget renews.
        retry_after: std::time::Duration,
    },
    /// The tenant has as many calls of a kind open as it may.
    #[error("tenant {tenant} has its maximum of {calls} open ({setting}); wait for one to end")]
    TooMany {
        /// The tenant.
        tenant: String,
        /// The calls (`CheckNumbers streams`, `exports`, ...).
        calls: &'static str,
        /// The setting that bounds them.
        setting: &'static str,
    },
    /// The named resource does not exist (or belongs to another tenant).
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// The resource's type, for `google.rpc.ResourceInfo`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A part of phonecheck itself failed; the details are in the server's log only.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A request field is not acceptable.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field path, for `google.rpc.BadRequest`.
        field: String,
        /// What is wrong, for the caller.
        message: String,
    },
}

impl ApiError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Number(n) => ApiError::invalid(n.field(), n.to_string()),
        }
    }
}

impl ApiError {
    /// The error as a `google.rpc.Status` message, for a stream item.
    pub fn to_rpc_status(&self) -> tonic_types::Status {
        let status = Status::from(self.clone());
        prost::Message::decode(status.details()).unwrap_or_else(|_| tonic_types::Status {
            code: status.code() as i32,
            message: status.message().to_owned(),
            details: Vec::new(),
        })
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = e.to_string();
        match e {
            ApiError::InvalidArgument {
                field,
                message: why,
            } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, why),
            ),
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::TooMany {
                tenant,
                calls,
                setting,
            } => {
                let mut details = ErrorDetails::new();
                details.add_quota_failure_violation(
                    format!("tenant:{tenant}"),
                    format!("concurrent {calls} over the tenant's {setting}"),
                );
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ApiError::NotFound { kind, name } => Status::with_error_details(
                Code::NotFound,
                message,
                ErrorDetails::with_resource_info(
                    kind,
                    name,
                    "",
                    "no such resource for this caller",
                ),
            ),
            ApiError::Unavailable(_) => Status::unavailable(message),
            ApiError::RateLimited {
                tenant,
                retry_after,
            } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.add_quota_failure_violation(
                    format!("tenant:{tenant}"),
                    "calls per second over the tenant's rate_limit",
                );
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ApiError::BudgetExhausted {
                tenant,
                retry_after,
            } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.add_quota_failure_violation(
                    format!("tenant:{tenant}"),
                    "billable vendor calls over the tenant's daily_billable_budget",
                );
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ApiError::PermissionDenied { reason, .. } => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
            ),
        }
    }
}

/// A `google.rpc.Status` message (for a report's outcome or a stream item), built the same way as
/// an RPC's status so the two read alike.
pub fn rpc_status(
    code: Code,
    message: impl Into<String>,
    details: ErrorDetails,
) -> tonic_types::Status {
    let status = Status::with_error_details(code, message, details);
    prost::Message::decode(status.details()).unwrap_or_else(|_| tonic_types::Status {
        code: code as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_a_field_violation() {
        let status: Status = ApiError::invalid("number", "the number is empty").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "number");
        assert_eq!(violations[0].description, "the number is empty");
    }

    #[test]
    fn rpc_status_round_trips_details() {
        let s = rpc_status(
            Code::Unavailable,
            "down",
            ErrorDetails::with_error_info("R", ERROR_DOMAIN, []),
        );
        assert_eq!(s.code, Code::Unavailable as i32);
        assert_eq!(s.details.len(), 1);
        assert!(s.details[0].type_url.ends_with("google.rpc.ErrorInfo"));
    }
}

//! The API layer's errors and their one conversion to `tonic::Status`, with `google.rpc` details.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;
use crate::engine::EngineError;

use crate::messages::FieldError;
pub use crate::messages::{ERROR_DOMAIN, rpc_status};

/// Why an RPC failed as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The caller may not do what it asked (key, grants, rate, budget, concurrency).
    #[error(transparent)]
    Auth(#[from] AuthError),
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
    /// The resource is not in a state that allows the operation.
    #[error("{message}")]
    FailedPrecondition {
        /// The kind of precondition, for `google.rpc.PreconditionFailure` (`STATE`).
        kind: &'static str,
        /// What it is about (`phonecheck.v1.BatchJob/job_...`).
        subject: String,
        /// What the caller can do about it.
        message: String,
    },
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

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::InvalidArgument {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Status {
        ApiError::from(e).into()
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
            ApiError::Auth(e) => auth_status(e, message),
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
            ApiError::FailedPrecondition {
                kind,
                subject,
                message: why,
            } => Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_precondition_failure_violation(kind, subject, why),
            ),
        }
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        ApiError::Auth(e).into()
    }
}

/// The `tonic::Status` of an [`AuthError`], with its `google.rpc` details.
fn auth_status(e: AuthError, message: String) -> Status {
    match e {
        AuthError::Unauthenticated(_) => Status::unauthenticated(message),
        AuthError::TooMany {
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
        AuthError::RateLimited {
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
        AuthError::BudgetExhausted {
            tenant,
            settings,
            retry_after,
            ..
        } => {
            let mut details = ErrorDetails::with_retry_info(Some(retry_after));
            details.add_quota_failure_violation(
                format!("tenant:{tenant}"),
                format!("billable vendor calls over the tenant's {settings}"),
            );
            Status::with_error_details(Code::ResourceExhausted, message, details)
        }
        AuthError::LimitsUnavailable { .. } => Status::unavailable(message),
        AuthError::PermissionDenied { reason, .. } => Status::with_error_details(
            Code::PermissionDenied,
            message,
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
        ),
    }
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

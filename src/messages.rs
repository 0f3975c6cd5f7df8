//! The contract's messages: domain ↔ protobuf conversion, and the checks of request fields,
//! without any transport. Below the API edge and the job runner, which both speak it; its one error,
//! [`FieldError`], names the request field at fault and becomes `INVALID_ARGUMENT` with a
//! `google.rpc.BadRequest` at the edge.

use std::collections::HashMap;
use std::time::SystemTime;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{
    AccountPresence, Activity, Carrier, Check, CheckData, CheckOptions, CheckOutcome, CheckState,
    Currency, KycInput, LabelSource, LineStatus, LineStatusResult, Location, Money, NetworkType,
    NumberInfo, NumberType, Presence, Report, RiskLevel, RiskProfile, SkipReason, SpamLabels,
};
use crate::pb;
use crate::providers::{ErrorReason, ProviderError};
use crate::telemetry::redact_numbers;

mod ownership;

pub use ownership::{
    current_carrier_to_proto, reassigned_to_proto, require_inputs, tenure_to_proto,
};

/// The `google.rpc.ErrorInfo` domain of phonecheck's errors.
pub const ERROR_DOMAIN: &str = "phonecheck.dev";

/// A request field that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field path (`checks[2]`, `options.kyc.email`), for `google.rpc.BadRequest`.
    pub field: String,
    /// What is wrong, for the caller; never the value itself.
    pub message: String,
}

impl FieldError {
    /// An unacceptable field.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
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
    let status = tonic::Status::with_error_details(code, message, details);
    prost::Message::decode(status.details()).unwrap_or_else(|_| tonic_types::Status {
        code: code as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    })
}

/// Longest accepted request fields, in bytes. A request over one is refused with a
/// `BadRequest` naming the field and the bound; the value itself is never echoed.
pub mod max_len {
    /// A number as written (separators, `tel:`, a country code).
    pub const NUMBER: usize = 64;
    /// A region code (ISO 3166-1 alpha-2 is two letters).
    pub const REGION: usize = 8;
    /// A stream item's `request_id`.
    pub const REQUEST_ID: usize = 128;
    /// Entries of a request's `checks` (there are four checks).
    pub const CHECKS: usize = 16;
    /// A job's label.
    pub const LABEL: usize = 256;
    /// A job's file name.
    pub const FILE_NAME: usize = 256;
    /// A job's `number_column` or `sheet`.
    pub const COLUMN: usize = 128;
}

/// Refuses `value` when it is longer than `max` bytes.
pub fn bounded(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::new(
            field,
            format!("{} bytes long; at most {max} are accepted", value.len()),
        ));
    }
    Ok(())
}

/// Refuses a number or region longer than any real one, before anything reads it.
pub fn bounded_number(number: &str, region: &str) -> Result<(), FieldError> {
    bounded("number", number, max_len::NUMBER)?;
    bounded("default_region", region, max_len::REGION)
}

/// Reads a request's `checks`; `CHECK_UNSPECIFIED` is ignored, unknown values are refused.
pub fn checks_from_proto(field: &str, checks: &[i32]) -> Result<Vec<Check>, FieldError> {
    if checks.len() > max_len::CHECKS {
        return Err(FieldError::new(
            field,
            format!(
                "{} entries; at most {} are accepted",
                checks.len(),
                max_len::CHECKS
            ),
        ));
    }
    let mut out = Vec::with_capacity(checks.len());
    for (i, &value) in checks.iter().enumerate() {
        match Check::from_proto(value) {
            Some(check) => out.push(check),
            None if value == pb::Check::Unspecified as i32 => {}
            None => {
                return Err(FieldError::new(
                    format!("{field}[{i}]"),
                    format!("{value} is not a known Check"),
                ));
            }
        }
    }
    Ok(out)
}

/// Reads a request's `options`.
pub fn options_from_proto(
    field: &str,
    options: Option<pb::CheckOptions>,
) -> Result<CheckOptions, FieldError> {
    let Some(options) = options else {
        return Ok(CheckOptions::default());
    };
    let kyc = match options.kyc {
        None => None,
        Some(k) => {
            let id_type = match pb::IdType::try_from(k.id_type) {
                Ok(pb::IdType::Unspecified) => None,
                Ok(pb::IdType::IdentityCard) => Some("identity_card"),
                Ok(pb::IdType::Passport) => Some("passport"),
                Ok(pb::IdType::DrivingLicence) => Some("driving_licence"),
                Ok(pb::IdType::BirthCertificate) => Some("birth_certificate"),
                Ok(pb::IdType::VoterCard) => Some("voter_card"),
                Ok(pb::IdType::TaxCard) => Some("tax_card"),
                Ok(pb::IdType::SocialSecurityCard) => Some("social_security_card"),
                Ok(pb::IdType::Others) => Some("others"),
                Err(_) => {
                    return Err(FieldError::new(
                        format!("{field}.kyc.id_type"),
                        format!("{} is not a known IdType", k.id_type),
                    ));
                }
            };
            let text =
                |name: &str, value: String, max: usize| -> Result<Option<String>, FieldError> {
                    let value = value.trim().to_owned();
                    if value.chars().count() > max {
                        return Err(FieldError::new(
                            format!("{field}.kyc.{name}"),
                            format!("longer than {max} characters"),
                        ));
                    }
                    Ok((!value.is_empty()).then_some(value))
                };
            let email = text("email", k.email, 254)?;
            if let Some(email) = &email
                && !email.contains('@')
            {
                return Err(FieldError::new(
                    format!("{field}.kyc.email"),
                    "not an e-mail address",
                ));
            }
            let kyc = KycInput {
                id_type,
                id_number: text("id_number", k.id_number, 64)?,
                name: text("name", k.name, 200)?,
                email,
                registered_at: None,
            };
            (kyc != KycInput::default()).then_some(kyc)
        }
    };
    let max_cache_age = match options.max_cache_age {
        None => None,
        Some(d) => Some(std::time::Duration::try_from(d).map_err(|_| {
            FieldError::new(format!("{field}.max_cache_age"), "must not be negative")
        })?),
    };
    let kyc = ownership::with_registered_at(field, kyc, options.registered_at)?;
    Ok(CheckOptions {
        kyc,
        include_profile_details: options.include_profile_details,
        max_cache_age,
    })
}

/// The protobuf `Check`.
pub fn check_to_proto(check: Check) -> pb::Check {
    pb::Check::try_from(check.spec().proto).unwrap_or(pb::Check::Unspecified)
}

/// The protobuf `LineStatus`.
pub fn line_status_to_proto(status: LineStatus) -> pb::LineStatus {
    match status {
        LineStatus::Active => pb::LineStatus::Active,
        LineStatus::Empty => pb::LineStatus::Empty,
        LineStatus::Suspended => pb::LineStatus::Suspended,
        LineStatus::Silent => pb::LineStatus::Silent,
        LineStatus::Risk => pb::LineStatus::Risk,
        LineStatus::PoweredOff => pb::LineStatus::PoweredOff,
        LineStatus::NoRecord => pb::LineStatus::NoRecord,
        LineStatus::Invalid => pb::LineStatus::Invalid,
    }
}

fn number_type_to_proto(t: NumberType) -> pb::NumberType {
    use pb::NumberType as P;
    match t {
        NumberType::Mobile => P::Mobile,
        NumberType::FixedLine => P::FixedLine,
        NumberType::TollFree => P::TollFree,
        NumberType::SharedCost => P::SharedCost,
        NumberType::Service => P::Service,
        NumberType::Emergency => P::Emergency,
        NumberType::SmsPort => P::SmsPort,
        NumberType::DataCard => P::DataCard,
        NumberType::Iot => P::Iot,
        NumberType::Voip => P::Voip,
        NumberType::Satellite => P::Satellite,
        NumberType::Unknown => P::Unknown,
        NumberType::PremiumRate => P::PremiumRate,
        NumberType::PersonalNumber => P::PersonalNumber,
        NumberType::Pager => P::Pager,
        NumberType::Uan => P::Uan,
        NumberType::Voicemail => P::Voicemail,
        NumberType::FixedLineOrMobile => P::FixedLineOrMobile,
    }
}

fn network_type_to_proto(t: NetworkType) -> pb::NetworkType {
    match t {
        NetworkType::Basic => pb::NetworkType::Basic,
        NetworkType::Virtual => pb::NetworkType::Virtual,
        NetworkType::Data => pb::NetworkType::Data,
        NetworkType::Iot => pb::NetworkType::Iot,
        NetworkType::Satellite => pb::NetworkType::Satellite,
        NetworkType::Fixed => pb::NetworkType::Fixed,
    }
}

fn carrier_to_proto(c: &Carrier) -> pb::Carrier {
    pb::Carrier {
        name: c.name.to_owned(),
        local_name: c.local_name.to_owned(),
        network_type: network_type_to_proto(c.network_type) as i32,
        host_network: c.host_network.unwrap_or_default().to_owned(),
        may_be_ported: c.may_be_ported,
    }
}

fn location_to_proto(l: &Location) -> pb::Location {
    pb::Location {
        province: l.province.to_string(),
        city: l.city.to_string(),
        area_code: l.area_code.to_string(),
    }
}

/// The protobuf `NumberInfo`.
pub fn info_to_proto(info: &NumberInfo) -> pb::NumberInfo {
    pb::NumberInfo {
        input: info.input.clone(),
        e164: info.e164.clone(),
        region_code: info.region_code.clone(),
        national_number: info.national_number.clone(),
        r#type: number_type_to_proto(info.number_type) as i32,
        valid: info.valid,
        carrier: info.carrier.as_ref().map(carrier_to_proto),
        location: info.location.as_ref().map(location_to_proto),
        data_version: info.data_version.to_string(),
    }
}

fn reason_code(reason: ErrorReason) -> Code {
    match reason {
        ErrorReason::AuthFailed | ErrorReason::Rejected => Code::FailedPrecondition,
        ErrorReason::QuotaExhausted | ErrorReason::RateLimited => Code::ResourceExhausted,
        ErrorReason::Unavailable | ErrorReason::BadResponse | ErrorReason::StateUnavailable => {
            Code::Unavailable
        }
    }
}

fn reason_text(reason: ErrorReason) -> &'static str {
    match reason {
        ErrorReason::AuthFailed => "the vendor refused phonecheck's credentials or signature",
        ErrorReason::QuotaExhausted => "the vendor account has no quota left",
        ErrorReason::RateLimited => "the vendor's rate limit was reached",
        ErrorReason::Unavailable => "the vendor is unavailable",
        ErrorReason::BadResponse => "the vendor's answer could not be read",
        ErrorReason::Rejected => "the vendor refused the request",
        ErrorReason::StateUnavailable => "phonecheck could not use its state store",
    }
}

/// The `google.rpc.Status` of a failed provider call, in phonecheck's words; the vendor's code
/// and text (numbers masked) travel in `ErrorInfo` metadata.
pub fn provider_error_to_status(provider: &str, error: &ProviderError) -> tonic_types::Status {
    let reason = error.reason();
    let mut metadata = HashMap::from([
        ("provider".to_owned(), provider.to_owned()),
        ("retryable".to_owned(), error.retryable().to_string()),
        ("billable".to_owned(), error.billable().to_string()),
    ]);
    if let Some(code) = error.vendor_code() {
        metadata.insert("vendor_code".to_owned(), code.to_owned());
    }
    if let ProviderError::Vendor { message, .. } = error {
        metadata.insert("vendor_message".to_owned(), redact_numbers(message));
    }
    let message = match error {
        ProviderError::Vendor { code, .. } => {
            format!("{provider}: {} (vendor code {code})", reason_text(reason))
        }
        other => format!(
            "{provider}: {}: {}",
            reason_text(reason),
            redact_numbers(&other.to_string())
        ),
    };
    rpc_status(
        reason_code(reason),
        message,
        ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, metadata),
    )
}

fn skip_to_status(provider: &str, check: Check, reason: &SkipReason) -> tonic_types::Status {
    let (code, message) = match reason {
        SkipReason::NumberInvalid => (
            "NUMBER_INVALID",
            format!("{check} not run: the number is not valid"),
        ),
        SkipReason::NoProvider => (
            "NO_PROVIDER",
            format!("{check} not run: no configured provider serves it"),
        ),
        SkipReason::NotCovered(why) => ("NOT_COVERED", format!("{check} not run: {why}")),
    };
    let metadata = HashMap::from([("provider".to_owned(), provider.to_owned())]);
    rpc_status(
        Code::FailedPrecondition,
        message,
        ErrorDetails::with_error_info(code, ERROR_DOMAIN, metadata),
    )
}

fn label_source_to_proto(source: LabelSource) -> pb::LabelSource {
    match source {
        LabelSource::Qihoo360 => pb::LabelSource::Qihoo360,
        LabelSource::Tencent => pb::LabelSource::Tencent,
        LabelSource::Baidu => pb::LabelSource::Baidu,
        LabelSource::Sogou => pb::LabelSource::Sogou,
        LabelSource::Dianhuabang => pb::LabelSource::Dianhuabang,
        LabelSource::Teddy => pb::LabelSource::Teddy,
    }
}

fn spam_labels_to_proto(labels: &SpamLabels) -> pb::SpamLabelsResult {
    pb::SpamLabelsResult {
        labels: labels
            .labels
            .iter()
            .map(|l| pb::SpamLabel {
                source: label_source_to_proto(l.source) as i32,
                label: l.label.clone(),
                count: l.count,
                display_name: l.display_name.clone(),
            })
            .collect(),
        pending: false,
    }
}

fn account_presence_to_proto(p: &AccountPresence) -> pb::AccountPresenceResult {
    let activity = match p.active {
        Activity::Active => pb::Activity::Active,
        Activity::Inactive => pb::Activity::Inactive,
        Activity::Unknown => pb::Activity::Unknown,
    };
    pb::AccountPresenceResult {
        valid: p.valid,
        active: activity as i32,
        fraud_score: p.fraud_score,
        carrier: p.carrier.clone(),
        line_type: p.line_type.clone(),
        registrations: p
            .registrations
            .iter()
            .map(|r| pb::Registration {
                platform: r.platform.clone(),
                registered: match r.registered {
                    Presence::Registered => pb::Presence::Registered,
                    Presence::NotRegistered => pb::Presence::NotRegistered,
                    Presence::Unknown => pb::Presence::Unknown,
                } as i32,
                profile: r.profile.as_ref().map(|p| pb::AccountProfile {
                    account_name: p.account_name.clone(),
                    full_name: p.full_name.clone(),
                    profile_photo: p.profile_photo.clone(),
                    last_seen: p.last_seen.clone(),
                    country: p.country.clone(),
                    state: p.state.clone(),
                    city: p.city.clone(),
                    account_id: p.account_id.clone(),
                    language: p.language.clone(),
                    gender: p.gender.clone(),
                    age: p.age.clone(),
                    bio: p.bio.clone(),
                    about: p.about.clone(),
                    handle: p.handle.clone(),
                }),
            })
            .collect(),
        total_registered: p.total_registered,
        history: p.history.as_ref().map(|h| pb::QueryHistory {
            hits: h.hits,
            customer_hits: h.customer_hits,
            first_seen: h.first_seen.map(timestamp),
            last_seen: h.last_seen.map(timestamp),
        }),
    }
}

fn risk_profile_to_proto(p: &RiskProfile) -> pb::RiskProfileResult {
    pb::RiskProfileResult {
        risks: p
            .risks
            .iter()
            .map(|r| pb::Risk {
                level: match r.level {
                    RiskLevel::Low => pb::RiskLevel::Low,
                    RiskLevel::Medium => pb::RiskLevel::Medium,
                    RiskLevel::High => pb::RiskLevel::High,
                } as i32,
                r#type: r.risk_type,
                type_name: r.type_name().to_owned(),
                score: r.score,
            })
            .collect(),
        under18: p.under18.map(|u| pb::Under18 {
            is_under18: u.is_under18,
            confidence: u.confidence,
        }),
        location: p.location.as_ref().map(|l| pb::RiskLocation {
            carrier: l.carrier.clone(),
            province: l.province.clone(),
            city: l.city.clone(),
        }),
    }
}

/// A protobuf timestamp.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn outcome_to_proto(o: &CheckOutcome, currency: Currency) -> pb::CheckOutcome {
    let (state, error) = match &o.state {
        CheckState::Ok(_) => (pb::CheckState::Ok, None),
        CheckState::Failed(e) => (
            pb::CheckState::Error,
            Some(provider_error_to_status(&o.provider, e)),
        ),
        CheckState::Pending => (pb::CheckState::Pending, None),
        CheckState::Skipped(r) => (
            pb::CheckState::Skipped,
            Some(skip_to_status(&o.provider, o.check, r)),
        ),
    };
    pb::CheckOutcome {
        check: check_to_proto(o.check) as i32,
        provider: o.provider.to_string(),
        state: state as i32,
        error,
        billable: o.billable,
        cost: Some(money_to_proto(o.cost, currency)),
        cached: o.cached,
        latency: prost_types::Duration::try_from(o.latency).ok(),
        fetched_at: o.fetched_at.map(timestamp),
        attempts: o
            .attempts
            .iter()
            .map(|a| pb::CheckAttempt {
                provider: a.provider.to_string(),
                reason: a.error.reason().as_str().to_owned(),
                vendor_code: a.error.vendor_code().unwrap_or_default().to_owned(),
                error: Some(provider_error_to_status(&a.provider, &a.error)),
                latency: prost_types::Duration::try_from(a.latency).ok(),
            })
            .collect(),
    }
}

/// The protobuf `LineStatusResult`: the status, and the current carrier when the vendor named
/// one (a code phonecheck does not know keeps only `current_carrier_code`).
fn line_status_to_result(r: &LineStatusResult) -> pb::LineStatusResult {
    let current = r.current_carrier.as_ref();
    pb::LineStatusResult {
        status: line_status_to_proto(r.status) as i32,
        raw_code: r.raw_code.clone(),
        description: r.description.clone(),
        current_carrier: current.filter(|c| !c.name.is_empty()).map(|c| pb::Carrier {
            name: c.name.clone(),
            local_name: c.local_name.clone(),
            ..Default::default()
        }),
        current_carrier_code: current.map(|c| c.code.clone()).unwrap_or_default(),
        ported: r.ported,
    }
}

/// `google.type.Money` in the billing currency.
pub fn money_to_proto(amount: Money, currency: Currency) -> pb::google_type::Money {
    let (units, nanos) = amount.units_and_nanos();
    pb::google_type::Money {
        currency_code: currency.code().to_owned(),
        units,
        nanos,
    }
}

/// An amount a client wrote (`field` names it), which must be in the billing currency (or name
/// none) and not negative.
pub fn money_from_proto(
    field: &str,
    money: &pb::google_type::Money,
    currency: Currency,
) -> Result<Money, FieldError> {
    if !money.currency_code.is_empty() && money.currency_code != currency.code() {
        return Err(FieldError::new(
            format!("{field}.currency_code"),
            format!("amounts are in {currency}, the billing currency"),
        ));
    }
    Money::from_units_and_nanos(money.units, money.nanos)
        .map_err(|e| FieldError::new(field.to_owned(), e.to_string()))
}

/// The protobuf `NumberReport`, costs in `currency`.
pub fn report_to_proto(report: &Report, currency: Currency) -> pb::NumberReport {
    let mut out = pb::NumberReport {
        info: Some(info_to_proto(&report.info)),
        outcomes: report
            .outcomes
            .iter()
            .map(|o| outcome_to_proto(o, currency))
            .collect(),
        sandbox: report.sandbox(),
        ..Default::default()
    };
    for outcome in &report.outcomes {
        match &outcome.state {
            CheckState::Ok(CheckData::LineStatus(r)) => {
                out.line_status = Some(line_status_to_result(r));
            }
            CheckState::Ok(CheckData::SpamLabels(labels)) => {
                out.spam_labels = Some(spam_labels_to_proto(labels));
            }
            CheckState::Ok(CheckData::AccountPresence(p)) => {
                out.account_presence = Some(account_presence_to_proto(p));
            }
            CheckState::Ok(CheckData::RiskProfile(p)) => {
                out.risk_profile = Some(risk_profile_to_proto(p));
            }
            CheckState::Ok(data) => ownership::fill(&mut out, data),
            CheckState::Pending if outcome.check == Check::SpamLabels => {
                out.spam_labels = Some(pb::SpamLabelsResult {
                    labels: Vec::new(),
                    pending: true,
                });
            }
            CheckState::Pending | CheckState::Failed(_) | CheckState::Skipped(_) => {}
        }
    }
    out
}

//! The contract's side of the checks about a number's life on its network (tenure, reassigned,
//! current carrier): their results in a report, and the registration time a request gives.

use std::time::SystemTime;

use super::FieldError;
use crate::domain::{
    Check, CheckData, CheckOptions, CurrentCarrierResult, KycInput, Reassigned, ReassignedResult,
    TenureResult, TenureStatus,
};
use crate::pb;

/// Adds `options.registered_at` (already checked for shape by prost) to the request's inputs,
/// kept to the second; a time before 1970 or in the future is refused naming the field.
pub(super) fn with_registered_at(
    field: &str,
    kyc: Option<KycInput>,
    at: Option<prost_types::Timestamp>,
) -> Result<Option<KycInput>, FieldError> {
    let Some(at) = at else {
        return Ok(kyc);
    };
    let name = format!("{field}.registered_at");
    let at = SystemTime::try_from(at).map_err(|_| FieldError::new(&name, "not a valid time"))?;
    let seconds = crate::domain::registered_at(at, SystemTime::now())
        .map_err(|e| FieldError::new(&name, e.to_string()))?;
    let mut kyc = kyc.unwrap_or_default();
    kyc.registered_at = Some(seconds);
    Ok(Some(kyc))
}

/// Refuses a request that asks for a check needing the registration time without giving one,
/// naming `{field}.registered_at`.
pub fn require_inputs(
    field: &str,
    checks: &[Check],
    options: &CheckOptions,
) -> Result<(), FieldError> {
    match checks.iter().find(|c| c.spec().takes_registration_time) {
        Some(check) if options.registered_at().is_none() => Err(FieldError::new(
            format!("{field}.registered_at"),
            format!("required with {}", check.key()),
        )),
        _ => Ok(()),
    }
}

/// Puts a tenure, reassigned or current-carrier answer in its place in `report`; other answers
/// are left to the caller.
pub(super) fn fill(report: &mut pb::NumberReport, data: &CheckData) {
    match data {
        CheckData::Tenure(t) => report.tenure = Some(tenure_to_proto(t)),
        CheckData::Reassigned(r) => report.reassigned = Some(reassigned_to_proto(r)),
        CheckData::CurrentCarrier(c) => report.current_carrier = Some(current_carrier_to_proto(c)),
        _ => {}
    }
}

/// The protobuf `TenureResult`.
pub fn tenure_to_proto(t: &TenureResult) -> pb::TenureResult {
    let status = match t.status {
        TenureStatus::Known => pb::TenureStatus::Known,
        TenureStatus::NotFound => pb::TenureStatus::NotFound,
        TenureStatus::Abnormal => pb::TenureStatus::Abnormal,
    };
    pb::TenureResult {
        status: status as i32,
        lower_months: t.lower_months,
        upper_months: t.upper_months,
        raw_code: t.raw_code.clone(),
        carrier_code: t.carrier_code.clone(),
    }
}

/// The protobuf `ReassignedResult`.
pub fn reassigned_to_proto(r: &ReassignedResult) -> pb::ReassignedResult {
    let status = match r.status {
        Reassigned::Unknown => pb::ReassignedStatus::Unknown,
        Reassigned::Recycled => pb::ReassignedStatus::Recycled,
        Reassigned::NotRecycled => pb::ReassignedStatus::NotRecycled,
        Reassigned::Deactivated => pb::ReassignedStatus::Deactivated,
        Reassigned::Transferred => pb::ReassignedStatus::Transferred,
    };
    pb::ReassignedResult {
        status: status as i32,
        raw_code: r.raw_code.clone(),
        carrier_code: r.carrier_code.clone(),
    }
}

/// The protobuf `CurrentCarrierResult`; the carrier is set only when phonecheck knows its name.
pub fn current_carrier_to_proto(c: &CurrentCarrierResult) -> pb::CurrentCarrierResult {
    pb::CurrentCarrierResult {
        carrier: (!c.name.is_empty()).then(|| pb::Carrier {
            name: c.name.clone(),
            local_name: c.local_name.clone(),
            ..Default::default()
        }),
        basic_carrier: c.basic_carrier.clone(),
        mvno: c.mvno.clone().unwrap_or_default(),
        ported: c.ported,
        raw_code: c.raw_code.clone(),
        province: c.province.clone(),
        city: c.city.clone(),
    }
}

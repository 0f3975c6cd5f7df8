//! How a job's results are named for people, shared by the exports and the report: a protobuf
//! enum value's short name, and what a stored job's spec says.

use prost::Message;

use crate::pb;
use crate::store::JobRecord;

/// The short name of an enum value, without its prefix: `LINE_STATUS_EMPTY` → `empty`.
macro_rules! short {
    ($enum:ty, $value:expr, $prefix:literal) => {
        <$enum>::try_from($value)
            .map(|v| {
                v.as_str_name()
                    .trim_start_matches($prefix)
                    .to_ascii_lowercase()
            })
            .unwrap_or_default()
    };
}
pub(super) use short;

/// The earlier job a job re-checks (`BatchJobSpec.recheck_of`), if it is a re-check.
pub fn recheck_of(job: &JobRecord) -> Option<String> {
    let spec = pb::BatchJobSpec::decode(job.job.spec.as_slice()).unwrap_or_default();
    (!spec.recheck_of.is_empty()).then_some(spec.recheck_of)
}

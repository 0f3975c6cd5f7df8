//! `phonecheck lookup`: one number, printed readably or as JSON.

use std::fmt::Write as _;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

use super::CliError;
use crate::domain::Check;
use crate::pb;
use crate::pb::phone_check_service_client::PhoneCheckServiceClient;

pub(super) async fn run(
    number: String,
    checks: Vec<Check>,
    region: String,
    server: String,
    json: bool,
) -> Result<(), CliError> {
    let mut client = PhoneCheckServiceClient::connect(server.clone())
        .await
        .map_err(|source| CliError::Connect { server, source })?;
    let request = pb::LookupNumberRequest {
        number,
        default_region: region,
        checks: checks
            .into_iter()
            .map(|c| crate::messages::check_to_proto(c) as i32)
            .collect(),
        options: None,
    };
    let response = client.lookup_number(request).await?.into_inner();
    let text = if json {
        to_json(&response)?
    } else {
        render(&response.report.unwrap_or_default())
    };
    println!("{text}");
    Ok(())
}

/// The protobuf JSON mapping of a response, with `google.rpc` details decoded.
fn to_json(response: &pb::LookupNumberResponse) -> Result<String, CliError> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
        .map_err(|e| CliError::Render(e.to_string()))?;
    let descriptor = pool
        .get_message_by_name("phonecheck.v1.LookupNumberResponse")
        .ok_or_else(|| CliError::Render("descriptor missing".into()))?;
    let message = DynamicMessage::decode(descriptor, response.encode_to_vec().as_slice())
        .map_err(|e| CliError::Render(e.to_string()))?;
    serde_json::to_string_pretty(&message).map_err(|e| CliError::Render(e.to_string()))
}

/// An enum value for people: `NUMBER_TYPE_FIXED_LINE` → `fixed line`.
macro_rules! short {
    ($enum:ty, $value:expr, $prefix:literal) => {
        match <$enum>::try_from($value) {
            Ok(v) => v
                .as_str_name()
                .trim_start_matches($prefix)
                .to_ascii_lowercase()
                .replace('_', " "),
            Err(e) => format!("unknown({})", e.0),
        }
    };
}

/// A report, for people.
pub(super) fn render(report: &pb::NumberReport) -> String {
    let mut out = String::new();
    let info = report.info.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "{}  (input {:?})",
        if info.e164.is_empty() {
            "-"
        } else {
            &info.e164
        },
        info.input
    );
    let _ = writeln!(
        out,
        "  type        {}{}",
        short!(pb::NumberType, info.r#type, "NUMBER_TYPE_"),
        if info.valid { "" } else { "  (not valid)" }
    );
    let _ = writeln!(
        out,
        "  region      {}  national {}",
        info.region_code, info.national_number
    );
    if let Some(c) = &info.carrier {
        let mut line = format!(
            "{} {} · {}",
            c.name,
            c.local_name,
            short!(pb::NetworkType, c.network_type, "NETWORK_TYPE_")
        );
        if !c.host_network.is_empty() {
            let _ = write!(line, " on {}", c.host_network);
        }
        if c.may_be_ported {
            line.push_str(" · may be ported");
        }
        let _ = writeln!(out, "  carrier     {line}");
    }
    if let Some(l) = &info.location {
        let _ = writeln!(
            out,
            "  location    {} {} ({})",
            l.province, l.city, l.area_code
        );
    }
    let _ = writeln!(out, "  data        {}", info.data_version);
    if let Some(ls) = &report.line_status {
        let _ = writeln!(
            out,
            "  line status {}  (vendor code {} {})",
            short!(pb::LineStatus, ls.status, "LINE_STATUS_"),
            ls.raw_code,
            ls.description
        );
    }
    if let Some(spam) = &report.spam_labels {
        if spam.pending {
            let _ = writeln!(
                out,
                "  spam labels pending: the vendor is still labelling; ask again later"
            );
        } else if spam.labels.is_empty() {
            let _ = writeln!(out, "  spam labels none");
        }
        for l in &spam.labels {
            let mut line = format!(
                "{}: {}",
                short!(pb::LabelSource, l.source, "LABEL_SOURCE_"),
                l.label
            );
            if l.count > 0 {
                let _ = write!(line, " ×{}", l.count);
            }
            if !l.display_name.is_empty() {
                let _ = write!(line, " (shown as {})", l.display_name);
            }
            let _ = writeln!(out, "  spam label  {line}");
        }
    }
    if let Some(p) = &report.account_presence {
        let score = p
            .fraud_score
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        let _ = writeln!(
            out,
            "  accounts    {} · fraud score {score} · {} {}",
            short!(pb::Activity, p.active, "ACTIVITY_"),
            p.carrier,
            p.line_type
        );
        let registered: Vec<&str> = p
            .registrations
            .iter()
            .filter(|r| r.registered() == pb::Presence::Registered)
            .map(|r| r.platform.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  registered  {}",
            if registered.is_empty() {
                "nowhere known".to_owned()
            } else {
                registered.join(", ")
            }
        );
    }
    if let Some(p) = &report.risk_profile {
        if p.risks.is_empty() {
            let _ = writeln!(out, "  risk        none found");
        }
        for r in &p.risks {
            let name = if r.type_name.is_empty() {
                r.r#type.to_string()
            } else {
                format!("{} ({})", r.type_name, r.r#type)
            };
            let _ = writeln!(
                out,
                "  risk        {} · {name} · score {:.2}",
                short!(pb::RiskLevel, r.level, "RISK_LEVEL_"),
                r.score
            );
        }
        if let Some(u) = &p.under18 {
            let _ = writeln!(
                out,
                "  under 18    {} (confidence {:.2})",
                if u.is_under18 { "yes" } else { "no" },
                u.confidence
            );
        }
    }
    for o in &report.outcomes {
        let mut line = format!(
            "{} via {}: {}",
            short!(pb::Check, o.check, "CHECK_").replace(' ', "-"),
            o.provider,
            short!(pb::CheckState, o.state, "CHECK_STATE_")
        );
        if o.billable {
            let _ = write!(line, ", billable {}", super::money_text(o.cost.as_ref()));
        }
        if o.cached {
            line.push_str(", cached");
        }
        if let Some(latency) = &o.latency {
            let _ = write!(
                line,
                ", {} ms",
                latency.seconds * 1000 + i64::from(latency.nanos) / 1_000_000
            );
        }
        if let Some(e) = &o.error {
            let _ = write!(line, "\n                {}", e.message);
        }
        let _ = writeln!(out, "  outcome     {line}");
    }
    if report.sandbox {
        let _ = writeln!(
            out,
            "  SANDBOX     answers came from simulators, not real vendors"
        );
    }
    out.trim_end().to_owned()
}

//! The report's charts of the checks about a number's life on its network: the tenure histogram,
//! the reassigned counts and the current carriers (ported, MVNO). The store keeps no aggregates
//! of these answers, so they are counted from the job's rows, a page at a time (one pass, little
//! memory).

use prost::Message;

use super::{Chart, chart};
use crate::jobs::{JobError, Jobs};
use crate::pb;
use crate::store::{ExportFilter, JobRecord};

/// Rows read at once.
const PAGE: u32 = 2_000;

/// The tenure buckets, as the contract bounds them, and a label for each.
const TENURE: [(u32, Option<u32>, &str); 5] = [
    (0, Some(3), "0–3 months"),
    (3, Some(6), "3–6 months"),
    (6, Some(12), "6–12 months"),
    (12, Some(24), "12–24 months"),
    (24, None, "24 months or more"),
];

/// Counts of the rows' answers.
#[derive(Default)]
struct Counts {
    /// The five buckets, then abnormal, then not found.
    tenure: [i64; TENURE.len() + 2],
    /// By `ReassignedStatus` value (1..=5).
    reassigned: [i64; 6],
    /// Current carriers: (name, rows), in order of first appearance.
    carriers: Vec<(String, i64)>,
    ported: i64,
    mvno: i64,
}

impl Counts {
    fn add(&mut self, report: &pb::NumberReport) {
        if let Some(t) = &report.tenure {
            let slot = match t.status() {
                pb::TenureStatus::Known => TENURE.iter().position(|(lower, upper, _)| {
                    *lower == t.lower_months && *upper == t.upper_months
                }),
                pb::TenureStatus::Abnormal => Some(TENURE.len()),
                pb::TenureStatus::NotFound => Some(TENURE.len() + 1),
                pb::TenureStatus::Unspecified => None,
            };
            if let Some(slot) = slot {
                self.tenure[slot] += 1;
            }
        }
        if let Some(r) = &report.reassigned
            && let Some(n) = usize::try_from(r.status)
                .ok()
                .and_then(|i| self.reassigned.get_mut(i))
        {
            *n += 1;
        }
        if let Some(c) = &report.current_carrier {
            let name = c
                .carrier
                .as_ref()
                .map(|c| c.local_name.clone())
                .unwrap_or_else(|| c.raw_code.clone());
            match self.carriers.iter_mut().find(|(n, _)| *n == name) {
                Some((_, n)) => *n += 1,
                None => self.carriers.push((name, 1)),
            }
            self.ported += i64::from(c.ported);
            self.mvno += i64::from(!c.mvno.is_empty());
        }
    }

    fn charts(&self, checks: &[i32]) -> Vec<(&'static str, Chart)> {
        let has = |c: pb::Check| checks.contains(&(c as i32));
        let mut charts = Vec::new();
        if has(pb::Check::Tenure) {
            let labels = TENURE
                .iter()
                .map(|(_, _, label)| *label)
                .chain(["abnormal number", "no record (not billed)"]);
            let items: Vec<(String, i64, &'static str)> = labels
                .zip(self.tenure)
                .map(|(label, n)| (label.to_owned(), n, "#00838f"))
                .collect();
            charts.push(("Tenure 在网时长 (rows)", chart(&items)));
        }
        if has(pb::Check::Reassigned) {
            let items: Vec<(String, i64, &'static str)> = [
                (pb::ReassignedStatus::Recycled, "recycled 二次号", "#c62828"),
                (
                    pb::ReassignedStatus::Transferred,
                    "transferred 过户",
                    "#ef6c00",
                ),
                (
                    pb::ReassignedStatus::Deactivated,
                    "deactivated 销号",
                    "#6d4c41",
                ),
                (
                    pb::ReassignedStatus::NotRecycled,
                    "not recycled 非二次号",
                    "#2e7d32",
                ),
                (
                    pb::ReassignedStatus::Unknown,
                    "cannot tell (not billed)",
                    "#546e7a",
                ),
            ]
            .into_iter()
            .map(|(s, label, colour)| (label.to_owned(), self.reassigned[s as usize], colour))
            .collect();
            charts.push(("Reassigned 二次号 (rows)", chart(&items)));
        }
        if has(pb::Check::CurrentCarrier) {
            let mut items: Vec<(String, i64, &'static str)> = self
                .carriers
                .iter()
                .map(|(name, n)| (name.clone(), *n, "#1565c0"))
                .collect();
            items.push((
                "of which ported 携号转网".to_owned(),
                self.ported,
                "#ad1457",
            ));
            items.push(("of which MVNO 虚拟运营商".to_owned(), self.mvno, "#5e35b1"));
            charts.push(("Current carrier 当前运营商 (rows)", chart(&items)));
        }
        charts
    }
}

/// The charts of the job's tenure, reassigned and current-carrier answers, for the checks it
/// asked; none when it asked none of them (and then no row is read).
pub(super) async fn charts(
    jobs: &Jobs,
    job: &JobRecord,
    checks: &[i32],
) -> Result<Vec<(&'static str, Chart)>, JobError> {
    let wanted = [
        pb::Check::Tenure,
        pb::Check::Reassigned,
        pb::Check::CurrentCarrier,
    ];
    if !wanted.iter().any(|c| checks.contains(&(*c as i32))) {
        return Ok(Vec::new());
    }
    let mut counts = Counts::default();
    let mut after = -1;
    loop {
        let rows = jobs
            .store()
            .export_rows(&job.job.id, ExportFilter::default(), after, PAGE)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for row in &rows {
            if let Some(report) = row
                .report
                .as_deref()
                .and_then(|b| pb::NumberReport::decode(b).ok())
            {
                counts.add(&report);
            }
        }
    }
    Ok(counts.charts(checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_into_buckets() {
        let mut counts = Counts::default();
        let tenure = |lower, upper| pb::NumberReport {
            tenure: Some(pb::TenureResult {
                status: pb::TenureStatus::Known as i32,
                lower_months: lower,
                upper_months: upper,
                ..Default::default()
            }),
            ..Default::default()
        };
        counts.add(&tenure(3, Some(6)));
        counts.add(&tenure(24, None));
        counts.add(&tenure(24, None));
        counts.add(&pb::NumberReport {
            reassigned: Some(pb::ReassignedResult {
                status: pb::ReassignedStatus::Recycled as i32,
                ..Default::default()
            }),
            current_carrier: Some(pb::CurrentCarrierResult {
                raw_code: "中国联通".into(),
                ported: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(counts.tenure, [0, 1, 0, 0, 2, 0, 0]);
        assert_eq!(
            counts.reassigned[pb::ReassignedStatus::Recycled as usize],
            1
        );
        assert_eq!(
            (counts.carriers.clone(), counts.ported),
            (vec![("中国联通".to_owned(), 1)], 1)
        );
        let all = [5, 6, 7];
        assert_eq!(counts.charts(&all).len(), 3);
        assert!(counts.charts(&[1]).is_empty());
    }
}

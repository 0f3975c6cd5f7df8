//! caih 号码标记监测: spam labels from caller-ID apps, asynchronously. Numbers are first added to
//! monitoring (`sign_add`), the vendor labels them in an hourly run, then they are queried
//! (`sign_search`). Wire contract: docs/providers.md §2.
//!
//! A lookup of a number not yet submitted claims it in the [`PendingStore`] (atomically, so
//! concurrent lookups submit it once), adds it, and answers pending. A later lookup queries by
//! number: labels when the vendor is done, pending while it says `查询中`; a number the vendor no
//! longer knows is submitted again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::{Check, CheckData, LabelSource, NumberInfo, NumberType, SpamLabel, SpamLabels};
use crate::providers::{
    Answer, Clock, CodeClass, ErrorReason, Provider, ProviderError, ProviderInfo, Query, Setup,
    http_or, send,
};
use crate::store::{Claim, PendingStore};

pub mod sim;
mod vendor;

pub use vendor::{
    CaihSettings, SANDBOX_APP_ID, SANDBOX_SECRET_KEY, SANDBOX_USER_KEY, VENDOR, sign,
};

/// The vendor's production base URL (test host: `https://test.callas2.caih.com`).
pub const DEFAULT_BASE_URL: &str = "https://api.caih.com";
/// Adds numbers to monitoring. **Decision**: path not published; named like the query's.
pub const ADD_PATH: &str = "/verify/api/sign_add";
/// Queries labels.
pub const SEARCH_PATH: &str = "/verify/api/sign_search";
/// At most this many numbers per call.
pub const BATCH_SIZE: usize = 10_000;
/// The item status the vendor gives while it is still labelling.
pub const STILL_RUNNING: &str = "查询中";
/// A claim whose submission never completed (the process died mid-call) is retried after this.
const STALE_CLAIM: Duration = Duration::from_secs(300);

#[derive(Serialize)]
struct AuthInfo<'a> {
    userkey: &'a str,
    appid: &'a str,
    timestamp: &'a str,
    sign: &'a str,
}

#[derive(Serialize)]
struct Request<'a, P> {
    authinfo: AuthInfo<'a>,
    param: P,
}

#[derive(Serialize)]
struct TelsParam {
    tels: String,
}

/// The unified envelope. **Decision** (not published): `code` `"0000"` is success.
#[derive(Deserialize)]
struct Envelope<D> {
    code: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    charge: bool,
    data: Option<D>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddData {
    state: String,
    #[serde(default)]
    desc: String,
    batch_unique_id: Option<String>,
}

/// `data` of `sign_search`.
#[derive(Deserialize)]
pub struct SearchData {
    state: String,
    #[serde(default)]
    desc: String,
    #[serde(default)]
    items: Vec<Item>,
}

/// One number in a `sign_search` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The number as added.
    pub phone: String,
    /// `查询中` while running.
    #[serde(default)]
    pub status: String,
    #[serde(flatten)]
    fields: HashMap<String, serde_json::Value>,
}

/// The labelling sources, by the vendor's field prefix.
const SOURCES: &[(&str, LabelSource)] = &[
    ("securityGuard", LabelSource::Qihoo360),
    ("mobileHousekeeper", LabelSource::Tencent),
    ("mobileGuard", LabelSource::Baidu),
    ("numberLink", LabelSource::Sogou),
    ("telephoneBond", LabelSource::Dianhuabang),
    ("other", LabelSource::Teddy),
];

impl Item {
    fn field(&self, name: &str) -> Option<String> {
        let text = match self.fields.get(name)? {
            serde_json::Value::String(s) => s.trim().to_owned(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        (!text.is_empty() && text != "--").then_some(text)
    }

    /// Whether the vendor is still labelling this number.
    pub fn running(&self) -> bool {
        self.status == STILL_RUNNING
    }

    /// The labels; a source whose triple is all `--` did not label the number.
    pub fn labels(&self) -> SpamLabels {
        let labels = SOURCES
            .iter()
            .filter_map(|&(prefix, source)| {
                let label = self.field(&format!("{prefix}Name"));
                let count = self.field(&format!("{prefix}Times"));
                let display_name = self.field(&format!("{prefix}ShowName"));
                if label.is_none() && count.is_none() && display_name.is_none() {
                    return None;
                }
                Some(SpamLabel {
                    source,
                    label: label.unwrap_or_default(),
                    count: count.and_then(|c| c.parse().ok()).unwrap_or(0),
                    display_name: display_name.unwrap_or_default(),
                })
            })
            .collect();
        SpamLabels { labels }
    }
}

/// How each envelope `code` is treated. **Decision**: the vendor publishes no codes but success;
/// these are the ones its simulator uses, kept here in one place.
pub fn classify_code(code: &str) -> CodeClass {
    let (reason, retryable) = match code {
        "1001" | "1002" => (ErrorReason::AuthFailed, false),
        "2001" | "2002" => (ErrorReason::QuotaExhausted, false),
        "1006" => (ErrorReason::RateLimited, true),
        "9999" => (ErrorReason::Unavailable, true),
        // 1003 expired timestamp (fix the clock), 1004 parameters, 1005 too many numbers.
        _ => (ErrorReason::Rejected, false),
    };
    CodeClass {
        reason,
        retryable,
        billable: false,
    }
}

fn decode_envelope<D: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<(D, bool), ProviderError> {
    let envelope: Envelope<D> = serde_json::from_slice(body)
        .map_err(|e| ProviderError::BadResponse(format!("not a caih answer: {e}")))?;
    if envelope.code != "0000" {
        return Err(ProviderError::Vendor {
            class: classify_code(&envelope.code),
            code: envelope.code,
            message: envelope.msg,
        });
    }
    let data = envelope
        .data
        .ok_or_else(|| ProviderError::BadResponse("success without data".to_owned()))?;
    Ok((data, envelope.charge))
}

/// `data.state` `"0"`: the vendor failed the query (not billed); retrying later may work.
fn failed_state(desc: &str) -> ProviderError {
    ProviderError::Vendor {
        code: "state 0".to_owned(),
        message: desc.to_owned(),
        class: CodeClass {
            reason: ErrorReason::Rejected,
            retryable: true,
            billable: false,
        },
    }
}

/// Decodes a `sign_search` body into items and the envelope's charge flag.
pub fn decode_search(body: &[u8]) -> Result<(Vec<Item>, bool), ProviderError> {
    let (data, charge): (SearchData, bool) = decode_envelope(body)?;
    if data.state != "1" {
        return Err(failed_state(&data.desc));
    }
    Ok((data.items, charge))
}

/// The number as caih takes it, or `None` when caih does not accept its kind: mobiles (11
/// digits), fixed lines with area code, 95 (no area code), 96 (with area code), 400, 1010,
/// 116/118 and 1019 numbers.
pub fn caih_tel(info: &NumberInfo) -> Option<String> {
    if info.region_code != "CN" || !info.valid {
        return None;
    }
    let nsn = info.national_number.as_str();
    let len = nsn.len();
    let with_area = || format!("0{nsn}");
    match info.number_type {
        NumberType::Mobile | NumberType::DataCard | NumberType::Iot | NumberType::Satellite
            if len == 11 =>
        {
            Some(nsn.to_owned())
        }
        NumberType::FixedLine => Some(with_area()),
        NumberType::SharedCost if len == 10 => Some(nsn.to_owned()),
        NumberType::Service if nsn.starts_with("95") && len <= 17 => Some(nsn.to_owned()),
        // A 96 (or 95) number written after an area code is taken with it.
        NumberType::Service
            if !nsn.starts_with('9')
                && matches!(crate::number::cn::split_area(nsn), Some((_, sub)) if sub.starts_with("96") || sub.starts_with("95")) =>
        {
            Some(with_area())
        }
        NumberType::Service if nsn.starts_with("1010") && (8..=15).contains(&len) => {
            Some(nsn.to_owned())
        }
        NumberType::Service if nsn.starts_with("1019") => Some(nsn.to_owned()),
        NumberType::Service
            if (nsn.starts_with("116") || nsn.starts_with("118")) && (4..=23).contains(&len) =>
        {
            Some(nsn.to_owned())
        }
        _ => None,
    }
}

/// The caih client.
#[derive(Debug)]
pub struct CaihProvider {
    info: ProviderInfo,
    http: reqwest::Client,
    add_url: reqwest::Url,
    search_url: reqwest::Url,
    user_key: String,
    app_id: String,
    secret_key: SecretString,
    clock: Arc<dyn Clock>,
    pending: Arc<dyn PendingStore>,
}

impl CaihProvider {
    /// Builds the client from its settings and its (resolved) secret key.
    pub fn new(
        setup: Setup<'_>,
        settings: &CaihSettings,
        secret_key: SecretString,
    ) -> Result<Self, String> {
        Ok(CaihProvider {
            add_url: setup.endpoint(ADD_PATH)?,
            search_url: setup.endpoint(SEARCH_PATH)?,
            http: setup.ctx.http.clone(),
            clock: setup.ctx.clock.clone(),
            pending: setup.ctx.pending.clone(),
            info: setup.info,
            user_key: settings.user_key.clone(),
            app_id: settings.app_id.clone(),
            secret_key,
        })
    }

    async fn post<P: Serialize>(
        &self,
        url: &reqwest::Url,
        param: P,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), ProviderError> {
        let timestamp = self.clock.now_china().format("%Y%m%d%H%M%S").to_string();
        let sign = sign(
            self.secret_key.expose_secret(),
            &self.user_key,
            &self.app_id,
            &timestamp,
        );
        let body = Request {
            authinfo: AuthInfo {
                userkey: &self.user_key,
                appid: &self.app_id,
                timestamp: &timestamp,
                sign: &sign,
            },
            param,
        };
        send(self.http.post(url.clone()).json(&body)).await
    }

    /// Adds numbers to monitoring; returns the batch id and whether the vendor charged.
    async fn add(&self, tels: &[String]) -> Result<(String, bool), ProviderError> {
        let (status, body) = self
            .post(
                &self.add_url,
                TelsParam {
                    tels: tels.join(","),
                },
            )
            .await?;
        let (data, charge): (AddData, bool) = http_or(status, decode_envelope(&body))?;
        if data.state != "1" {
            return Err(failed_state(&data.desc));
        }
        let batch = data
            .batch_unique_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                ProviderError::BadResponse("sign_add answered no batchUniqueId".to_owned())
            })?;
        Ok((batch, charge))
    }

    async fn search(&self, tels: &[String]) -> Result<(Vec<Item>, bool), ProviderError> {
        let (status, body) = self
            .post(
                &self.search_url,
                TelsParam {
                    tels: tels.join(","),
                },
            )
            .await?;
        http_or(status, decode_search(&body))
    }

    async fn release(&self, tels: Vec<String>) {
        if let Err(e) = self.pending.release(&self.info.name, &tels).await {
            tracing::warn!(provider = %self.info.name, error = %e, "could not forget pending numbers");
        }
    }
}

fn store_error(e: crate::store::StoreError) -> ProviderError {
    ProviderError::State(e.to_string())
}

#[async_trait]
impl Provider for CaihProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn covers(&self, number: &NumberInfo) -> Result<(), String> {
        caih_tel(number).map(|_| ()).ok_or_else(|| {
            "caih labels Chinese mobiles, fixed lines and 95/96/400/1010/116/118/1019 numbers only".to_owned()
        })
    }

    async fn call(&self, _check: Check, batch: &[Query]) -> Vec<Result<Answer, ProviderError>> {
        let name = &self.info.name;
        let tels: Vec<String> = batch
            .iter()
            .map(|q| caih_tel(&q.number).unwrap_or_default())
            .collect();
        // What the pending store knows a submission by: the number, and with tenants kept apart
        // (`cache.share = "tenant"`) whose it is, so that a tenant neither sees nor pays for
        // another's submission.
        let keys: Vec<String> = batch
            .iter()
            .zip(&tels)
            .map(|(query, tel)| match &query.scope {
                Some(tenant) => format!("{tel}\u{0}{tenant}"),
                None => tel.clone(),
            })
            .collect();
        let mut results: Vec<Option<Result<Answer, ProviderError>>> = vec![None; batch.len()];
        let mut to_query = Vec::new();
        let mut to_submit = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match self.pending.claim(name, key, STALE_CLAIM).await {
                Ok(Claim::Claimed) => to_submit.push(i),
                Ok(Claim::Pending(p)) if p.batch_id.is_some() => to_query.push(i),
                // Another lookup is submitting it right now.
                Ok(Claim::Pending(_)) => results[i] = Some(Ok(Answer::Pending { billable: false })),
                Err(e) => results[i] = Some(Err(store_error(e))),
            }
        }

        if !to_query.is_empty() {
            let asked: Vec<String> = to_query.iter().map(|&i| tels[i].clone()).collect();
            match self.search(&asked).await {
                Ok((items, charge)) => {
                    // The newest finished item wins over a running one.
                    let mut by_tel: HashMap<&str, &Item> = HashMap::new();
                    for item in &items {
                        let keep = by_tel
                            .get(item.phone.as_str())
                            .is_none_or(|seen| seen.running());
                        if keep {
                            by_tel.insert(&item.phone, item);
                        }
                    }
                    let mut collected = Vec::new();
                    for &i in &to_query {
                        match by_tel.get(tels[i].as_str()) {
                            Some(item) if item.running() => {
                                results[i] = Some(Ok(Answer::Pending { billable: false }))
                            }
                            Some(item) => {
                                results[i] = Some(Ok(Answer::Ready {
                                    data: CheckData::SpamLabels(item.labels()),
                                    billable: charge,
                                }));
                                collected.push(keys[i].clone());
                            }
                            // The vendor no longer knows the number: submit it again.
                            None => to_submit.push(i),
                        }
                    }
                    self.release(collected).await;
                }
                Err(e) => {
                    for &i in &to_query {
                        results[i] = Some(Err(e.clone()));
                    }
                }
            }
        }

        if !to_submit.is_empty() {
            let submit: Vec<String> = to_submit.iter().map(|&i| tels[i].clone()).collect();
            let submitted: Vec<String> = to_submit.iter().map(|&i| keys[i].clone()).collect();
            match self.add(&submit).await {
                Ok((batch_id, charge)) => {
                    let recorded = self.pending.submitted(name, &submitted, &batch_id).await;
                    for (n, &i) in to_submit.iter().enumerate() {
                        // Only the first number carries the submission's charge, once.
                        let billable = charge && n == 0;
                        results[i] = Some(match &recorded {
                            Ok(()) => Ok(Answer::Pending { billable }),
                            // The vendor has it and bills it: the charge is not lost from the
                            // ledger and budgets, though phonecheck will submit it again.
                            Err(e) if billable => Err(ProviderError::Unrecorded(e.to_string())),
                            Err(e) => Err(ProviderError::State(e.to_string())),
                        });
                    }
                }
                Err(e) => {
                    self.release(submitted).await;
                    for &i in &to_submit {
                        results[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ProviderError::BadResponse(
                        "number left unanswered".to_owned(),
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

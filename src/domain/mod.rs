//! The vocabulary every layer shares: checks, line statuses, number facts, per-check outcomes and
//! reports. Nothing here knows about protobuf or HTTP.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod failure;
mod money;

pub use failure::{CodeClass, ErrorReason, ProviderError};
pub use money::{BillingConfig, Currency, MAX_AMOUNT_UNITS, Money, MoneyError};

mod check;
mod ownership;

pub use check::{CHECKS, Check, CheckSpec, PerCheck};
pub use ownership::{
    CurrentCarrierResult, Reassigned, ReassignedResult, RegisteredAtError, TenureResult,
    TenureStatus, registered_at,
};

/// The canonical line status (see docs/providers.md, "The canonical line-status taxonomy").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LineStatus {
    /// In use.
    Active,
    /// Never assigned or cancelled.
    Empty,
    /// Stopped by the operator.
    Suspended,
    /// Assigned but long unused.
    Silent,
    /// Complaint-prone, long powered off, or rejecting SMS.
    Risk,
    /// Switched off or unreachable.
    PoweredOff,
    /// The source has no data.
    NoRecord,
    /// Not a valid number; decided locally.
    Invalid,
}

impl LineStatus {
    /// Reads a vendor's status words (Chinese or English) as a canonical status, for vendors whose
    /// codes are unknown but whose descriptions use the usual words.
    pub fn from_vendor_words(words: &str) -> Option<LineStatus> {
        const TABLE: &[(&str, LineStatus)] = &[
            ("沉默", LineStatus::Silent),
            ("风险", LineStatus::Risk),
            ("停机", LineStatus::Suspended),
            ("关机", LineStatus::PoweredOff),
            ("库无", LineStatus::NoRecord),
            ("号码错误", LineStatus::Invalid),
            ("空号", LineStatus::Empty),
            ("销号", LineStatus::Empty),
            ("实号", LineStatus::Active),
            ("活跃", LineStatus::Active),
            ("正常", LineStatus::Active),
            ("SHUTDOWN", LineStatus::Suspended),
            ("POWER_OFF", LineStatus::PoweredOff),
            ("NOT_EXIST", LineStatus::Empty),
            ("UNKNOWN", LineStatus::NoRecord),
            ("NORMAL", LineStatus::Active),
            ("LIVE", LineStatus::Active),
            ("BUSY", LineStatus::Active),
        ];
        let upper = words.trim().to_uppercase();
        TABLE
            .iter()
            .find(|(word, _)| upper.contains(word))
            .map(|&(_, status)| status)
    }
}

/// A line-status answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LineStatusResult {
    /// The canonical status.
    pub status: LineStatus,
    /// The vendor's code, as sent.
    pub raw_code: String,
    /// The vendor's description, as sent.
    pub description: String,
    /// The carrier serving the number now, when the vendor reports it (Aliyun does; Thinksms
    /// does not). Answers stored before this field existed read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_carrier: Option<CurrentCarrier>,
    /// True when the number was ported (携号转网): `current_carrier` differs from the carrier of
    /// its segment. False when they agree or either is unknown.
    #[serde(default)]
    pub ported: bool,
}

impl LineStatusResult {
    /// A status with the vendor's code and text, and no carrier information.
    pub fn new(
        status: LineStatus,
        raw_code: impl Into<String>,
        description: impl Into<String>,
    ) -> LineStatusResult {
        LineStatusResult {
            status,
            raw_code: raw_code.into(),
            description: description.into(),
            current_carrier: None,
            ported: false,
        }
    }
}

/// The carrier a vendor says serves a number now, after any porting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CurrentCarrier {
    /// The vendor's code, as sent (Aliyun: `CMCC`, `CUCC`, `CTCC`, `CBN`).
    pub code: String,
    /// English name (`China Mobile`); empty for a code phonecheck does not know.
    pub name: String,
    /// Local name (`中国移动`); empty for a code phonecheck does not know.
    pub local_name: String,
}

/// What kind of line a number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberType {
    Mobile,
    FixedLine,
    TollFree,
    SharedCost,
    Service,
    Emergency,
    SmsPort,
    DataCard,
    Iot,
    Voip,
    Satellite,
    Unknown,
    PremiumRate,
    PersonalNumber,
    Pager,
    Uan,
    Voicemail,
    FixedLineOrMobile,
}

/// What kind of network a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkType {
    Basic,
    Virtual,
    Data,
    Iot,
    Satellite,
    Fixed,
}

/// A carrier by number segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Carrier {
    /// English name.
    pub name: &'static str,
    /// Local name.
    pub local_name: &'static str,
    /// The segment's network type.
    pub network_type: NetworkType,
    /// The host network of a virtual operator's segment.
    pub host_network: Option<&'static str>,
    /// True when the number may have been ported since allocation.
    pub may_be_ported: bool,
}

/// Where a number is registered.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// Province.
    pub province: Arc<str>,
    /// City.
    pub city: Arc<str>,
    /// Area code with trunk prefix (`010`).
    pub area_code: Arc<str>,
}

/// The offline analysis of one number.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberInfo {
    /// As the caller wrote it.
    pub input: String,
    /// E.164, empty when unknown.
    pub e164: String,
    /// ISO 3166-1 alpha-2 region.
    pub region_code: String,
    /// National significant number.
    pub national_number: String,
    /// Number type.
    pub number_type: NumberType,
    /// Whether the number is assigned in its plan.
    pub valid: bool,
    /// Carrier by segment.
    pub carrier: Option<Carrier>,
    /// Home location.
    pub location: Option<Location>,
    /// Version of the offline data used.
    pub data_version: Arc<str>,
}

/// A caller-ID app that labels numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LabelSource {
    /// 360 手机卫士.
    Qihoo360,
    /// Tencent 手机管家.
    Tencent,
    /// Baidu 手机卫士.
    Baidu,
    /// Sogou 号码通.
    Sogou,
    /// 电话邦.
    Dianhuabang,
    /// 泰迪熊.
    Teddy,
}

/// One source's label.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpamLabel {
    /// The app.
    pub source: LabelSource,
    /// The label.
    pub label: String,
    /// How many users applied it; zero when unknown.
    pub count: i64,
    /// The name shown to called users.
    pub display_name: String,
}

/// Spam labels of a number; empty when no source labelled it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SpamLabels {
    /// One per labelling source.
    pub labels: Vec<SpamLabel>,
}

/// A three-valued activity answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activity {
    /// In use.
    Active,
    /// Not in use.
    Inactive,
    /// Not known.
    Unknown,
}

/// A three-valued registration answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Presence {
    /// An account exists.
    Registered,
    /// No account exists.
    NotRegistered,
    /// Not known.
    Unknown,
}

/// A platform profile; personal data, returned only to callers who ask and may see it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct AccountProfile {
    /// Display name.
    pub account_name: Option<String>,
    /// Full name.
    pub full_name: Option<String>,
    /// Photo URL.
    pub profile_photo: Option<String>,
    /// Last seen.
    pub last_seen: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// State.
    pub state: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Account id.
    pub account_id: Option<String>,
    /// Language.
    pub language: Option<String>,
    /// Gender.
    pub gender: Option<String>,
    /// Age.
    pub age: Option<String>,
    /// Biography.
    pub bio: Option<String>,
    /// About text.
    pub about: Option<String>,
    /// Handle.
    pub handle: Option<String>,
}

impl AccountProfile {
    /// True when no field is known.
    pub fn is_empty(&self) -> bool {
        *self == AccountProfile::default()
    }
}

/// Registration on one platform.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// The platform, lower case.
    pub platform: String,
    /// Whether an account exists.
    pub registered: Presence,
    /// The profile, when the vendor sent one.
    pub profile: Option<AccountProfile>,
}

/// How often a vendor has been asked about a number.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryHistory {
    /// Times queried.
    pub hits: i64,
    /// Distinct customers that queried it.
    pub customer_hits: i64,
    /// First query.
    pub first_seen: Option<SystemTime>,
    /// Last query.
    pub last_seen: Option<SystemTime>,
}

/// Social-account presence and KYC signals.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AccountPresence {
    /// Whether the vendor considers the number valid.
    pub valid: bool,
    /// Whether it is in use.
    pub active: Activity,
    /// Fraud likelihood 0..=999.
    pub fraud_score: Option<i32>,
    /// Carrier as the vendor names it.
    pub carrier: String,
    /// Line type, lower case.
    pub line_type: String,
    /// Per-platform registration.
    pub registrations: Vec<Registration>,
    /// Platforms registered, as the vendor counts.
    pub total_registered: i32,
    /// Query history.
    pub history: Option<QueryHistory>,
}

impl AccountPresence {
    /// Drops every platform profile (personal data the caller did not ask for).
    pub fn without_profiles(mut self) -> AccountPresence {
        for r in &mut self.registrations {
            r.profile = None;
        }
        self
    }
}

/// Severity of a risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RiskLevel {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// One risk.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Risk {
    /// Severity.
    pub level: RiskLevel,
    /// The vendor's risk type code.
    pub risk_type: i32,
    /// Confidence 0..=1.
    pub score: f64,
}

impl Risk {
    /// The short English name of the risk type, for the codes the contract documents (the risk
    /// vendor's: 14001..14004); empty for any other code, which is kept as sent.
    pub fn type_name(&self) -> &'static str {
        match self.risk_type {
            14001 => "malicious traffic diversion",
            14002 => "fraud by a real person",
            14003 => "fake registration",
            14004 => "pornographic or vulgar",
            _ => "",
        }
    }
}

/// The under-18 guess.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Under18 {
    /// Whether the owner is thought to be under 18.
    pub is_under18: bool,
    /// Confidence 0..=1.
    pub confidence: f64,
}

/// Where a risk vendor places a number.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RiskLocation {
    /// Carrier.
    pub carrier: String,
    /// Province.
    pub province: String,
    /// City.
    pub city: String,
}

/// A risk profile.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RiskProfile {
    /// Risks found.
    pub risks: Vec<Risk>,
    /// Under-18 guess.
    pub under18: Option<Under18>,
    /// Location.
    pub location: Option<RiskLocation>,
}

/// The answer of one check.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum CheckData {
    /// A line-status answer.
    LineStatus(LineStatusResult),
    /// Spam labels.
    SpamLabels(SpamLabels),
    /// Account presence.
    AccountPresence(AccountPresence),
    /// Risk profile.
    RiskProfile(RiskProfile),
    /// Tenure on the network.
    Tenure(TenureResult),
    /// Whether the number changed owner.
    Reassigned(ReassignedResult),
    /// The carrier serving the number now.
    CurrentCarrier(CurrentCarrierResult),
}

/// A request's per-request inputs of checks: identity data for KYC checks (account presence) and
/// the registration time of the reassigned check. They travel with the query and are part of the
/// identity of a cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize)]
pub struct KycInput {
    /// Document type, in the vendor vocabulary (`identity_card`, `passport`, ...).
    pub id_type: Option<&'static str>,
    /// Document number.
    pub id_number: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// When the user registered the number with the caller, in seconds since the Unix epoch
    /// (the reassigned check). Left out of the serialized form when absent, so that the identity
    /// of answers cached before it existed is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<i64>,
}

/// Options of a request that shape how checks run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckOptions {
    /// KYC inputs for account presence.
    pub kyc: Option<KycInput>,
    /// Whether platform profiles may be returned.
    pub include_profile_details: bool,
    /// Accept a cached answer only if younger than this; `None`: the check's TTL.
    pub max_cache_age: Option<Duration>,
}

impl CheckOptions {
    /// The inputs `check` is asked with: the registration time only for the checks that take it
    /// (the others' answers do not depend on it, so it must not split their cache entries).
    pub fn inputs_for(&self, check: Check) -> Option<KycInput> {
        let mut inputs = self.kyc.clone()?;
        if !check.spec().takes_registration_time {
            inputs.registered_at = None;
        }
        (inputs != KycInput::default()).then_some(inputs)
    }

    /// The registration time, when given.
    pub fn registered_at(&self) -> Option<i64> {
        self.kyc.as_ref().and_then(|k| k.registered_at)
    }

    /// These options with `at` (Unix seconds) as the registration time, when there is one: a
    /// job's row that carries its own time is asked with it instead of the job's.
    pub fn with_registered_at(&self, at: Option<i64>) -> CheckOptions {
        let mut options = self.clone();
        if let Some(at) = at {
            options.kyc.get_or_insert_default().registered_at = Some(at);
        }
        options
    }
}

/// Why a check was not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The number is not valid, so no vendor is asked.
    NumberInvalid,
    /// No configured provider serves this check.
    NoProvider,
    /// The provider does not serve this number (for example its country).
    NotCovered(String),
}

/// What happened to one check.
#[derive(Debug, Clone)]
pub enum CheckState {
    /// Answered.
    Ok(CheckData),
    /// The provider failed.
    Failed(ProviderError),
    /// Accepted by an asynchronous vendor; ask again later.
    Pending,
    /// Not run.
    Skipped(SkipReason),
}

/// The outcome of one check for one number.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The check.
    pub check: Check,
    /// The provider's configured name, or `local`.
    pub provider: Arc<str>,
    /// What happened.
    pub state: CheckState,
    /// Whether the vendor bills for the call behind this outcome.
    pub billable: bool,
    /// What the vendor bills for it: the provider's price for the check when `billable`, else
    /// nothing.
    pub cost: Money,
    /// Whether the answer was another caller's vendor call, shared (single-flight): not billed
    /// to this caller.
    pub joined: bool,
    /// Whether the answer came from the cache.
    pub cached: bool,
    /// Time spent.
    pub latency: Duration,
    /// When the answer was fetched from the vendor.
    pub fetched_at: Option<SystemTime>,
    /// Whether the answer came from a simulator.
    pub sandbox: bool,
    /// The providers of the route tried before `provider`, in order, and why each failed.
    pub attempts: Vec<Attempt>,
}

/// A provider of a route that was tried for a check and failed in a way that passed the number
/// on to the next one (failover). Never billed.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The provider's configured name.
    pub provider: Arc<str>,
    /// Why it failed.
    pub error: ProviderError,
    /// Time it took.
    pub latency: Duration,
}

/// Everything known about one number.
#[derive(Debug, Clone)]
pub struct Report {
    /// Offline analysis.
    pub info: NumberInfo,
    /// One outcome per check asked, in the order asked.
    pub outcomes: Vec<CheckOutcome>,
}

impl Report {
    /// True when any answer came from a simulator.
    pub fn sandbox(&self) -> bool {
        self.outcomes.iter().any(|o| o.sandbox)
    }
}

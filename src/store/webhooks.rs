//! The webhook outbox: an event for each state change of a job that its tenant subscribed to,
//! written by [`JobStore::transition`](super::JobStore::transition) in the transaction of the change
//! (so that no change is lost and none is told that did not happen), then delivered by claiming it
//! under a lease (so that, of several replicas, one sends it), in order per job.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::Deserialize;

use super::{JobState, StoreError};
use crate::domain::Money;

/// What happened to a job; the values are `phonecheck.v1.JobEventType`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A dry run was estimated.
    Estimated = 1,
    /// Every number has its result.
    Finished = 2,
    /// Stopped by an error of phonecheck's own.
    Failed = 3,
    /// Cancelled by a client.
    Cancelled = 4,
    /// Held at the tenant's daily budget or at the job's `max_cost`.
    Paused = 5,
}

impl EventKind {
    /// Every kind, in the contract's order.
    pub const ALL: [EventKind; 5] = [
        EventKind::Estimated,
        EventKind::Finished,
        EventKind::Failed,
        EventKind::Cancelled,
        EventKind::Paused,
    ];

    /// The event a move to `to` makes, if any.
    pub fn of(to: JobState) -> Option<EventKind> {
        match to {
            JobState::Estimated => Some(EventKind::Estimated),
            JobState::Succeeded => Some(EventKind::Finished),
            JobState::Failed => Some(EventKind::Failed),
            JobState::Cancelled => Some(EventKind::Cancelled),
            JobState::Paused | JobState::CostPaused => Some(EventKind::Paused),
            JobState::Importing | JobState::Queued | JobState::Running => None,
        }
    }

    /// From the stored value.
    pub fn from_i64(v: i64) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| *k as i64 == v)
    }

    /// The name in the configuration and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Estimated => "estimated",
            EventKind::Finished => "finished",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
            EventKind::Paused => "paused",
        }
    }
}

/// Which tenants want which events; the store writes only those to the outbox.
#[derive(Debug, Clone, Default)]
pub struct Subscriptions(HashMap<String, HashSet<EventKind>>);

impl Subscriptions {
    /// Tenants with the events each wants.
    pub fn new(tenants: impl IntoIterator<Item = (String, Vec<EventKind>)>) -> Subscriptions {
        Subscriptions(
            tenants
                .into_iter()
                .map(|(tenant, kinds)| (tenant, kinds.into_iter().collect()))
                .collect(),
        )
    }

    /// True when no tenant wants any event.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(HashSet::is_empty)
    }

    /// Whether `tenant` wants `kind`.
    pub fn wants(&self, tenant: &str, kind: EventKind) -> bool {
        self.0.get(tenant).is_some_and(|k| k.contains(&kind))
    }
}

/// Where an event is in its delivery (stored values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending = 0,
    /// The receiver answered 2xx.
    Delivered = 1,
    /// Not delivered within the maximum age.
    Failed = 2,
}

impl DeliveryStatus {
    /// From the stored value.
    pub fn from_i64(v: i64) -> DeliveryStatus {
        match v {
            1 => DeliveryStatus::Delivered,
            2 => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// A stored event with its delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// The event id (UUIDv7).
    pub id: String,
    /// The job's tenant.
    pub tenant: String,
    /// The job.
    pub job_id: String,
    /// Per job, from 1.
    pub seq: i64,
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub created_at: SystemTime,
    /// The job's state after the change.
    pub job_state: JobState,
    /// The job's counters at the change (`rate` and `line_status_rows` are not kept).
    pub counts: super::JobCounts,
    /// The job's limit at the change.
    pub max_cost: Option<Money>,
    /// The job's error at the change: why it failed or is paused.
    pub reason: String,
    /// Where its delivery is.
    pub status: DeliveryStatus,
    /// Attempts made (since the last re-send).
    pub attempts: u32,
    /// From when its maximum age counts.
    pub since: SystemTime,
    /// When its next attempt is due.
    pub next_at: SystemTime,
    /// When it was delivered.
    pub delivered_at: Option<SystemTime>,
    /// The HTTP status of the last answer (0: none).
    pub last_http: u16,
    /// What went wrong at the last failed attempt.
    pub last_error: String,
}

/// The outcome of one delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Delivered: the receiver answered 2xx with this status.
    Delivered {
        /// The HTTP status.
        http: u16,
    },
    /// Not delivered; tried again at `next_at`.
    Retry {
        /// When.
        next_at: SystemTime,
        /// The HTTP status (0: none).
        http: u16,
        /// What went wrong.
        error: String,
    },
    /// Not delivered, and no more attempts: the event is older than its maximum age.
    Failed {
        /// The HTTP status (0: none).
        http: u16,
        /// What went wrong.
        error: String,
    },
}

/// The webhook outbox.
#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug + 'static {
    /// Claims up to `limit` pending events due at `now` for `owner` until `until`: each the first
    /// pending event of its job, not under another live lease. Of replicas claiming at once, one
    /// gets each event.
    async fn claim_events(
        &self,
        owner: &str,
        now: SystemTime,
        until: SystemTime,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError>;
    /// Records an attempt of a claimed event and gives up the lease; false when the event was not
    /// `owner`'s any more (its lease lapsed and another took it, or it was re-sent).
    async fn record_attempt(
        &self,
        id: &str,
        owner: &str,
        attempt: &Attempt,
        now: SystemTime,
    ) -> Result<bool, StoreError>;
    /// A tenant's events, newest first, of one job when given, after the `(created_at, id)`
    /// cursor.
    async fn list_events(
        &self,
        tenant: &str,
        job_id: Option<&str>,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError>;
    /// Makes a tenant's event pending again, due at `now`, its maximum age counted from `now`.
    /// None: the tenant has no such event.
    async fn resend_event(
        &self,
        tenant: &str,
        id: &str,
        now: SystemTime,
    ) -> Result<Option<OutboxEvent>, StoreError>;
    /// Removes delivered and failed events whose age counts from before `before`.
    async fn prune_events(&self, before: SystemTime) -> Result<u64, StoreError>;
    /// Events waiting for delivery.
    async fn pending_events(&self) -> Result<i64, StoreError>;
}

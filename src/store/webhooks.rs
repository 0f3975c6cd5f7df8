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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{JobStore, NewJob, SqliteStore};

    fn job(id: &str, tenant: &str) -> NewJob {
        NewJob {
            id: id.into(),
            tenant: tenant.into(),
            spec: Vec::new(),
            format: 1,
            encoding: "utf-8".into(),
            number_column: "column 1".into(),
            registered_at_column: String::new(),
            columns: Vec::new(),
            sheets: 0,
            created_at: SystemTime::now(),
            max_cost: None,
        }
    }

    async fn store() -> SqliteStore {
        let store = SqliteStore::in_memory()
            .await
            .unwrap()
            .with_webhooks(Subscriptions::new([
                ("acme".to_owned(), EventKind::ALL.to_vec()),
                ("quiet".to_owned(), vec![EventKind::Failed]),
            ]));
        for (id, tenant) in [
            ("j1", "acme"),
            ("j2", "acme"),
            ("j3", "quiet"),
            ("j4", "other"),
        ] {
            store.create_job(&job(id, tenant)).await.unwrap();
            store
                .finish_import(&job(id, tenant), JobState::Queued)
                .await
                .unwrap();
        }
        store
    }

    #[tokio::test]
    async fn a_state_change_writes_the_events_its_tenant_subscribed_to() {
        let store = store().await;
        let to = |id: &'static str, from: JobState, to: JobState| {
            let store = store.clone();
            async move { store.transition(id, &[from], to, "why").await.unwrap() }
        };
        assert!(to("j1", JobState::Queued, JobState::Cancelled).await);
        // Not a change (already cancelled): no event.
        assert!(!to("j1", JobState::Queued, JobState::Cancelled).await);
        assert!(to("j3", JobState::Queued, JobState::Cancelled).await);
        assert!(to("j4", JobState::Queued, JobState::Failed).await);
        assert!(to("j2", JobState::Queued, JobState::Running).await);
        assert!(to("j2", JobState::Running, JobState::CostPaused).await);
        let acme = store.list_events("acme", None, None, 10).await.unwrap();
        assert_eq!(acme.len(), 2, "{acme:?}");
        let paused = acme.iter().find(|e| e.job_id == "j2").unwrap();
        assert_eq!(paused.kind, EventKind::Paused);
        assert_eq!(paused.job_state, JobState::CostPaused);
        assert_eq!((paused.seq, paused.reason.as_str()), (1, "why"));
        assert_eq!(paused.status, DeliveryStatus::Pending);
        // `quiet` wants failures only; `other` has no webhook.
        assert!(
            store
                .list_events("quiet", None, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .list_events("other", None, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn events_are_claimed_by_one_owner_in_order_per_job() {
        let store = store().await;
        store
            .transition("j2", &[JobState::Queued], JobState::Running, "")
            .await
            .unwrap();
        store
            .transition("j2", &[JobState::Running], JobState::Paused, "budget")
            .await
            .unwrap();
        store
            .transition("j2", &[JobState::Paused], JobState::Cancelled, "")
            .await
            .unwrap();
        let now = SystemTime::now() + Duration::from_millis(5);
        let until = now + Duration::from_secs(30);
        let a = store.claim_events("a", now, until, 10).await.unwrap();
        // The second event of j2 waits for the first.
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].kind, a[0].seq), (EventKind::Paused, 1));
        assert!(
            store
                .claim_events("b", now, until, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // b cannot record a's attempt.
        let delivered = Attempt::Delivered { http: 204 };
        assert!(
            !store
                .record_attempt(&a[0].id, "b", &delivered, now)
                .await
                .unwrap()
        );
        let retry = Attempt::Retry {
            next_at: now + Duration::from_secs(60),
            http: 500,
            error: "HTTP 500".into(),
        };
        assert!(
            store
                .record_attempt(&a[0].id, "a", &retry, now)
                .await
                .unwrap()
        );
        // Not due yet, and its successor still waits.
        assert!(
            store
                .claim_events("b", now, until, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let later = now + Duration::from_secs(61);
        let b = store
            .claim_events("b", later, later + Duration::from_secs(30), 10)
            .await
            .unwrap();
        assert_eq!((b.len(), b[0].attempts, b[0].last_http), (1, 1, 500));
        assert!(
            store
                .record_attempt(&b[0].id, "b", &delivered, later)
                .await
                .unwrap()
        );
        let next = store
            .claim_events("b", later, later + Duration::from_secs(30), 10)
            .await
            .unwrap();
        assert_eq!((next[0].kind, next[0].seq), (EventKind::Cancelled, 2));
        // A lapsed lease is taken over.
        let lapsed = later + Duration::from_secs(31);
        let c = store
            .claim_events("c", lapsed, lapsed + Duration::from_secs(30), 10)
            .await
            .unwrap();
        assert_eq!(c[0].id, next[0].id);
        let failed = Attempt::Failed {
            http: 0,
            error: "timeout".into(),
        };
        assert!(
            store
                .record_attempt(&c[0].id, "c", &failed, lapsed)
                .await
                .unwrap()
        );
        let listed = store
            .list_events("acme", Some("j2"), None, 10)
            .await
            .unwrap();
        assert_eq!(listed[0].status, DeliveryStatus::Failed);
        assert_eq!(listed[1].status, DeliveryStatus::Delivered);
        assert_eq!(store.pending_events().await.unwrap(), 0);

        // A re-send makes it pending again, for its tenant only.
        assert!(
            store
                .resend_event("other", &c[0].id, lapsed)
                .await
                .unwrap()
                .is_none()
        );
        let again = store
            .resend_event("acme", &c[0].id, lapsed)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.status, again.attempts), (DeliveryStatus::Pending, 0));
        assert_eq!(store.pending_events().await.unwrap(), 1);
        // Pruning removes delivered and failed events only.
        assert_eq!(
            store
                .prune_events(lapsed + Duration::from_secs(1))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .list_events("acme", None, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

//! The body and the signature of a delivery. The body is the protobuf JSON of a
//! `phonecheck.v1.JobEvent`, the same on every delivery of an event; the headers carry the time of
//! the attempt and `v1=` HMAC-SHA256(secret, `timestamp.body`) in hex, the scheme Stripe and Slack
//! use: a receiver recomputes it, compares in constant time, and rejects old timestamps.

use std::sync::OnceLock;

use hmac::{KeyInit, Mac};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::domain::Currency;
use crate::pb;
use crate::store::{DeliveryStatus, OutboxEvent};

/// The header with the event's id.
pub const EVENT_ID_HEADER: &str = "phonecheck-event-id";
/// The header with the attempt's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "phonecheck-timestamp";
/// The header with the signature: `v1=` and 64 hex digits.
pub const SIGNATURE_HEADER: &str = "phonecheck-signature";

/// `v1=` and HMAC-SHA256(secret, `{timestamp}.{body}`) in lowercase hex.
pub fn signature(secret: &SecretString, timestamp: u64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The event as the contract states it.
pub fn event_to_proto(event: &OutboxEvent, currency: Currency) -> pb::JobEvent {
    let c = &event.counts;
    let money = |m| crate::messages::money_to_proto(m, currency);
    pb::JobEvent {
        event_id: event.id.clone(),
        r#type: event.kind as i32,
        create_time: Some(event.created_at.into()),
        job_id: event.job_id.clone(),
        state: event.job_state.to_proto(),
        progress: Some(pb::BatchJobProgress {
            rows_total: c.rows_total,
            rows_done: c.rows_done,
            numbers_total: c.numbers_total,
            numbers_done: c.numbers_done,
            numbers_pending: c.numbers_pending,
            bad_rows: c.bad_rows,
            numbers_failed: c.numbers_failed,
            billable_calls: c.billable,
            cache_hits: c.cache_hits,
            cost: Some(money(c.cost)),
            ..Default::default()
        }),
        reason: event.reason.clone(),
        max_cost: event.max_cost.map(money),
        sequence: event.seq,
    }
}

/// The event with its delivery, as `ListWebhookDeliveries` shows it.
pub fn delivery_to_proto(event: &OutboxEvent, currency: Currency) -> pb::WebhookDelivery {
    let state = match event.status {
        DeliveryStatus::Pending => pb::WebhookDeliveryState::Pending,
        DeliveryStatus::Delivered => pb::WebhookDeliveryState::Delivered,
        DeliveryStatus::Failed => pb::WebhookDeliveryState::Failed,
    };
    pb::WebhookDelivery {
        event: Some(event_to_proto(event, currency)),
        state: state as i32,
        attempts: i64::from(event.attempts),
        next_attempt_time: (event.status == DeliveryStatus::Pending).then(|| event.next_at.into()),
        deliver_time: event.delivered_at.map(Into::into),
        last_http_status: i32::from(event.last_http),
        last_error: event.last_error.clone(),
    }
}

/// The protobuf JSON of an event: field names in lowerCamelCase, enums by name, 64-bit integers
/// as strings, times in RFC 3339.
pub fn body(event: &pb::JobEvent) -> Vec<u8> {
    static DESCRIPTOR: OnceLock<Option<prost_reflect::MessageDescriptor>> = OnceLock::new();
    let descriptor = DESCRIPTOR.get_or_init(|| {
        DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
            .ok()?
            .get_message_by_name("phonecheck.v1.JobEvent")
    });
    descriptor
        .as_ref()
        .and_then(|d| DynamicMessage::decode(d.clone(), event.encode_to_vec().as_slice()).ok())
        .and_then(|m| serde_json::to_vec(&m).ok())
        // The descriptor is compiled in with the message: this cannot happen.
        .unwrap_or_else(|| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_0123456789abcdef'
        let secret = SecretString::from("whsec_0123456789abcdef");
        let sig = signature(&secret, 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(sig, format!("v1={}", EXPECTED));
        assert_ne!(signature(&secret, 1_700_000_001, br#"{"a":1}"#), sig);
    }

    const EXPECTED: &str = "9f5e37cdc7ea587c7c02062d93283cad000d66a831b2a1676418696db47ed6c2";

    #[test]
    fn the_body_is_protobuf_json() {
        let event = pb::JobEvent {
            event_id: "e1".into(),
            r#type: pb::JobEventType::Finished as i32,
            job_id: "job_1".into(),
            sequence: 2,
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::from_slice(&body(&event)).unwrap();
        assert_eq!(json["eventId"], "e1");
        assert_eq!(json["type"], "JOB_EVENT_TYPE_FINISHED");
        assert_eq!(json["jobId"], "job_1");
        assert_eq!(json["sequence"], "2");
    }
}

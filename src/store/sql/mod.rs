//! The SQL both databases share: each macro implements a store trait for a store type.

pub(super) mod budget;
pub(super) mod jobs;
pub(super) mod pending;
pub(super) mod usage;
pub(super) mod webhooks;

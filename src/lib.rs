//! phonecheck: a gRPC gateway that checks phone numbers against paid intelligence vendors behind
//! one protobuf contract, and does the free part (parsing, number type, carrier by segment, home
//! region) itself, offline.
//!
//! The library exposes [`serve`], which runs the whole service on a listener until a shutdown
//! future completes; `main.rs` only parses the command line and calls into [`cli`].
//!
//! # Layout
//! - `proto/` (built by `build.rs`) → [`pb`]: the generated contract, `phonecheck.v1`.
//! - [`cli`]: the subcommands (`serve`, `sim`, `lookup`, `check`, `job ...`, `keys`).
//! - [`config`]: typed configuration from a TOML file plus `PHONECHECK__` environment overrides,
//!   validated all at once.
//! - [`server`]: assembles the tonic server: health, reflection, compression, graceful shutdown.
//! - [`auth`]: API keys (hashed) mapped to tenants and their grants.
//! - [`budget`]: what a tenant may spend (daily billable budget) and how fast it may ask (request
//!   rate), used alike by calls, stream items and file jobs.
//! - [`api`]: the gRPC service implementations, proto ↔ domain conversion, and the one mapping of
//!   errors to `tonic::Status`.
//! - [`engine`]: runs the checks a request asks for: offline analysis first, then providers
//!   behind the answer cache (a compact hot tier in memory over the answer store) and
//!   single-flight. It owns `[cache]` ([`engine::CacheConfig`]).
//! - [`jobs`]: bulk file jobs: reading TXT/CSV/XLSX, the runner (resumes after a restart),
//!   exports and the HTML report.
//! - [`domain`]: the vocabulary shared by every layer (checks, statuses, reports).
//! - [`number`]: offline analysis: normalisation to E.164, number type (with China's special
//!   numbers and each area code's local-number rules), carrier by segment (by prefix in ID, SG
//!   and PK), home province and city; libphonenumber's metadata compiled into automata.
//! - [`providers`]: one module per vendor behind the [`providers::Provider`] trait, and the
//!   signing helpers they share.
//! - [`shared`]: state shared by replicas through Redis: vendor quotas, the answer cache with
//!   single-flight across replicas, asynchronous submissions.
//! - [`sim`]: wire-faithful simulators of the vendors over HTTP (the sandbox and the tests).
//! - [`store`]: what must survive a restart (pending asynchronous submissions, jobs with their
//!   rows and results, leases), behind traits; SQLite by default, PostgreSQL for replicas, one SQL
//!   text for both in `store/sql/`; and the answer store (paid vendor answers, always a local
//!   SQLite file, `answers.db`).
//! - [`telemetry`]: logging set-up and masking of numbers for logs.
//! - [`metrics`]: Prometheus metrics, the admin endpoint and the RPC metrics layer.
//!
//! Data flows one way: `api → (jobs →) engine → providers → (HTTP) → vendor or sim`.

pub mod api;
pub mod auth;
pub mod budget;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod jobs;
pub mod metrics;
pub mod number;
pub mod providers;
pub mod server;
pub mod shared;
pub mod sim;
pub mod store;
pub mod telemetry;

pub use server::{ServeError, serve, serve_with_admin};

/// The generated protobuf contract (`phonecheck.v1`).
pub mod pb {
    #![allow(
        missing_docs,
        clippy::large_enum_variant,
        clippy::doc_lazy_continuation
    )]
    tonic::include_proto!("phonecheck.v1");

    /// The encoded `FileDescriptorSet` of the contract and everything it imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/phonecheck_descriptor.bin"));
}

//! phonecheck: a gRPC gateway that checks phone numbers against paid intelligence vendors behind
//! one protobuf contract, and does the free part (parsing, number type, carrier by segment, home
//! region) itself, offline.
//!
//! The library exposes [`serve`], which runs the whole service on a listener until a shutdown
//! future completes; `main.rs` only parses the command line and calls into [`cli`].
//!
//! # Layout
//! The modules in layers, top first. A module names only modules of lower layers, never one of
//! its own layer or above (`tools/check_layers.py` fails CI on an upward import):
//!
//! 1. [`cli`]: the subcommands (`serve`, `sim`, `lookup`, `check`, `analyze`, `job ...`, `usage`,
//!    `keys`).
//! 2. [`server`]: assembles the tonic server: health, reflection, compression, layers, graceful
//!    shutdown.
//! 3. [`config`]: reads TOML plus `PHONECHECK__` environment overrides into the components' own
//!    configuration types and validates them all at once; it only assembles. Below it,
//!    [`console`]: the web console (`[console]`), server-rendered pages over the gRPC services,
//!    called in-process with the signed-in tenant's key; sessions, CSRF, security headers, rates.
//! 4. [`api`]: the gRPC services (the edge): the auth interceptor, the one request flow, and the
//!    one mapping of every layer's errors to `tonic::Status` with `google.rpc` details.
//! 5. [`auth`]: API keys (hashed) mapped to tenants, grants and concurrency places, with its own
//!    error type; [`jobs`]: bulk file jobs: bounded reading of TXT/CSV/XLSX/XLS, the runner
//!    (leases, resumes, pauses at the budget), exports and the HTML report.
//! 6. [`webhooks`]: signed webhooks of jobs' state changes: `[webhooks]` and the tenants'
//!    targets, safe-target checks, HMAC-SHA256 signatures, and the deliverer of the store's
//!    outbox (leases, order per job, back-off, failure after a maximum age).
//! 7. [`messages`]: the contract's protobuf messages ↔ domain types, and request-field checks,
//!    without transport.
//! 8. [`engine`]: runs the checks a request asks for: offline analysis first, then per check a
//!    provider through its dispatcher (answer cache: a compact hot tier in memory over the answer
//!    store; single-flight, batcher, the tower stack of breaker, retry, quota, concurrency and
//!    timeout). It owns `[cache]` ([`engine::CacheConfig`]), and counts each tenant's usage for
//!    the ledger where it happens ([`engine::Usage`]).
//! 9. [`replicas`]: state shared by replicas through Redis: vendor quotas, the answer cache with
//!    single-flight across replicas, asynchronous submissions, tenants' budgets and rates.
//! 10. [`vendors`]: the vendors, one folder each (`vendors/NAME/`: its client, its simulator,
//!     their tests) and one line each in the registry ([`vendors::ALL`]); `[providers.NAME]` is
//!     read there ([`vendors::ProviderConfig`]). Nothing outside a vendor's folder names it
//!     (`tools/check_layers.py` fails if it does).
//! 11. [`sim`]: what every vendor simulator shares (counters by vendor name, the gate, injected
//!     faults, extra accounts) and the HTTP server they run in; [`budget`]: what a tenant may
//!     spend (in calls and in money) and how fast it may ask, used alike by calls, stream items and
//!     file jobs; budgets are kept in the store, or in Redis through `replicas`.
//! 12. [`providers`]: what every vendor client is: the [`providers::Provider`] trait, the
//!     settings all vendors share ([`providers::SharedConfig`]) resolved with a vendor's
//!     defaults, and the HTTP and hashing helpers they share.
//! 13. [`store`]: what must survive a restart (pending asynchronous submissions, jobs with their
//!     rows and results, leases, tenants' daily budgets, the usage ledger), behind traits; SQLite
//!     by default, PostgreSQL for replicas, one SQL text for both in `store/sql/`; and the answer
//!     store (paid vendor answers, always a local SQLite file, `answers.db`).
//! 14. [`number`]: offline analysis: normalisation to E.164, number type (with China's special
//!     numbers and each area code's local-number rules), carrier by segment (by prefix in ID, SG
//!     and PK), home province and city; libphonenumber's metadata compiled into automata.
//!     [`transport`]: the edge below gRPC: accepting connections (`TCP_NODELAY`, the connection
//!     cap, back-off when descriptors run out, idle connections closed) and the bytes of request
//!     messages still in transit (per-connection and process caps, a time limit per message).
//! 15. Leaves: [`domain`] (the vocabulary: checks, statuses, reports, failures), [`clock`] (the
//!     time, injectable for tests), [`quota`] (a request quota as a token bucket), [`secret`]
//!     (where secrets come from), [`dependency`] (Redis, the database and the answer store's
//!     disk as dependencies: a breaker each, up or down, logged once), [`telemetry`] (logging,
//!     masking numbers), [`metrics`]
//!     (Prometheus names, the admin endpoint), and [`pb`] (the generated contract,
//!     `phonecheck.v1`, from `proto/` by `build.rs`).
//!
//! Data flows the same way: `api → (jobs →) engine → providers → (HTTP) → vendor or sim`.

pub mod api;
pub mod auth;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod dependency;
pub mod domain;
pub mod engine;
pub mod jobs;
pub mod messages;
pub mod metrics;
pub mod number;
pub mod providers;
pub mod quota;
pub mod replicas;
pub mod secret;
pub mod server;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod vendors;
pub mod webhooks;

pub use server::{ServeError, serve, serve_with_admin, serve_with_listeners};

/// The generated protobuf contract (`phonecheck.v1`).
pub mod pb {
    #![allow(
        missing_docs,
        clippy::large_enum_variant,
        clippy::doc_lazy_continuation
    )]
    tonic::include_proto!("phonecheck.v1");

    /// `google.type` (`Money`), which the contract uses for prices and costs.
    pub mod google_type {
        include!(concat!(env!("OUT_DIR"), "/google.r#type.rs"));
    }

    /// The encoded `FileDescriptorSet` of the contract and everything it imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/phonecheck_descriptor.bin"));
}

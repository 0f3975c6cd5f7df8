//! The integration tests, one binary (a change links the crate once, not once per file): each
//! module is an area, run alone with `cargo test --test it AREA::`. They start the real server on
//! 127.0.0.1:0 and talk to it through the generated client; vendors are the project's
//! simulators over real HTTP. Two areas have a binary of their own: `redis_quota` measures a rate
//! that other tests sharing the two cores would disturb, and `metrics` reads process-wide gauges.

mod common;
mod import_files;

mod aliyun;
mod aliyun_checks;
mod answer_store;
mod auth;
mod batching;
mod caih;
mod cli;
mod console;
mod console_browser;
mod console_connections;
mod edge;
mod engine;
mod estimate;
mod faults;
mod fuzz;
mod grpc_web;
mod hostile;
mod jobs;
mod jobs_resume;
mod latency;
mod limits;
mod lookup;
mod open_services;
mod otlp;
mod postgres;
mod recheck;
mod redis;
mod resilience;
mod routes;
mod server;
mod stream;
mod tls;
mod transport;
mod usage;
mod vendors;
mod webhooks;
mod yidun;

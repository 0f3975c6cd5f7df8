//! When what phonecheck depends on fails: real `redis-server` and PostgreSQL processes stopped,
//! paused (`SIGSTOP`: connections hang rather than refuse) and restarted under a running server,
//! and vendors whose network misbehaves (a small TCP server in the test). Every wait is bounded
//! by a stated timeout; nothing paid is lost or paid twice. Seeded moments print their seed
//! (`PHONECHECK_FAULT_SEED` replays a run).

mod postgres;
mod redis;
mod stream;
mod vendor;

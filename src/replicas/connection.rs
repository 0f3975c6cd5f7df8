//! The Redis connection every shared-state command goes through: each command is bounded by
//! `[redis] timeout` as a whole — including the wait for a reconnection in progress, which the
//! client library's own backoff would otherwise stretch to many seconds — and reported to the
//! Redis [`Dependency`], which fails commands at once while Redis is down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use crate::dependency::{Dependency, Failure};

/// A [`ConnectionManager`] whose every command is bounded and watched.
#[derive(Clone)]
pub(super) struct Connection {
    pub(super) manager: ConnectionManager,
    pub(super) timeout: Duration,
    pub(super) dependency: Arc<Dependency>,
}

impl Connection {
    async fn run<T>(
        &self,
        command: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        if self.dependency.admit().is_err() {
            return Err(RedisError::from((
                ErrorKind::Io,
                "Redis is down (failing at once until it answers again)",
            )));
        }
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => {
                self.dependency.succeeded();
                Ok(value)
            }
            Ok(Err(e)) => {
                if unreachable(&e) {
                    self.dependency
                        .failed(Failure::Unreachable, &format!("{:?}", e.kind()));
                } else {
                    // Redis answered (with an error): it is up.
                    self.dependency.succeeded();
                }
                Err(e)
            }
            Err(_) => {
                self.dependency.failed(Failure::Timeout, "timed out");
                Err(RedisError::from((
                    ErrorKind::Io,
                    "Redis did not answer within redis.timeout",
                )))
            }
        }
    }
}

/// Whether `e` says Redis could not be reached (rather than Redis answering with an error).
fn unreachable(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut manager = self.manager.clone();
            self.run(async move { manager.req_packed_command(cmd).await })
                .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut manager = self.manager.clone();
            self.run(async move { manager.req_packed_commands(pipeline, offset, count).await })
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.manager.get_db()
    }
}

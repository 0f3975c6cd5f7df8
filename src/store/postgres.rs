//! The shared PostgreSQL store: replicas of one deployment keep their jobs (and, without Redis,
//! their pending asynchronous submissions) in one database. Each job runs on one replica at a time,
//! under a lease ([`crate::store::Lease`]).

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;

/// PostgreSQL, shared by replicas.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The tenants whose jobs' state changes go to the webhook outbox.
    webhooks: std::sync::Arc<super::Subscriptions>,
}

impl PostgresStore {
    /// Writes the events `webhooks` asks for to the outbox with each state change of a job.
    pub fn with_webhooks(mut self, webhooks: super::Subscriptions) -> PostgresStore {
        self.webhooks = std::sync::Arc::new(webhooks);
        self
    }
}

impl PostgresStore {
    /// Connects with at most `connections` connections, waiting at most `timeout` for one, and
    /// brings the schema up to date (the migrator takes an advisory lock, so replicas starting
    /// together do not race).
    pub async fn connect(
        url: &SecretString,
        connections: u32,
        timeout: std::time::Duration,
    ) -> Result<PostgresStore, StoreError> {
        let options: PgConnectOptions = url.expose_secret().parse().map_err(|_| {
            StoreError::Config("storage.database_url is not a postgres:// URL".into())
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(timeout)
            .connect_with(options.application_name("phonecheck"))
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore {
            pool,
            webhooks: Default::default(),
        })
    }

    /// After deletes: nothing to do, PostgreSQL's autovacuum reuses the space.
    pub(in crate::store) async fn give_back_space(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

crate::store::sql::pending::sql_pending_store!(PostgresStore);
crate::store::sql::budget::sql_budget_store!(PostgresStore);
crate::store::sql::usage::sql_usage_store!(PostgresStore, sqlx::Postgres);
crate::store::sql::webhooks::sql_webhook_store!(
    PostgresStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow
);
crate::store::sql::jobs::sql_job_store!(
    PostgresStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    shared = true
);

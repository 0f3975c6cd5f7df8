//! The shared PostgreSQL store: replicas of one deployment keep their jobs (and, without Redis,
//! their pending asynchronous submissions) in one database. Each job runs on one replica at a time,
//! under a lease ([`crate::store::Lease`]).

use secrecy::{ExposeSecret, SecretString};
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};

use super::StoreError;

/// PostgreSQL, shared by replicas.
pub type PostgresStore = super::sql::SqlStore<Postgres>;

impl super::sql::SqlDb for Postgres {
    /// Replicas share the database.
    const SHARED: bool = true;

    /// After deletes: nothing to do, PostgreSQL's autovacuum reuses the space.
    async fn give_back_space(_pool: &PgPool) -> Result<(), StoreError> {
        Ok(())
    }
}

impl super::sql::RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        PgQueryResult::rows_affected(self)
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
        Ok(PostgresStore::new(pool))
    }
}

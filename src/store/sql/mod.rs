//! The SQL both databases share: one text per statement, in plain Rust generic over the database.
//!
//! [`SqlStore<DB>`] implements every store trait for any `DB` that is [`SqlDb`] (SQLite and
//! PostgreSQL; [`SqliteStore`] and [`PostgresStore`] are its two instances). What truly differs
//! between them is small and lives in their `SqlDb` impls (`sqlite.rs`, `postgres.rs`): whether
//! other processes share the database, how deleted rows give their space back, and where the
//! driver's query result keeps its count of changed rows ([`RowsAffected`]).
//!
//! Rust does not carry a trait's `where` clauses over to the code that uses the trait (only
//! bounds on `Self` and its associated types are implied), so sqlx's bounds on other types (the
//! connection as an executor, `i64` as a value of `DB`, ...) cannot hide in `SqlDb`: each impl
//! block states the ones its statements need, shortened by [`Value`] and [`Text`], which gather
//! sqlx's encode, decode and type bounds for one Rust type. A missing one is a compiler error
//! at the statement that needs it.
//!
//! [`SqliteStore`]: crate::store::SqliteStore
//! [`PostgresStore`]: crate::store::PostgresStore

pub(super) mod budget;
pub(super) mod jobs;
pub(super) mod pending;
pub(super) mod usage;
pub(super) mod webhooks;

use std::future::Future;
use std::sync::Arc;

use sqlx::{ColumnIndex, Database, Decode, Encode, IntoArguments, Pool, Type};

use super::{StoreError, Subscriptions};

/// A database the shared SQL runs on: [`sqlx::Sqlite`] or [`sqlx::Postgres`].
pub trait SqlDb: Database<Arguments: IntoArguments<Self>, QueryResult: RowsAffected> {
    /// Whether other processes (replicas) use the same database, so that a job must be leased.
    const SHARED: bool;

    /// After deletes: gives the space of the deleted rows back, where the database keeps it.
    fn give_back_space(pool: &Pool<Self>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The rows a statement changed: each driver's query result tells, under no common sqlx trait.
pub trait RowsAffected {
    /// How many rows the statement inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

/// A Rust type that statements of `DB` bind and its rows decode, owned (`i64`, `String`, ...).
pub trait Value<DB: Database>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB> {}

impl<DB: Database, T> Value<DB> for T where
    T: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>
{
}

/// Borrowed text (`&'a str`) in statements of `DB`: bound, decoded without a copy, and naming a
/// column of a row.
pub trait Text<'a, DB: Database>:
    Encode<'a, DB> + Decode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>
{
}

impl<'a, DB: Database, T> Text<'a, DB> for T where
    T: Encode<'a, DB> + Decode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>
{
}

/// The store of one database: its pool, and the tenants whose jobs' state changes go to the
/// webhook outbox.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    pub(in crate::store) pool: Pool<DB>,
    /// The tenants whose jobs' state changes go to the webhook outbox.
    webhooks: Arc<Subscriptions>,
}

// By hand: a derive would ask for `DB: Clone`, which the drivers' marker types are not.
impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            webhooks: Arc::clone(&self.webhooks),
        }
    }
}

impl<DB: Database> SqlStore<DB> {
    /// A store on `pool`, with no webhook subscriptions.
    pub(in crate::store) fn new(pool: Pool<DB>) -> Self {
        SqlStore {
            pool,
            webhooks: Default::default(),
        }
    }

    /// Writes the events `webhooks` asks for to the outbox with each state change of a job.
    pub fn with_webhooks(mut self, webhooks: Subscriptions) -> Self {
        self.webhooks = Arc::new(webhooks);
        self
    }
}

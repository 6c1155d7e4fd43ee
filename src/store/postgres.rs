//! The PostgreSQL backend: its pool and the statements that relax a commit, with the shared SQL
//! of `sql/` compiled for it.

type Kind = sqlx::Postgres;
type DbRow = sqlx::postgres::PgRow;
/// Run on the connection before a transaction that need not wait for the disk.
const RELAX_BEFORE: Option<&str> = None;
/// Run first inside such a transaction.
const RELAX_IN_TX: Option<&str> = Some("SET LOCAL synchronous_commit = off");
/// Run on the connection after it, restoring full durability.
const RELAX_AFTER: Option<&str> = None;
/// Ends a subquery that picks rows to claim: rows another transaction is claiming are passed by
/// instead of waited for.
const SKIP_LOCKED: &str = "FOR UPDATE SKIP LOCKED";

/// The database's clock, in Unix seconds.
const NOW_SQL: &str = "SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)";
/// What asks the database how it would run a statement (its last column describes each step).
const EXPLAIN: &str = "EXPLAIN ";

#[path = "sql/mod.rs"]
#[expect(
    clippy::duplicate_mod,
    reason = "one SQL source, compiled once for each database"
)]
mod sql;
pub use sql::Db;

//! The SQLite backend: its pools and the statements that relax a commit, with the shared SQL
//! of `sql/` compiled for it.

type Kind = sqlx::Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;
/// Run on the connection before a transaction that need not wait for the disk.
const RELAX_BEFORE: Option<&str> = Some("PRAGMA synchronous = NORMAL");
/// Run first inside such a transaction.
const RELAX_IN_TX: Option<&str> = None;
/// Run on the connection after it, restoring full durability.
const RELAX_AFTER: Option<&str> = Some("PRAGMA synchronous = FULL");
/// Ends a subquery that picks rows to claim. SQLite has one writer, so there is nothing to pass
/// by.
const SKIP_LOCKED: &str = "";

/// The database's clock, in Unix seconds.
const NOW_SQL: &str = "SELECT CAST(strftime('%s', 'now') AS INTEGER)";
/// What asks the database how it would run a statement (its last column describes each step).
const EXPLAIN: &str = "EXPLAIN QUERY PLAN ";

#[path = "sql/mod.rs"]
#[expect(
    clippy::duplicate_mod,
    reason = "one SQL source, compiled once for each database"
)]
mod sql;
pub use sql::Db;

//! All SQL of the checkout: connection pools, migrations, and the queries behind typed
//! functions. Nothing outside this module writes SQL or knows which database is in use.
//!
//! SQLite (the default) runs in WAL mode with `synchronous=FULL`: a commit is on disk before it
//! returns, which is what "durably recorded" means for a payment. The pool is split so that
//! readers never queue behind writers: one writer connection (SQLite admits one writer at a
//! time anyway, so more would only contend on the lock) and several read-only connections,
//! which WAL lets read while the writer writes. The queries avoid SQLite-only syntax so the
//! PostgreSQL backend can share them.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::domain::Fen;

mod cache;
mod orders;
mod payments;
pub use orders::{CreateOrderError, NewItem, Order, OrderItem, Prepay};
pub use payments::{Applied, Outcome, PaymentEvent, PaymentResult, PaymentSource, Recorded};

/// How long a connection waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only connections; the machine this targets has two cores.
const READERS: u32 = 4;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:…): {0}")]
    UnsupportedUrl(&'static str),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The checkout's database.
#[derive(Debug, Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
    cache: std::sync::Arc<cache::OrderCache>,
}

/// A product of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub price: Fen,
    pub stock: i64,
}

/// A product to add to the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct<'a> {
    pub name: &'a str,
    pub price: Fen,
    pub stock: i64,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Store {
    /// Opens (creating if missing) the database at `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(StoreError::UnsupportedUrl(
                "PostgreSQL is not available in this build yet",
            ));
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl("unknown scheme"));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(folder) = options.get_filename().parent() {
            create_folder(folder)?;
        }

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        // Opened after the writer, which has created the file and switched it to WAL.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Store {
            writer,
            reader,
            cache: Default::default(),
        })
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Fills an empty catalogue with the demo products; does nothing when products exist.
    /// Returns how many were added.
    pub async fn seed_demo_catalogue(&self) -> Result<usize, StoreError> {
        const DEMO: [(&str, i64, i64); 6] = [
            ("西湖龙井茶 250g", 12_800, 50),
            ("云南普洱茶饼 357g", 8_850, 30),
            ("景德镇青花瓷茶杯", 3_900, 100),
            ("广式双黄莲蓉月饼礼盒", 16_800, 20),
            ("手工竹编茶盘", 25_900, 10),
            ("宜兴紫砂壶", 59_900, 5),
        ];
        let mut tx = self.writer.begin().await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
            .fetch_one(&mut *tx)
            .await?;
        if count > 0 {
            return Ok(0);
        }
        let now = now_secs();
        for (name, price, stock) in DEMO {
            sqlx::query(
                "INSERT INTO products (name, price_fen, stock, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(name)
            .bind(price)
            .bind(stock)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(DEMO.len())
    }

    /// Adds a product; returns it with its id.
    pub async fn insert_product(&self, new: &NewProduct<'_>) -> Result<Product, StoreError> {
        let now = now_secs();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO products (name, price_fen, stock, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(new.name)
        .bind(new.price.0)
        .bind(new.stock)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(Product {
            id,
            name: new.name.to_owned(),
            price: new.price,
            stock: new.stock,
        })
    }

    /// The catalogue, in id order.
    pub async fn products(&self) -> Result<Vec<Product>, StoreError> {
        let rows: Vec<(i64, String, i64, i64)> =
            sqlx::query_as("SELECT id, name, price_fen, stock FROM products ORDER BY id")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(product_from_row).collect())
    }

    /// One product, if it exists.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, StoreError> {
        let row: Option<(i64, String, i64, i64)> =
            sqlx::query_as("SELECT id, name, price_fen, stock FROM products WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(product_from_row))
    }
}

fn product_from_row((id, name, price, stock): (i64, String, i64, i64)) -> Product {
    Product {
        id,
        name,
        price: Fen(price),
        stock,
    }
}

fn create_folder(folder: &Path) -> Result<(), StoreError> {
    if folder.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
        path: folder.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;

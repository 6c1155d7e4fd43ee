//! All SQL of the checkout: connection pools, migrations, and the queries behind typed
//! functions. Nothing outside this module writes SQL or knows which database is in use.
//!
//! Two databases, chosen by `DATABASE_URL`'s scheme, share every query: the SQL in `sql/` is
//! written once and compiled as an ordinary module for each backend (`sqlite.rs`, `postgres.rs`,
//! through `#[path]`), and [`Store`] dispatches to the one in use.
//!
//! SQLite (the default) runs in WAL mode with `synchronous=FULL`: a commit is on disk before it
//! returns, which is what "durably recorded" means for a payment. The pool is split so that
//! readers never queue behind writers: one writer connection (SQLite admits one writer at a
//! time anyway, so more would only contend on the lock) and several read-only connections,
//! which WAL lets read while the writer writes.
//!
//! PostgreSQL is how a merchant runs several replicas: one pool, default `synchronous_commit`
//! (on), and every state change a conditional update, so replicas never apply a transition
//! twice.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::{Fen, OutTradeNo};
use crate::rt::AppRuntime;

pub mod backup;
mod cache;
mod console_types;
pub mod contacts;
mod desk;
mod postgres;
mod sqlite;
mod types;
pub use console_types::{
    AdminSession, BuyerData, ContactAccess, ContactKeyUse, DaySales, ListStatus, OrderEvent,
    OrderFilter, OrderSummary, Refund, RefundAsk, RefundRefused, RefundState, Settled, LATE_REASON,
};
pub use desk::OrderDesk;
pub use types::{
    Applied, Attempt, AttemptPrepay, CatalogueEntry, ClientLimits, Contact, CreateOrderError,
    ImportReport, NewItem, NewProduct, Order, OrderItem, OrderRequest, Outcome, PaymentEvent,
    PaymentResult, PaymentSource, Prepay, Product, Recorded, Shipment, CNY,
};

/// How long a connection waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only SQLite connections; the machine this targets has two cores.
const READERS: u32 = 4;
/// PostgreSQL connections per replica.
const PG_CONNECTIONS: u32 = 16;
/// Contacts re-sealed per transaction.
const RESEAL_BATCH: i64 = 200;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite: or postgres://)")]
    UnsupportedUrl,
    /// A failure of a write done on the caller's behalf (group commit), shared with the other
    /// callers it failed.
    #[error(transparent)]
    Shared(Arc<StoreError>),
    /// The task that writes on the callers' behalf has stopped (shutting down).
    #[error("the {0} has stopped")]
    Stopped(&'static str),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Db),
    Postgres(postgres::Db),
}

/// The checkout's database.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Where connections are opened and driven: the application runtime given to
    /// [`Store::connect`], never a web worker's (see [`crate::rt`]).
    rt: AppRuntime,
    /// An SQLite database is marked in use while any store has it open (see [`backup`]).
    _in_use: Option<Arc<backup::InUse>>,
}

/// Calls the same method on whichever backend is in use, on the store's runtime.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(db) => $self.rt.run(db.$method($($arg),*)).await,
            Backend::Postgres(db) => $self.rt.run(db.$method($($arg),*)).await,
        }
    };
}

mod attempts;
mod bills;
pub mod health;
pub mod outbox;
mod push;
pub use bills::{
    BillDay, BillDayStatus, DayFigures, DayFindings, Discrepancy, DiscrepancyKind, RecordedPayment,
};
pub use health::{
    Alarm, LoggedNotify, NotifyFigures, NotifyLogEntry, NOTIFY_MISSING, NOTIFY_MISSING_EVENT,
    NOTIFY_RESTORED_EVENT,
};
pub use outbox::{
    Attempted, Delivery, DeliveryCounts, DeliveryState, FannedEvent, OutboxEvent, BILL_DISCREPANCY,
    ORDER_CLOSED, ORDER_PAID, ORDER_REFUND_DUE, REFUND_SUCCEEDED,
};
pub use push::OrderChanges;

impl Store {
    /// Opens the database at `url` (`sqlite:…`, created if missing, or `postgres://…`) and
    /// applies pending migrations. Connections are opened and driven on `rt`.
    pub async fn connect(url: &str, rt: &AppRuntime) -> Result<Store, StoreError> {
        let in_use = match backup::sqlite_file(url) {
            Ok(file) => {
                if let Some(folder) = file.parent() {
                    create_folder(folder)?;
                }
                Some(Arc::new(backup::hold(&file)?))
            }
            Err(_) => None,
        };
        let backend = rt.run(Self::open(url)).await?;
        let store = Store {
            backend,
            rt: rt.clone(),
            _in_use: in_use,
        };
        // A key generated before is read, so that any store can open what it sealed;
        // [`Store::use_contact_keys`] adds the configured ones (and generates one if need be).
        if let Some(stored) = dispatch!(store.generated_contact_key())? {
            let key = contacts::ContactKeys::decode(&stored)
                .ok_or_else(|| StoreError::Corrupt("contact_key.key".into()))?;
            store.set_keys(contacts::ContactKeys::new(&[key]));
        }
        Ok(store)
    }

    fn set_keys(&self, keys: contacts::ContactKeys) {
        match &self.backend {
            Backend::Sqlite(db) => db.set_keys(keys),
            Backend::Postgres(db) => db.set_keys(keys),
        }
    }

    /// Gives the store its contact keys (`CONTACT_KEY`, the first current). With none, the key
    /// generated before is used, or one is generated and stored in the database (sandbox mode,
    /// or a shop that asks for no contact; see the README). A generated key stays readable
    /// after keys are configured, until the re-encryption has moved every row off it. Returns
    /// the current key's id.
    pub async fn use_contact_keys(
        &self,
        configured: &[[u8; contacts::KEY_LEN]],
    ) -> Result<String, StoreError> {
        let stored = dispatch!(self.generated_contact_key())?;
        let mut ring: Vec<[u8; contacts::KEY_LEN]> = configured.to_vec();
        match stored {
            Some(text) => ring.push(
                contacts::ContactKeys::decode(&text)
                    .ok_or_else(|| StoreError::Corrupt("contact_key.key".into()))?,
            ),
            None if ring.is_empty() => {
                let fresh = contacts::ContactKeys::encode(&contacts::ContactKeys::generate());
                let text = dispatch!(self.store_generated_contact_key(&fresh))?;
                ring.push(
                    contacts::ContactKeys::decode(&text)
                        .ok_or_else(|| StoreError::Corrupt("contact_key.key".into()))?,
                );
            }
            None => {}
        }
        let keys = contacts::ContactKeys::new(&ring);
        let current = keys.current_id().unwrap_or_default().to_owned();
        self.set_keys(keys);
        Ok(current)
    }

    /// Re-seals up to `limit` contacts not sealed under the current key (older keys'
    /// rows, and plaintext from before sealing), with fresh search hashes; how many.
    pub async fn reseal_contacts(&self, limit: i64) -> Result<usize, StoreError> {
        dispatch!(self.reseal_contacts(limit))
    }

    /// Where the stored contacts stand against the key ring.
    pub async fn contact_key_use(&self) -> Result<ContactKeyUse, StoreError> {
        let ids = self.keys().ids();
        let mut usage = ContactKeyUse {
            current: ids.first().cloned(),
            ..Default::default()
        };
        for (key, rows) in dispatch!(self.contacts_by_key())? {
            match key {
                Some(id) if ids.first() == Some(&id) => usage.current_rows += rows,
                Some(id) if ids.contains(&id) => usage.waiting_rows += rows,
                None => usage.waiting_rows += rows,
                Some(_) => usage.unreadable_rows += rows,
            }
        }
        Ok(usage)
    }

    /// Re-seals every contact not under the current key, a batch at a time, until none is
    /// left or `shutdown`; then, on SQLite, checkpoints the log so that no page of before
    /// stays in it. Returns how many were re-sealed.
    pub async fn reseal_all_contacts(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        while !shutdown.is_cancelled() {
            // A batch re-seals fewer than it read when rows changed meanwhile (deleted,
            // re-sealed by another replica); those are not read again.
            let done = self.reseal_contacts(RESEAL_BATCH).await?;
            total += done;
            if done == 0 {
                break;
            }
        }
        if total > 0 {
            if let Backend::Sqlite(db) = &self.backend {
                self.rt
                    .run(sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&db.writer))
                    .await?;
            }
        }
        Ok(total)
    }

    /// Removes the contact of up to `limit` orders finished before `before` (see the SQL's
    /// doc); the orders, payments and refunds stay.
    pub async fn anonymise_contacts(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<OutTradeNo>, StoreError> {
        dispatch!(self.anonymise_contacts(before.timestamp(), limit))
    }

    /// Every order of the buyer of order `no` (by phone) with its contact.
    pub async fn buyer_data(&self, no: &OutTradeNo) -> Result<Vec<BuyerData>, StoreError> {
        dispatch!(self.buyer_data(no))
    }

    /// Deletes the contact of every order of the buyer of order `no`; the orders stay.
    pub async fn delete_buyer(
        &self,
        no: &OutTradeNo,
        actor: &str,
    ) -> Result<Vec<OutTradeNo>, StoreError> {
        dispatch!(self.delete_buyer(no, actor))
    }

    /// The key ring in use now.
    fn keys(&self) -> Arc<contacts::ContactKeys> {
        match &self.backend {
            Backend::Sqlite(db) => db.keys.read().map(|k| k.clone()),
            Backend::Postgres(db) => db.keys.read().map(|k| k.clone()),
        }
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// The search hash of a buyer's phone under the current key (the access log's subject).
    pub fn buyer_hash(&self, phone: &str) -> Option<String> {
        self.keys().phone_hashes(phone).into_iter().next()
    }

    /// Records that a console session saw, exported or deleted buyers' details.
    pub async fn record_contact_access(
        &self,
        session: &str,
        action: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self.record_contact_access(session, action, subject))
    }

    /// The latest `limit` records of the access log, newest first.
    pub async fn contact_access(&self, limit: i64) -> Result<Vec<ContactAccess>, StoreError> {
        dispatch!(self.contact_access(limit))
    }

    async fn open(url: &str) -> Result<Backend, StoreError> {
        let cache = Arc::new(cache::OrderCache::default());
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(PG_CONNECTIONS)
                .acquire_timeout(BUSY_TIMEOUT)
                .connect(url)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Backend::Postgres(postgres::Db {
                writer: pool.clone(),
                reader: pool,
                cache,
                events: Arc::new(std::sync::atomic::AtomicBool::new(true)),
                keys: Default::default(),
            })
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                // What is deleted (a buyer's contact) is overwritten, not left in free pages.
                .pragma("secure_delete", "ON")
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
            Backend::Sqlite(sqlite::Db {
                writer,
                reader,
                cache,
                events: Arc::new(std::sync::atomic::AtomicBool::new(true)),
                keys: Default::default(),
            })
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(backend)
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        dispatch!(self.close())
    }

    /// Fills an empty catalogue with `entries`, once in the database's life (sandbox mode's
    /// demo catalogue): does nothing when products exist or it was done before. Returns how
    /// many were added.
    pub async fn seed_catalogue(&self, entries: &[CatalogueEntry]) -> Result<usize, StoreError> {
        dispatch!(self.seed_catalogue(entries))
    }

    /// Upserts `entries` by sku in one transaction — all or, on error, none. A new product
    /// gets the entry's stock; an existing one keeps its own unless `restock`.
    pub async fn import_catalogue(
        &self,
        entries: &[CatalogueEntry],
        restock: bool,
    ) -> Result<ImportReport, StoreError> {
        dispatch!(self.import_catalogue(entries, restock))
    }

    /// The products on sale among `ids`, in id order.
    pub async fn products_by_id(&self, ids: &[i64]) -> Result<Vec<Product>, StoreError> {
        dispatch!(self.products_by_id(ids))
    }

    /// The buyer's contact given with an order, if any.
    pub async fn order_contact(&self, no: &OutTradeNo) -> Result<Option<Contact>, StoreError> {
        dispatch!(self.order_contact(no))
    }

    /// Marks a paid order shipped, recording `actor` on its timeline. False when it is not paid
    /// or was shipped before.
    pub async fn ship_order(
        &self,
        no: &OutTradeNo,
        carrier: &str,
        tracking_no: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self.ship_order_by(no, carrier, tracking_no, actor))
    }

    /// Records a refund for a paid order, reserved against what was paid in the same
    /// transaction (concurrent requests never exceed it); WeChat is asked afterwards with the
    /// returned `out_refund_no`, and the follower takes it up at `follow_at` if unsettled.
    pub async fn request_refund(
        &self,
        no: &OutTradeNo,
        ask: &RefundAsk<'_>,
        follow_at: i64,
    ) -> Result<Refund, RefundRefused> {
        dispatch!(self.request_refund(no, ask, follow_at))
    }

    /// Records the refund of an order's late payment and clears its `refund_due`, once.
    pub async fn request_late_refund(
        &self,
        no: &OutTradeNo,
        requested_by: &str,
        follow_at: i64,
        first_only: bool,
    ) -> Result<Option<Refund>, StoreError> {
        dispatch!(self.request_late_refund(no, requested_by, follow_at, first_only))
    }

    /// Records, once, a refund WeChat made that the shop did not ask for.
    pub async fn record_external_refund(
        &self,
        no: &OutTradeNo,
        out_refund_no: &str,
        fee: Fen,
        state: RefundState,
        refund_id: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self.record_external_refund(no, out_refund_no, fee, state, refund_id))
    }

    /// An order's refunds, oldest first.
    pub async fn refunds_of(&self, no: &OutTradeNo) -> Result<Vec<Refund>, StoreError> {
        dispatch!(self.refunds_of(no))
    }

    /// One refund by its number.
    pub async fn refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
        dispatch!(self.refund(out_refund_no))
    }

    /// Claims unsettled refunds due to be followed (see the SQL's doc).
    pub async fn claim_refunds_to_follow(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Refund>, StoreError> {
        dispatch!(self.claim_refunds_to_follow(now, lease_until, limit))
    }

    /// When the follower next looks at an unsettled refund.
    pub async fn follow_refund_at(
        &self,
        out_refund_no: &str,
        follow_at: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.follow_refund_at(out_refund_no, follow_at))
    }

    /// WeChat accepted a refund: requested → processing, once.
    pub async fn refund_accepted(
        &self,
        out_refund_no: &str,
        refund_id: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self.refund_accepted(out_refund_no, refund_id))
    }

    /// Moves an unsettled refund to `state`, once (see the SQL's doc).
    pub async fn settle_refund(
        &self,
        out_refund_no: &str,
        state: RefundState,
        refund_id: Option<&str>,
        failure: Option<&str>,
    ) -> Result<Option<Settled>, StoreError> {
        dispatch!(self.settle_refund(out_refund_no, state, refund_id, failure))
    }

    /// Orders with money due back and no refund recorded for it.
    pub async fn refund_due_orders(&self, limit: i64) -> Result<Vec<OutTradeNo>, StoreError> {
        dispatch!(self.refund_due_orders(limit))
    }

    /// The console's generated password (an argon2 PHC string), if one was made.
    pub async fn admin_password(&self) -> Result<Option<String>, StoreError> {
        dispatch!(self.admin_password())
    }

    /// Stores the console's generated password unless one exists; true when this one was.
    pub async fn set_admin_password(&self, phc: &str) -> Result<bool, StoreError> {
        dispatch!(self.set_admin_password(phc))
    }

    /// Starts a console session (and forgets ended ones).
    pub async fn create_admin_session(
        &self,
        token_hash: &str,
        csrf: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.create_admin_session(token_hash, csrf, expires_at))
    }

    /// The console session with this token hash, while it lasts.
    pub async fn admin_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<AdminSession>, StoreError> {
        dispatch!(self.admin_session(token_hash))
    }

    /// Ends a console session.
    pub async fn delete_admin_session(&self, token_hash: &str) -> Result<(), StoreError> {
        dispatch!(self.delete_admin_session(token_hash))
    }

    /// Failed logins from `client` since `since`.
    pub async fn login_failures(
        &self,
        client: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64, StoreError> {
        dispatch!(self.login_failures(client, since))
    }

    /// Records a failed login (forgetting those before `forget_before`).
    pub async fn record_login_failure(
        &self,
        client: &str,
        forget_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.record_login_failure(client, forget_before))
    }

    /// Forgets a client's failed logins.
    pub async fn clear_login_failures(&self, client: &str) -> Result<(), StoreError> {
        dispatch!(self.clear_login_failures(client))
    }

    /// Up to `limit` orders matching `filter`, newest first.
    pub async fn list_orders(
        &self,
        filter: &OrderFilter,
        limit: i64,
    ) -> Result<Vec<OrderSummary>, StoreError> {
        dispatch!(self.list_orders(filter, limit))
    }

    /// How the database would run [`Store::list_orders`]: a line per step.
    pub async fn explain_list_orders(
        &self,
        filter: &OrderFilter,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self.explain_list_orders(filter, limit))
    }

    /// An order's recorded events (prepays, the merchant's actions), oldest first.
    pub async fn order_events(&self, no: &OutTradeNo) -> Result<Vec<OrderEvent>, StoreError> {
        dispatch!(self.order_events(no))
    }

    /// An order's payment events as timeline entries, oldest first.
    pub async fn payment_timeline(&self, no: &OutTradeNo) -> Result<Vec<OrderEvent>, StoreError> {
        dispatch!(self.payment_timeline(no))
    }

    /// Every product, on sale or not.
    pub async fn all_products(&self) -> Result<Vec<Product>, StoreError> {
        dispatch!(self.all_products())
    }

    /// Sets a product's price, stock and whether it is on sale; false for an unknown sku.
    pub async fn update_product(
        &self,
        sku: &str,
        price: Fen,
        stock: i64,
        active: bool,
    ) -> Result<bool, StoreError> {
        dispatch!(self.update_product(sku, price, stock, active))
    }

    /// Paid orders and revenue per Beijing day in `first_day..=last_day` (days that had any).
    pub async fn daily_sales(
        &self,
        first_day: i64,
        last_day: i64,
    ) -> Result<Vec<DaySales>, StoreError> {
        dispatch!(self.daily_sales(first_day, last_day))
    }

    /// Refunds asked for and not settled yet.
    pub async fn refunds_in_progress(&self) -> Result<i64, StoreError> {
        dispatch!(self.refunds_in_progress())
    }

    /// Orders waiting for payment, and orders owing money back.
    pub async fn attention_counts(&self) -> Result<(i64, i64), StoreError> {
        dispatch!(self.attention_counts())
    }

    /// Adds a product; returns it with its id.
    pub async fn insert_product(&self, new: &NewProduct<'_>) -> Result<Product, StoreError> {
        dispatch!(self.insert_product(new))
    }

    /// The products on sale, in id order.
    pub async fn products(&self) -> Result<Vec<Product>, StoreError> {
        dispatch!(self.products())
    }

    /// One product, on sale or not, if it exists.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, StoreError> {
        dispatch!(self.product(id))
    }

    /// Creates an order for `items`, reserving their stock, in one transaction: either every
    /// line is reserved and the order exists, or nothing changed. Payment is due within `ttl`.
    pub async fn create_order(
        &self,
        items: &[NewItem],
        ttl: Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Order, CreateOrderError> {
        let request = OrderRequest {
            items: items.to_vec(),
            shop_name: String::new(),
            ttl,
            client: None,
            contact: Contact::default(),
        };
        self.place_order(&request, now).await
    }

    /// Creates an order as [`Store::create_order`] does, under the request's per-client limits:
    /// a client holding `max_pending` unpaid orders is refused, and one whose same cart is
    /// still payable is given that order instead.
    pub async fn place_order(
        &self,
        request: &OrderRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Order, CreateOrderError> {
        dispatch!(self.create_order(request, now))
    }

    /// Creates several orders in one transaction (group commit), each in its own savepoint:
    /// an order refused for its stock, items or limits changes nothing and does not affect the
    /// others. A database failure fails the batch.
    pub async fn create_orders(
        &self,
        requests: &[&OrderRequest],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Result<Order, CreateOrderError>>, StoreError> {
        dispatch!(self.create_orders(requests, now))
    }

    /// One order, if it exists (through the read cache; see `cache.rs` for how fresh).
    pub async fn order(&self, no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        dispatch!(self.order(no))
    }

    /// One order as the database has it now, past the cache.
    pub async fn order_now(&self, no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        dispatch!(self.order_now(no))
    }

    /// An order's lines (they never change, so they are cached with the order).
    pub async fn order_items(&self, no: &OutTradeNo) -> Result<Arc<Vec<OrderItem>>, StoreError> {
        dispatch!(self.order_items(no))
    }

    /// Moves a pending order's payment deadline to `until`, while it has no prepay. False when
    /// nothing changed.
    pub async fn extend_expiry(
        &self,
        no: &OutTradeNo,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.extend_expiry(no, until))
    }

    /// Stores the prepay of a pending order. Returns false (and changes nothing) when the order
    /// is no longer pending.
    pub async fn record_prepay(
        &self,
        no: &OutTradeNo,
        prepay: &Prepay,
    ) -> Result<bool, StoreError> {
        dispatch!(self.record_prepay(no, prepay))
    }

    /// Notes the shopper's wish to cancel a pending order, due for the reconciliation job at
    /// `due`. False when it is not pending (or was asked before).
    pub async fn request_cancel(
        &self,
        no: &OutTradeNo,
        now: chrono::DateTime<chrono::Utc>,
        due: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.request_cancel(no, now, due))
    }

    /// Claims the pending orders with a prepay that are due for a reconciliation query at `now`
    /// (oldest first, at most `limit`), making them due again at `next`. Several jobs at once
    /// (replicas) never get the same order.
    pub async fn claim_due_for_reconcile(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        next: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Order>, StoreError> {
        dispatch!(self.claim_due_for_reconcile(now, next, limit))
    }

    /// Claims the finished orders whose watch for late money is due at `now` (the most overdue
    /// first, at most `limit`), making them due again at `lease` should the job not finish
    /// with them. Several jobs at once never get the same order.
    pub async fn claim_due_for_watch(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        lease: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Order>, StoreError> {
        dispatch!(self.claim_due_for_watch(now, lease, limit))
    }

    /// Records that the watch asked about an order at `step`; the next question is due at
    /// `next`, or the watch is over (`None`). False when another job recorded it first.
    pub async fn advance_watch(
        &self,
        no: &OutTradeNo,
        step: i64,
        next: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.advance_watch(no, step, next))
    }

    /// Closes pending orders that never got a prepay and whose time is up — or that were
    /// placed `hold` ago, when a hold is given — restoring their stock, each in its own
    /// transaction. Returns the orders closed.
    pub async fn expire_unprepaid(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        hold: Option<chrono::Duration>,
        limit: i64,
    ) -> Result<Vec<OutTradeNo>, StoreError> {
        dispatch!(self.expire_unprepaid(now, hold, limit))
    }

    /// Closes a pending order that still has no prepay and whose time (or `hold`) is up,
    /// restoring its stock; false (and nothing changed) otherwise.
    pub async fn close_unprepaid(
        &self,
        no: &OutTradeNo,
        now: chrono::DateTime<chrono::Utc>,
        hold: Option<chrono::Duration>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.close_unprepaid(no, now, hold))
    }

    /// Closes a pending order and restores its stock, in one transaction; the watch for late
    /// money first asks about it at `watch_from` (`None`: not watched). Returns false (and
    /// changes nothing) when the order is not pending: a close happens once, whoever tries.
    pub async fn close_order(
        &self,
        no: &OutTradeNo,
        now: chrono::DateTime<chrono::Utc>,
        watch_from: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.close_order(no, now, watch_from))
    }

    /// Counts one more unpaid query of a pending order, noting the state WeChat reported;
    /// returns the new count, or None when the order is no longer pending.
    pub async fn count_unpaid_query(
        &self,
        no: &OutTradeNo,
        wechat_state: &str,
    ) -> Result<Option<i64>, StoreError> {
        dispatch!(self.count_unpaid_query(no, wechat_state))
    }

    /// Notes the state WeChat reported for an order.
    pub async fn note_wechat_state(
        &self,
        no: &OutTradeNo,
        wechat_state: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self.note_wechat_state(no, wechat_state))
    }

    /// The database's clock: expiry decisions use it, so replicas with clocks of their own
    /// agree.
    pub async fn now(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        dispatch!(self.now())
    }

    /// Records a verified payment durably (committed to disk when this returns). The same
    /// transaction, or a second failure for one order, is recorded once.
    pub async fn record_payment_event(&self, event: &PaymentEvent) -> Result<Recorded, StoreError> {
        dispatch!(self.record_payment_event(event))
    }

    /// Records several payments in one transaction — one commit, one disk flush, for all of
    /// them (group commit). The answer lists them in the order given.
    pub async fn record_payment_events(
        &self,
        events: &[&PaymentEvent],
    ) -> Result<Vec<Recorded>, StoreError> {
        dispatch!(self.record_payment_events(events))
    }

    /// The transaction of a payment that arrived for an order it could not pay (after the
    /// order closed, or of another amount): the money that is due back, if any.
    pub async fn late_payment(&self, no: &OutTradeNo) -> Result<Option<String>, StoreError> {
        dispatch!(self.late_payment(no))
    }

    /// Events recorded but not applied yet, oldest first.
    pub async fn unapplied_payment_events(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        dispatch!(self.unapplied_payment_events(limit))
    }

    /// Applies one recorded event to its order, exactly once.
    pub async fn apply_payment_event(&self, id: i64) -> Result<Applied, StoreError> {
        dispatch!(self.apply_payment_event(id))
    }

    /// Applies several events in one transaction, exactly once each. If any fails, none is
    /// applied and the error is returned; the caller can then apply them one by one.
    pub async fn apply_payment_events(&self, ids: &[i64]) -> Result<Vec<Applied>, StoreError> {
        dispatch!(self.apply_payment_events(ids))
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
mod contact_tests;
#[cfg(test)]
mod tests;

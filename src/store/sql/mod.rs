//! The SQL of the store, written once for both databases: `sqlite.rs` and `postgres.rs` each
//! compile this module tree (`#[path]`) against their own `Db` (pools and order cache), `Kind`
//! (the sqlx database), `DbRow` and commit-relaxing statements. Queries use SQL both databases
//! accept, with `$N` placeholders in ascending first use.
//!
//! By responsibility: [`bills`] (the daily bill's days, their findings, a day's payments and
//! refunds), [`catalogue`] (products), [`console`] (the merchant console's sessions,
//! lists, timeline and figures), [`orders`] (creating and reading orders, the
//! prepay), [`jobs`] (what the reconciliation job claims, expires and closes), [`inbox`]
//! (recording payments and applying them to orders), [`contacts`] (buyers' contact details:
//! sealed, re-sealed, anonymised, exported, deleted, and who looked), [`refunds`] (recording refunds against
//! what was paid, settling them), [`outbox`] (events written with the changes that cause them,
//! their deliveries).

mod attempts;
mod bills;
mod catalogue;
mod console;
mod contacts;
mod health;
mod inbox;
mod jobs;
mod orders;
mod outbox;
mod refunds;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{DbRow, Kind, EXPLAIN, NOW_SQL, RELAX_AFTER, RELAX_BEFORE, RELAX_IN_TX, SKIP_LOCKED};
use crate::domain::{Fen, OrderStatus, OutTradeNo};
use crate::store::types::*;
use crate::store::{
    now_secs, StoreError, ORDER_CLOSED, ORDER_PAID, ORDER_REFUND_DUE, REFUND_SUCCEEDED,
};

type Tx<'c> = sqlx::Transaction<'c, Kind>;

/// A backend's pools: on SQLite one writer connection and several read-only ones (see the
/// store's module doc); on PostgreSQL one pool, `writer` and `reader` alike.
#[derive(Debug, Clone)]
pub struct Db {
    pub writer: sqlx::Pool<Kind>,
    pub reader: sqlx::Pool<Kind>,
    pub cache: std::sync::Arc<crate::store::cache::OrderCache>,
    /// Whether changes write outbox events (see [`outbox`]); shared by the store's clones.
    pub events: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The keys contacts are sealed with (see `store/contacts.rs`); shared by the store's
    /// clones, replaced whole when the store is given its keys.
    pub keys:
        std::sync::Arc<std::sync::RwLock<std::sync::Arc<crate::store::contacts::ContactKeys>>>,
}

const ORDER_COLUMNS: &str = "out_trade_no, total_fee, status, body, product_id, expires_at, \
     prepay_id, code_url, code_url_expires_at, sign_type, transaction_id, pay_time, \
     created_at, updated_at, closed_at, reconcile_attempts, is_deleted, refund_due, wechat_state, \
     watch_step, cash_fee, coupon_fee, receipt_token, shipped_at, carrier, tracking_no, refunded_fee, \
     attempts, paid_no, cancel_requested_at";

fn order_from_row(row: &DbRow) -> Result<Order, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("orders.{what}"));
    let no: String = row.try_get("out_trade_no")?;
    let status: String = row.try_get("status")?;
    let prepay = match (
        row.try_get::<Option<String>, _>("prepay_id")?,
        row.try_get::<Option<String>, _>("code_url")?,
        row.try_get::<Option<i64>, _>("code_url_expires_at")?,
        row.try_get::<Option<String>, _>("sign_type")?,
    ) {
        (Some(prepay_id), Some(code_url), Some(expires), Some(sign_type)) => Some(Prepay {
            prepay_id,
            code_url,
            code_url_expires_at: time(expires),
            sign_type: sign_type.parse().map_err(|_| corrupt("sign_type"))?,
        }),
        _ => None,
    };
    Ok(Order {
        out_trade_no: OutTradeNo::parse(&no).map_err(|_| corrupt("out_trade_no"))?,
        total_fee: Fen(row.try_get("total_fee")?),
        status: OrderStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        body: row.try_get("body")?,
        product_id: row.try_get("product_id")?,
        expires_at: time(row.try_get("expires_at")?),
        prepay,
        transaction_id: row.try_get("transaction_id")?,
        pay_time: row.try_get::<Option<i64>, _>("pay_time")?.map(time),
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
        closed_at: row.try_get::<Option<i64>, _>("closed_at")?.map(time),
        reconcile_attempts: row.try_get("reconcile_attempts")?,
        is_deleted: row.try_get::<i64, _>("is_deleted")? != 0,
        refund_due: row.try_get::<i64, _>("refund_due")? != 0,
        refunded_fee: Fen(row.try_get("refunded_fee")?),
        wechat_state: row.try_get("wechat_state")?,
        watch_step: row.try_get("watch_step")?,
        cash_fee: row.try_get::<Option<i64>, _>("cash_fee")?.map(Fen),
        coupon_fee: row.try_get::<Option<i64>, _>("coupon_fee")?.map(Fen),
        receipt_token: row.try_get("receipt_token")?,
        shipment: match (
            row.try_get::<Option<i64>, _>("shipped_at")?,
            row.try_get::<Option<String>, _>("carrier")?,
            row.try_get::<Option<String>, _>("tracking_no")?,
        ) {
            (Some(at), Some(carrier), Some(tracking_no)) => Some(Shipment {
                at: time(at),
                carrier,
                tracking_no,
            }),
            _ => None,
        },
        attempts: row.try_get("attempts")?,
        cancel_requested_at: row
            .try_get::<Option<i64>, _>("cancel_requested_at")?
            .map(time),
        paid_no: match row.try_get::<Option<String>, _>("paid_no")? {
            Some(no) => Some(OutTradeNo::parse(&no).map_err(|_| corrupt("paid_no"))?),
            None => None,
        },
    })
}

/// A stored order number, read back: one that does not parse means the row is corrupt.
fn stored_no(no: &str, column: &str) -> Result<OutTradeNo, StoreError> {
    OutTradeNo::parse(no).map_err(|_| StoreError::Corrupt(column.into()))
}

impl Db {
    /// Whether changes write outbox events now.
    fn events(&self) -> bool {
        self.events.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn write_events(&self, on: bool) {
        self.events.store(on, std::sync::atomic::Ordering::Relaxed);
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
}

/// Moves a pending order to closed and gives its stock back, inside `tx`; the watch for late
/// money first asks about it at `watch_due_at` (`None`: not watched). False (and nothing
/// changed) when it was not pending.
async fn close_in(
    tx: &mut Tx<'_>,
    no: &str,
    now: i64,
    watch_due_at: Option<i64>,
    events: bool,
) -> Result<bool, StoreError> {
    let closed = sqlx::query(
        "UPDATE orders SET status = 'closed', is_deleted = 1, closed_at = $1, updated_at = $1,
                           watch_due_at = $2, watch_step = 0
         WHERE out_trade_no = $3 AND status = 'pending'",
    )
    .bind(now)
    .bind(watch_due_at)
    .bind(no)
    .execute(&mut **tx)
    .await?;
    let done = closed.rows_affected() == 1;
    if done {
        restore_stock(tx, no, now).await?;
        if events {
            outbox::write(tx, ORDER_CLOSED, Some(no), no, "", now).await?;
        }
    }
    Ok(done)
}

/// Gives an order's reserved stock back. Call only in the transaction that moved the order
/// from pending to a final unpaid state, so it happens once.
async fn restore_stock(tx: &mut Tx<'_>, no: &str, now: i64) -> Result<(), StoreError> {
    let items: Vec<(i64, i64)> =
        sqlx::query_as("SELECT product_id, num FROM order_items WHERE out_trade_no = $1")
            .bind(no)
            .fetch_all(&mut **tx)
            .await?;
    for (product_id, num) in items {
        sqlx::query("UPDATE products SET stock = stock + $1, updated_at = $2 WHERE id = $3")
            .bind(num)
            .bind(now)
            .bind(product_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

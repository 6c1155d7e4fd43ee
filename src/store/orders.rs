//! Orders and their items: creation with stock reservation, the prepay, and reads.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;

use super::{now_secs, Store, StoreError};
use crate::domain::{Fen, OrderStatus, OutTradeNo};
use crate::wxpay::SignType;

/// One line of a new order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewItem {
    pub product_id: i64,
    pub num: i64,
}

/// Why an order could not be created. Nothing was reserved.
#[derive(Debug, thiserror::Error)]
pub enum CreateOrderError {
    #[error("no product {0}")]
    UnknownProduct(i64),
    #[error("product {product_id} has {available} left")]
    NotEnoughStock { product_id: i64, available: i64 },
    #[error("an order needs at least one item, each of a positive quantity")]
    Empty,
    #[error("the amount is too large")]
    TooLarge,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CreateOrderError {
    fn from(e: sqlx::Error) -> Self {
        CreateOrderError::Store(e.into())
    }
}

/// The prepay WeChat created for an order: reused while `code_url` is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepay {
    pub prepay_id: String,
    pub code_url: String,
    pub code_url_expires_at: DateTime<Utc>,
    pub sign_type: SignType,
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub out_trade_no: OutTradeNo,
    pub total_fee: Fen,
    pub status: OrderStatus,
    /// The unifiedorder `body` (the goods, by name).
    pub body: String,
    /// The unifiedorder `product_id`.
    pub product_id: String,
    /// The payment deadline, sent as `time_expire`; fixed at creation.
    pub expires_at: DateTime<Utc>,
    pub prepay: Option<Prepay>,
    pub transaction_id: Option<String>,
    pub pay_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reconcile_attempts: i64,
    pub is_deleted: bool,
    /// A payment arrived after the order was closed: it must be refunded.
    pub refund_due: bool,
}

/// A line of an order, as sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub product_id: i64,
    pub name: String,
    pub unit_price: Fen,
    pub num: i64,
}

/// Longest unifiedorder `body` WeChat accepts, in characters.
const MAX_BODY_CHARS: usize = 128;

pub(super) fn time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

const ORDER_COLUMNS: &str = "out_trade_no, total_fee, status, body, product_id, expires_at, \
     prepay_id, code_url, code_url_expires_at, sign_type, transaction_id, pay_time, \
     created_at, updated_at, closed_at, reconcile_attempts, is_deleted, refund_due";

fn order_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Order, StoreError> {
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
    })
}

/// The unifiedorder body: "name xN" per line, cut to WeChat's 128 characters.
fn order_body(lines: &[(String, i64)]) -> String {
    let full = lines
        .iter()
        .map(|(name, num)| format!("{name} x{num}"))
        .collect::<Vec<_>>()
        .join(", ");
    if full.chars().count() <= MAX_BODY_CHARS {
        full
    } else {
        let mut cut: String = full.chars().take(MAX_BODY_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

impl Store {
    /// Creates an order for `items`, reserving their stock, in one transaction: either every
    /// line is reserved and the order exists, or nothing changed. Payment is due within `ttl`.
    pub async fn create_order(
        &self,
        items: &[NewItem],
        ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Order, CreateOrderError> {
        if items.is_empty() || items.iter().any(|i| i.num <= 0) {
            return Err(CreateOrderError::Empty);
        }
        let created = now.timestamp();
        let expires = created + ttl.as_secs() as i64;
        let mut tx = self.writer.begin().await?;
        let mut lines = Vec::with_capacity(items.len());
        let mut total = Fen(0);
        for item in items {
            // Reserve only if enough is left; the condition and the decrement are one statement.
            let reserved = sqlx::query(
                "UPDATE products SET stock = stock - $1, updated_at = $2
                 WHERE id = $3 AND stock >= $1 RETURNING name, price_fen",
            )
            .bind(item.num)
            .bind(created)
            .bind(item.product_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = reserved else {
                let available: Option<i64> =
                    sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
                        .bind(item.product_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(match available {
                    None => CreateOrderError::UnknownProduct(item.product_id),
                    Some(available) => CreateOrderError::NotEnoughStock {
                        product_id: item.product_id,
                        available,
                    },
                });
            };
            let name: String = row.try_get("name")?;
            let price = Fen(row.try_get("price_fen")?);
            total = price
                .checked_mul(item.num)
                .and_then(|line| total.checked_add(line))
                .ok_or(CreateOrderError::TooLarge)?;
            lines.push((item, name, price));
        }
        let no = OutTradeNo::generate(now);
        let body = order_body(
            &lines
                .iter()
                .map(|(item, name, _)| (name.clone(), item.num))
                .collect::<Vec<_>>(),
        );
        let product_id = items[0].product_id.to_string();
        sqlx::query(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at)
             VALUES ($1, $2, 'pending', $3, $4, $5, $6, $6)",
        )
        .bind(no.as_str())
        .bind(total.0)
        .bind(&body)
        .bind(&product_id)
        .bind(expires)
        .bind(created)
        .execute(&mut *tx)
        .await?;
        for (item, name, price) in &lines {
            sqlx::query(
                "INSERT INTO order_items (out_trade_no, product_id, name, unit_price, num)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(no.as_str())
            .bind(item.product_id)
            .bind(name)
            .bind(price.0)
            .bind(item.num)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Order {
            out_trade_no: no,
            total_fee: total,
            status: OrderStatus::Pending,
            body,
            product_id,
            expires_at: time(expires),
            prepay: None,
            transaction_id: None,
            pay_time: None,
            created_at: time(created),
            updated_at: time(created),
            closed_at: None,
            reconcile_attempts: 0,
            is_deleted: false,
            refund_due: false,
        })
    }

    /// One order, if it exists (through the read cache; see `cache.rs` for how fresh).
    pub async fn order(&self, no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        if let Some(order) = self.cache.order(no.as_str()) {
            return Ok(Some(order));
        }
        let read_at = std::time::Instant::now();
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = $1"
        ))
        .bind(no.as_str())
        .fetch_optional(&self.reader)
        .await?;
        let order = row.as_ref().map(order_from_row).transpose()?;
        if let Some(order) = &order {
            self.cache.put_order(order, read_at);
        }
        Ok(order)
    }

    /// An order's lines (they never change, so they are cached with the order).
    pub async fn order_items(
        &self,
        no: &OutTradeNo,
    ) -> Result<std::sync::Arc<Vec<OrderItem>>, StoreError> {
        if let Some(items) = self.cache.items(no.as_str()) {
            return Ok(items);
        }
        let items = std::sync::Arc::new(self.read_order_items(no).await?);
        self.cache.put_items(no.as_str(), items.clone());
        Ok(items)
    }

    async fn read_order_items(&self, no: &OutTradeNo) -> Result<Vec<OrderItem>, StoreError> {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT product_id, name, unit_price, num FROM order_items
             WHERE out_trade_no = $1 ORDER BY product_id",
        )
        .bind(no.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(product_id, name, unit_price, num)| OrderItem {
                product_id,
                name,
                unit_price: Fen(unit_price),
                num,
            })
            .collect())
    }

    /// Stores the prepay of a pending order. Returns false (and changes nothing) when the order
    /// is no longer pending.
    pub async fn record_prepay(
        &self,
        no: &OutTradeNo,
        prepay: &Prepay,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE orders SET prepay_id = $1, code_url = $2, code_url_expires_at = $3,
                               sign_type = $4, updated_at = $5
             WHERE out_trade_no = $6 AND status = 'pending'",
        )
        .bind(&prepay.prepay_id)
        .bind(&prepay.code_url)
        .bind(prepay.code_url_expires_at.timestamp())
        .bind(prepay.sign_type.as_str())
        .bind(now_secs())
        .bind(no.as_str())
        .execute(&self.writer)
        .await?;
        self.cache.invalidate(no.as_str());
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// Pending orders that have a prepay, oldest first, at most `limit`. Served by the partial
    /// index on pending orders, so its cost does not grow with finished orders.
    pub async fn pending_with_prepay(&self, limit: i64) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE status = 'pending' AND code_url IS NOT NULL
             ORDER BY created_at LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Closes pending orders that never got a prepay and whose time is up, restoring their
    /// stock, each in its own transaction. Returns the orders closed.
    pub async fn expire_unprepaid(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutTradeNo>, StoreError> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT out_trade_no FROM orders
             WHERE status = 'pending' AND code_url IS NULL AND expires_at <= $1
             ORDER BY created_at LIMIT $2",
        )
        .bind(now.timestamp())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        let mut closed = Vec::new();
        for no in due {
            let no = OutTradeNo::parse(&no)
                .map_err(|_| StoreError::Corrupt("orders.out_trade_no".into()))?;
            if self.close_order(&no, now).await? {
                closed.push(no);
            }
        }
        Ok(closed)
    }

    /// Closes a pending order and restores its stock, in one transaction. Returns false (and
    /// changes nothing) when the order is not pending: a close happens once, whoever tries.
    pub async fn close_order(
        &self,
        no: &OutTradeNo,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = now.timestamp();
        let mut tx = self.writer.begin().await?;
        let closed = sqlx::query(
            "UPDATE orders SET status = 'closed', is_deleted = 1, closed_at = $1, updated_at = $1
             WHERE out_trade_no = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(no.as_str())
        .execute(&mut *tx)
        .await?;
        let done = closed.rows_affected() == 1;
        if done {
            super::payments::restore_stock(&mut tx, no.as_str(), now).await?;
        }
        tx.commit().await?;
        if done {
            metrics::counter!("order_transitions_total", "to" => "closed").increment(1);
        }
        self.cache.invalidate(no.as_str());
        Ok(done)
    }

    /// Counts one more unpaid query of a pending order; returns the new count, or None when the
    /// order is no longer pending.
    pub async fn count_unpaid_query(&self, no: &OutTradeNo) -> Result<Option<i64>, StoreError> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE orders SET reconcile_attempts = reconcile_attempts + 1, updated_at = $1
             WHERE out_trade_no = $2 AND status = 'pending'
             RETURNING reconcile_attempts",
        )
        .bind(now_secs())
        .bind(no.as_str())
        .fetch_optional(&self.writer)
        .await?;
        self.cache.invalidate(no.as_str());
        Ok(attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_lists_goods_and_fits_wechats_limit() {
        assert_eq!(order_body(&[("龙井茶".into(), 2)]), "龙井茶 x2");
        assert_eq!(
            order_body(&[("a".into(), 1), ("b".into(), 3)]),
            "a x1, b x3"
        );
        let long = order_body(&[("长".repeat(200), 1)]);
        assert_eq!(long.chars().count(), 128);
        assert!(long.ends_with('…'));
    }
}

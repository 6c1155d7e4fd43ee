//! The merchant console's SQL: its password and sessions, the lock-out's failed logins, the
//! order list (keyset-paginated, on indexes), an order's timeline, shipping, products, and the
//! dashboard's figures.

use super::*;
use crate::store::console_types::*;
use crate::store::contacts::ContactKeys;

/// A payment event as the timeline reads it: received_at, source, result, transaction_id,
/// total_fee, outcome.
type PaymentRow = (i64, String, String, Option<String>, i64, Option<String>);

/// Columns of the order list, from `orders o LEFT JOIN order_contacts c`, then the contact's
/// (`contacts::CONTACT_COLUMNS`).
const SUMMARY_COLUMNS: &str =
    "o.out_trade_no, o.created_at, o.status, o.refund_due, o.shipped_at, o.refunded_fee, \
     o.total_fee, o.transaction_id, o.pay_time, o.body";

impl Db {
    /// The console's generated password (its argon2 PHC string), if one was made.
    pub async fn admin_password(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT phc FROM admin_password WHERE id = 1")
                .fetch_optional(&self.writer)
                .await?,
        )
    }

    /// Stores the console's generated password unless one exists. True when this one was
    /// stored (a replica starting at the same moment may have stored its own first).
    pub async fn set_admin_password(&self, phc: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO admin_password (id, phc, created_at) VALUES (1, $1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(phc)
        .bind(now_secs())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Starts a session (and forgets the ended ones).
    pub async fn create_admin_session(
        &self,
        token_hash: &str,
        csrf: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO admin_sessions (token_hash, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(csrf)
        .bind(now)
        .bind(expires_at.timestamp())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session with this token hash, while it lasts.
    pub async fn admin_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<AdminSession>, StoreError> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT csrf, expires_at FROM admin_sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_secs())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(csrf, expires_at)| AdminSession {
            csrf,
            expires_at: time(expires_at),
        }))
    }

    /// Ends a session.
    pub async fn delete_admin_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Failed logins from `client` since `since`.
    pub async fn login_failures(
        &self,
        client: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM admin_login_failures WHERE client = $1 AND at >= $2",
        )
        .bind(client)
        .bind(since.timestamp())
        .fetch_one(&self.writer)
        .await?)
    }

    /// Records a failed login (and forgets those older than `forget_before`).
    pub async fn record_login_failure(
        &self,
        client: &str,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM admin_login_failures WHERE at < $1")
            .bind(forget_before.timestamp())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO admin_login_failures (client, at) VALUES ($1, $2)")
            .bind(client)
            .bind(now_secs())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets a client's failed logins (after it signed in).
    pub async fn clear_login_failures(&self, client: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM admin_login_failures WHERE client = $1")
            .bind(client)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Up to `limit` orders matching `filter`, newest first (by creation, then number).
    pub async fn list_orders(
        &self,
        filter: &OrderFilter,
        limit: i64,
    ) -> Result<Vec<OrderSummary>, StoreError> {
        let keys = self.keys();
        let rows = list_query("", &keys, filter, limit)
            .build()
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| summary_from_row(&keys, row))
            .collect()
    }

    /// How the database would run [`Db::list_orders`] for `filter`: a line per step.
    pub async fn explain_list_orders(
        &self,
        filter: &OrderFilter,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = list_query(EXPLAIN, &self.keys(), filter, limit)
            .build()
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(row.len() - 1)?))
            .collect()
    }

    /// Marks a paid order shipped, and records who did it on its timeline. False when it is not
    /// paid or was shipped before.
    pub async fn ship_order_by(
        &self,
        no: &OutTradeNo,
        carrier: &str,
        tracking_no: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE orders SET shipped_at = $1, carrier = $2, tracking_no = $3, updated_at = $1
             WHERE out_trade_no = $4 AND status = 'paid' AND shipped_at IS NULL",
        )
        .bind(now)
        .bind(carrier)
        .bind(tracking_no)
        .bind(no.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            add_event(
                &mut tx,
                no.as_str(),
                now,
                "shipped",
                actor,
                &format!("{carrier} {tracking_no}"),
            )
            .await?;
        }
        tx.commit().await?;
        self.cache.invalidate(no.as_str());
        Ok(done)
    }

    /// An order's recorded events (prepays, the merchant's actions), oldest first.
    pub async fn order_events(&self, no: &OutTradeNo) -> Result<Vec<OrderEvent>, StoreError> {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT at, kind, actor, detail FROM order_events WHERE out_trade_no = $1
             ORDER BY at, id",
        )
        .bind(no.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, kind, actor, detail)| OrderEvent {
                at: time(at),
                kind,
                actor,
                detail,
            })
            .collect())
    }

    /// The payment events recorded for an order, as timeline entries, oldest first.
    pub async fn payment_timeline(&self, no: &OutTradeNo) -> Result<Vec<OrderEvent>, StoreError> {
        let rows: Vec<PaymentRow> = sqlx::query_as(
            "SELECT received_at, source, result, transaction_id, total_fee, outcome
             FROM payment_events WHERE out_trade_no = $1 ORDER BY received_at, id",
        )
        .bind(no.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, source, result, tid, fee, outcome)| OrderEvent {
                at: time(at),
                kind: source,
                actor: "wechat".into(),
                detail: format!(
                    "{result} {} {}{}",
                    Fen(fee),
                    tid.unwrap_or_default(),
                    outcome.map(|o| format!(" → {o}")).unwrap_or_default()
                )
                .replace("  ", " "),
            })
            .collect())
    }

    /// Every product, on sale or not, in id order.
    pub async fn all_products(&self) -> Result<Vec<Product>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, sku, name, description, price_fen, stock, active FROM products ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(super::catalogue::product_from_row)
            .collect()
    }

    /// Sets a product's price, stock and whether it is on sale. False when there is no such
    /// sku.
    pub async fn update_product(
        &self,
        sku: &str,
        price: Fen,
        stock: i64,
        active: bool,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE products SET price_fen = $1, stock = $2, active = $3, updated_at = $4
             WHERE sku = $5",
        )
        .bind(price.0)
        .bind(stock)
        .bind(i64::from(active))
        .bind(now_secs())
        .bind(sku)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Paid orders and revenue per Beijing day, for the days `first_day..=last_day` that had
    /// any (days since 1970-01-01, Beijing time).
    pub async fn daily_sales(
        &self,
        first_day: i64,
        last_day: i64,
    ) -> Result<Vec<DaySales>, StoreError> {
        const BEIJING: i64 = 8 * 3600;
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT (pay_time + $1) / 86400 AS day, COUNT(*),
                    CAST(SUM(total_fee) AS BIGINT)
             FROM orders
             WHERE status = 'paid' AND pay_time >= $2 AND pay_time < $3
             GROUP BY (pay_time + $1) / 86400 ORDER BY day",
        )
        .bind(BEIJING)
        .bind(first_day * 86400 - BEIJING)
        .bind((last_day + 1) * 86400 - BEIJING)
        .fetch_all(&self.reader)
        .await?;
        let refunds: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT (settled_at + $1) / 86400 AS day, CAST(SUM(refund_fee) AS BIGINT)
             FROM refunds
             WHERE status = 'succeeded' AND settled_at >= $2 AND settled_at < $3
             GROUP BY (settled_at + $1) / 86400 ORDER BY day",
        )
        .bind(BEIJING)
        .bind(first_day * 86400 - BEIJING)
        .bind((last_day + 1) * 86400 - BEIJING)
        .fetch_all(&self.reader)
        .await?;
        let mut days: Vec<DaySales> = rows
            .into_iter()
            .map(|(day, paid_orders, revenue)| DaySales {
                day,
                paid_orders,
                revenue: Fen(revenue),
                refunded: Fen(0),
            })
            .collect();
        for (day, refunded) in refunds {
            match days.iter_mut().find(|d| d.day == day) {
                Some(sales) => sales.refunded = Fen(refunded),
                None => days.push(DaySales {
                    day,
                    paid_orders: 0,
                    revenue: Fen(0),
                    refunded: Fen(refunded),
                }),
            }
        }
        days.sort_by_key(|d| d.day);
        Ok(days)
    }

    /// Refunds asked for and not settled yet.
    pub async fn refunds_in_progress(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM refunds WHERE status IN ('requested', 'processing')",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    /// How many orders wait for payment, and how many owe money back.
    pub async fn attention_counts(&self) -> Result<(i64, i64), StoreError> {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'pending'")
                .fetch_one(&self.reader)
                .await?;
        let refund_due: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE refund_due = 1")
                .fetch_one(&self.reader)
                .await?;
        Ok((pending, refund_due))
    }
}

/// Appends to an order's timeline inside `tx`.
pub(super) async fn add_event(
    tx: &mut Tx<'_>,
    no: &str,
    at: i64,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO order_events (out_trade_no, at, kind, actor, detail)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(no)
    .bind(at)
    .bind(kind)
    .bind(actor)
    .bind(detail.chars().take(500).collect::<String>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The order list's statement for `filter`, after `prefix` (empty, or [`EXPLAIN`]).
fn list_query<'a>(
    prefix: &str,
    keys: &ContactKeys,
    filter: &'a OrderFilter,
    limit: i64,
) -> sqlx::QueryBuilder<'a, Kind> {
    let contact = super::contacts::CONTACT_COLUMNS;
    let mut query = sqlx::QueryBuilder::<Kind>::new(format!(
        "{prefix}SELECT {SUMMARY_COLUMNS}, {contact} FROM orders o
         LEFT JOIN order_contacts c ON c.out_trade_no = o.out_trade_no WHERE 1 = 1"
    ));
    match filter.status {
        None => {}
        Some(ListStatus::Pending) => {
            query.push(" AND o.status = 'pending'");
        }
        Some(ListStatus::Paid) => {
            query.push(
                " AND o.status = 'paid' AND o.shipped_at IS NULL AND o.refund_due = 0 \
                 AND o.refunded_fee = 0",
            );
        }
        Some(ListStatus::Shipped) => {
            query.push(
                " AND o.status = 'paid' AND o.shipped_at IS NOT NULL AND o.refund_due = 0 \
                 AND o.refunded_fee = 0",
            );
        }
        Some(ListStatus::Refunded) => {
            query.push(" AND o.status = 'paid' AND o.refund_due = 0 AND o.refunded_fee > 0");
        }
        Some(ListStatus::Closed) => {
            query.push(" AND o.status = 'closed' AND o.refund_due = 0");
        }
        Some(ListStatus::RefundDue) => {
            query.push(" AND o.refund_due = 1");
        }
    }
    if let Some(search) = &filter.search {
        // Each branch an indexed lookup; together the orders any of them names.
        query.push(" AND o.out_trade_no IN (SELECT out_trade_no FROM orders WHERE out_trade_no = ");
        query.push_bind(search.as_str());
        query.push(" UNION SELECT out_trade_no FROM orders WHERE transaction_id = ");
        query.push_bind(search.as_str());
        // Contacts are sealed: a phone or name is found by its keyed hash, under every key of
        // the ring (rows a rotation has not re-sealed yet carry an older key's).
        for (column, hashes) in [
            ("phone_hash", keys.phone_hashes(search)),
            ("name_hash", keys.name_hashes(search)),
        ] {
            for hash in hashes {
                query.push(format!(
                    " UNION SELECT out_trade_no FROM order_contacts WHERE {column} = "
                ));
                query.push_bind(hash);
            }
        }
        query.push(")");
    }
    if let Some(from) = filter.from {
        query.push(" AND o.created_at >= ");
        query.push_bind(from.timestamp());
    }
    if let Some(to) = filter.to {
        query.push(" AND o.created_at < ");
        query.push_bind(to.timestamp());
    }
    if let Some((created, no)) = &filter.after {
        // Keyset: strictly after the last row shown, in (created_at, out_trade_no) order — a
        // row-value comparison, which both databases read as a range of the index.
        query.push(" AND (o.created_at, o.out_trade_no) < (");
        query.push_bind(created.timestamp());
        query.push(", ");
        query.push_bind(no.as_str());
        query.push(")");
    }
    query.push(" ORDER BY o.created_at DESC, o.out_trade_no DESC LIMIT ");
    query.push_bind(limit);
    query
}

fn summary_from_row(keys: &ContactKeys, row: &DbRow) -> Result<OrderSummary, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("orders.{what}"));
    let status: String = row.try_get("status")?;
    let status = OrderStatus::parse(&status).ok_or_else(|| corrupt("status"))?;
    let no: String = row.try_get("out_trade_no")?;
    let contact = super::contacts::contact_from_row(keys, &no, row)?.unwrap_or_default();
    Ok(OrderSummary {
        out_trade_no: stored_no(&no, "orders.out_trade_no")?,
        created_at: time(row.try_get("created_at")?),
        status: ListStatus::of(
            status,
            row.try_get::<i64, _>("refund_due")? != 0,
            row.try_get::<Option<i64>, _>("shipped_at")?.is_some(),
            row.try_get::<i64, _>("refunded_fee")? > 0,
        ),
        total_fee: Fen(row.try_get("total_fee")?),
        transaction_id: row.try_get("transaction_id")?,
        pay_time: row.try_get::<Option<i64>, _>("pay_time")?.map(time),
        body: row.try_get("body")?,
        name: contact.name,
        phone: contact.phone,
    })
}

// The SQL of the store, compiled once per database: `store/mod.rs` includes this file in a
// module for SQLite and one for PostgreSQL, each defining `Db` (its pools and the order cache),
// `Kind` (the sqlx database), `DbRow` and the commit-relaxing statements. Queries are written
// once, in SQL both databases accept (`$N` placeholders in ascending first use).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::domain::{Fen, OrderStatus, OutTradeNo};
use crate::store::types::*;
use crate::store::{now_secs, StoreError};

type Tx<'c> = sqlx::Transaction<'c, Kind>;

const ORDER_COLUMNS: &str = "out_trade_no, total_fee, status, body, product_id, expires_at, \
     prepay_id, code_url, code_url_expires_at, sign_type, transaction_id, pay_time, \
     created_at, updated_at, closed_at, reconcile_attempts, is_deleted, refund_due";

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
    })
}

fn product_from_row((id, name, price, stock): (i64, String, i64, i64)) -> Product {
    Product {
        id,
        name,
        price: Fen(price),
        stock,
    }
}

impl Db {
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
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        // Claim the one-time seeding: a replica starting at the same moment waits on this row
        // and then finds it taken.
        let claimed = sqlx::query(
            "INSERT INTO app_flags (name, set_at) VALUES ('demo_catalogue', $1)
             ON CONFLICT DO NOTHING",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
            .fetch_one(&mut *tx)
            .await?;
        if !claimed || count > 0 {
            tx.commit().await?;
            return Ok(0);
        }
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

impl Db {
    /// Creates an order for `items`, reserving their stock, in one transaction: either every
    /// line is reserved and the order exists, or nothing changed. Payment is due within `ttl`.
    pub async fn create_order(
        &self,
        items: &[NewItem],
        ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Order, CreateOrderError> {
        let mut tx = self.writer.begin().await?;
        let order = create_in(&mut tx, items, ttl, now).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// Creates several orders in one transaction — one commit, one disk flush for all (group
    /// commit) — each in its own savepoint, so an order refused for its stock or items changes
    /// nothing and does not affect the others. A database failure fails the whole batch.
    pub async fn create_orders(
        &self,
        requests: &[(&[NewItem], std::time::Duration)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Order, CreateOrderError>>, StoreError> {
        use sqlx::Acquire;
        let mut tx = self.writer.begin().await?;
        let mut results = Vec::with_capacity(requests.len());
        for (items, ttl) in requests {
            let mut savepoint = (&mut tx).begin().await?;
            match create_in(&mut savepoint, items, *ttl, now).await {
                Ok(order) => {
                    savepoint.commit().await?;
                    results.push(Ok(order));
                }
                Err(CreateOrderError::Store(e)) => return Err(e),
                Err(refused) => {
                    savepoint.rollback().await?;
                    results.push(Err(refused));
                }
            }
        }
        tx.commit().await?;
        Ok(results)
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

impl Db {
    /// Claims the pending orders with a prepay that are due for a reconciliation query at
    /// `now` — the oldest first, at most `limit` — and makes them due again at `next`; returns
    /// them, oldest first. One statement claims them, so of several jobs at once (replicas) each
    /// order goes to exactly one: on PostgreSQL a concurrent claim passes by rows being claimed
    /// (`SKIP LOCKED`), and the outer condition re-checks the due time of any row it reaches
    /// after another claim committed. The subquery is served by the partial index on pending orders,
    /// so the cost does not grow with finished orders.
    pub async fn claim_due_for_reconcile(
        &self,
        now: DateTime<Utc>,
        next: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE orders SET reconcile_due_at = $1
             WHERE reconcile_due_at <= $2 AND status = 'pending' AND out_trade_no IN (
                 SELECT out_trade_no FROM orders
                 WHERE status = 'pending' AND code_url IS NOT NULL AND reconcile_due_at <= $2
                 ORDER BY created_at LIMIT $3 {SKIP_LOCKED})
             RETURNING {ORDER_COLUMNS}"
        ))
        .bind(next.timestamp())
        .bind(now.timestamp())
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        let mut orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        orders.sort_by_key(|o| o.created_at);
        Ok(orders)
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
            restore_stock(&mut tx, no.as_str(), now).await?;
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


impl Db {
    /// Records a verified payment durably (committed to disk when this returns). The same
    /// transaction, or a second failure for one order, is recorded once.
    pub async fn record_payment_event(&self, event: &PaymentEvent) -> Result<Recorded, StoreError> {
        let mut recorded = self.record_payment_events(&[event]).await?;
        Ok(recorded.pop().expect("one event in, one record out"))
    }

    /// Records several payments in one transaction — one commit, one disk flush, for all of
    /// them (group commit). The answer lists them in the order given.
    pub async fn record_payment_events(
        &self,
        events: &[&PaymentEvent],
    ) -> Result<Vec<Recorded>, StoreError> {
        let received_at = now_secs();
        let mut tx = self.writer.begin().await?;
        // One statement inserts them all; what already existed is looked up one by one (rare:
        // duplicates).
        let mut insert = sqlx::QueryBuilder::<Kind>::new(
            "INSERT INTO payment_events
                 (out_trade_no, result, transaction_id, total_fee, pay_time, source, received_at) ",
        );
        insert.push_values(events, |mut row, event| {
            let (result, transaction_id, pay_time) = columns(event);
            row.push_bind(event.out_trade_no.as_str())
                .push_bind(result)
                .push_bind(transaction_id)
                .push_bind(event.total_fee.0)
                .push_bind(pay_time)
                .push_bind(event.source.as_str())
                .push_bind(received_at);
        });
        insert.push(" ON CONFLICT DO NOTHING RETURNING id, out_trade_no, transaction_id");
        let inserted = insert.build().fetch_all(&mut *tx).await?;
        let mut new: std::collections::HashMap<(String, Option<String>), i64> = Default::default();
        for row in &inserted {
            new.insert(
                (row.try_get("out_trade_no")?, row.try_get("transaction_id")?),
                row.try_get("id")?,
            );
        }
        let mut recorded = Vec::with_capacity(events.len());
        for event in events {
            let (_, transaction_id, _) = columns(event);
            let key = (
                event.out_trade_no.to_string(),
                transaction_id.map(str::to_owned),
            );
            // The first of several equal events in the batch is the new one.
            recorded.push(match new.remove(&key) {
                Some(id) => Recorded {
                    id,
                    new: true,
                    applied: false,
                },
                None => record_in(&mut tx, event, received_at).await?,
            });
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Events recorded but not applied yet, oldest first.
    pub async fn unapplied_payment_events(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM payment_events WHERE applied_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.writer)
        .await?)
    }

    /// Applies one recorded event to its order, exactly once.
    pub async fn apply_payment_event(&self, id: i64) -> Result<Applied, StoreError> {
        let mut applied = self.apply_payment_events(&[id]).await?;
        Ok(applied.pop().expect("one event in, one result out"))
    }

    /// Applies several events in one transaction. If any fails, none is applied and the error
    /// is returned; the caller can then apply them one by one.
    ///
    /// The commit does not wait for the disk (SQLite: `synchronous=NORMAL` for this
    /// transaction only; PostgreSQL: `synchronous_commit = off` for it): the events it applies
    /// are already durable in the inbox, and the log's order means an applied state is never on
    /// disk without the events it came from. Should a power cut lose the apply, the replay
    /// redoes it at the next start.
    pub async fn apply_payment_events(&self, ids: &[i64]) -> Result<Vec<Applied>, StoreError> {
        let now = now_secs();
        let mut conn = self.writer.acquire().await?;
        if let Some(relax) = RELAX_BEFORE {
            sqlx::query(relax).execute(&mut *conn).await?;
        }
        let result = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            if let Some(relax) = RELAX_IN_TX {
                sqlx::query(relax).execute(&mut *tx).await?;
            }
            let applied = apply_all(&mut tx, ids, now).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(applied)
        }
        .await;
        if let Some(restore) = RELAX_AFTER {
            if let Err(e) = sqlx::query(restore).execute(&mut *conn).await {
                // Never hand a connection back that would commit without flushing.
                conn.close_on_drop();
                return Err(e.into());
            }
        }
        let applied = result?;
        self.forget(&applied);
        Ok(applied)
    }

    /// Drops cached copies of orders that applying changed, and counts the transitions.
    fn forget(&self, applied: &[Applied]) {
        for applied in applied {
            if let Applied::Now {
                out_trade_no,
                outcome,
            } = applied
            {
                self.cache.invalidate(out_trade_no.as_str());
                let to = match outcome {
                    Outcome::Paid => "paid",
                    Outcome::Failed => "failed",
                    Outcome::PaidAfterClose => "paid_after_close",
                    Outcome::Duplicate | Outcome::Ignored => continue,
                };
                metrics::counter!("order_transitions_total", "to" => to).increment(1);
            }
        }
    }

}


/// Creates one order and reserves its stock inside `tx`.
async fn create_in(
    tx: &mut Tx<'_>,
    items: &[NewItem],
    ttl: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Order, CreateOrderError> {
    if items.is_empty() || items.iter().any(|i| i.num <= 0) {
        return Err(CreateOrderError::Empty);
    }
    let created = now.timestamp();
    let expires = created + ttl.as_secs() as i64;
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
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = reserved else {
            let available: Option<i64> =
                sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
                    .bind(item.product_id)
                    .fetch_optional(&mut **tx)
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
    .execute(&mut **tx)
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
        .execute(&mut **tx)
        .await?;
    }
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

/// The inbox columns of an event: result, transaction_id, pay_time.
fn columns(event: &PaymentEvent) -> (&'static str, Option<&str>, Option<i64>) {
    match &event.result {
        PaymentResult::Paid {
            transaction_id,
            pay_time,
        } => (
            "SUCCESS",
            Some(transaction_id.as_str()),
            Some(pay_time.timestamp()),
        ),
        PaymentResult::Failed => ("FAIL", None, None),
    }
}

/// Records one event inside `tx`, or finds the one recorded before.
async fn record_in(
    tx: &mut Tx<'_>,
    event: &PaymentEvent,
    received_at: i64,
) -> Result<Recorded, StoreError> {
    let (result, transaction_id, pay_time) = columns(event);
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO payment_events
             (out_trade_no, result, transaction_id, total_fee, pay_time, source, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING
         RETURNING id",
    )
    .bind(event.out_trade_no.as_str())
    .bind(result)
    .bind(transaction_id)
    .bind(event.total_fee.0)
    .bind(pay_time)
    .bind(event.source.as_str())
    .bind(received_at)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = inserted {
        return Ok(Recorded {
            id,
            new: true,
            applied: false,
        });
    }
    let existing = match transaction_id {
        Some(tid) => {
            sqlx::query("SELECT id, applied_at FROM payment_events WHERE transaction_id = $1")
                .bind(tid)
                .fetch_one(&mut **tx)
                .await?
        }
        None => {
            sqlx::query(
                "SELECT id, applied_at FROM payment_events
                 WHERE out_trade_no = $1 AND result = 'FAIL'",
            )
            .bind(event.out_trade_no.as_str())
            .fetch_one(&mut **tx)
            .await?
        }
    };
    Ok(Recorded {
        id: existing.try_get("id")?,
        new: false,
        applied: existing.try_get::<Option<i64>, _>("applied_at")?.is_some(),
    })
}

/// An event this transaction has claimed.
struct Claimed {
    id: i64,
    out_trade_no: String,
    success: bool,
    transaction_id: Option<String>,
    total_fee: i64,
    pay_time: Option<i64>,
}

const CLAIMED_COLUMNS: &str = "id, out_trade_no, result, transaction_id, total_fee, pay_time";

fn claimed_from_row(row: &DbRow) -> Result<Claimed, StoreError> {
    Ok(Claimed {
        id: row.try_get("id")?,
        out_trade_no: row.try_get("out_trade_no")?,
        success: row.try_get::<String, _>("result")? == "SUCCESS",
        transaction_id: row.try_get("transaction_id")?,
        total_fee: row.try_get("total_fee")?,
        pay_time: row.try_get("pay_time")?,
    })
}

/// Claims the given events, those not applied yet: a second consumer finds nothing to claim.
/// The outcome written is the usual one; [`settle`] corrects it in the rare other cases.
async fn claim(tx: &mut Tx<'_>, ids: &[i64], now: i64) -> Result<Vec<Claimed>, StoreError> {
    let mut claim =
        sqlx::QueryBuilder::<Kind>::new("UPDATE payment_events SET applied_at = ");
    claim.push_bind(now);
    claim.push(
        ", outcome = CASE result WHEN 'SUCCESS' THEN 'paid' ELSE 'failed' END
         WHERE applied_at IS NULL AND id IN (",
    );
    let mut list = claim.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    claim.push(") RETURNING ");
    claim.push(CLAIMED_COLUMNS);
    let rows = claim.build().fetch_all(&mut **tx).await?;
    rows.iter().map(claimed_from_row).collect()
}

/// Applies events inside `tx`. Payments for distinct pending orders — nearly all of them — are
/// applied by one statement; the rest one by one.
async fn apply_all(tx: &mut Tx<'_>, ids: &[i64], now: i64) -> Result<Vec<Applied>, StoreError> {
    let claimed = claim(tx, ids, now).await?;
    let mut per_order: std::collections::HashMap<&str, usize> = Default::default();
    for c in &claimed {
        *per_order.entry(c.out_trade_no.as_str()).or_default() += 1;
    }
    let fast: Vec<&Claimed> = claimed
        .iter()
        .filter(|c| c.success && per_order[c.out_trade_no.as_str()] == 1)
        .collect();
    let mut paid = std::collections::HashSet::new();
    if !fast.is_empty() {
        let mut pay = sqlx::QueryBuilder::<Kind>::new(
            "UPDATE orders SET status = 'paid', transaction_id = e.transaction_id,
                               pay_time = e.pay_time, updated_at = ",
        );
        pay.push_bind(now);
        pay.push(
            " FROM payment_events AS e
             WHERE orders.out_trade_no = e.out_trade_no AND orders.status = 'pending'
               AND orders.total_fee = e.total_fee AND e.id IN (",
        );
        let mut list = pay.separated(", ");
        for c in &fast {
            list.push_bind(c.id);
        }
        pay.push(") RETURNING orders.out_trade_no");
        for row in pay.build().fetch_all(&mut **tx).await? {
            paid.insert(row.try_get::<String, _>(0)?);
        }
    }
    let mut by_id: std::collections::HashMap<i64, &Claimed> =
        claimed.iter().map(|c| (c.id, c)).collect();
    let mut applied = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(c) = by_id.remove(id) else {
            applied.push(Applied::Before);
            continue;
        };
        let fast_paid =
            c.success && per_order[c.out_trade_no.as_str()] == 1 && paid.contains(&c.out_trade_no);
        applied.push(if fast_paid {
            Applied::Now {
                out_trade_no: parse_no(&c.out_trade_no)?,
                outcome: Outcome::Paid,
            }
        } else {
            settle(tx, c, now).await?
        });
    }
    Ok(applied)
}

fn parse_no(no: &str) -> Result<OutTradeNo, StoreError> {
    OutTradeNo::parse(no).map_err(|_| StoreError::Corrupt("payment_events.out_trade_no".into()))
}

/// Applies one claimed event to its order, one statement at a time, and corrects the claimed
/// outcome where it differs.
async fn settle(tx: &mut Tx<'_>, event: &Claimed, now: i64) -> Result<Applied, StoreError> {
    let id = event.id;
    let no = event.out_trade_no.clone();
    let out_trade_no = parse_no(&no)?;
    let total_fee = event.total_fee;
    let outcome = if event.success {
        let tid: String = event
            .transaction_id
            .clone()
            .ok_or_else(|| StoreError::Corrupt("payment_events.transaction_id".into()))?;
        let pay_time: i64 = event
            .pay_time
            .ok_or_else(|| StoreError::Corrupt("payment_events.pay_time".into()))?;
        let paid = sqlx::query(
            "UPDATE orders SET status = 'paid', transaction_id = $1, pay_time = $2,
                                   updated_at = $3
                 WHERE out_trade_no = $4 AND status = 'pending' AND total_fee = $5",
        )
        .bind(&tid)
        .bind(pay_time)
        .bind(now)
        .bind(&no)
        .bind(total_fee)
        .execute(&mut **tx)
        .await?;
        if paid.rows_affected() == 1 {
            Outcome::Paid
        } else {
            let order =
                sqlx::query("SELECT status, transaction_id FROM orders WHERE out_trade_no = $1")
                    .bind(&no)
                    .fetch_optional(&mut **tx)
                    .await?;
            match order {
                None => Outcome::Ignored,
                Some(order) => {
                    let status: String = order.try_get("status")?;
                    let existing: Option<String> = order.try_get("transaction_id")?;
                    if status == "paid" && existing.as_deref() == Some(tid.as_str()) {
                        Outcome::Duplicate
                    } else if status == "pending" {
                        // The amount differs from the order's: never paid on it.
                        Outcome::Ignored
                    } else {
                        sqlx::query(
                            "UPDATE orders SET refund_due = 1, updated_at = $1
                                 WHERE out_trade_no = $2",
                        )
                        .bind(now)
                        .bind(&no)
                        .execute(&mut **tx)
                        .await?;
                        Outcome::PaidAfterClose
                    }
                }
            }
        }
    } else {
        let failed = sqlx::query(
            "UPDATE orders SET status = 'failed', is_deleted = 1, closed_at = $1,
                                   updated_at = $1
                 WHERE out_trade_no = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(&no)
        .execute(&mut **tx)
        .await?;
        if failed.rows_affected() == 1 {
            restore_stock(tx, &no, now).await?;
            Outcome::Failed
        } else {
            Outcome::Ignored
        }
    };
    if !matches!(outcome, Outcome::Paid | Outcome::Failed) {
        sqlx::query("UPDATE payment_events SET outcome = $1 WHERE id = $2")
            .bind(outcome.as_str())
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(Applied::Now {
        out_trade_no,
        outcome,
    })
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

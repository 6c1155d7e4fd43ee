//! The payment inbox: verified payments recorded durably, then applied to their orders exactly
//! once. Applying is one transaction: claim the event, move the order, restore stock when the
//! payment failed, write the outcome.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::orders::time;
use super::{now_secs, Store, StoreError};
use crate::domain::{Fen, OutTradeNo};

/// Where a payment was learned of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentSource {
    Notify,
    Query,
    Reconcile,
}

impl PaymentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentSource::Notify => "notify",
            PaymentSource::Query => "query",
            PaymentSource::Reconcile => "reconcile",
        }
    }
}

/// What WeChat said of the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentResult {
    Paid {
        transaction_id: String,
        pay_time: DateTime<Utc>,
    },
    /// A verified `result_code=FAIL` notify: the payment failed.
    Failed,
}

/// A verified payment for an order, amount already checked against the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    pub out_trade_no: OutTradeNo,
    pub result: PaymentResult,
    pub total_fee: Fen,
    pub source: PaymentSource,
}

/// An event as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    /// False when the same payment had been recorded before (a duplicate).
    pub new: bool,
    /// True when it has already been applied to its order.
    pub applied: bool,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order is now paid.
    Paid,
    /// The order was already paid by this transaction.
    Duplicate,
    /// The order was closed before the payment arrived: the money must be refunded.
    PaidAfterClose,
    /// The payment failed: the order is failed and its stock restored.
    Failed,
    /// Nothing to do (no such pending order, or it was already final).
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Paid => "paid",
            Outcome::Duplicate => "duplicate",
            Outcome::PaidAfterClose => "paid_after_close",
            Outcome::Failed => "failed",
            Outcome::Ignored => "ignored",
        }
    }
}

/// The result of [`Store::apply_payment_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Now {
        out_trade_no: OutTradeNo,
        outcome: Outcome,
    },
    /// Another consumer (or an earlier run) applied it first.
    Before,
}

impl Store {
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
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
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
    /// The commit does not wait for the disk (`synchronous=NORMAL` for this transaction only):
    /// the events it applies are already durable in the inbox, and WAL order means an applied
    /// state is never on disk without the events it came from. Should a power cut lose the
    /// apply, the replay redoes it at the next start.
    pub async fn apply_payment_events(&self, ids: &[i64]) -> Result<Vec<Applied>, StoreError> {
        let now = now_secs();
        let mut conn = self.writer.acquire().await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        let result = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let applied = apply_all(&mut tx, ids, now).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(applied)
        }
        .await;
        if let Err(e) = sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await
        {
            // Never hand a connection back that would commit without flushing.
            conn.close_on_drop();
            return Err(e.into());
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

    /// When an order's payment event was applied, and with what outcome (for tests and audits).
    pub async fn payment_outcomes(
        &self,
        no: &OutTradeNo,
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>, StoreError> {
        let rows: Vec<(Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT outcome, applied_at FROM payment_events WHERE out_trade_no = $1 ORDER BY id",
        )
        .bind(no.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(outcome, at)| (outcome.unwrap_or_else(|| "unapplied".into()), at.map(time)))
            .collect())
    }
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

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

fn claimed_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Claimed, StoreError> {
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
        sqlx::QueryBuilder::<sqlx::Sqlite>::new("UPDATE payment_events SET applied_at = ");
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
        let mut pay = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
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
pub(super) async fn restore_stock(tx: &mut Tx<'_>, no: &str, now: i64) -> Result<(), StoreError> {
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

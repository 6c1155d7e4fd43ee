//! The payment inbox: recording verified payments durably (group-committed), and applying them
//! to their orders exactly once.

use super::*;

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
                 (out_trade_no, result, transaction_id, total_fee, fee_type, cash_fee, coupon_fee,
                  pay_time, source, received_at, wechat_no) ",
        );
        insert.push_values(events, |mut row, event| {
            let (result, transaction_id, pay_time) = columns(event);
            row.push_bind(event.out_trade_no.as_str())
                .push_bind(result)
                .push_bind(transaction_id)
                .push_bind(event.total_fee.0)
                .push_bind(event.fee_type.as_str())
                .push_bind(event.cash_fee.map(|f| f.0))
                .push_bind(event.coupon_fee.map(|f| f.0))
                .push_bind(pay_time)
                .push_bind(event.source.as_str())
                .push_bind(received_at)
                .push_bind(event.wechat_no.as_ref().map(OutTradeNo::as_str));
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

    /// The transaction of a payment that arrived for an order it could not pay (after the
    /// order closed, or of another amount): the money that is due back, if any.
    pub async fn late_payment(&self, no: &OutTradeNo) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT transaction_id FROM payment_events
             WHERE out_trade_no = $1 AND outcome IN ('paid_after_close', 'amount_mismatch')
             ORDER BY id LIMIT 1",
        )
        .bind(no.as_str())
        .fetch_optional(&self.reader)
        .await?
        .flatten())
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
            let applied = apply_all(&mut tx, ids, now, self.events()).await?;
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
                    Outcome::PaidAfterClose => "paid_after_close",
                    Outcome::AmountMismatch => "amount_mismatch",
                    Outcome::PayError | Outcome::Duplicate | Outcome::Ignored => continue,
                };
                metrics::counter!("order_transitions_total", "to" => to).increment(1);
            }
        }
    }
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
             (out_trade_no, result, transaction_id, total_fee, fee_type, cash_fee, coupon_fee,
              pay_time, source, received_at, wechat_no)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT DO NOTHING
         RETURNING id",
    )
    .bind(event.out_trade_no.as_str())
    .bind(result)
    .bind(transaction_id)
    .bind(event.total_fee.0)
    .bind(event.fee_type.as_str())
    .bind(event.cash_fee.map(|f| f.0))
    .bind(event.coupon_fee.map(|f| f.0))
    .bind(pay_time)
    .bind(event.source.as_str())
    .bind(received_at)
    .bind(event.wechat_no.as_ref().map(OutTradeNo::as_str))
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

/// An event this transaction has taken for applying.
struct Taken {
    id: i64,
    out_trade_no: String,
    success: bool,
    transaction_id: Option<String>,
    total_fee: i64,
    /// In the order's currency (CNY).
    cny: bool,
    cash_fee: Option<i64>,
    coupon_fee: Option<i64>,
    pay_time: Option<i64>,
    /// The payment attempt's number, when not the order's own.
    wechat_no: Option<String>,
}

const TAKEN_COLUMNS: &str = "id, out_trade_no, result, transaction_id, total_fee, fee_type, \
     cash_fee, coupon_fee, pay_time, wechat_no";

fn taken_from_row(row: &DbRow) -> Result<Taken, StoreError> {
    Ok(Taken {
        id: row.try_get("id")?,
        out_trade_no: row.try_get("out_trade_no")?,
        success: row.try_get::<String, _>("result")? == "SUCCESS",
        transaction_id: row.try_get("transaction_id")?,
        total_fee: row.try_get("total_fee")?,
        cny: row
            .try_get::<Option<String>, _>("fee_type")?
            .is_none_or(|f| f == CNY),
        cash_fee: row.try_get("cash_fee")?,
        coupon_fee: row.try_get("coupon_fee")?,
        pay_time: row.try_get("pay_time")?,
        wechat_no: row.try_get("wechat_no")?,
    })
}

/// Takes the given events that are not applied yet, marking them applied: a second consumer
/// finds nothing left to take. The outcome written is the usual one; [`settle`] corrects it in
/// the rare other cases.
async fn take(tx: &mut Tx<'_>, ids: &[i64], now: i64) -> Result<Vec<Taken>, StoreError> {
    let mut take = sqlx::QueryBuilder::<Kind>::new("UPDATE payment_events SET applied_at = ");
    take.push_bind(now);
    take.push(
        ", outcome = CASE result WHEN 'SUCCESS' THEN 'paid' ELSE 'payerror' END
         WHERE applied_at IS NULL AND id IN (",
    );
    let mut list = take.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    take.push(") RETURNING ");
    take.push(TAKEN_COLUMNS);
    let rows = take.build().fetch_all(&mut **tx).await?;
    rows.iter().map(taken_from_row).collect()
}

/// Applies events inside `tx`. Payments for distinct pending orders — nearly all of them — are
/// applied by one statement; the rest one by one.
async fn apply_all(
    tx: &mut Tx<'_>,
    ids: &[i64],
    now: i64,
    events: bool,
) -> Result<Vec<Applied>, StoreError> {
    let taken = take(tx, ids, now).await?;
    let mut per_order: std::collections::HashMap<&str, usize> = Default::default();
    for c in &taken {
        *per_order.entry(c.out_trade_no.as_str()).or_default() += 1;
    }
    let fast: Vec<&Taken> = taken
        .iter()
        .filter(|c| c.success && c.cny && per_order[c.out_trade_no.as_str()] == 1)
        .collect();
    let mut paid = std::collections::HashSet::new();
    if !fast.is_empty() {
        let mut pay = sqlx::QueryBuilder::<Kind>::new(
            "UPDATE orders SET status = 'paid', transaction_id = e.transaction_id,
                               pay_time = e.pay_time, cash_fee = e.cash_fee,
                               coupon_fee = e.coupon_fee, paid_no = e.wechat_no, updated_at = ",
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
        let mut nos = Vec::with_capacity(fast.len());
        for row in pay.build().fetch_all(&mut **tx).await? {
            nos.push(row.try_get::<String, _>(0)?);
        }
        if events {
            super::outbox::write_paid(tx, &nos, now).await?;
        }
        paid.extend(nos);
    }
    let mut by_id: std::collections::HashMap<i64, &Taken> =
        taken.iter().map(|c| (c.id, c)).collect();
    let mut applied = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(c) = by_id.remove(id) else {
            applied.push(Applied::Before);
            continue;
        };
        let fast_paid = c.success
            && c.cny
            && per_order[c.out_trade_no.as_str()] == 1
            && paid.contains(&c.out_trade_no);
        applied.push(if fast_paid {
            Applied::Now {
                out_trade_no: stored_no(&c.out_trade_no, "payment_events.out_trade_no")?,
                outcome: Outcome::Paid,
            }
        } else {
            settle(tx, c, now, events).await?
        });
    }
    // A payment attempt WeChat took money for can take no more: it is over there.
    let attempts: Vec<&str> = taken
        .iter()
        .filter(|c| c.success)
        .filter_map(|c| c.wechat_no.as_deref())
        .collect();
    if !attempts.is_empty() {
        let mut over = sqlx::QueryBuilder::<Kind>::new("UPDATE payment_attempts SET closed_at = ");
        over.push_bind(now);
        over.push(" WHERE closed_at IS NULL AND attempt_no IN (");
        let mut list = over.separated(", ");
        for no in attempts {
            list.push_bind(no);
        }
        over.push(")");
        over.build().execute(&mut **tx).await?;
    }
    Ok(applied)
}

/// Applies one taken event to its order, one statement at a time, and corrects the outcome
/// written by [`take`] where it differs.
async fn settle(
    tx: &mut Tx<'_>,
    event: &Taken,
    now: i64,
    events: bool,
) -> Result<Applied, StoreError> {
    let no = event.out_trade_no.as_str();
    let outcome = if event.success {
        settle_payment(tx, event, now, events).await?
    } else {
        // A failed attempt: shown on the order, which stays open (the shopper may scan again).
        let noted = sqlx::query(
            "UPDATE orders SET wechat_state = 'PAYERROR', updated_at = $1
             WHERE out_trade_no = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(no)
        .execute(&mut **tx)
        .await?;
        if noted.rows_affected() == 1 {
            Outcome::PayError
        } else {
            Outcome::Ignored
        }
    };
    if !matches!(outcome, Outcome::Paid | Outcome::PayError) {
        sqlx::query("UPDATE payment_events SET outcome = $1 WHERE id = $2")
            .bind(outcome.as_str())
            .bind(event.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(Applied::Now {
        out_trade_no: stored_no(no, "payment_events.out_trade_no")?,
        outcome,
    })
}

/// Applies a payment: it pays a pending order of the same amount and currency; any other money
/// WeChat took for the order is due back.
async fn settle_payment(
    tx: &mut Tx<'_>,
    event: &Taken,
    now: i64,
    events: bool,
) -> Result<Outcome, StoreError> {
    let no = event.out_trade_no.as_str();
    let tid = event
        .transaction_id
        .as_deref()
        .ok_or_else(|| StoreError::Corrupt("payment_events.transaction_id".into()))?;
    let pay_time = event
        .pay_time
        .ok_or_else(|| StoreError::Corrupt("payment_events.pay_time".into()))?;
    if event.cny {
        let paid = sqlx::query(
            "UPDATE orders SET status = 'paid', transaction_id = $1, pay_time = $2,
                               cash_fee = $3, coupon_fee = $4, updated_at = $5, paid_no = $8
             WHERE out_trade_no = $6 AND status = 'pending' AND total_fee = $7",
        )
        .bind(tid)
        .bind(pay_time)
        .bind(event.cash_fee)
        .bind(event.coupon_fee)
        .bind(now)
        .bind(no)
        .bind(event.total_fee)
        .bind(event.wechat_no.as_deref())
        .execute(&mut **tx)
        .await?;
        if paid.rows_affected() == 1 {
            if events {
                super::outbox::write(tx, ORDER_PAID, Some(no), no, "", now).await?;
            }
            return Ok(Outcome::Paid);
        }
    }
    let order = sqlx::query("SELECT status, transaction_id FROM orders WHERE out_trade_no = $1")
        .bind(no)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(order) = order else {
        return Ok(Outcome::Ignored);
    };
    let status: String = order.try_get("status")?;
    let existing: Option<String> = order.try_get("transaction_id")?;
    if status == "paid" && existing.as_deref() == Some(tid) {
        return Ok(Outcome::Duplicate);
    }
    let outcome = if status == "pending" {
        // WeChat took another amount (or currency) for this order: it cannot be paid any more,
        // and that money goes back.
        close_in(tx, no, now, None, events).await?;
        Outcome::AmountMismatch
    } else {
        Outcome::PaidAfterClose
    };
    // The money was found: due back, and nothing more to watch for.
    sqlx::query(
        "UPDATE orders SET refund_due = 1, watch_due_at = NULL, updated_at = $1
         WHERE out_trade_no = $2",
    )
    .bind(now)
    .bind(no)
    .execute(&mut **tx)
    .await?;
    if events {
        super::outbox::write(tx, ORDER_REFUND_DUE, Some(no), no, outcome.as_str(), now).await?;
    }
    Ok(outcome)
}

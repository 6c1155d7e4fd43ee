//! Refunds: recorded before WeChat hears of them, against the order's refunded amount reserved
//! by one conditional update, followed until WeChat settles them, and settled once.

use super::*;
use crate::store::console_types::*;

pub(super) const REFUND_COLUMNS: &str =
    "r.out_refund_no, r.out_trade_no, r.refund_fee, r.reason, r.restock, \
     r.status, r.refund_id, r.requested_by, r.created_at, r.settled_at, r.late, \
     COALESCE(r.total_fee, o.total_fee) AS payment_fee, r.failure, r.attempts, \
     COALESCE(r.wechat_no, r.out_trade_no) AS wechat_no";

impl Db {
    /// Records a refund of `fee` for a paid order and reserves it against what was paid, in one
    /// transaction; the caller asks WeChat afterwards, with the returned `out_refund_no`, and
    /// the follower takes it up at `follow_at` if it is still unsettled then. Refused (nothing
    /// changed) when the order is not paid or `fee` exceeds what is left — decided by one
    /// conditional update, so concurrent requests can never together exceed the payment.
    pub async fn request_refund(
        &self,
        no: &OutTradeNo,
        ask: &RefundAsk<'_>,
        follow_at: i64,
    ) -> Result<Refund, RefundRefused> {
        let now = now_secs();
        let fee = ask.fee;
        let mut tx = self.writer.begin().await?;
        let reserved: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE orders SET refunded_fee = refunded_fee + $1, updated_at = $2
             WHERE out_trade_no = $3 AND status = 'paid' AND refunded_fee + $1 <= total_fee
             RETURNING total_fee, refunded_fee",
        )
        .bind(fee.0)
        .bind(now)
        .bind(no.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((total_fee, _)) = reserved else {
            let row: Option<(String, i64, i64)> = sqlx::query_as(
                "SELECT status, total_fee, refunded_fee FROM orders WHERE out_trade_no = $1",
            )
            .bind(no.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            return Err(match row {
                None => RefundRefused::NoSuchOrder,
                Some((status, _, _)) if status != "paid" => RefundRefused::NotPaid,
                Some((_, total, refunded)) => RefundRefused::ExceedsPaid {
                    remaining: Fen(total - refunded),
                },
            });
        };
        let refund = insert_refund(
            &mut tx,
            NewRefund {
                no,
                fee,
                total_fee: Fen(total_fee),
                reason: ask.reason,
                restock: ask.restock,
                late: false,
                requested_by: ask.requested_by,
                now,
                follow_at,
                wechat_no: None,
            },
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(no.as_str());
        Ok(refund)
    }

    /// Records the refund of an order's late payment (money WeChat took for an order that could
    /// not take it: `refund_due`) — the whole payment, as WeChat reported it — and clears
    /// `refund_due`, in one transaction: `None` when the order has nothing due (already
    /// refunded, or another replica got there first) or, with `first_only` (the automatic
    /// refund), when a late refund was made before (WeChat closed it: the merchant decides).
    pub async fn request_late_refund(
        &self,
        no: &OutTradeNo,
        requested_by: &str,
        follow_at: i64,
        first_only: bool,
    ) -> Result<Option<Refund>, StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let cleared = sqlx::query(
            "UPDATE orders SET refund_due = 0, updated_at = $1
             WHERE out_trade_no = $2 AND refund_due = 1
               AND NOT ($3 = 1 AND EXISTS (SELECT 1 FROM refunds
                                           WHERE refunds.out_trade_no = $2 AND late = 1))",
        )
        .bind(now)
        .bind(no.as_str())
        .bind(i64::from(first_only))
        .execute(&mut *tx)
        .await?;
        if cleared.rows_affected() == 0 {
            return Ok(None);
        }
        let payment: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT total_fee, wechat_no FROM payment_events
             WHERE out_trade_no = $1 AND outcome IN ('paid_after_close', 'amount_mismatch')
             ORDER BY id LIMIT 1",
        )
        .bind(no.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((paid, wechat_no)) = payment else {
            // Nothing recorded to refund: leave the order as it was.
            tx.rollback().await?;
            return Ok(None);
        };
        let refund = insert_refund(
            &mut tx,
            NewRefund {
                no,
                fee: Fen(paid),
                total_fee: Fen(paid),
                reason: LATE_REASON,
                restock: false,
                late: true,
                requested_by,
                now,
                follow_at,
                wechat_no: wechat_no.as_deref(),
            },
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(no.as_str());
        Ok(Some(refund))
    }

    /// Records a refund WeChat made that this shop did not ask for (made by hand in the merchant
    /// platform), once: true when it was new. Its amount counts as refunded.
    pub async fn record_external_refund(
        &self,
        no: &OutTradeNo,
        out_refund_no: &str,
        fee: Fen,
        state: RefundState,
        refund_id: &str,
    ) -> Result<bool, StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO refunds (out_refund_no, out_trade_no, refund_fee, reason, restock, status,
                                  refund_id, requested_by, created_at, updated_at, settled_at)
             SELECT $1, out_trade_no, $2, $3, 0, $4, $5, 'wechat', $6, $6,
                    CASE WHEN $7 = 1 THEN $6 ELSE NULL END
             FROM orders WHERE out_trade_no = $8
             ON CONFLICT (out_refund_no) DO NOTHING",
        )
        .bind(out_refund_no)
        .bind(fee.0)
        .bind(EXTERNAL_REASON)
        .bind(state.as_str())
        .bind(refund_id)
        .bind(now)
        .bind(i64::from(state.settled()))
        .bind(no.as_str())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(false);
        }
        if state != RefundState::Closed {
            sqlx::query(
                "UPDATE orders SET refunded_fee = refunded_fee + $1, updated_at = $2
                 WHERE out_trade_no = $3",
            )
            .bind(fee.0)
            .bind(now)
            .bind(no.as_str())
            .execute(&mut *tx)
            .await?;
        }
        super::console::add_event(
            &mut tx,
            no.as_str(),
            now,
            &format!("refund_{}", state.as_str()),
            "wechat",
            &format!("{out_refund_no} {fee} (made in the merchant platform)"),
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(no.as_str());
        Ok(true)
    }

    /// An order's refunds, oldest first.
    pub async fn refunds_of(&self, no: &OutTradeNo) -> Result<Vec<Refund>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds r JOIN orders o USING (out_trade_no)
             WHERE r.out_trade_no = $1 ORDER BY r.created_at, r.out_refund_no"
        ))
        .bind(no.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(refund_from_row).collect()
    }

    /// One refund by its number.
    pub async fn refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds r JOIN orders o USING (out_trade_no)
             WHERE r.out_refund_no = $1"
        ))
        .bind(out_refund_no)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(refund_from_row).transpose()
    }

    /// Claims up to `limit` unsettled refunds due to be followed by `now`, moving each one's
    /// next look to `lease_until` (so another replica's follower skips it) and counting the
    /// attempt. Oldest due first.
    pub async fn claim_refunds_to_follow(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Refund>, StoreError> {
        let claimed: Vec<(String,)> = sqlx::query_as(
            "UPDATE refunds SET follow_at = $1, attempts = attempts + 1
             WHERE out_refund_no IN (
                 SELECT out_refund_no FROM refunds
                 WHERE status IN ('requested', 'processing') AND follow_at <= $2
                 ORDER BY follow_at LIMIT $3)
               AND status IN ('requested', 'processing') AND follow_at <= $2
             RETURNING out_refund_no",
        )
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        let mut refunds = Vec::with_capacity(claimed.len());
        for (out_refund_no,) in claimed {
            if let Some(refund) = self.refund(&out_refund_no).await? {
                refunds.push(refund);
            }
        }
        Ok(refunds)
    }

    /// When the follower next looks at an unsettled refund.
    pub async fn follow_refund_at(
        &self,
        out_refund_no: &str,
        follow_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE refunds SET follow_at = $1
             WHERE out_refund_no = $2 AND status IN ('requested', 'processing')",
        )
        .bind(follow_at)
        .bind(out_refund_no)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// WeChat accepted the refund (it is `processing` there): true when this changed it.
    pub async fn refund_accepted(
        &self,
        out_refund_no: &str,
        refund_id: &str,
    ) -> Result<bool, StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let moved: Option<(String, i64)> = sqlx::query_as(
            "UPDATE refunds SET status = 'processing', refund_id = $1, updated_at = $2
             WHERE out_refund_no = $3 AND status = 'requested'
             RETURNING out_trade_no, refund_fee",
        )
        .bind(refund_id)
        .bind(now)
        .bind(out_refund_no)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((no, fee)) = moved else {
            tx.commit().await?;
            return Ok(false);
        };
        super::console::add_event(
            &mut tx,
            &no,
            now,
            "refund_accepted",
            "wechat",
            &format!("{out_refund_no} {} refund_id {refund_id}", Fen(fee)),
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(&no);
        Ok(true)
    }

    /// Moves a refund to `state` (WeChat's word on it), once: a settled refund never changes
    /// again. A closed refund gives its amount back to what may be refunded (a late payment's
    /// is due again); a succeeded one with `restock` puts the order's goods back on the shelf,
    /// once per order. `None` when nothing changed.
    pub async fn settle_refund(
        &self,
        out_refund_no: &str,
        state: RefundState,
        refund_id: Option<&str>,
        failure: Option<&str>,
    ) -> Result<Option<Settled>, StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let moved: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "UPDATE refunds SET status = $1, refund_id = COALESCE($2, refund_id), updated_at = $3,
                                settled_at = CASE WHEN $4 = 1 THEN $3 ELSE NULL END,
                                failure = COALESCE($5, failure),
                                follow_at = CASE WHEN $4 = 1 THEN NULL ELSE follow_at END
             WHERE out_refund_no = $6 AND status IN ('requested', 'processing') AND status <> $1
             RETURNING out_trade_no, refund_fee, late, restock",
        )
        .bind(state.as_str())
        .bind(refund_id)
        .bind(now)
        .bind(i64::from(state.settled()))
        .bind(failure)
        .bind(out_refund_no)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((no, fee, late, restock)) = moved else {
            tx.commit().await?;
            return Ok(None);
        };
        let late = late != 0;
        let mut restocked = false;
        if state == RefundState::Closed && late {
            sqlx::query(
                "UPDATE orders SET refund_due = 1, updated_at = $1 WHERE out_trade_no = $2",
            )
            .bind(now)
            .bind(&no)
            .execute(&mut *tx)
            .await?;
            if self.events() {
                super::outbox::write(
                    &mut tx,
                    ORDER_REFUND_DUE,
                    Some(&no),
                    &no,
                    "refund_closed",
                    now,
                )
                .await?;
            }
        } else if state == RefundState::Closed {
            sqlx::query(
                "UPDATE orders SET refunded_fee = refunded_fee - $1, updated_at = $2
                 WHERE out_trade_no = $3",
            )
            .bind(fee)
            .bind(now)
            .bind(&no)
            .execute(&mut *tx)
            .await?;
        } else if state == RefundState::Succeeded && restock != 0 {
            let first = sqlx::query(
                "UPDATE orders SET restocked_at = $1 WHERE out_trade_no = $2 AND restocked_at IS NULL",
            )
            .bind(now)
            .bind(&no)
            .execute(&mut *tx)
            .await?;
            if first.rows_affected() == 1 {
                restore_stock(&mut tx, &no, now).await?;
                restocked = true;
            }
        }
        if state == RefundState::Succeeded && self.events() {
            super::outbox::write(&mut tx, REFUND_SUCCEEDED, Some(&no), out_refund_no, "", now)
                .await?;
        }
        let mut detail = format!("{out_refund_no} {}", Fen(fee));
        if let Some(failure) = failure {
            detail.push_str(&format!(": {failure}"));
        }
        if restocked {
            detail.push_str(" (restocked)");
        }
        super::console::add_event(
            &mut tx,
            &no,
            now,
            &format!("refund_{}", state.as_str()),
            "wechat",
            &detail,
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(&no);
        Ok(Some(Settled {
            out_trade_no: stored_no(&no, "refunds.out_trade_no")?,
            restocked,
            due_again: late && state == RefundState::Closed,
        }))
    }

    /// Orders with money due back and no refund recorded for it, oldest first.
    pub async fn refund_due_orders(&self, limit: i64) -> Result<Vec<OutTradeNo>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT out_trade_no FROM orders WHERE refund_due = 1 ORDER BY updated_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|(no,)| stored_no(no, "orders.out_trade_no"))
            .collect()
    }
}

/// The reason recorded for a refund made outside the shop.
const EXTERNAL_REASON: &str = "made in the merchant platform";

struct NewRefund<'a> {
    no: &'a OutTradeNo,
    fee: Fen,
    total_fee: Fen,
    reason: &'a str,
    restock: bool,
    late: bool,
    requested_by: &'a str,
    now: i64,
    follow_at: i64,
    /// The attempt number the payment refunded is known by at WeChat; `None`: the one that
    /// paid the order.
    wechat_no: Option<&'a str>,
}

async fn insert_refund(tx: &mut Tx<'_>, new: NewRefund<'_>) -> Result<Refund, StoreError> {
    let out_refund_no = refund_number(new.no, new.now);
    let wechat_no: String = sqlx::query_scalar(
        "INSERT INTO refunds (out_refund_no, out_trade_no, refund_fee, reason, restock,
                              requested_by, created_at, updated_at, late, total_fee, follow_at,
                              wechat_no)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10,
                 COALESCE($11, (SELECT paid_no FROM orders WHERE out_trade_no = $2)))
         RETURNING COALESCE(wechat_no, out_trade_no)",
    )
    .bind(&out_refund_no)
    .bind(new.no.as_str())
    .bind(new.fee.0)
    .bind(new.reason)
    .bind(i64::from(new.restock))
    .bind(new.requested_by)
    .bind(new.now)
    .bind(i64::from(new.late))
    .bind(new.total_fee.0)
    .bind(new.follow_at)
    .bind(new.wechat_no)
    .fetch_one(&mut **tx)
    .await?;
    super::console::add_event(
        tx,
        new.no.as_str(),
        new.now,
        "refund_requested",
        new.requested_by,
        &format!("{out_refund_no} {} {}", new.fee, new.reason),
    )
    .await?;
    Ok(Refund {
        out_refund_no,
        out_trade_no: new.no.clone(),
        refund_fee: new.fee,
        reason: new.reason.to_owned(),
        restock: new.restock,
        state: RefundState::Requested,
        refund_id: None,
        requested_by: new.requested_by.to_owned(),
        created_at: time(new.now),
        settled_at: None,
        late: new.late,
        total_fee: new.total_fee,
        failure: None,
        attempts: 0,
        wechat_no: stored_no(&wechat_no, "refunds.wechat_no")?,
    })
}

/// A new refund number: `R`, the order's number and a random part — unique, at most 64
/// characters of WeChat's alphabet.
fn refund_number(no: &OutTradeNo, now: i64) -> String {
    use rand::Rng;
    let random: u32 = rand::rng().random_range(0..1_000_000);
    format!("R{}{}{random:06}", no.as_str(), now % 100_000)
}

pub(super) fn refund_from_row(row: &DbRow) -> Result<Refund, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("refunds.{what}"));
    let no: String = row.try_get("out_trade_no")?;
    let state: String = row.try_get("status")?;
    Ok(Refund {
        out_refund_no: row.try_get("out_refund_no")?,
        out_trade_no: stored_no(&no, "refunds.out_trade_no")?,
        refund_fee: Fen(row.try_get("refund_fee")?),
        reason: row.try_get("reason")?,
        restock: row.try_get::<i64, _>("restock")? != 0,
        state: RefundState::parse(&state).ok_or_else(|| corrupt("status"))?,
        refund_id: row.try_get("refund_id")?,
        requested_by: row.try_get("requested_by")?,
        created_at: time(row.try_get("created_at")?),
        settled_at: row.try_get::<Option<i64>, _>("settled_at")?.map(time),
        late: row.try_get::<i64, _>("late")? != 0,
        total_fee: Fen(row.try_get("payment_fee")?),
        failure: row.try_get("failure")?,
        attempts: row.try_get("attempts")?,
        wechat_no: stored_no(&row.try_get::<String, _>("wechat_no")?, "refunds.wechat_no")?,
    })
}

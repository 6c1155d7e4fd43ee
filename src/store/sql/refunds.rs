//! Refunds: recorded before WeChat hears of them, against the order's refunded amount reserved
//! by one conditional update, and settled once.

use super::*;
use crate::store::console_types::*;

const REFUND_COLUMNS: &str = "out_refund_no, out_trade_no, refund_fee, reason, restock, status, \
     refund_id, requested_by, created_at, settled_at";

impl Db {
    /// Records a refund of `fee` for a paid order and reserves it against what was paid, in one
    /// transaction; the caller asks WeChat afterwards, with the returned `out_refund_no`. Refused
    /// (nothing changed) when the order is not paid or `fee` exceeds what is left — decided by
    /// one conditional update, so concurrent requests can never together exceed the payment.
    pub async fn request_refund(
        &self,
        no: &OutTradeNo,
        fee: Fen,
        reason: &str,
        restock: bool,
        requested_by: &str,
    ) -> Result<Refund, RefundRefused> {
        let now = now_secs();
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
        if reserved.is_none() {
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
        }
        let out_refund_no = refund_number(no, now);
        sqlx::query(
            "INSERT INTO refunds (out_refund_no, out_trade_no, refund_fee, reason, restock,
                                  requested_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&out_refund_no)
        .bind(no.as_str())
        .bind(fee.0)
        .bind(reason)
        .bind(i64::from(restock))
        .bind(requested_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        super::console::add_event(
            &mut tx,
            no.as_str(),
            now,
            "refund_requested",
            requested_by,
            &format!("{out_refund_no} {fee} {reason}"),
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(no.as_str());
        Ok(Refund {
            out_refund_no,
            out_trade_no: no.clone(),
            refund_fee: fee,
            reason: reason.to_owned(),
            restock,
            state: RefundState::Requested,
            refund_id: None,
            requested_by: requested_by.to_owned(),
            created_at: time(now),
            settled_at: None,
        })
    }

    /// An order's refunds, oldest first.
    pub async fn refunds_of(&self, no: &OutTradeNo) -> Result<Vec<Refund>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE out_trade_no = $1
             ORDER BY created_at, out_refund_no"
        ))
        .bind(no.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(refund_from_row).collect()
    }

    /// Moves a refund to `state` (WeChat's word on it), once: a settled refund never changes
    /// again. A closed refund gives its amount back to what may be refunded. True when it
    /// changed.
    pub async fn settle_refund(
        &self,
        out_refund_no: &str,
        state: RefundState,
        refund_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let moved: Option<(String, i64)> = sqlx::query_as(
            "UPDATE refunds SET status = $1, refund_id = COALESCE($2, refund_id), updated_at = $3,
                                settled_at = CASE WHEN $4 = 1 THEN $3 ELSE NULL END
             WHERE out_refund_no = $5 AND status IN ('requested', 'processing') AND status <> $1
             RETURNING out_trade_no, refund_fee",
        )
        .bind(state.as_str())
        .bind(refund_id)
        .bind(now)
        .bind(i64::from(state.settled()))
        .bind(out_refund_no)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((no, fee)) = moved else {
            tx.commit().await?;
            return Ok(false);
        };
        if state == RefundState::Closed {
            sqlx::query(
                "UPDATE orders SET refunded_fee = refunded_fee - $1, updated_at = $2
                 WHERE out_trade_no = $3",
            )
            .bind(fee)
            .bind(now)
            .bind(&no)
            .execute(&mut *tx)
            .await?;
        }
        super::console::add_event(
            &mut tx,
            &no,
            now,
            &format!("refund_{}", state.as_str()),
            "wechat",
            &format!("{out_refund_no} {}", Fen(fee)),
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(&no);
        Ok(true)
    }
}

/// A new refund number: `R`, the order's number and a random part — unique, at most 64
/// characters of WeChat's alphabet.
fn refund_number(no: &OutTradeNo, now: i64) -> String {
    use rand::Rng;
    let random: u32 = rand::rng().random_range(0..1_000_000);
    format!("R{}{}{random:06}", no.as_str(), now % 100_000)
}

fn refund_from_row(row: &DbRow) -> Result<Refund, StoreError> {
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
    })
}

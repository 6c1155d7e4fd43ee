//! The daily bill: days opened, claimed by one replica at a time, finished with what they
//! found (once per day, kind and reference) or retried later; and the shop's payments and
//! refunds of a day, which the bill is compared with.

use chrono::NaiveDate;

use super::*;
use crate::store::bills::*;
use crate::store::console_types::Refund;

const DAY_COLUMNS: &str = "d.day, d.status, d.attempts, d.next_at, d.last_error, d.finished_at, \
     d.no_bill, d.lines, d.payments, d.payments_fee, d.refunds, d.refunds_fee, d.charges, \
     d.matched, (SELECT COUNT(*) FROM bill_discrepancies x \
                 WHERE x.day = d.day AND x.resolved_at IS NULL) AS open_discrepancies";

pub(super) const DISCREPANCY_COLUMNS: &str =
    "kind, reference, out_trade_no, wechat_fee, shop_fee, detail, \
     action, found_at, resolved_at";

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn day_from_row(row: &DbRow) -> Result<BillDay, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("bill_days.{what}"));
    let day: String = row.try_get("day")?;
    let status: String = row.try_get("status")?;
    Ok(BillDay {
        day: NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| corrupt("day"))?,
        status: BillDayStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        attempts: row.try_get("attempts")?,
        next_at: time(row.try_get("next_at")?),
        last_error: row.try_get("last_error")?,
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(time),
        figures: DayFigures {
            no_bill: row.try_get::<i64, _>("no_bill")? != 0,
            lines: row.try_get("lines")?,
            payments: row.try_get("payments")?,
            payments_fee: Fen(row.try_get("payments_fee")?),
            refunds: row.try_get("refunds")?,
            refunds_fee: Fen(row.try_get("refunds_fee")?),
            charges: row.try_get("charges")?,
            matched: row.try_get("matched")?,
        },
        open_discrepancies: row.try_get("open_discrepancies")?,
    })
}

pub(super) fn discrepancy_from_row(row: &DbRow) -> Result<Discrepancy, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Discrepancy {
        kind: DiscrepancyKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt("bill_discrepancies.kind".into()))?,
        reference: row.try_get("reference")?,
        out_trade_no: row.try_get("out_trade_no")?,
        wechat_fee: row.try_get::<Option<i64>, _>("wechat_fee")?.map(Fen),
        shop_fee: row.try_get::<Option<i64>, _>("shop_fee")?.map(Fen),
        detail: row.try_get("detail")?,
        action: row.try_get("action")?,
        found_at: time(row.try_get("found_at")?),
        resolved_at: row.try_get::<Option<i64>, _>("resolved_at")?.map(time),
    })
}

/// Cuts text to what a column holds (`max` characters), never inside a character.
fn bounded(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl Db {
    /// Opens `days` for reconciliation, due at `now`; days already known are left alone.
    pub async fn open_bill_days(&self, days: &[NaiveDate], now: i64) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        for day in days {
            sqlx::query(
                "INSERT INTO bill_days (day, next_at, created_at, updated_at)
                 VALUES ($1, $2, $2, $2) ON CONFLICT (day) DO NOTHING",
            )
            .bind(day_text(*day))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The latest day opened before `day`.
    pub async fn latest_bill_day_before(
        &self,
        day: NaiveDate,
    ) -> Result<Option<NaiveDate>, StoreError> {
        let day: Option<String> =
            sqlx::query_scalar("SELECT MAX(day) FROM bill_days WHERE day < $1")
                .bind(day_text(day))
                .fetch_one(&self.reader)
                .await?;
        day.map(|d| {
            NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .map_err(|_| StoreError::Corrupt("bill_days.day".into()))
        })
        .transpose()
    }

    /// Claims the oldest open day due at `now` whose lease is free, leasing it to this caller
    /// until `lease_until` and counting the attempt. One conditional update: of several
    /// replicas one gets the day.
    pub async fn claim_due_bill_day(
        &self,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<BillDay>, StoreError> {
        let claimed: Option<String> = sqlx::query_scalar(&format!(
            "UPDATE bill_days SET lease_until = $1, attempts = attempts + 1, updated_at = $2
             WHERE day = (SELECT day FROM bill_days
                          WHERE status = 'open' AND next_at <= $2 AND lease_until <= $2
                          ORDER BY day LIMIT 1 {SKIP_LOCKED})
               AND status = 'open' AND next_at <= $2 AND lease_until <= $2
             RETURNING day"
        ))
        .bind(lease_until)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        match claimed {
            Some(day) => self.bill_day_by_text(&day).await,
            None => Ok(None),
        }
    }

    /// Claims `day` now, whatever its state (a run or re-run asked for by the merchant),
    /// opening it first if it is new. `None` when another run holds its lease.
    pub async fn claim_bill_day(
        &self,
        day: NaiveDate,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<BillDay>, StoreError> {
        self.open_bill_days(&[day], now).await?;
        let claimed = sqlx::query(
            "UPDATE bill_days SET lease_until = $1, attempts = attempts + 1, updated_at = $2
             WHERE day = $3 AND lease_until <= $2",
        )
        .bind(lease_until)
        .bind(now)
        .bind(day_text(day))
        .execute(&self.writer)
        .await?;
        if claimed.rows_affected() == 1 {
            self.bill_day(day).await
        } else {
            Ok(None)
        }
    }

    /// Records a finished run of `day`: its figures, and its discrepancies — each new one
    /// inserted, each found again updated, each no longer found marked resolved — in one
    /// transaction. Returns the kinds of the new ones.
    pub async fn finish_bill_day(
        &self,
        day: NaiveDate,
        findings: &DayFindings,
        now: i64,
    ) -> Result<Vec<DiscrepancyKind>, StoreError> {
        let day = day_text(day);
        let f = &findings.figures;
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE bill_days SET status = 'done', lease_until = 0, last_error = NULL,
                    finished_at = $1, updated_at = $1, no_bill = $2, lines = $3, payments = $4,
                    payments_fee = $5, refunds = $6, refunds_fee = $7, charges = $8, matched = $9
             WHERE day = $10",
        )
        .bind(now)
        .bind(i64::from(f.no_bill))
        .bind(f.lines)
        .bind(f.payments)
        .bind(f.payments_fee.0)
        .bind(f.refunds)
        .bind(f.refunds_fee.0)
        .bind(f.charges)
        .bind(f.matched)
        .bind(&day)
        .execute(&mut *tx)
        .await?;
        let known: Vec<(String, String)> =
            sqlx::query_as("SELECT kind, reference FROM bill_discrepancies WHERE day = $1")
                .bind(&day)
                .fetch_all(&mut *tx)
                .await?;
        let known: std::collections::HashSet<(String, String)> = known.into_iter().collect();
        let mut new = Vec::new();
        let mut found = std::collections::HashSet::new();
        for d in &findings.discrepancies {
            let key = (d.kind.as_str().to_owned(), bounded(&d.reference, 64));
            let out_trade_no = d.out_trade_no.as_deref().map(|n| bounded(n, 64));
            if known.contains(&key) {
                sqlx::query(
                    "UPDATE bill_discrepancies
                     SET out_trade_no = $1, wechat_fee = $2, shop_fee = $3, detail = $4,
                         action = CASE WHEN $5 = '' THEN action ELSE $5 END, resolved_at = NULL
                     WHERE day = $6 AND kind = $7 AND reference = $8",
                )
                .bind(out_trade_no)
                .bind(d.wechat_fee.map(|f| f.0))
                .bind(d.shop_fee.map(|f| f.0))
                .bind(bounded(&d.detail, 300))
                .bind(bounded(&d.action, 300))
                .bind(&day)
                .bind(&key.0)
                .bind(&key.1)
                .execute(&mut *tx)
                .await?;
            } else {
                new.push(d.kind);
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO bill_discrepancies (day, kind, reference, out_trade_no,
                         wechat_fee, shop_fee, detail, action, found_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     RETURNING id",
                )
                .bind(&day)
                .bind(&key.0)
                .bind(&key.1)
                .bind(out_trade_no.as_deref())
                .bind(d.wechat_fee.map(|f| f.0))
                .bind(d.shop_fee.map(|f| f.0))
                .bind(bounded(&d.detail, 300))
                .bind(bounded(&d.action, 300))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                if !self.events() {
                    found.insert(key);
                    continue;
                }
                super::outbox::write(
                    &mut tx,
                    crate::store::BILL_DISCREPANCY,
                    out_trade_no.as_deref(),
                    &id.to_string(),
                    d.kind.as_str(),
                    now,
                )
                .await?;
            }
            found.insert(key);
        }
        for (kind, reference) in known.difference(&found) {
            sqlx::query(
                "UPDATE bill_discrepancies SET resolved_at = $1
                 WHERE day = $2 AND kind = $3 AND reference = $4 AND resolved_at IS NULL",
            )
            .bind(now)
            .bind(&day)
            .bind(kind)
            .bind(reference)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Leaves a finished day open for the job, due at `next_at`: its bill was not final when it
    /// ran (a run of today).
    pub async fn reopen_bill_day(&self, day: NaiveDate, next_at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE bill_days SET status = 'open', finished_at = NULL, next_at = $1
             WHERE day = $2",
        )
        .bind(next_at)
        .bind(day_text(day))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Records a failed run: the day is open (again, if this was a re-run), due at `next_at`.
    pub async fn fail_bill_day(
        &self,
        day: NaiveDate,
        error: &str,
        next_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE bill_days SET status = 'open', finished_at = NULL, lease_until = 0,
                    last_error = $1, next_at = $2, updated_at = $3
             WHERE day = $4",
        )
        .bind(bounded(error, 300))
        .bind(next_at)
        .bind(now)
        .bind(day_text(day))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Gives up an open day whose bill WeChat no longer keeps.
    pub async fn expire_bill_day(
        &self,
        day: NaiveDate,
        why: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE bill_days SET status = 'expired', lease_until = 0, last_error = $1,
                    finished_at = $2, updated_at = $2
             WHERE day = $3 AND status = 'open'",
        )
        .bind(bounded(why, 300))
        .bind(now)
        .bind(day_text(day))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// One day's reconciliation.
    pub async fn bill_day(&self, day: NaiveDate) -> Result<Option<BillDay>, StoreError> {
        self.bill_day_by_text(&day_text(day)).await
    }

    async fn bill_day_by_text(&self, day: &str) -> Result<Option<BillDay>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DAY_COLUMNS} FROM bill_days d WHERE d.day = $1"
        ))
        .bind(day)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(day_from_row).transpose()
    }

    /// The latest `limit` days, newest first.
    pub async fn bill_days(&self, limit: i64) -> Result<Vec<BillDay>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DAY_COLUMNS} FROM bill_days d ORDER BY d.day DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(day_from_row).collect()
    }

    /// A day's discrepancies: open ones first, then by when they were found.
    pub async fn bill_discrepancies(&self, day: NaiveDate) -> Result<Vec<Discrepancy>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DISCREPANCY_COLUMNS} FROM bill_discrepancies WHERE day = $1
             ORDER BY CASE WHEN resolved_at IS NULL THEN 0 ELSE 1 END, found_at, id"
        ))
        .bind(day_text(day))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(discrepancy_from_row).collect()
    }

    /// Discrepancies no later run has resolved, over every day.
    pub async fn open_discrepancies(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM bill_discrepancies WHERE resolved_at IS NULL")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// The payments the shop recorded whose WeChat time falls in `[from, to)` (Unix seconds).
    pub async fn payments_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<RecordedPayment>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, COALESCE(wechat_no, out_trade_no), total_fee, pay_time
             FROM payment_events
             WHERE result = 'SUCCESS' AND pay_time >= $1 AND pay_time < $2",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(recorded_payment).collect())
    }

    /// The payment the shop recorded as `transaction_id`, whenever it was.
    pub async fn recorded_payment(
        &self,
        transaction_id: &str,
    ) -> Result<Option<RecordedPayment>, StoreError> {
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, COALESCE(wechat_no, out_trade_no), total_fee, pay_time
             FROM payment_events
             WHERE transaction_id = $1 AND result = 'SUCCESS'",
        )
        .bind(transaction_id)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(recorded_payment))
    }

    /// The refunds recorded in `[from, to)` (Unix seconds).
    pub async fn refunds_created_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<Refund>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM refunds r JOIN orders o USING (out_trade_no)
             WHERE r.created_at >= $1 AND r.created_at < $2 ORDER BY r.created_at",
            super::refunds::REFUND_COLUMNS
        ))
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(super::refunds::refund_from_row).collect()
    }
}

fn recorded_payment(
    (transaction_id, out_trade_no, total_fee, pay_time): (String, String, i64, i64),
) -> RecordedPayment {
    RecordedPayment {
        transaction_id,
        out_trade_no,
        total_fee: Fen(total_fee),
        pay_time: time(pay_time),
    }
}

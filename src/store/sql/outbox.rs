//! The outbox: events written inside the transactions of the changes that cause them, their
//! fan-out to targets, and the deliveries' claims, results and listing.

use super::*;
use crate::store::outbox::{
    Attempted, Delivery, DeliveryCounts, DeliveryState, FannedEvent, OutboxEvent,
};
use crate::store::{Discrepancy, ORDER_PAID};

/// Writes an event inside `tx`, the transaction of the change it tells of.
pub(super) async fn write(
    tx: &mut Tx<'_>,
    kind: &str,
    out_trade_no: Option<&str>,
    subject: &str,
    detail: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox_events (kind, out_trade_no, subject, detail, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(kind)
    .bind(out_trade_no)
    .bind(subject)
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes an `order.paid` event for each order in `nos` with one statement, inside `tx` (the
/// transaction that paid them).
pub(super) async fn write_paid(
    tx: &mut Tx<'_>,
    nos: &[String],
    now: i64,
) -> Result<(), StoreError> {
    if nos.is_empty() {
        return Ok(());
    }
    let mut insert = sqlx::QueryBuilder::<Kind>::new(
        "INSERT INTO outbox_events (kind, out_trade_no, subject, detail, created_at) ",
    );
    insert.push_values(nos, |mut row, no| {
        row.push_bind(ORDER_PAID)
            .push_bind(no.as_str())
            .push_bind(no.as_str())
            .push_bind("")
            .push_bind(now);
    });
    insert.build().execute(&mut **tx).await?;
    Ok(())
}

const DELIVERY_COLUMNS: &str = "d.event_seq, d.target, e.event_id, e.kind, e.data, \
     d.out_trade_no, e.created_at, d.state, d.attempts, d.next_at, d.last_at, d.last_result, \
     d.delivered_at";

fn delivery_from_row(row: &DbRow) -> Result<Delivery, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(Delivery {
        seq: row.try_get("event_seq")?,
        target: row.try_get("target")?,
        event_id: row
            .try_get::<Option<String>, _>("event_id")?
            .ok_or_else(|| StoreError::Corrupt("outbox_events.event_id".into()))?,
        kind: row.try_get("kind")?,
        data: row
            .try_get::<Option<String>, _>("data")?
            .ok_or_else(|| StoreError::Corrupt("outbox_events.data".into()))?,
        out_trade_no: row.try_get("out_trade_no")?,
        created_at: time(row.try_get("created_at")?),
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt("outbox_deliveries.state".into()))?,
        attempts: row.try_get("attempts")?,
        next_at: time(row.try_get("next_at")?),
        last_at: row.try_get::<Option<i64>, _>("last_at")?.map(time),
        last_result: row.try_get("last_result")?,
        delivered_at: row.try_get::<Option<i64>, _>("delivered_at")?.map(time),
    })
}

/// Cuts text to what a column holds (`max` characters), never inside a character.
fn bounded(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl Db {
    pub async fn unfanned_events(&self, limit: i64) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, out_trade_no, subject, detail, created_at FROM outbox_events
             WHERE fanned_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxEvent {
                    seq: row.try_get("seq")?,
                    kind: row.try_get("kind")?,
                    out_trade_no: row.try_get("out_trade_no")?,
                    subject: row.try_get("subject")?,
                    detail: row.try_get("detail")?,
                    created_at: time(row.try_get("created_at")?),
                })
            })
            .collect()
    }

    pub async fn fan_out(&self, events: &[FannedEvent], now: i64) -> Result<usize, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut fanned = 0;
        for event in events {
            let done = sqlx::query(
                "UPDATE outbox_events SET event_id = $1, data = $2, fanned_at = $3
                 WHERE seq = $4 AND fanned_at IS NULL",
            )
            .bind(&event.event_id)
            .bind(&event.data)
            .bind(now)
            .bind(event.seq)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                continue;
            }
            fanned += 1;
            for target in &event.targets {
                sqlx::query(
                    "INSERT INTO outbox_deliveries (event_seq, target, out_trade_no, next_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(event.seq)
                .bind(target)
                .bind(event.out_trade_no.as_deref())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(fanned)
    }

    pub async fn has_due_deliveries(&self, now: i64) -> Result<bool, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT d.event_seq FROM outbox_deliveries AS d
             WHERE d.state = 'pending' AND d.next_at <= $1 AND d.leased_until <= $1
               AND NOT EXISTS (
                   SELECT 1 FROM outbox_deliveries AS p
                   WHERE p.target = d.target AND p.out_trade_no = d.out_trade_no
                     AND p.state = 'pending' AND p.event_seq < d.event_seq)
             LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        Ok(due.is_some())
    }

    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let claimed: Vec<(i64, String)> = sqlx::query_as(&format!(
            "UPDATE outbox_deliveries SET leased_until = $1
             WHERE (event_seq, target) IN (
                 SELECT d.event_seq, d.target FROM outbox_deliveries AS d
                 WHERE d.state = 'pending' AND d.next_at <= $2 AND d.leased_until <= $2
                   AND NOT EXISTS (
                       SELECT 1 FROM outbox_deliveries AS p
                       WHERE p.target = d.target AND p.out_trade_no = d.out_trade_no
                         AND p.state = 'pending' AND p.event_seq < d.event_seq)
                 ORDER BY d.event_seq LIMIT $3 {SKIP_LOCKED})
               AND state = 'pending' AND next_at <= $2 AND leased_until <= $2
             RETURNING event_seq, target"
        ))
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for (seq, target) in claimed {
            let row = sqlx::query(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries AS d
                 JOIN outbox_events AS e ON e.seq = d.event_seq
                 WHERE d.event_seq = $1 AND d.target = $2"
            ))
            .bind(seq)
            .bind(&target)
            .fetch_one(&mut *tx)
            .await?;
            deliveries.push(delivery_from_row(&row)?);
        }
        tx.commit().await?;
        deliveries.sort_by_key(|d| d.seq);
        Ok(deliveries)
    }

    pub async fn finish_delivery(
        &self,
        seq: i64,
        target: &str,
        attempted: &Attempted,
        now: i64,
    ) -> Result<(), StoreError> {
        let (state, result, next_at, delivered_at) = match attempted {
            Attempted::Delivered { result } => ("delivered", result.as_str(), now, Some(now)),
            Attempted::Refused {
                result,
                retry_at: Some(at),
            } => ("pending", result.as_str(), *at, None),
            Attempted::Refused {
                result,
                retry_at: None,
            } => ("failed", result.as_str(), now, None),
        };
        sqlx::query(
            "UPDATE outbox_deliveries
             SET state = $1, last_result = $2, next_at = $3, delivered_at = COALESCE($4, delivered_at),
                 last_at = $5, attempts = attempts + 1, leased_until = 0
             WHERE event_seq = $6 AND target = $7",
        )
        .bind(state)
        .bind(bounded(result, 300))
        .bind(next_at)
        .bind(delivered_at)
        .bind(now)
        .bind(seq)
        .bind(target)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn hurry_target(&self, target: &str, now: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE outbox_deliveries SET next_at = $1
             WHERE target = $2 AND state = 'pending' AND attempts > 0 AND next_at > $1",
        )
        .bind(now)
        .bind(target)
        .execute(&self.writer)
        .await?
        .rows_affected())
    }

    pub async fn resend_delivery(
        &self,
        seq: i64,
        target: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox_deliveries SET state = 'pending', next_at = $1, attempts = 0
             WHERE event_seq = $2 AND target = $3",
        )
        .bind(now)
        .bind(seq)
        .bind(target)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn deliveries(
        &self,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries AS d
             JOIN outbox_events AS e ON e.seq = d.event_seq
             WHERE ($1 = '' OR d.state = $1) AND d.event_seq < $2
             ORDER BY d.event_seq DESC, d.target LIMIT $3"
        ))
        .bind(state.map_or("", DeliveryState::as_str))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub async fn deliveries_of(&self, out_trade_no: &str) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries AS d
             JOIN outbox_events AS e ON e.seq = d.event_seq
             WHERE d.out_trade_no = $1 ORDER BY d.event_seq, d.target"
        ))
        .bind(out_trade_no)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub async fn delivery_counts(&self) -> Result<DeliveryCounts, StoreError> {
        let row = sqlx::query(
            "SELECT
                 (SELECT COUNT(*) FROM outbox_deliveries WHERE state = 'pending') AS pending,
                 (SELECT COUNT(*) FROM outbox_deliveries WHERE state = 'failed') AS failed,
                 (SELECT MIN(e.created_at) FROM outbox_deliveries AS d
                  JOIN outbox_events AS e ON e.seq = d.event_seq
                  WHERE d.state = 'pending') AS oldest",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(DeliveryCounts {
            pending: row.try_get("pending")?,
            failed: row.try_get("failed")?,
            oldest_pending: row.try_get::<Option<i64>, _>("oldest")?.map(time),
        })
    }

    pub async fn prune_outbox(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        // Deliveries first (SQLite's cascade needs foreign keys on; this needs nothing).
        sqlx::query(
            "DELETE FROM outbox_deliveries WHERE event_seq IN (
                 SELECT e.seq FROM outbox_events AS e
                 WHERE e.created_at < $1 AND e.fanned_at IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM outbox_deliveries AS p
                                   WHERE p.event_seq = e.seq AND p.state = 'pending'))",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query(
            "DELETE FROM outbox_events AS e
             WHERE e.created_at < $1 AND e.fanned_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM outbox_deliveries AS p WHERE p.event_seq = e.seq)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }

    pub async fn discrepancy(
        &self,
        id: i64,
    ) -> Result<Option<(chrono::NaiveDate, Discrepancy)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT day, {} FROM bill_discrepancies WHERE id = $1",
            super::bills::DISCREPANCY_COLUMNS
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let day: String = row.try_get("day")?;
        let day = chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d")
            .map_err(|_| StoreError::Corrupt("bill_discrepancies.day".into()))?;
        Ok(Some((day, super::bills::discrepancy_from_row(&row)?)))
    }
}

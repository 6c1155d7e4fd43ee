//! Notify health: the notify log, the figures the missing-notify alarm is judged on, and the
//! alarms' conditional changes.

use super::*;
use crate::store::health::{Alarm, LoggedNotify, NotifyFigures, NotifyLogEntry};

/// A stored log line's kind or outcome, back as the fixed text it was written from.
fn fixed(text: &str, known: &[&'static str], column: &str) -> Result<&'static str, StoreError> {
    known
        .iter()
        .find(|k| **k == text)
        .copied()
        .ok_or_else(|| StoreError::Corrupt(format!("notify_log.{column}")))
}

impl Db {
    pub async fn log_notifies(&self, entries: &[NotifyLogEntry]) -> Result<(), StoreError> {
        // Six values a line: 1,000 lines a statement stay well inside both databases' limits on
        // bound parameters.
        let mut tx = self.writer.begin().await?;
        for chunk in entries.chunks(1_000) {
            let mut insert = sqlx::QueryBuilder::<Kind>::new(
                "INSERT INTO notify_log (at, kind, outcome, reason, out_trade_no, count) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(e.at.timestamp())
                    .push_bind(e.kind)
                    .push_bind(e.outcome)
                    .push_bind(e.reason.as_deref())
                    .push_bind(e.out_trade_no.as_deref())
                    .push_bind(e.count);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn notify_log(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LoggedNotify>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, kind, outcome, reason, out_trade_no, count FROM notify_log
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LoggedNotify {
                    id: row.try_get("id")?,
                    entry: NotifyLogEntry {
                        at: time(row.try_get("at")?),
                        kind: fixed(row.try_get("kind")?, &["payment", "refund"], "kind")?,
                        outcome: fixed(
                            row.try_get("outcome")?,
                            &["accepted", "duplicate", "refused"],
                            "outcome",
                        )?,
                        reason: row.try_get("reason")?,
                        out_trade_no: row.try_get("out_trade_no")?,
                        count: row.try_get("count")?,
                    },
                })
            })
            .collect()
    }

    pub async fn notify_figures(&self, since: i64) -> Result<NotifyFigures, StoreError> {
        let row = sqlx::query(
            "SELECT
                 (SELECT CAST(COUNT(*) AS BIGINT) FROM payment_events
                  WHERE received_at >= $1 AND result = 'SUCCESS' AND source = 'notify')
                     AS by_notify,
                 (SELECT CAST(COUNT(*) AS BIGINT) FROM payment_events
                  WHERE received_at >= $1 AND result = 'SUCCESS' AND source <> 'notify')
                     AS by_asking,
                 (SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM notify_log
                  WHERE at >= $1 AND kind = 'payment' AND outcome <> 'refused') AS notifies,
                 (SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM notify_log
                  WHERE at >= $1 AND outcome = 'refused') AS refused",
        )
        .bind(since)
        .fetch_one(&self.reader)
        .await?;
        Ok(NotifyFigures {
            by_notify: row.try_get("by_notify")?,
            by_asking: row.try_get("by_asking")?,
            notifies: row.try_get("notifies")?,
            refused: row.try_get("refused")?,
        })
    }

    pub async fn alarm(&self, name: &str) -> Result<Option<Alarm>, StoreError> {
        let row =
            sqlx::query("SELECT raised_at, changed_at, detail FROM health_alarms WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.reader)
                .await?;
        row.map(|row| {
            Ok(Alarm {
                raised_at: row.try_get::<Option<i64>, _>("raised_at")?.map(time),
                changed_at: time(row.try_get("changed_at")?),
                detail: row.try_get("detail")?,
            })
        })
        .transpose()
    }

    pub async fn set_alarm(
        &self,
        name: &str,
        raised: bool,
        detail: &str,
        event: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO health_alarms (name, raised_at, changed_at, detail)
             VALUES ($1, NULL, $2, '') ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let changed = sqlx::query(if raised {
            "UPDATE health_alarms SET raised_at = $1, changed_at = $1, detail = $2
             WHERE name = $3 AND raised_at IS NULL"
        } else {
            "UPDATE health_alarms SET raised_at = NULL, changed_at = $1, detail = $2
             WHERE name = $3 AND raised_at IS NOT NULL"
        })
        .bind(now)
        .bind(detail)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed && self.events() {
            outbox::write(&mut tx, event, None, name, "", now).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn prune_notify_log(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let pruned = sqlx::query("DELETE FROM notify_log WHERE at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }
}

//! What the reconciliation job works on: claiming pending orders due for a query, expiring
//! those that never got a prepay, closing, counting unpaid queries, and the watch for late money
//! on finished unpaid orders.

use super::*;

/// Orders placed at or before this (Unix seconds) have held their stock for `hold`; none
/// without a hold.
fn held_since(now: DateTime<Utc>, hold: Option<chrono::Duration>) -> i64 {
    hold.map_or(i64::MIN, |hold| (now - hold).timestamp())
}

impl Db {
    /// The database's clock: every replica decides expiries by the same time.
    pub async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        let secs: i64 = sqlx::query_scalar(NOW_SQL).fetch_one(&self.reader).await?;
        Ok(time(secs))
    }

    /// Claims the pending orders with a prepay that are due for a reconciliation query at
    /// `now` — the oldest first, at most `limit` — and makes them due again at `next`; returns
    /// them, oldest first. One statement claims them, so of several jobs at once (replicas) each
    /// order goes to exactly one: on PostgreSQL a concurrent claim passes by rows being claimed
    /// (`SKIP LOCKED`), and the outer condition re-checks the due time of any row it reaches
    /// after another claim committed. The subquery is served by the partial index on pending
    /// orders, so the cost does not grow with finished orders.
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
                 WHERE status = 'pending' AND (code_url IS NOT NULL OR attempts > 0)
                   AND reconcile_due_at <= $2
                 ORDER BY created_at LIMIT $3 {SKIP_LOCKED})
             RETURNING {ORDER_COLUMNS}"
        ))
        .bind(next.timestamp())
        .bind(now.timestamp())
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        let mut orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        orders.sort_by_key(|o| o.created_at);
        Ok(orders)
    }

    /// Claims the finished orders whose watch is due at `now` — the most overdue first, at most
    /// `limit` — making them due again at `lease` in case this job does not finish with them.
    /// Like [`Db::claim_due_for_reconcile`], each order goes to one job; the partial index on
    /// watched orders keeps the cost to those.
    pub async fn claim_due_for_watch(
        &self,
        now: DateTime<Utc>,
        lease: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE orders SET watch_due_at = $1
             WHERE watch_due_at <= $2 AND out_trade_no IN (
                 SELECT out_trade_no FROM orders
                 WHERE watch_due_at <= $2
                 ORDER BY watch_due_at LIMIT $3 {SKIP_LOCKED})
             RETURNING {ORDER_COLUMNS}"
        ))
        .bind(lease.timestamp())
        .bind(now.timestamp())
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Records that the watch asked about an order at step `step`: the next question is due at
    /// `next`, or the watch is over (`None`). False when another job recorded this step first.
    pub async fn advance_watch(
        &self,
        no: &OutTradeNo,
        step: i64,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE orders SET watch_step = $1 + 1, watch_due_at = $2, updated_at = $3
             WHERE out_trade_no = $4 AND watch_step = $1 AND watch_due_at IS NOT NULL",
        )
        .bind(step)
        .bind(next.map(|t| t.timestamp()))
        .bind(now_secs())
        .bind(no.as_str())
        .execute(&self.writer)
        .await?;
        self.cache.invalidate(no.as_str());
        Ok(done.rows_affected() == 1)
    }

    /// Closes pending orders that never got a prepay and whose time is up — or that were
    /// placed `hold` ago or more, when a hold is given — restoring their stock, each in its own
    /// transaction. The close re-checks that there is still no prepay, so a pay page that got
    /// one a moment ago keeps its order. Returns the orders closed.
    pub async fn expire_unprepaid(
        &self,
        now: DateTime<Utc>,
        hold: Option<chrono::Duration>,
        limit: i64,
    ) -> Result<Vec<OutTradeNo>, StoreError> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT out_trade_no FROM orders
             WHERE status = 'pending' AND code_url IS NULL AND attempts = 0
               AND (expires_at <= $1 OR created_at <= $2)
             ORDER BY created_at LIMIT $3",
        )
        .bind(now.timestamp())
        .bind(held_since(now, hold))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        let mut closed = Vec::new();
        for no in due {
            let no = stored_no(&no, "orders.out_trade_no")?;
            if self.close_unprepaid(&no, now, hold).await? {
                closed.push(no);
            }
        }
        Ok(closed)
    }

    /// Closes a pending order that has no prepay and whose time (or `hold`) is up, restoring
    /// its stock; false (and nothing changed) otherwise.
    pub async fn close_unprepaid(
        &self,
        no: &OutTradeNo,
        now: DateTime<Utc>,
        hold: Option<chrono::Duration>,
    ) -> Result<bool, StoreError> {
        let held_since = held_since(now, hold);
        let now = now.timestamp();
        let mut tx = self.writer.begin().await?;
        let closed = sqlx::query(
            "UPDATE orders SET status = 'closed', is_deleted = 1, closed_at = $1, updated_at = $1
             WHERE out_trade_no = $2 AND status = 'pending' AND code_url IS NULL
               AND attempts = 0 AND (expires_at <= $1 OR created_at <= $3)",
        )
        .bind(now)
        .bind(no.as_str())
        .bind(held_since)
        .execute(&mut *tx)
        .await?;
        let done = closed.rows_affected() == 1;
        if done {
            restore_stock(&mut tx, no.as_str(), now).await?;
        }
        if done && self.events() {
            super::outbox::write(
                &mut tx,
                ORDER_CLOSED,
                Some(no.as_str()),
                no.as_str(),
                "",
                now,
            )
            .await?;
        }
        tx.commit().await?;
        self.closed(no, done);
        Ok(done)
    }

    /// Closes a pending order and restores its stock, in one transaction; the watch for late
    /// money first asks about it at `watch_from` (`None`: not watched). Returns false (and
    /// changes nothing) when the order is not pending: a close happens once, whoever tries.
    pub async fn close_order(
        &self,
        no: &OutTradeNo,
        now: DateTime<Utc>,
        watch_from: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let done = close_in(
            &mut tx,
            no.as_str(),
            now.timestamp(),
            watch_from.map(|t| t.timestamp()),
            self.events(),
        )
        .await?;
        // Closed at WeChat under its own number: so is its QR code's attempt.
        sqlx::query(
            "UPDATE payment_attempts SET closed_at = $1 WHERE attempt_no = $2 AND closed_at IS NULL",
        )
        .bind(now.timestamp())
        .bind(no.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.closed(no, done);
        Ok(done)
    }

    fn closed(&self, no: &OutTradeNo, done: bool) {
        if done {
            metrics::counter!("order_transitions_total", "to" => "closed").increment(1);
        }
        self.cache.invalidate(no.as_str());
    }

    /// Notes the shopper's wish to cancel a pending order, and makes it due for the
    /// reconciliation job at `due` (when WeChat will close it). False when it is not pending.
    pub async fn request_cancel(
        &self,
        no: &OutTradeNo,
        now: DateTime<Utc>,
        due: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let asked = sqlx::query(
            "UPDATE orders SET cancel_requested_at = $1, reconcile_due_at = $2, updated_at = $1
             WHERE out_trade_no = $3 AND status = 'pending' AND cancel_requested_at IS NULL",
        )
        .bind(now.timestamp())
        .bind(due.timestamp())
        .bind(no.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if asked {
            super::console::add_event(
                &mut tx,
                no.as_str(),
                now.timestamp(),
                "cancel_requested",
                "shopper",
                "",
            )
            .await?;
        }
        tx.commit().await?;
        self.cache.invalidate(no.as_str());
        Ok(asked)
    }

    /// Counts one more unpaid query of a pending order, noting the state WeChat reported;
    /// returns the new count, or None when the order is no longer pending.
    pub async fn count_unpaid_query(
        &self,
        no: &OutTradeNo,
        wechat_state: &str,
    ) -> Result<Option<i64>, StoreError> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE orders SET reconcile_attempts = reconcile_attempts + 1, wechat_state = $1,
                               updated_at = $2
             WHERE out_trade_no = $3 AND status = 'pending'
             RETURNING reconcile_attempts",
        )
        .bind(wechat_state)
        .bind(now_secs())
        .bind(no.as_str())
        .fetch_optional(&self.writer)
        .await?;
        self.cache.invalidate(no.as_str());
        Ok(attempts)
    }

    /// Notes the state WeChat reported for an order (shown to the shopper and the merchant).
    pub async fn note_wechat_state(
        &self,
        no: &OutTradeNo,
        wechat_state: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orders SET wechat_state = $1, updated_at = $2
             WHERE out_trade_no = $3 AND wechat_state IS DISTINCT FROM $1",
        )
        .bind(wechat_state)
        .bind(now_secs())
        .bind(no.as_str())
        .execute(&self.writer)
        .await?;
        self.cache.invalidate(no.as_str());
        Ok(())
    }
}

//! What the reconciliation job works on: claiming due orders, expiring those without a prepay,
//! closing, and counting unpaid queries.

use super::*;

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
        let mut orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
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
            let no = stored_no(&no, "orders.out_trade_no")?;
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

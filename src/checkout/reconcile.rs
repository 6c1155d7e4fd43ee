//! The reconciliation job (the original design's timed task, made safe). Every interval it asks
//! WeChat about every unpaid order that has a prepay — however old: no order falls out of view
//! while the server is down — and:
//!
//! - paid at WeChat → the payment goes through the payments channel, like a notify;
//! - still unpaid → one more attempt; after `max_attempts` of them, or once the order's
//!   `time_expire` has passed, it is closed at WeChat (never within [`MIN_CLOSE_AGE`] of its
//!   creation, as WeChat requires) and then locally, its stock restored in the same transaction;
//! - closeorder answering `ORDERPAID` (the shopper paid between the query and the close) →
//!   queried and confirmed as paid; a paid order's stock is never restored;
//! - closed or unknown at WeChat → closed locally.
//!
//! Each order is claimed for one query per interval (a conditional update of its due time), so
//! with several replicas running the job an order is still queried once per interval, and its
//! attempts count queries rather than replicas.
//!
//! Orders that never got a prepay expire locally after their time, without asking WeChat.
//! Transient WeChat errors count as no attempt, close nothing, and make the job back off.
//! Every state change is a conditional update, so two instances over one database (or a notify
//! landing at the same moment) can neither close an order twice nor restore stock twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::confirm::event_from_query;
use super::{Checkout, MIN_CLOSE_AGE};
use crate::domain::OrderStatus;
use crate::store::{Order, PaymentSource, StoreError};
use crate::wxpay::{ErrCode, TradeState, WxError};
/// Orders looked at per run (the oldest first); the rest wait for the next run.
const BATCH: i64 = 1000;
/// Queries to WeChat in flight at once.
const CONCURRENCY: usize = 8;
/// The longest the job backs off to after transient errors, in intervals.
const MAX_BACKOFF: u32 = 8;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub queried: usize,
    pub confirmed_paid: usize,
    pub still_unpaid: usize,
    pub closed: usize,
    pub expired_without_prepay: usize,
    pub transient_errors: usize,
}

impl RunReport {
    fn record_metrics(&self) {
        metrics::counter!("reconcile_runs_total").increment(1);
        for (what, count) in [
            ("queried", self.queried),
            ("confirmed_paid", self.confirmed_paid),
            ("still_unpaid", self.still_unpaid),
            ("closed", self.closed),
            ("expired_without_prepay", self.expired_without_prepay),
            ("transient_error", self.transient_errors),
        ] {
            metrics::counter!("reconcile_orders_total", "result" => what).increment(count as u64);
        }
    }
}

/// What happened to one order.
enum Step {
    Paid,
    Unpaid,
    Closed,
    Transient,
    Nothing,
}

/// The job, run on the checkout service with its terms' interval and attempts.
#[derive(Clone)]
pub struct Reconciler {
    checkout: Checkout,
    interval: Duration,
    max_attempts: u32,
}

impl Reconciler {
    pub fn new(checkout: Checkout) -> Self {
        let terms = checkout.terms();
        Reconciler {
            interval: terms.reconcile_interval,
            max_attempts: terms.reconcile_max_attempts,
            checkout,
        }
    }

    /// Runs every interval until `shutdown` (a run in progress finishes first), backing off
    /// after runs with transient errors.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = 1;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval * backoff) => {}
            }
            match self.run_once(Utc::now()).await {
                Ok(report) => {
                    report.record_metrics();
                    if report.transient_errors > 0 {
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        tracing::warn!(
                            ?report,
                            backoff,
                            "reconciliation met WeChat errors; backing off"
                        );
                    } else {
                        backoff = 1;
                        if report != RunReport::default() {
                            tracing::info!(?report, "reconciliation run");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "reconciliation run failed"),
            }
        }
    }

    /// One run, as of `now`.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<RunReport, StoreError> {
        let mut report = RunReport {
            expired_without_prepay: self
                .checkout
                .store()
                .expire_unprepaid(now, BATCH)
                .await?
                .len(),
            ..RunReport::default()
        };
        let next = now + chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::MAX);
        let orders = self
            .checkout
            .store()
            .claim_due_for_reconcile(now, next, BATCH)
            .await?;
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut steps = tokio::task::JoinSet::new();
        for order in orders {
            let permit = limit.clone().acquire_owned().await.expect("never closed");
            let job = self.clone();
            steps.spawn(async move {
                let step = job.reconcile(order, now).await;
                drop(permit);
                step
            });
        }
        while let Some(step) = steps.join_next().await {
            report.queried += 1;
            match step.expect("a reconcile step does not panic")? {
                Step::Paid => report.confirmed_paid += 1,
                Step::Unpaid => report.still_unpaid += 1,
                Step::Closed => report.closed += 1,
                Step::Transient => report.transient_errors += 1,
                Step::Nothing => {}
            }
        }
        Ok(report)
    }

    #[tracing::instrument(name = "reconcile", skip_all, fields(out_trade_no = %order.out_trade_no))]
    async fn reconcile(&self, order: Order, now: DateTime<Utc>) -> Result<Step, StoreError> {
        let no = order.out_trade_no.clone();
        let query = match self.checkout.wechat().order_query(no.as_str()).await {
            Ok(query) => query,
            Err(e) => return self.query_failed(&order, e, now).await,
        };
        match query.trade_state {
            TradeState::Success => self.confirm(&order, &query).await,
            TradeState::NotPay | TradeState::UserPaying | TradeState::PayError => {
                let Some(attempts) = self.checkout.store().count_unpaid_query(&no).await? else {
                    return Ok(Step::Nothing); // settled meanwhile
                };
                let due = attempts >= i64::from(self.max_attempts) || now >= order.expires_at;
                if due && now - order.created_at >= MIN_CLOSE_AGE {
                    self.close(&order, now).await
                } else {
                    Ok(Step::Unpaid)
                }
            }
            TradeState::Closed | TradeState::Revoked => self.close_locally(&order, now).await,
            other => {
                tracing::warn!(out_trade_no = %no, trade_state = %other, "order in an unexpected state at WeChat; left alone");
                Ok(Step::Nothing)
            }
        }
    }

    async fn query_failed(
        &self,
        order: &Order,
        e: WxError,
        now: DateTime<Utc>,
    ) -> Result<Step, StoreError> {
        if e.err_code() == Some(&ErrCode::OrderNotExist) {
            // WeChat never took the order: nothing to pay, nothing to close there.
            return self.close_locally(order, now).await;
        }
        if e.is_transient() {
            tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "order query failed");
            return Ok(Step::Transient);
        }
        tracing::error!(out_trade_no = %order.out_trade_no, error = %e, "order query refused");
        Ok(Step::Nothing)
    }

    /// Closes at WeChat, then here.
    async fn close(&self, order: &Order, now: DateTime<Utc>) -> Result<Step, StoreError> {
        match self
            .checkout
            .wechat()
            .close_order(order.out_trade_no.as_str())
            .await
        {
            Ok(()) => self.close_locally(order, now).await,
            Err(e) => match e.err_code() {
                Some(ErrCode::OrderPaid) => {
                    // The shopper paid after our query: it is a paid order.
                    match self
                        .checkout
                        .wechat()
                        .order_query(order.out_trade_no.as_str())
                        .await
                    {
                        Ok(query) if query.trade_state == TradeState::Success => {
                            self.confirm(order, &query).await
                        }
                        Ok(query) => {
                            tracing::warn!(out_trade_no = %order.out_trade_no, trade_state = %query.trade_state, "closeorder said paid, query did not");
                            Ok(Step::Nothing)
                        }
                        Err(e) if e.is_transient() => Ok(Step::Transient),
                        Err(e) => {
                            tracing::error!(out_trade_no = %order.out_trade_no, error = %e, "query after ORDERPAID failed");
                            Ok(Step::Nothing)
                        }
                    }
                }
                Some(ErrCode::OrderClosed | ErrCode::OrderNotExist) => {
                    self.close_locally(order, now).await
                }
                _ if e.is_transient() => Ok(Step::Transient),
                _ => {
                    tracing::error!(out_trade_no = %order.out_trade_no, error = %e, "closeorder refused");
                    Ok(Step::Nothing)
                }
            },
        }
    }

    async fn close_locally(&self, order: &Order, now: DateTime<Utc>) -> Result<Step, StoreError> {
        if self
            .checkout
            .store()
            .close_order(&order.out_trade_no, now)
            .await?
        {
            tracing::info!(out_trade_no = %order.out_trade_no, "order closed; stock restored");
            Ok(Step::Closed)
        } else {
            Ok(Step::Nothing)
        }
    }

    async fn confirm(
        &self,
        order: &Order,
        query: &crate::wxpay::types::OrderQueryResponse,
    ) -> Result<Step, StoreError> {
        if order.status != OrderStatus::Pending {
            return Ok(Step::Nothing);
        }
        match event_from_query(order, query, PaymentSource::Reconcile) {
            Some(event) => {
                self.checkout.inner.payments.confirm(&event).await?;
                Ok(Step::Paid)
            }
            None => Ok(Step::Nothing),
        }
    }
}

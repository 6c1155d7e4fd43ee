//! The reconciliation job (the original design's timed task, made safe). Its rule: **an order
//! is over only when WeChat says so.** Every interval it asks WeChat about every unpaid order
//! that has a prepay — however old: no order falls out of view while the server is down — and:
//!
//! - paid at WeChat (`SUCCESS`, or `REFUND`: paid, then refunded outside the shop) → the
//!   payment goes through the payments channel, like a notify;
//! - `CLOSED` or `REVOKED` → closed here, its stock restored;
//! - still payable (`NOTPAY`, `USERPAYING` — a payment in progress, never closed before
//!   [`CLOSE_MARGIN`] past `time_expire` —, `PAYERROR` — a failed attempt the shopper may
//!   retry —, `ORDERNOTEXIST` for an order with a prepay, or a state this version does not know,
//!   logged once and counted in `reconcile_unknown_state_total`) → one more unpaid attempt;
//!   once the order's `time_expire` has passed (or after `RECONCILE_MAX_ATTEMPTS` of them, when
//!   that is set), it is closed at
//!   WeChat (never within [`MIN_CLOSE_AGE`] of its creation, as WeChat requires) and only when
//!   closeorder answers `SUCCESS` or `ORDERCLOSED` — or `ORDERNOTEXIST` past `time_expire` plus
//!   [`CLOSE_MARGIN`], when WeChat can take no money for it either — is it closed here;
//! - closeorder answering `ORDERPAID` (the shopper paid between the query and the close) →
//!   queried and confirmed as paid; a paid order's stock is never restored.
//!
//! **Finished orders are watched for late money.** Every order closed after having a prepay is
//! asked about again [`WATCH_AFTER`] its close or `time_expire`, whichever is later (1 minute,
//! 10 minutes, 1 hour, 1 day); money found then is recorded like any payment, which makes the
//! order `refund_due`. A watched order still payable at WeChat is closed there.
//!
//! Each order is claimed for one query per interval (a conditional update of its due time), so
//! with several replicas running the job an order is still queried once per interval, and its
//! attempts count queries rather than replicas. Times are the database's clock, which all
//! replicas share.
//!
//! An order is never asked about forever: should WeChat keep refusing to tell or close it, it
//! is settled here [`GIVE_UP_AFTER`] past its time (WeChat takes no money after `time_expire`),
//! watched, and logged as an error.
//!
//! **Refunds in progress are followed** after each run ([`Checkout::follow_refunds`]): asked for
//! again with the same `out_refund_no` while their outcome is unknown, queried until WeChat
//! settles them; and late payments are refunded (see [`super::refunds`]). Then **the daily
//! bill** takes its turn ([`Checkout::bill_turn`], see [`super::bills`]).
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
use super::phones::AttemptClose;
use super::push::OrderChange;
use super::{Checkout, MIN_CLOSE_AGE};
use crate::domain::OrderStatus;
use crate::store::{Order, PaymentSource, StoreError};
use crate::wxpay::types::OrderQueryResponse;
use crate::wxpay::{ErrCode, TradeState, WxError};

/// Orders looked at per run (the oldest first); the rest wait for the next run.
const BATCH: i64 = 1000;
/// Queries to WeChat in flight at once.
const CONCURRENCY: usize = 8;
/// The longest the job backs off to after transient errors, in intervals.
const MAX_BACKOFF: u32 = 8;
/// How long past `time_expire` an order WeChat says it never heard of is taken to be beyond
/// payment (clocks differ); also how long a payment in progress (`USERPAYING`) is waited for.
pub const CLOSE_MARGIN: chrono::Duration = chrono::Duration::minutes(5);
/// How long past `time_expire` WeChat may refuse to tell or close an order (a configuration
/// error, say) before the shop settles it alone: closed here, its stock back, watched, and
/// logged as an error. WeChat takes no money after `time_expire`, and the watch and the daily
/// bill would find any.
pub const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::days(1);
/// When the watch asks about a finished unpaid order again, after its close or `time_expire`,
/// whichever is later. The daily bill catches anything later still.
pub const WATCH_AFTER: [chrono::Duration; 4] = [
    chrono::Duration::minutes(1),
    chrono::Duration::minutes(10),
    chrono::Duration::hours(1),
    chrono::Duration::days(1),
];

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Pending orders asked about.
    pub queried: usize,
    pub confirmed_paid: usize,
    pub still_unpaid: usize,
    pub closed: usize,
    pub expired_without_prepay: usize,
    pub transient_errors: usize,
    /// Finished orders asked about by the watch.
    pub watched: usize,
    /// Payments the watch found for finished orders (now refund_due).
    pub late_payments: usize,
    /// Payment attempts of orders over another way, closed at WeChat (or found paid: late).
    pub spare_attempts_closed: usize,
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
            ("watched", self.watched),
            ("late_payment", self.late_payments),
        ] {
            metrics::counter!("reconcile_orders_total", "result" => what).increment(count as u64);
        }
    }

    fn count(&mut self, step: Step) {
        match step {
            Step::Paid => self.confirmed_paid += 1,
            Step::Unpaid => self.still_unpaid += 1,
            Step::Closed => self.closed += 1,
            Step::Transient => self.transient_errors += 1,
            Step::LatePayment => self.late_payments += 1,
            Step::Nothing => {}
        }
    }
}

/// What happened to one order.
enum Step {
    Paid,
    Unpaid,
    Closed,
    Transient,
    LatePayment,
    Nothing,
}

/// The job, run on the checkout service with its terms' interval and attempts.
#[derive(Clone)]
pub struct Reconciler {
    checkout: Checkout,
    interval: Duration,
    max_attempts: Option<u32>,
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
            let result = match self.checkout.store().now().await {
                Ok(now) => self.run_once(now).await,
                Err(e) => Err(e),
            };
            match result {
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
            match self.checkout.follow_refunds().await {
                Ok(report) if report != super::FollowReport::default() => {
                    tracing::info!(?report, "refunds followed")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "following refunds failed"),
            }
            let bill_turn = match self.checkout.store().now().await {
                Ok(now) => self.checkout.bill_turn(now).await.map(drop),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = bill_turn {
                tracing::error!(error = %e, "the daily bill's turn failed");
            }
        }
    }

    /// One run, as of `now`: expiries, pending orders, then the watch.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<RunReport, StoreError> {
        let store = self.checkout.store();
        let expired = store
            .expire_unprepaid(now, self.checkout.unprepaid_hold(), BATCH)
            .await?;
        for no in &expired {
            self.checkout.announce(no, OrderChange::Closed).await;
        }
        let mut report = RunReport {
            expired_without_prepay: expired.len(),
            ..RunReport::default()
        };
        let next = now + chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::MAX);
        let pending = store.claim_due_for_reconcile(now, next, BATCH).await?;
        report.queried = pending.len();
        for step in self.each(pending, now, Self::reconcile).await? {
            report.count(step);
        }
        let watched = store.claim_due_for_watch(now, next, BATCH).await?;
        report.watched = watched.len();
        for step in self.each(watched, now, Self::watch).await? {
            report.count(step);
        }
        report.spare_attempts_closed = self.checkout.close_spare_attempts(now).await?;
        Ok(report)
    }

    /// Runs `step` for each order, [`CONCURRENCY`] at a time.
    async fn each<F, Fut>(
        &self,
        orders: Vec<Order>,
        now: DateTime<Utc>,
        step: F,
    ) -> Result<Vec<Step>, StoreError>
    where
        F: Fn(Reconciler, Order, DateTime<Utc>) -> Fut,
        Fut: std::future::Future<Output = Result<Step, StoreError>> + Send + 'static,
    {
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut steps = tokio::task::JoinSet::new();
        for order in orders {
            let permit = limit.clone().acquire_owned().await.expect("never closed");
            let run = step(self.clone(), order, now);
            steps.spawn(async move {
                let step = run.await;
                drop(permit);
                step
            });
        }
        let mut done = Vec::new();
        while let Some(step) = steps.join_next().await {
            done.push(step.expect("a reconcile step does not panic")?);
        }
        Ok(done)
    }

    /// One pending order.
    #[tracing::instrument(name = "reconcile", skip_all, fields(out_trade_no = %order.out_trade_no))]
    async fn reconcile(self, order: Order, now: DateTime<Utc>) -> Result<Step, StoreError> {
        let no = order.out_trade_no.clone();
        // Its payment attempts on phones first: any of them paid pays the order.
        for attempt in self.checkout.open_phone_attempts(&order).await? {
            match self.checkout.query_attempt(&order, &attempt).await? {
                AttemptClose::Paid => return Ok(Step::Paid),
                AttemptClose::Transient => return Ok(Step::Transient),
                AttemptClose::Closed | AttemptClose::Wait => {}
            }
        }
        // An order paid on a phone only, never shown as a QR code, has nothing to ask under
        // its own number.
        let asked = match &order.prepay {
            Some(_) => Some(self.checkout.wechat().order_query(no.as_str()).await),
            None => None,
        };
        let state = match asked {
            None => TradeState::NotPay.as_str().to_owned(),
            Some(asked) => match asked {
                Ok(query) => match query.trade_state {
                    TradeState::Success | TradeState::Refund => {
                        return self.confirm(&order, &query).await
                    }
                    TradeState::Closed | TradeState::Revoked => {
                        self.note(&order, query.trade_state.as_str()).await?;
                        return self.close_locally(&order, now).await;
                    }
                    state => state.as_str().to_owned(),
                },
                // WeChat does not know an order it gave a prepay for: not proof of anything yet.
                Err(e) if e.err_code() == Some(&ErrCode::OrderNotExist) => {
                    ErrCode::OrderNotExist.as_str().to_owned()
                }
                Err(e) => return self.query_failed(&order, &e, now).await,
            },
        };
        self.log_if_unexpected(&order, &state);
        let Some(attempts) = self
            .checkout
            .store()
            .count_unpaid_query(&no, &state)
            .await?
        else {
            return Ok(Step::Nothing); // settled meanwhile
        };
        let spent = self
            .max_attempts
            .is_some_and(|max| attempts >= i64::from(max));
        // A payment in progress is never cut short, until well past its time.
        let paying = TradeState::from(state.as_str()) == TradeState::UserPaying
            && now < order.expires_at + CLOSE_MARGIN;
        // The shopper's Cancel: closed at the first moment WeChat allows.
        let cancelled = order.cancel_requested_at.is_some();
        let due = (spent || cancelled || now >= order.expires_at) && !paying;
        if due && now - order.created_at >= MIN_CLOSE_AGE {
            self.close(&order, now).await
        } else {
            Ok(Step::Unpaid)
        }
    }

    /// One finished order the watch is due to ask about.
    #[tracing::instrument(name = "watch", skip_all, fields(out_trade_no = %order.out_trade_no))]
    async fn watch(self, order: Order, now: DateTime<Utc>) -> Result<Step, StoreError> {
        let no = &order.out_trade_no;
        let mut step = Step::Nothing;
        match self.checkout.wechat().order_query(no.as_str()).await {
            Ok(query) => {
                self.note(&order, query.trade_state.as_str()).await?;
                match query.trade_state {
                    TradeState::Success | TradeState::Refund => {
                        step = self.record_late(&order, &query).await?;
                    }
                    TradeState::NotPay | TradeState::UserPaying | TradeState::PayError
                        if now - order.created_at >= MIN_CLOSE_AGE =>
                    {
                        // Still payable at WeChat (closed here before this rule, or never
                        // confirmed): close it there.
                        step = self.close(&order, now).await?;
                        if matches!(step, Step::Transient) {
                            return Ok(step);
                        }
                    }
                    state => self.log_if_unexpected(&order, state.as_str()),
                }
            }
            Err(e) if e.err_code() == Some(&ErrCode::OrderNotExist) => {}
            Err(e) if e.is_transient() => return Ok(Step::Transient),
            Err(e) => {
                tracing::error!(out_trade_no = %no, error = %e, "watch query refused");
            }
        }
        let next = match step {
            Step::LatePayment | Step::Paid => None,
            _ => watch_due(&order, order.watch_step + 1),
        };
        self.checkout
            .store()
            .advance_watch(no, order.watch_step, next)
            .await?;
        Ok(step)
    }

    async fn query_failed(
        &self,
        order: &Order,
        e: &WxError,
        now: DateTime<Utc>,
    ) -> Result<Step, StoreError> {
        if e.is_transient() {
            tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "order query failed");
            return Ok(Step::Transient);
        }
        tracing::error!(out_trade_no = %order.out_trade_no, error = %e, "order query refused");
        self.give_up_if_stale(order, now).await
    }

    /// WeChat has refused to tell or close the order: once it is [`GIVE_UP_AFTER`] past its
    /// time, the shop settles it alone rather than hold its stock and ask forever.
    async fn give_up_if_stale(
        &self,
        order: &Order,
        now: DateTime<Utc>,
    ) -> Result<Step, StoreError> {
        if now < order.expires_at + GIVE_UP_AFTER {
            return Ok(Step::Nothing);
        }
        tracing::error!(
            out_trade_no = %order.out_trade_no,
            "WeChat would not settle this order a day past its time: closed here and watched"
        );
        self.close_locally(order, now).await
    }

    /// A state this version does not know is an alarm, raised once per order and state.
    fn log_if_unexpected(&self, order: &Order, state: &str) {
        let expected = matches!(
            TradeState::from(state),
            TradeState::NotPay
                | TradeState::UserPaying
                | TradeState::PayError
                | TradeState::Closed
                | TradeState::Revoked
        ) || state == ErrCode::OrderNotExist.as_str();
        if !expected && order.wechat_state.as_deref() != Some(state) {
            metrics::counter!("reconcile_unknown_state_total").increment(1);
            tracing::error!(
                out_trade_no = %order.out_trade_no,
                trade_state = state,
                "WeChat reports a state this version does not know; the order is closed at \
                 WeChat in due course and watched"
            );
        }
    }

    /// Notes the state WeChat reported, when it changed.
    async fn note(&self, order: &Order, state: &str) -> Result<(), StoreError> {
        if order.wechat_state.as_deref() != Some(state) {
            self.checkout
                .store()
                .note_wechat_state(&order.out_trade_no, state)
                .await?;
        }
        Ok(())
    }

    /// Closes a pending order now (the shopper's Cancel), as the job would.
    pub(super) async fn close_now(
        &self,
        order: &Order,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if order.status == OrderStatus::Pending && now - order.created_at >= MIN_CLOSE_AGE {
            self.close(order, now).await?;
        }
        Ok(())
    }

    /// Closes at WeChat, then here — only once WeChat can take no money for it.
    async fn close(&self, order: &Order, now: DateTime<Utc>) -> Result<Step, StoreError> {
        // Its payment attempts on phones are closed at WeChat first: the order is over only
        // once WeChat can take no money for any of them.
        for attempt in self.checkout.open_phone_attempts(order).await? {
            match self
                .checkout
                .close_attempt_at_wechat(order, &attempt, now)
                .await?
            {
                AttemptClose::Closed => {}
                AttemptClose::Paid => return Ok(Step::Paid),
                AttemptClose::Wait => return Ok(Step::Unpaid),
                AttemptClose::Transient => return Ok(Step::Transient),
            }
        }
        if order.prepay.is_none() {
            return self.close_locally(order, now).await;
        }
        let no = order.out_trade_no.as_str();
        let Err(e) = self.checkout.wechat().close_order(no).await else {
            return self.close_locally(order, now).await;
        };
        match e.err_code() {
            Some(ErrCode::OrderClosed) => self.close_locally(order, now).await,
            Some(ErrCode::OrderPaid) => {
                // The shopper paid after our query: it is a paid order.
                match self.checkout.wechat().order_query(no).await {
                    Ok(query)
                        if matches!(
                            query.trade_state,
                            TradeState::Success | TradeState::Refund
                        ) =>
                    {
                        self.confirm(order, &query).await
                    }
                    Ok(query) => {
                        tracing::warn!(out_trade_no = %no, trade_state = %query.trade_state, "closeorder said paid, query did not");
                        Ok(Step::Nothing)
                    }
                    Err(e) if e.is_transient() => Ok(Step::Transient),
                    Err(e) => {
                        tracing::error!(out_trade_no = %no, error = %e, "query after ORDERPAID failed");
                        Ok(Step::Nothing)
                    }
                }
            }
            // Never created at WeChat: over once its time is past there too.
            Some(ErrCode::OrderNotExist) if now >= order.expires_at + CLOSE_MARGIN => {
                self.close_locally(order, now).await
            }
            Some(ErrCode::OrderNotExist) => Ok(Step::Unpaid),
            _ if e.is_transient() => Ok(Step::Transient),
            _ => {
                tracing::error!(out_trade_no = %no, error = %e, "closeorder refused");
                self.give_up_if_stale(order, now).await
            }
        }
    }

    /// Closes a pending order here (WeChat has said it can take no money for it) and starts
    /// its watch. A watched order that is already closed just stays closed.
    async fn close_locally(&self, order: &Order, now: DateTime<Utc>) -> Result<Step, StoreError> {
        if order.status != OrderStatus::Pending {
            return Ok(Step::Nothing);
        }
        let mut closed = order.clone();
        closed.closed_at = Some(now);
        let watch_from = watch_due(&closed, 0);
        if self
            .checkout
            .store()
            .close_order(&order.out_trade_no, now, watch_from)
            .await?
        {
            tracing::info!(out_trade_no = %order.out_trade_no, "order closed; stock restored");
            self.checkout
                .announce(&order.out_trade_no, OrderChange::Closed)
                .await;
            Ok(Step::Closed)
        } else {
            Ok(Step::Nothing)
        }
    }

    /// Confirms the payment a query reports for a pending order.
    async fn confirm(&self, order: &Order, query: &OrderQueryResponse) -> Result<Step, StoreError> {
        if order.status != OrderStatus::Pending {
            return self.record_late(order, query).await;
        }
        if query.trade_state == TradeState::Refund {
            self.note(order, TradeState::Refund.as_str()).await?;
        }
        match event_from_query(order, &order.out_trade_no, query, PaymentSource::Reconcile) {
            Some(event) => {
                self.checkout.inner.payments.confirm(&event).await?;
                Ok(Step::Paid)
            }
            None => Ok(Step::Nothing),
        }
    }

    /// Records money WeChat took for a finished order: applied, it makes the order refund_due.
    async fn record_late(
        &self,
        order: &Order,
        query: &OrderQueryResponse,
    ) -> Result<Step, StoreError> {
        match event_from_query(order, &order.out_trade_no, query, PaymentSource::Reconcile) {
            Some(event) => {
                let recorded = self.checkout.inner.payments.confirm(&event).await?;
                if recorded.new {
                    tracing::warn!(
                        out_trade_no = %order.out_trade_no,
                        trade_state = %query.trade_state,
                        "money found for a finished order: refund due"
                    );
                    Ok(Step::LatePayment)
                } else {
                    Ok(Step::Nothing)
                }
            }
            None => Ok(Step::Nothing),
        }
    }
}

/// When the watch asks about a finished order for the `step`-th time (from 0), or `None` once
/// it has asked them all.
fn watch_due(order: &Order, step: i64) -> Option<DateTime<Utc>> {
    let after = WATCH_AFTER.get(usize::try_from(step).ok()?)?;
    let base = order
        .closed_at
        .map_or(order.expires_at, |closed| closed.max(order.expires_at));
    Some(base + *after)
}
